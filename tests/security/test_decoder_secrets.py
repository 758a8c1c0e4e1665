"""No secret on a decoder's command line or in its environment: ``ps`` (any user) shows every
process's argv, and a decoder needs none of the run's variables."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from pipeline.context import Context, InlineRuntime
from stages.capture import Capture
from support.cameras import RtspCamera, h264_clip, rtsp_ready

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(bool(rtsp_ready()), reason=rtsp_ready() or "ready"),
]

PASSWORD = "Pa55w0rdXyz"
TOKEN = "run-Token-5511"
MQTT_PASSWORD = "mqtt-Secret-77"


@pytest.fixture(scope="module")
def clip(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return h264_clip(tmp_path_factory.mktemp("clip") / "street.mp4", 1, 100, (160, 90), 10)


@pytest.fixture
def camera(clip: Path) -> Iterator[RtspCamera]:
    cam = RtspCamera(clip, user="viewer", password=PASSWORD)
    yield cam
    cam.kill()


def children(parent: int) -> list[int]:
    found = []
    for d in Path("/proc").iterdir():
        try:
            status = (d / "status").read_text() if d.name.isdigit() else ""
        except OSError:
            continue
        if f"\nPPid:\t{parent}\n" in status:
            found.append(int(d.name))
    return found


@pytest.mark.parametrize("decoder", ["ffmpeg", "gstreamer"])
def test_a_decoder_gets_the_camera_password_but_not_on_its_command_line(
    decoder: str, camera: RtspCamera, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The stage's environment holds the run's token, its job and an MQTT password; the
    decoder connected to a camera that wants a password (so it has it) shows none of them
    in /proc/PID/cmdline or /proc/PID/environ."""
    monkeypatch.setenv("RKPIPE_TOKEN", TOKEN)
    monkeypatch.setenv("RKPIPE_JOB", f'{{"secrets": ["{MQTT_PASSWORD}"]}}')
    monkeypatch.setenv("MQTT_PASS", MQTT_PASSWORD)
    cap = Capture(source=camera.url, decoder=decoder)
    cap.stream_id = "cam0"
    runtime = InlineRuntime()
    cap.setup(Context(stage="cam0", runtime=runtime))
    try:
        assert all(cap.read() is not None for _ in range(5))  # it logged in: it has it
        import os

        decoders = [p for p in children(os.getpid()) if p != camera.proc.pid]  # type: ignore[union-attr]
        assert decoders, "no decoder process found"
        for pid in decoders:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            env = Path(f"/proc/{pid}/environ").read_bytes()
            for secret in (PASSWORD, TOKEN, MQTT_PASSWORD):
                assert secret.encode() not in argv, argv
                assert secret.encode() not in env, env
            names = {v.split(b"=", 1)[0] for v in env.split(b"\0") if v}
            assert not names & {b"RKPIPE_TOKEN", b"RKPIPE_JOB", b"MQTT_PASS"}, names
            assert b"PATH" in names
    finally:
        cap.close()
