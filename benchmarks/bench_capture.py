"""CPU per frame of capturing a 1080p H.264 RTSP camera: OpenCV (its own FFmpeg, in the
stage's process) against the decoder processes (ffmpeg, gst-launch; both decode in
software here, on the RK3588 they decode on the VPU), measured in one run.

A street scene (``rkpipe scene``, 1920x1080 at 30 fps, H.264 by libx264 with a keyframe
each second) is served in real time by GStreamer's RTSP server on localhost. Each case runs
the real ``capture`` stage inline, pinned to one CPU as a capture stage with ``cpus = [N]``
is (its decoder process inherits the pin), reads ``--frames`` frames into shared memory,
and counts the CPU time of this process and of the decoder process it owned. Cases: full
1080p frames, and ``resize = [640, 360]`` (the decoder scales; OpenCV resizes in Python).

    python benchmarks/bench_capture.py [--frames N] [--quick] [--json OUT]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pipeline.context import Context, InlineRuntime  # noqa: E402
from pipeline.transport.framepool import FramePool  # noqa: E402
from pipeline.video_tools import ffmpeg_hwaccels, gst_has  # noqa: E402
from stages.capture import Capture  # noqa: E402
from support.cameras import RtspCamera, h264_clip, rtsp_ready  # noqa: E402

DECODERS = ("opencv", "ffmpeg", "gstreamer")
SIZES = {"1080p": None, "640x360": (640, 360)}


def _children_cpu() -> float:
    """CPU seconds of the children this process has waited for (decoders it closed)."""
    use = resource.getrusage(resource.RUSAGE_CHILDREN)
    return use.ru_utime + use.ru_stime


def run_case(url: str, decoder: str, resize: tuple[int, int] | None, frames: int) -> dict:
    """Read ``frames`` frames (after 10 to settle) and count the CPU spent on them."""
    pool = FramePool(f"rkpipe-benchcapture-{os.getpid()}", 8)
    runtime = InlineRuntime()
    runtime.alloc = pool.alloc  # type: ignore[method-assign]  # frames go to shared memory
    cap = Capture(source=url, decoder=decoder, resize=list(resize) if resize else None)
    cap.stream_id = "cam0"
    cap.setup(Context(stage="cam0", runtime=runtime))
    try:
        for _ in range(10):
            assert cap.read() is not None, runtime.health
        cpu0, kids0, t0 = time.process_time(), _children_cpu(), time.monotonic()
        for _ in range(frames):
            msg = cap.read()
            assert msg is not None, runtime.health
            del msg
        wall, own = time.monotonic() - t0, time.process_time() - cpu0
    finally:
        cap.close()  # the decoder process is reaped here: its CPU time counts from now
        pool.close()
    decoder_cpu = _children_cpu() - kids0
    if decoder != "opencv":  # its time includes the 10 settling frames and the start
        decoder_cpu *= frames / (frames + 10)
    return {
        "decoder": decoder,
        "fps": frames / wall,
        "cpu_ms_per_frame": 1000 * (own + decoder_cpu) / frames,
        "stage_ms_per_frame": 1000 * own / frames,
        "decoder_ms_per_frame": 1000 * decoder_cpu / frames,
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--frames", type=int, default=150, help="frames measured per case")
    p.add_argument("--quick", action="store_true", help="20 frames per case")
    p.add_argument("--json", type=Path, help="write the figures here")
    p.add_argument("--cpu", type=int, default=None, help="pin to this CPU (default: the last)")
    args = p.parse_args()
    if why := rtsp_ready():
        print(f"bench_capture: {why}", file=sys.stderr)
        return 2
    frames = 20 if args.quick else args.frames
    cpu = args.cpu if args.cpu is not None else max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    ffmpeg_hwaccels("ffmpeg"), gst_has("mppvideodec"), gst_has("decodebin")  # probes, not timed
    decoders = [d for d in DECODERS if d != "gstreamer" or gst_has("decodebin")]
    with tempfile.TemporaryDirectory() as tmp:
        seconds = (frames + 10) / 30 + 4  # each session starts the clip again
        clip = h264_clip(Path(tmp) / "street1080.mp4", 1, int(seconds * 30), (1920, 1080), 30)
        camera = RtspCamera(clip)
        try:
            results: dict[str, dict[str, Any]] = {}
            for size, resize in SIZES.items():
                for decoder in decoders:
                    results[f"{decoder}/{size}"] = run_case(camera.url, decoder, resize, frames)
        finally:
            camera.kill()
    print(f"capture of a 1080p30 H.264 RTSP camera, {frames} frames per case, pinned to CPU {cpu}")
    print(
        f"  {'case':<20}{'fps':>6}{'CPU ms/frame':>14}{'stage':>8}{'decoder':>9}{'vs OpenCV':>11}"
    )
    for key, r in results.items():
        base = results[f"opencv/{key.split('/')[1]}"]["cpu_ms_per_frame"]
        r["ratio_to_opencv"] = r["cpu_ms_per_frame"] / base
        print(
            f"  {key:<20}{r['fps']:>6.1f}{r['cpu_ms_per_frame']:>14.2f}"
            f"{r['stage_ms_per_frame']:>8.2f}{r['decoder_ms_per_frame']:>9.2f}"
            f"{r['ratio_to_opencv']:>10.2f}x"
        )
    if args.json:
        doc = {"frames": frames, "cpu": cpu, "load": os.getloadavg()[0], "cases": results}
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
