"""What a capture ``source`` names (a video file, a network stream, a camera, a GStreamer
pipeline or a synthetic scene) and how OpenCV opens it, with timeouts and device hints."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from urllib.parse import urlsplit

import cv2

from pipeline.netcheck import tcp_answer as host_answer
from pipeline.secrets import mask, mask_url
from pipeline.video_tools import opencv_backends
from stages.synthetic.scene import is_scene_uri, parse_scene_uri

__all__ = [
    "NETWORK_SCHEMES",
    "Kind",
    "OpenOptions",
    "SourceSpec",
    "gstreamer_missing",
    "has_gstreamer",
    "open_capture",
    "parse_source",
    "tcp_answer",
]

NETWORK_SCHEMES = ("rtsp", "rtsps", "rtmp", "http", "https", "srt", "udp", "tcp")


class Kind(str, Enum):
    """The kinds of source; the first three are live (never wait) unless the graph says not."""

    NETWORK = "network"
    DEVICE = "device"
    GSTREAMER = "gstreamer"
    FILE = "file"
    SCENE = "scene"

    @property
    def live_by_default(self) -> bool:
        return self in (Kind.NETWORK, Kind.DEVICE, Kind.GSTREAMER)


@dataclass(frozen=True)
class SourceSpec:
    """A parsed ``source``: its kind and what to open (path, URL, device index or path,
    pipeline text, scene URI)."""

    kind: Kind
    target: str | int

    def describe(self) -> str:
        """A name for logs and errors, with any password in a URL masked."""
        if self.kind is Kind.NETWORK:
            return f"stream {mask_url(str(self.target))}"
        if self.kind is Kind.DEVICE:
            return f"camera {self.target}"
        if self.kind is Kind.GSTREAMER:
            return f"GStreamer pipeline {mask(str(self.target))!r}"
        return f"{self.kind.value} {self.target}"


def parse_source(source: str | int) -> SourceSpec:
    """Classify a graph's ``source`` value; a ValueError says what is accepted."""
    if isinstance(source, int):
        if source < 0:
            msg = f"a camera index must be >= 0, got {source}"
            raise ValueError(msg)
        return SourceSpec(Kind.DEVICE, source)
    text = source.strip()
    if not text:
        msg = "expected a file path, URL, camera, GStreamer pipeline or synthetic: scene"
        raise ValueError(msg)
    if text.isdigit():
        return SourceSpec(Kind.DEVICE, int(text))
    if text.startswith("gst:"):
        return SourceSpec(Kind.GSTREAMER, text.removeprefix("gst:").strip())
    if is_scene_uri(text):
        parse_scene_uri(text)  # raises a clear ValueError for a bad scene
        return SourceSpec(Kind.SCENE, text)
    scheme, sep, rest = text.partition("://")
    if sep and scheme.lower() == "file":
        return SourceSpec(Kind.FILE, rest)
    if sep and re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*", scheme):
        if scheme.lower() not in NETWORK_SCHEMES:
            msg = f"unknown stream scheme {scheme!r}; expected one of {list(NETWORK_SCHEMES)}"
            raise ValueError(msg)
        return SourceSpec(Kind.NETWORK, text)
    if text.startswith("/dev/video"):
        return SourceSpec(Kind.DEVICE, text)
    if "!" in text:  # elements joined by "!", as for gst-launch
        return SourceSpec(Kind.GSTREAMER, text)
    return SourceSpec(Kind.FILE, text)


_DEFAULT_PORTS = {"rtsp": 554, "rtsps": 322, "rtmp": 1935, "http": 80, "https": 443}


def tcp_answer(url: str, timeout: float = 1.0) -> str:
    """Whether the host of a stream URL answers on its port: ``""`` when it accepts a TCP
    connection (or the scheme is not over TCP), else why not, as one line. A camera that
    answers but is slow to send its first frame is still connecting, not down."""
    parts = urlsplit(url)
    port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower())
    if parts.hostname is None or port is None:
        return ""
    return host_answer(parts.hostname, port, timeout)


def has_gstreamer() -> bool:
    """Whether this OpenCV was built with the GStreamer video backend."""
    return opencv_backends()["GStreamer"]


def gstreamer_missing(where: str) -> str:
    """The error for a GStreamer source when OpenCV lacks GStreamer, with the way out."""
    cv2_dir = Path(cv2.__file__).parent
    return (
        f"{where} is a GStreamer pipeline, but the OpenCV in use ({cv2.__version__}, "
        f"{cv2_dir}) was built without GStreamer. Use an OpenCV built with GStreamer: on "
        "RK3588 boards install the distro's python3-opencv and gstreamer1.0-rockchip "
        "(for mppvideodec), create the venv with --system-site-packages and uninstall "
        "opencv-python-headless from it; or give a file/rtsp:// source instead"
    )


@dataclass(frozen=True)
class OpenOptions:
    """How to open: device hints and network timeouts, from the stage's config."""

    width: int | None = None
    height: int | None = None
    fps: float | None = None
    open_timeout_s: float = 5.0
    read_timeout_s: float = 5.0
    rtsp_transport: str = "tcp"


def open_capture(spec: SourceSpec, target: str | int, opts: OpenOptions) -> cv2.VideoCapture | None:
    """Open ``target`` (the spec's target, a file already resolved to a path) with the
    backend its kind needs; None when OpenCV cannot open it."""
    if spec.kind is Kind.GSTREAMER:
        cap = cv2.VideoCapture(str(target), cv2.CAP_GSTREAMER)
    elif spec.kind is Kind.DEVICE:
        cap = cv2.VideoCapture(target, cv2.CAP_V4L2)
    elif spec.kind is Kind.NETWORK:
        if str(target).lower().startswith("rtsp"):
            os.environ["OPENCV_FFMPEG_CAPTURE_OPTIONS"] = f"rtsp_transport;{opts.rtsp_transport}"
        timeouts = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            int(opts.open_timeout_s * 1000),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            int(opts.read_timeout_s * 1000),
        ]
        cap = cv2.VideoCapture(str(target), cv2.CAP_FFMPEG, timeouts)
    else:
        cap = cv2.VideoCapture(str(target), cv2.CAP_FFMPEG)
    if not cap.isOpened():
        cap.release()
        return None
    if spec.kind is Kind.DEVICE:
        _apply_hints(cap, opts)
    return cap


def _apply_hints(cap: cv2.VideoCapture, opts: OpenOptions) -> None:
    """Ask a camera for a size and rate; it may pick the nearest it supports."""
    if opts.width:
        cap.set(cv2.CAP_PROP_FRAME_WIDTH, opts.width)
    if opts.height:
        cap.set(cv2.CAP_PROP_FRAME_HEIGHT, opts.height)
    if opts.fps:
        cap.set(cv2.CAP_PROP_FPS, opts.fps)
