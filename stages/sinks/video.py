"""A sink that writes each stream to a video file with detections, lines and zones drawn on.

OpenCV's FFmpeg backend does the encoding (``mp4v`` in MP4 by default). A writer opens at a
stream's first frame (its size is needed) and is released at the end of the stream or of the
run, so the file is complete and playable.
"""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path

import cv2
import numpy as np
from pydantic import Field, field_validator

from pipeline.errors import StageSetupError
from pipeline.messages import Message
from pipeline.stage import Context, Stage, StageConfig
from stages.sinks.annotate import RateMeter, annotate

__all__ = ["VideoSink"]


class _Track:
    """One open video file and what is needed to keep it in real time."""

    def __init__(self, path: Path, writer: cv2.VideoWriter, size: tuple[int, int]) -> None:
        self.path = path
        self.writer = writer
        self.size = size  # (width, height) fixed by the first frame
        self.last_seq = -1
        self.last: np.ndarray | None = None
        self.frames = 0
        self.meter = RateMeter()


class VideoSinkConfig(StageConfig):
    path: str = Field("out/{stream}.mp4", description="output file; {stream} allowed")
    fps: float = Field(30.0, gt=0, le=1000, description="frame rate written in the file")
    fourcc: str = Field("mp4v", description="four-character codec code")
    annotate: bool = Field(True, description="draw detections, lines, zones and a header")
    fill_gaps: bool = Field(False, description="repeat the last frame over dropped frames")
    max_fill: int = Field(300, ge=0, description="most frames repeated for one gap")

    @field_validator("fourcc")
    @classmethod
    def _four_chars(cls, v: str) -> str:
        if len(v) != 4:
            msg = f"expected 4 characters such as 'mp4v', got {v!r}"
            raise ValueError(msg)
        return v


class VideoSink(Stage[VideoSinkConfig]):
    """Write ``path`` (``{stream}`` is replaced by the stream name) per stream, annotated.

    With ``fill_gaps`` a frame dropped upstream (a gap in seq) is filled by repeating the
    previous frame, so the video keeps real time; at most ``max_fill`` frames per gap.
    Relative paths are taken from the working directory, as in the jsonl sink.
    """

    replicable = False

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.tracks: dict[str, _Track] = {}
        try:
            self.config.path.format(stream="x")
        except (KeyError, IndexError, ValueError) as exc:
            msg = f"stages.{ctx.stage}.path: {self.config.path!r} is not a valid template "
            msg += f"(only {{stream}} may be used): {exc}"
            raise StageSetupError(msg) from None
        folder = Path(self.config.path).parent
        if "{stream}" not in str(folder):  # the folder is known now: check it can be written
            self._probe(folder)

    def _where(self) -> str:
        return f"stages.{self.ctx.stage}"

    def _probe(self, folder: Path) -> None:
        """Open a tiny writer in ``folder`` so a bad folder or codec fails before frames flow."""
        try:
            folder.mkdir(parents=True, exist_ok=True)
            suffix = Path(self.config.path).suffix
            fd, name = tempfile.mkstemp(prefix=".probe-", suffix=suffix, dir=folder)
            os.close(fd)
        except OSError as exc:
            msg = f"{self._where()}.path: cannot write to folder {folder}: {exc.strerror}"
            raise StageSetupError(msg) from None
        try:
            writer = self._open(Path(name), (64, 64))
            writer.release()
        finally:
            with contextlib.suppress(OSError):
                os.unlink(name)

    def _open(self, path: Path, size: tuple[int, int]) -> cv2.VideoWriter:
        fourcc = cv2.VideoWriter.fourcc(*self.config.fourcc)
        writer = cv2.VideoWriter(str(path), cv2.CAP_FFMPEG, fourcc, self.config.fps, size)
        if not writer.isOpened():
            msg = (
                f"{self._where()}: cannot open a video writer for {path} with fourcc "
                f'{self.config.fourcc!r} (OpenCV has FFmpeg here; try fourcc = "mp4v" '
                f'with a .mp4 path, or "MJPG" with .avi)'
            )
            raise StageSetupError(msg)
        return writer

    def _track(self, stream: str, frame: np.ndarray) -> _Track:
        track = self.tracks.get(stream)
        if track is not None:
            return track
        path = Path(self.config.path.format(stream=stream))
        for other, t in self.tracks.items():
            if t.path == path:
                msg = (
                    f"{self._where()}.path: streams {other!r} and {stream!r} would both be "
                    f"written to {path}; put {{stream}} in the path"
                )
                raise StageSetupError(msg)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            msg = f"{self._where()}.path: cannot create folder {path.parent}: {exc.strerror}"
            raise StageSetupError(msg) from None
        if self.ctx.restarted:  # keep what the crashed process wrote: continue in a new part
            part = 1
            while (alt := path.with_name(f"{path.stem}.{part}{path.suffix}")).exists():
                part += 1
            path = alt if path.exists() else path
        size = (frame.shape[1], frame.shape[0])
        track = self.tracks[stream] = _Track(path, self._open(path, size), size)
        self.ctx.log.info("writing %s (%dx%d, %g fps)", path, *size, self.config.fps)
        return track

    def process(self, msg: Message) -> Message:
        frame = msg.frame
        if frame is None:  # e.g. a final counts snapshot after a stream's last frame
            return msg
        track = self._track(msg.stream, frame)
        track.meter.tick()
        img = annotate(frame, msg, track.meter.rate()) if self.config.annotate else frame
        if (img.shape[1], img.shape[0]) != track.size:
            img = cv2.resize(img, track.size, interpolation=cv2.INTER_AREA)
        if self.config.fill_gaps and track.last is not None and msg.seq > track.last_seq + 1:
            for _ in range(min(msg.seq - track.last_seq - 1, self.config.max_fill)):
                track.writer.write(track.last)
                track.frames += 1
        track.writer.write(img)
        track.frames += 1
        track.last_seq = msg.seq
        if self.config.fill_gaps:
            track.last = img if img is not frame else img.copy()
        return msg

    def end_stream(self, stream: str) -> None:
        track = self.tracks.pop(stream, None)
        if track is not None:
            track.writer.release()
            self.ctx.log.info("wrote %d frames to %s", track.frames, track.path)

    def close(self) -> None:
        for stream in list(self.tracks):
            self.end_stream(stream)
