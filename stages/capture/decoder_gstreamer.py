"""The ``gstreamer`` decoder: a ``gst-launch-1.0`` pipeline that decodes a stream and writes
raw BGR frames of the output size to a pipe (``fdsink``), without an OpenCV built with
GStreamer.

RTSP goes through ``rtspsrc`` (its video track), other URLs through ``urisourcebin``. Where
Rockchip's plugin is installed, RTSP video is decoded by ``mppvideodec`` (the VPU); else
``decodebin`` picks the best decoder there is (which is also mppvideodec when present, by
its rank). Scaling and conversion to BGR are done by ``videoscale`` and ``videoconvert``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["GST_LAUNCH", "GstOptions", "gst_argv", "gst_size"]

GST_LAUNCH = "gst-launch-1.0"
_CAPS = re.compile(r"GstFdSink.*caps = video/x-raw")


@dataclass(frozen=True)
class GstOptions:
    """What the stage asks of GStreamer."""

    mpp: bool = False  # decode RTSP video with mppvideodec
    rtsp_transport: str = "tcp"
    resize: tuple[int, int] | None = None
    fps: float | None = None


def _quoted(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def gst_argv(url: str, opts: GstOptions, fd: int) -> list[str]:
    """The gst-launch command (``-v`` prints the negotiated caps, hence the size)."""
    if url.lower().startswith("rtsp"):
        source = [
            "rtspsrc",
            f"location={_quoted(url)}",
            f"protocols={opts.rtsp_transport}",
            "latency=100",
            "!",
            "application/x-rtp,media=video",
        ]
        decode = ["parsebin", "!", "mppvideodec"] if opts.mpp else ["decodebin"]
    else:
        source, decode = ["urisourcebin", f"uri={_quoted(url)}"], ["decodebin"]
    caps = "video/x-raw,format=BGR"
    if opts.resize:
        caps += f",width={opts.resize[0]},height={opts.resize[1]}"
    rate = ["videorate", "drop-only=true", f"max-rate={round(opts.fps)}", "!"] if opts.fps else []
    tail = [*rate, "videoscale", "!", "videoconvert", "!", caps, "!"]
    return [GST_LAUNCH, "-v", *source, "!", *decode, "!", *tail, "fdsink", f"fd={fd}", "sync=false"]


def gst_size(line: str) -> tuple[int, int] | None:
    """The output size from the caps gst-launch -v prints for the fdsink's pad."""
    if not _CAPS.search(line):
        return None
    w = re.search(r"width=\(int\)(\d+)", line)
    h = re.search(r"height=\(int\)(\d+)", line)
    return (int(w.group(1)), int(h.group(1))) if w and h else None
