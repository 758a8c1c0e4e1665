"""On an RK3588 (pytest -m board): the hardware decoders read a real H.264 RTSP camera into
shared memory, frame by frame what the clip shows. Here (no VPU, no RGA) they are skipped;
the same capture code runs in software in test_capture_decoders.py."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from pipeline.context import Context, InlineRuntime
from stages.capture import Capture
from support.cameras import RtspCamera, clip_frames, h264_clip, match_frame, rtsp_ready


def _board_missing(decoder: str) -> str | None:
    compatible = Path("/proc/device-tree/compatible")
    if not compatible.exists() or b"rk3588" not in compatible.read_bytes():
        return "needs an RK3588 board (pytest -m board)"
    if rtsp_ready():
        return rtsp_ready()
    if decoder == "ffmpeg":
        out = subprocess.run(
            ["ffmpeg", "-hide_banner", "-decoders"], capture_output=True, text=True
        )
        if "h264_rkmpp" not in out.stdout:
            return "needs ffmpeg-rockchip (h264_rkmpp decoder)"
    elif (
        shutil.which("gst-inspect-1.0") is None
        or subprocess.run(["gst-inspect-1.0", "mppvideodec"], capture_output=True).returncode
    ):
        return "needs GStreamer's mppvideodec (gstreamer1.0-rockchip)"
    return None


@pytest.mark.board
@pytest.mark.parametrize(
    ("decoder", "hwaccel"), [("ffmpeg", "rkmpp"), ("gstreamer", "auto")], ids=["rkmpp", "mpp"]
)
def test_hardware_decoder_reads_the_camera_frame_by_frame(
    tmp_path: Path, decoder: str, hwaccel: str
) -> None:
    why = _board_missing(decoder)
    if why:
        pytest.skip(why)
    clip = h264_clip(tmp_path / "street.mp4", 1, 150, (1280, 720), 15)
    ref = clip_frames(clip)
    cam = RtspCamera(clip)
    try:
        cap = Capture(source=cam.url, decoder=decoder, hwaccel=hwaccel, resize=[640, 360])
        cap.stream_id = "cam0"
        runtime = InlineRuntime()
        cap.setup(Context(stage="cam0", runtime=runtime))
        try:
            msgs = [cap.read() for _ in range(30)]
        finally:
            cap.close()
    finally:
        cam.kill()
    assert all(m is not None and m.frame.shape == (360, 640, 3) for m in msgs)
    matches = [match_frame(m.frame, ref) for m in msgs]  # type: ignore[union-attr]
    assert max(err for _, err in matches) < 12.0, matches
    assert [i for i, _ in matches] == sorted(i for i, _ in matches)  # in order
    assert any(state == "live" for state, _ in runtime.health)
