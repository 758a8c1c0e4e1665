"""What the machine's video tools can do, asked once per process: ffmpeg's hardware
decoders, GStreamer's elements, OpenCV's build. Used by ``rkpipe doctor`` and by stages
that pick a decoder."""

from __future__ import annotations

import re
import shutil
import subprocess
from functools import cache

__all__ = ["ffmpeg_hwaccels", "ffmpeg_version", "gst_has", "opencv_backends"]


def _run(argv: list[str]) -> str:
    """A tool's stdout, or "" when it is missing or fails to answer."""
    try:
        return subprocess.run(argv, capture_output=True, text=True, timeout=20).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


@cache
def ffmpeg_version(path: str = "ffmpeg") -> str:
    """``5.1.9-0+deb12u1`` from ``ffmpeg -version``; "" when there is no such ffmpeg."""
    if shutil.which(path) is None:
        return ""
    found = re.match(r"ffmpeg version (\S+)", _run([path, "-version"]))
    return found.group(1) if found else "unknown"


@cache
def ffmpeg_hwaccels(path: str = "ffmpeg") -> frozenset[str]:
    """The hardware decoders this ffmpeg was built with (``ffmpeg -hwaccels``), with
    ``rkmpp`` only when its RGA filter (``scale_rkrga``) is there too."""
    if shutil.which(path) is None:
        return frozenset()
    lines = _run([path, "-hide_banner", "-hwaccels"]).splitlines()[1:]
    names = {ln.strip() for ln in lines if ln.strip()}
    if "rkmpp" in names and "scale_rkrga" not in _run([path, "-hide_banner", "-filters"]):
        names.discard("rkmpp")
    return frozenset(names)


@cache
def gst_has(element: str) -> bool:
    """Whether GStreamer (gst-launch-1.0 and the plugin giving ``element``) is installed."""
    inspect = shutil.which("gst-inspect-1.0")
    if shutil.which("gst-launch-1.0") is None or inspect is None:
        return False
    try:
        found = subprocess.run([inspect, "--exists", element], capture_output=True, timeout=20)
    except (OSError, subprocess.SubprocessError):
        return False
    return found.returncode == 0


def opencv_backends() -> dict[str, bool]:
    """Which video backends this OpenCV was built with: ``{"FFMPEG": True, ...}``."""
    import cv2

    info = cv2.getBuildInformation()
    out = {}
    for name in ("FFMPEG", "GStreamer", "V4L/V4L2"):
        found = re.search(rf"^\s*{re.escape(name)}:\s*(\S+)", info, re.MULTILINE)
        out[name] = found is not None and found.group(1).upper().startswith("YES")
    return out
