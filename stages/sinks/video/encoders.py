"""Video files the sink writes: H.264 in MP4 through PyAV (FFmpeg's libx264, shipped in PyAV's
wheel), which browsers play, or any fourcc through OpenCV's FFmpeg backend (``mp4v``, the
fallback, plays in VLC but not in browsers).

H.264 files are fragmented MP4 with the header first and a fragment per frame (``fmp4``): a
browser starts playing before the whole file has arrived, and a killed process leaves a file
that plays up to its last frame. ``yuv420p`` pixels (what browsers decode), a keyframe every
``keyframe_s`` seconds, and a zero-latency encoder (no B-frames, no lookahead: each frame's
packet comes out as it goes in), so a clip can be cut at any keyframe by copying packets
(see ``clips``).
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
from collections.abc import Callable
from fractions import Fraction
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

from pipeline.output_files import DEFAULT_MODES, Modes, named, open_file
from stages.sinks.video.fmp4 import FragmentFile, InitSegment, init_segment, length_prefixed

__all__ = ["H264", "Encoder", "H264File", "OpenCvFile", "h264_available"]

H264 = "h264"
_LIBX264 = "libx264"
MP4_SUFFIXES = (".mp4", ".m4v", ".mov")


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
    """An H.264 MP4 through PyAV, written as fragmented MP4 a frame at a time (``fmp4``):
    each frame is in the file when ``write`` returns, so a killed process leaves a file that
    plays up to its last frame. ``on_packet`` sees every sample (pts in frames, whether it is a
    keyframe, its bytes as MP4 holds them), for event clips, after it is in the file."""

    def __init__(
        self,
        path: Path,
        size: tuple[int, int],
        fps: float,
        crf: int = 23,
        preset: str = "veryfast",
        keyframe_s: float = 1.0,
        on_packet: Callable[[int, bool, bytes], None] | None = None,
        modes: Modes = DEFAULT_MODES,
    ) -> None:
        import av

        if path.suffix.lower() not in MP4_SUFFIXES:
            msg = f"H.264 is written as MP4 here, not {path.suffix or 'a file without suffix'}"
            raise ValueError(msg)
        self.size = (size[0] & ~1, size[1] & ~1)  # 4:2:0 needs even sides
        self.rate = Fraction(fps).limit_denominator(1001)
        # the encoder lives in an MP4 container in memory, which gives the file's header
        self.container = av.open(io.BytesIO(), "w", format="mp4")
        self.stream = add_h264_stream(self.container, self.size, self.rate, crf, preset, keyframe_s)
        self.file = FragmentFile(path, self.rate, modes)
        self.init: InitSegment | None = None
        self.on_packet = on_packet
        self.frames = 0
        self.force_key = False  # make the next frame a keyframe (a clip lost one)

    def header(self) -> InitSegment | None:
        """The file's MP4 header, once the first frame is encoded (for clips)."""
        return self.init

    def write(self, img: np.ndarray) -> None:
        """Encode and write one frame; an OSError (a full disk) leaves it out of the file,
        and the next frame is a keyframe so the file goes on decodable."""
        import av

        w, h = self.size
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(img[:h, :w]), format="bgr24")
        frame.pts = self.frames
        frame.time_base = 1 / self.rate
        if self.file.need_key or self.force_key:
            frame.pict_type = av.video.frame.PictureType.I
            self.force_key = False
        self.frames += 1
        self._write(self.stream.encode(frame))

    def _write(self, packets: list[Any]) -> None:
        for packet in packets:
            if self.init is None:
                self.init = init_segment(self.stream, self.rate)
            pts = round(packet.pts * packet.time_base * self.rate)
            sample, key = length_prefixed(bytes(packet)), bool(packet.is_keyframe)
            if not self.file.append(self.init, pts, sample, key):
                raise OSError(errno.EAGAIN, "the recording waits for a keyframe after a lost one")
            if self.on_packet is not None:
                self.on_packet(pts, key, sample)

    def close(self) -> None:
        try:
            self._write(self.stream.encode(None))  # nothing is held back; flushed all the same
        finally:
            self.file.finish()
            with contextlib.suppress(Exception):  # an encoder in memory: nothing to lose
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
        "tune": "zerolatency",  # a packet out for each frame in: no lookahead, no B-frames
        "forced-idr": "1",  # a frame forced to be I (after a lost one) is a keyframe
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
