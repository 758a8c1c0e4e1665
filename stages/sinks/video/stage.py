"""A sink that writes each stream to a video file with detections, lines and zones drawn on.

By default H.264 in fragmented MP4 through PyAV (browser-playable, index first, a fragment
per frame): a frame is in the file when ``process`` returns, which is when the runtime
counts it delivered, so a killed sink leaves a file that plays every frame it counted. A
frame that cannot be written (a full disk, in the recording or in its event clip) raises
OSError, which the runtime counts ``sink_error``; writing goes on at a keyframe when space
returns. Another ``codec`` is a fourcc for OpenCV's writer (its files play only once
closed). A file opens at a stream's first frame (its size is needed) and is closed at the
end of the stream or of the run, when its duration is written in its header.
"""

from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Literal

import cv2
import numpy as np
from pydantic import Field, field_validator

from pipeline.errors import StageSetupError
from pipeline.keys import META_EVENTS
from pipeline.messages import Message
from pipeline.output_files import (
    FileMode,
    Modes,
    UnsafeOutput,
    file_mode_field,
    folder_problem,
    make_folder,
)
from pipeline.outputs import OutputFile
from pipeline.stage import Context, Stage, StageConfig
from stages.sinks.annotate import RateMeter, annotate
from stages.sinks.video.clips import ClipOptions, ClipRecorder
from stages.sinks.video.encoders import H264, Encoder, H264File, OpenCvFile, h264_available

__all__ = ["VideoSink"]

_FULL = (errno.ENOSPC, errno.EDQUOT)  # a full disk: frames are counted lost until it clears


class _Track:
    """One open video file and what is needed to keep it in real time."""

    def __init__(
        self, path: Path, writer: Encoder, size: tuple[int, int], clips: ClipRecorder | None
    ) -> None:
        self.path = path
        self.writer = writer
        self.clips = clips
        self.size = size  # (width, height) fixed by the first frame
        self.last_seq = -1
        self.last: np.ndarray | None = None
        self.frames = 0
        self.unwritten = 0  # frames not written since the last one that was (a full disk)
        self.meter = RateMeter()


class VideoSinkConfig(StageConfig):
    path: OutputFile = Field("out/{stream}.mp4", description="output file; {stream} allowed")
    fps: float = Field(30.0, gt=0, le=1000, description="frame rate written in the file")
    codec: str = Field("h264", description='"h264" (PyAV), or a fourcc for OpenCV ("mp4v")')
    crf: int = Field(23, ge=0, le=51, description="H.264 quality: lower is better and bigger")
    preset: Literal["ultrafast", "superfast", "veryfast", "faster", "fast", "medium"] = Field(
        "veryfast", description="H.264 encoder speed"
    )
    keyframe_s: float = Field(1.0, gt=0, le=60, description="seconds between H.264 keyframes")
    annotate: bool = Field(True, description="draw detections, lines, zones and a header")
    fill_gaps: bool = Field(False, description="repeat the last frame over dropped frames")
    max_fill: int = Field(300, ge=0, description="most frames repeated for one gap")
    file_mode: FileMode = file_mode_field()

    clips: ClipOptions | None = Field(
        None, description="event clips: true, or {dir, before_s, after_s, types, keep, ...}"
    )

    @field_validator("clips", mode="before")
    @classmethod
    def _clips_shorthand(cls, v: object) -> object:
        if isinstance(v, bool):
            return {} if v else None
        return v

    @field_validator("codec")
    @classmethod
    def _h264_or_fourcc(cls, v: str) -> str:
        if v != H264 and len(v) != 4:
            msg = f"expected 'h264' or a 4-character fourcc such as 'mp4v', got {v!r}"
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
        self.codec = self.config.codec
        self.modes = Modes.of(self.config.file_mode)
        why = h264_available() if self.codec == H264 else None
        if why is not None:
            ctx.log.warning(
                "%s: %s; writing mp4v instead, which browsers do not play", self._where(), why
            )
            self.codec = "mp4v"
        if self.config.clips is not None and self.codec != H264:
            msg = f"{self._where()}.clips: event clips are cut from H.264; "
            msg += 'set codec = "h264" (needs PyAV: pip install av)'
            raise StageSetupError(msg)
        clips = self.config.clips
        if clips is not None and (why := folder_problem(Path(clips.dir))) is not None:
            raise StageSetupError(f"{self._where()}.clips.dir: {why}")
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
        """Open a tiny writer in ``folder`` so a bad folder or codec fails before frames flow.
        A full disk is not a setup error: it may clear, and until then each frame that
        cannot be written is counted ``sink_error`` while the run goes on."""
        name = ""
        try:
            make_folder(folder, self.modes)
            suffix = Path(self.config.path).suffix
            fd, name = tempfile.mkstemp(prefix=".probe-", suffix=suffix, dir=folder)
            os.close(fd)
            writer = self._open(Path(name), (64, 64))
            try:
                writer.write(np.zeros((64, 64, 3), np.uint8))
            finally:
                writer.close()
        except UnsafeOutput as exc:  # a link or a FIFO at the name: not the disk's fault
            raise StageSetupError(f"{self._where()}.path: {exc}") from None
        except OSError as exc:
            if exc.errno not in _FULL:
                msg = f"{self._where()}.path: cannot write to folder {folder}: {exc.strerror}"
                raise StageSetupError(msg) from None
            self.ctx.log.warning(
                "%s.path: %s is full (%s); frames are counted sink_error until there is space",
                self._where(),
                folder,
                exc.strerror,
            )
        finally:
            if name:
                with contextlib.suppress(OSError):
                    os.unlink(name)

    def _open(self, path: Path, size: tuple[int, int]) -> Encoder:
        """A writer for ``path``; a codec or container it cannot write is a setup error, an
        OSError (the file itself) is the caller's to judge."""
        c = self.config
        try:
            if self.codec == H264:
                return H264File(path, size, c.fps, c.crf, c.preset, c.keyframe_s, modes=self.modes)
            return OpenCvFile(path, size, c.fps, self.codec, self.modes)
        except OSError:
            raise
        except Exception as exc:  # PyAV and OpenCV raise their own kinds
            msg = (
                f"{self._where()}: cannot open a video writer for {path} with codec "
                f"{self.codec!r} ({exc}); use a .mp4 or .mov path, or with OpenCV "
                f'codec = "mp4v" and .mp4, or "MJPG" and .avi'
            )
            raise StageSetupError(msg) from None

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
            make_folder(path.parent, self.modes)
        except OSError as exc:
            if exc.errno in _FULL:  # counted sink_error; tried again at the next frame
                raise
            msg = f"{self._where()}.path: cannot create folder {path.parent}: {exc.strerror}"
            raise StageSetupError(msg) from None
        if self.ctx.restarted:  # keep what the crashed process wrote: continue in a new part
            part = 1
            while (alt := path.with_name(f"{path.stem}.{part}{path.suffix}")).exists():
                part += 1
            path = alt if path.exists() else path
        size = (frame.shape[1], frame.shape[0])
        try:
            writer = self._open(path, size)
        except UnsafeOutput as exc:  # a link or a FIFO at the name: not the disk's fault
            raise StageSetupError(f"{self._where()}.path: {exc}") from None
        except OSError as exc:
            if exc.errno in _FULL:
                raise
            msg = f"{self._where()}.path: cannot write {path}: {exc.strerror}"
            raise StageSetupError(msg) from None
        clips = None
        if self.config.clips is not None and isinstance(writer, H264File):
            clips = ClipRecorder(self.config.clips, writer.header, writer.rate, self.modes)
            writer.on_packet = clips.packet
        track = self.tracks[stream] = _Track(path, writer, size, clips)
        fps = self.config.fps
        self.ctx.log.info("writing %s (%s, %dx%d, %g fps)", path, self.codec, *size, fps)
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
        last, repeats = track.last, 0
        if self.config.fill_gaps and last is not None and msg.seq > track.last_seq + 1:
            repeats = min(msg.seq - track.last_seq - 1, self.config.max_fill)
        try:
            while last is not None and repeats > 0:
                self._write(track, last)
                repeats -= 1
            self._write(track, img)
        except OSError:
            track.unwritten += 1
            raise
        finally:  # a frame that could not be written still carries its events to the clips
            if track.clips is not None and msg.meta.get(META_EVENTS):
                track.clips.events(track.frames - 1, msg.meta[META_EVENTS])
            error = track.clips.take_error() if track.clips is not None else None
            track.last_seq = msg.seq
            if self.config.fill_gaps:
                track.last = img if img is not frame else img.copy()
        if error is not None:  # not in its clip: the frame is not delivered (sink_error)
            track.unwritten += 1
            if isinstance(track.writer, H264File):
                track.writer.force_key = True  # so the clip can go on at the next frame
            raise error
        if track.unwritten:  # the runtime said the first failure; this says it is over
            self.ctx.log.warning(
                "%s: writing %s again (%d frames could not be written)",
                self._where(),
                track.path,
                track.unwritten,
            )
            track.unwritten = 0
        return msg

    @staticmethod
    def _write(track: _Track, img: np.ndarray) -> None:
        """One frame into the recording; it is in the file when this returns (H.264)."""
        track.frames += 1  # its place in the recording, written or not
        track.writer.write(img)

    def end_stream(self, stream: str) -> None:
        track = self.tracks.pop(stream, None)
        if track is None:
            return
        try:
            track.writer.close()
        except OSError as exc:  # every frame is in the file already; only its duration is not
            self.ctx.log.warning("%s: cannot finish %s: %s", self._where(), track.path, exc)
        if track.clips is not None:
            track.clips.close()
            error = track.clips.take_error()
            if error is not None:
                self.ctx.log.warning("%s: cannot finish a clip: %s", self._where(), error)
        self.ctx.log.info("wrote %d frames to %s", track.frames, track.path)

    def close(self) -> None:
        for stream in list(self.tracks):
            self.end_stream(stream)
