"""Video files the sink writes: H.264 in MP4 through PyAV (FFmpeg's libx264, shipped in PyAV's
wheel), which browsers play, or any fourcc through OpenCV's FFmpeg backend (``mp4v``, the
fallback, plays in VLC but not in browsers).

H.264 files have their index at the front (``movflags +faststart``: a browser starts playing
before the whole file has arrived), ``yuv420p`` pixels (what browsers decode), and a keyframe
every ``keyframe_s`` seconds with no B-frames, so a clip can be cut at any keyframe by copying
packets (see ``clips``).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

__all__ = ["H264", "Encoder", "H264File", "OpenCvFile", "h264_available"]

H264 = "h264"
_LIBX264 = "libx264"


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
    ) -> None:
        import av

        self.size = (size[0] & ~1, size[1] & ~1)  # 4:2:0 needs even sides
        self.rate = Fraction(fps).limit_denominator(1001)
        self.container = av.open(str(path), "w", options={"movflags": "+faststart"})
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

    def __init__(self, path: Path, size: tuple[int, int], fps: float, fourcc: str) -> None:
        code = cv2.VideoWriter.fourcc(*fourcc)
        self.writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, code, fps, size)
        if not self.writer.isOpened():
            msg = f"OpenCV cannot write {path} with fourcc {fourcc!r}"
            raise ValueError(msg)

    def write(self, img: np.ndarray) -> None:
        self.writer.write(img)

    def close(self) -> None:
        self.writer.release()
