"""The ``gstreamer`` decoder: a ``gst-launch-1.0`` pipeline that decodes a stream and writes
raw BGR frames of the output size to a pipe (``fdsink``), without an OpenCV built with
GStreamer.

RTSP goes through ``rtspsrc`` (its video track), other URLs through ``urisourcebin``. Where
Rockchip's plugin is installed, RTSP video is decoded by ``mppvideodec`` (the VPU); else
``decodebin`` picks the best decoder there is (which is also mppvideodec when present, by
its rank). Scaling and conversion to BGR are done by ``videoscale`` and ``videoconvert``.

gst-launch takes its pipeline only on the command line, which every user of the machine can
read (``ps``). So a URL that carries a secret is run instead by a few lines of Python over
libgstreamer (``ctypes``, no bindings needed): the pipeline's description comes through a
pipe, and it prints what gst-launch would (the fdsink's caps, errors), so the stage reads it
the same way.
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass

__all__ = [
    "GST_FED_FD",
    "GST_LAUNCH",
    "GstOptions",
    "gst_argv",
    "gst_description",
    "gst_fed_argv",
    "gst_size",
]

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
    return [GST_LAUNCH, "-v", *_elements(url, opts, str(fd))]


#: Where the fed runner's description names the frames' file descriptor (set at its start).
GST_FED_FD = "@FD@"

# Run by ``python -I -S -c``. argv: FRAMES_FD FEED_FD. Reads the pipeline from FEED_FD, plays
# it, prints the sink's caps once they are set, and an error or the end as gst-launch does.
_RUNNER = """\
import ctypes, os, sys
fd, feed = sys.argv[1], int(sys.argv[2])
chunks = []
while (chunk := os.read(feed, 65536)):
    chunks.append(chunk)
os.close(feed)
desc = b"".join(chunks).replace(b"@FD@", fd.encode())
gst = ctypes.CDLL("libgstreamer-1.0.so.0")
P, S = ctypes.c_void_p, ctypes.c_char_p
class GError(ctypes.Structure):
    _fields_ = [("domain", ctypes.c_uint32), ("code", ctypes.c_int), ("message", S)]
for name, res, args in [
    ("gst_parse_launch", P, [S, ctypes.POINTER(ctypes.POINTER(GError))]),
    ("gst_element_set_state", ctypes.c_int, [P, ctypes.c_int]),
    ("gst_element_get_bus", P, [P]), ("gst_bin_get_by_name", P, [P, S]),
    ("gst_element_get_static_pad", P, [P, S]), ("gst_pad_get_current_caps", P, [P]),
    ("gst_caps_to_string", P, [P]),
    ("gst_bus_timed_pop_filtered", P, [P, ctypes.c_uint64, ctypes.c_int]),
    ("gst_message_parse_error", None, [P, ctypes.POINTER(ctypes.POINTER(GError)),
                                       ctypes.POINTER(ctypes.c_char_p)]),
]:
    getattr(gst, name).restype, getattr(gst, name).argtypes = res, args
gst.gst_init(None, None)
err = ctypes.POINTER(GError)()
pipeline = gst.gst_parse_launch(desc, ctypes.byref(err))
if err:
    print("ERROR: pipeline could not be constructed:", err.contents.message.decode(), flush=True)
    sys.exit(1)
bus = gst.gst_element_get_bus(pipeline)
pad = gst.gst_element_get_static_pad(gst.gst_bin_get_by_name(pipeline, b"rkout"), b"sink")
gst.gst_element_set_state(pipeline, 4)
said = False
while True:
    msg = gst.gst_bus_timed_pop_filtered(bus, 100_000_000, 2)
    if msg:
        debug = ctypes.c_char_p()
        gst.gst_message_parse_error(msg, ctypes.byref(err), ctypes.byref(debug))
        print("ERROR: from element rtspsrc:", err.contents.message.decode(errors="replace"))
        print("Additional debug info:", (debug.value or b"").decode(errors="replace"), flush=True)
        sys.exit(1)
    if gst.gst_bus_timed_pop_filtered(bus, 0, 1):
        print("Got EOS from element pipeline0.", flush=True)
        sys.exit(0)
    if not said and (caps := gst.gst_pad_get_current_caps(pad)):
        text = ctypes.string_at(gst.gst_caps_to_string(caps)).decode()
        print("/GstPipeline:pipeline0/GstFdSink:rkout.GstPad:sink: caps = " + text, flush=True)
        said = True
"""


def gst_description(url: str, opts: GstOptions) -> str:
    """The pipeline, as one description for the fed runner (it reads it from a pipe)."""
    return " ".join(_elements(url, opts, GST_FED_FD))


def gst_fed_argv(opts: GstOptions, fd: int, feed_fd: int) -> list[str]:
    """The command that runs the pipeline read from ``feed_fd`` and writes frames to ``fd``."""
    return [sys.executable, "-I", "-S", "-c", _RUNNER, str(fd), str(feed_fd)]


def _elements(url: str, opts: GstOptions, fd: str) -> list[str]:
    """The pipeline's elements, as gst-launch takes them."""
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
    return [*source, "!", *decode, "!", *tail, "fdsink", "name=rkout", f"fd={fd}", "sync=false"]


def gst_size(line: str) -> tuple[int, int] | None:
    """The output size from the caps gst-launch -v prints for the fdsink's pad."""
    if not _CAPS.search(line):
        return None
    w = re.search(r"width=\(int\)(\d+)", line)
    h = re.search(r"height=\(int\)(\d+)", line)
    return (int(w.group(1)), int(h.group(1))) if w and h else None
