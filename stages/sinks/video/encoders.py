"""Video files the sink writes: H.264 in MP4 through PyAV (FFmpeg's libx264, shipped in PyAV's
wheel), which browsers play, or any fourcc through OpenCV's FFmpeg backend (``mp4v``, the
fallback, plays in VLC but not in browsers).

H.264 files have their index at the front (``movflags +faststart``: a browser starts playing
before the whole file has arrived), ``yuv420p`` pixels (what browsers decode), and a keyframe
every ``keyframe_s`` seconds with no B-frames, so a clip can be cut at any keyframe by copying
packets (see ``clips``).

Files are opened by rkpipe, never through a link at their name, with the stage's file mode
(``pipeline.output_files``); the library writes them through that descriptor.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from pipeline.output_files import DEFAULT_MODES, Modes, fd_path, named, open_file

__all__ = ["H264", "Encoder", "H264File", "OpenCvFile", "h264_available", "open_av"]

H264 = "h264"
_LIBX264 = "libx264"
_FORMATS = {".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".ts": "mpegts"}


class Encoder(Protocol):
    """One open video file: frames in (BGR, the size it was opened with), ``close`` at the end."""

    def write(self, img: np.ndarray) -> None: ...

    def close(self) -> None: ...


def h264_available() -> str | None:
    """None when PyAV with libx264 is here, else why not (for the fallback's warning)."""
    try:
        import av
    except ImportError:
        return "PyAV is not installed (pip install av)"
    try:
        av.codec.Codec(_LIBX264, "w")
    except Exception:  # av raises its own error types for an unknown codec
        return "this PyAV build has no libx264 encoder"
    return None


def open_av(path: Path, modes: Modes, options: dict[str, str]) -> tuple[Any, int]:
    """A PyAV output container for ``path`` and the descriptor it writes through (close it
    after the container: FFmpeg may open it again by name to move the index to the front)."""
    import av

    fmt = _FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise ValueError(f"no video container is known for {path.suffix!r}")
    fd = open_file(path, modes, read=True, truncate=True)
    try:
        return av.open(fd_path(fd), "w", format=fmt, options=options), fd
    except BaseException:
        os.close(fd)
        raise


class H264File:
    """An H.264 MP4 (or MKV, MOV) through PyAV. ``on_packet`` sees every encoded packet (its
    bytes, pts in frames, and whether it is a keyframe), for event clips."""

    def __init__(
        self,
        path: Path,
        size: tuple[int, int],
        fps: float,
        crf: int = 23,
        preset: str = "veryfast",
        keyframe_s: float = 1.0,
        on_packet: Callable[[Any], None] | None = None,
        modes: Modes = DEFAULT_MODES,
    ) -> None:
        self.size = (size[0] & ~1, size[1] & ~1)  # 4:2:0 needs even sides
        self.rate = Fraction(fps).limit_denominator(1001)
        self.container, self.fd = open_av(path, modes, {"movflags": "+faststart"})
        self.stream = add_h264_stream(self.container, self.size, self.rate, crf, preset, keyframe_s)
        self.on_packet = on_packet
        self.frames = 0

    def write(self, img: np.ndarray) -> None:
        import av

        w, h = self.size
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:h, :w]), format="bgr24")
        frame.pts = self.frames
        frame.time_base = 1 / self.rate
        self.frames += 1
        self._mux(self.stream.encode(frame))

    def _mux(self, packets: list[Any]) -> None:
        for packet in packets:
            if self.on_packet is not None:
                self.on_packet(packet)
            self.container.mux(packet)

    def close(self) -> None:
        self._mux(self.stream.encode(None))  # flush what the encoder holds
        self.container.close()
        os.close(self.fd)


def add_h264_stream(
    container: Any, size: tuple[int, int], rate: Fraction, crf: int, preset: str, keyframe_s: float
) -> Any:
    """A libx264 stream in ``container`` with browser-friendly settings and fixed keyframes."""
    gop = max(1, round(float(rate) * keyframe_s))
    stream = container.add_stream(_LIBX264, rate=rate)
    stream.width, stream.height = size
    stream.pix_fmt = "yuv420p"
    stream.options = {
        "crf": str(crf),
        "preset": preset,
        "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes=0",
    }
    stream.codec_context.thread_count = len(os.sched_getaffinity(0))  # the stage's CPUs
    return stream


class OpenCvFile:
    """Any fourcc OpenCV's FFmpeg backend writes (``mp4v`` in MP4, ``MJPG`` in AVI, ...)."""

    def __init__(
        self,
        path: Path,
        size: tuple[int, int],
        fps: float,
        fourcc: str,
        modes: Modes = DEFAULT_MODES,
    ) -> None:
        code = cv2.VideoWriter.fourcc(*fourcc)
        fd = open_file(path, modes, read=True, truncate=True)
        try:  # OpenCV picks the container by the name's ending: a private name of the fd
            with named(fd, path.suffix) as name:
                self.writer = cv2.VideoWriter(name, cv2.CAP_FFMPEG, code, fps, size)
        finally:
            os.close(fd)  # OpenCV holds its own
        if not self.writer.isOpened():
            msg = f"OpenCV cannot write {path} with fourcc {fourcc!r}"
            raise ValueError(msg)

    def write(self, img: np.ndarray) -> None:
        self.writer.write(img)

    def close(self) -> None:
        self.writer.release()
