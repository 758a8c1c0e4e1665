"""The ``capture`` source stage: frames from a video file, a network stream, a camera, a
GStreamer pipeline or a synthetic scene, decoded straight into shared memory.

Live sources (streams, cameras) reconnect with backoff when they drop; files end at EOF
(or loop), skip undecodable frames and count them, and number frames by their index in
the file so a restarted stage resumes where it stopped.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field, ValidationError, ValidationInfo, field_validator

from pipeline.errors import SourceError, StageSetupError
from pipeline.messages import Message
from pipeline.stage import Context, Source, StageConfig
from stages.capture.opener import (
    Kind,
    OpenOptions,
    gstreamer_missing,
    has_gstreamer,
    open_capture,
    parse_source,
)
from stages.capture.reconnect import Backoff, Reconnector
from stages.capture.video_file import FileCursor
from stages.synthetic.stage import SyntheticSource

__all__ = ["Capture"]

Grab = tuple[np.ndarray, float, int]  # frame, wall-clock and monotonic time of the grab


class CaptureConfig(StageConfig):
    source: str | int = Field(
        description="video file (relative to the graph), rtsp://, http(s)://, /dev/videoN "
        "or camera index, GStreamer pipeline ('!' or gst:), or synthetic:street?seed=..."
    )
    live: bool | None = Field(
        None, description="drop oldest when behind (default: true for streams and cameras)"
    )
    realtime: bool = Field(False, description="play a file at its own frame rate")
    loop: bool = Field(False, description="replay a file endlessly")
    width: int | None = Field(None, ge=16, le=7680, description="camera size hint")
    height: int | None = Field(None, ge=16, le=4320, description="camera size hint")
    fps: float | None = Field(None, gt=0, le=1000, description="camera frame rate hint")
    resize: tuple[int, int] | None = Field(None, description="scale frames to [w, h]")
    backoff_s: float = Field(0.5, gt=0, le=60, description="first reconnect delay")
    max_backoff_s: float = Field(10.0, gt=0, le=600, description="longest reconnect delay")
    max_reconnects: int | None = Field(
        None, ge=0, description="failed reconnects in a row before the stream ends (None: ∞)"
    )
    open_timeout_s: float = Field(5.0, gt=0, le=120, description="network open timeout")
    read_timeout_s: float = Field(5.0, gt=0, le=120, description="network read timeout")
    rtsp_transport: Literal["tcp", "udp"] = "tcp"

    @field_validator("source")
    @classmethod
    def _known_source(cls, value: str | int, info: ValidationInfo) -> str | int:
        spec = parse_source(value)
        graph_dir = (info.context or {}).get("graph_dir")
        if graph_dir is not None and spec.kind is Kind.FILE:  # checked at validate time
            path = (Path(graph_dir) / Path(str(spec.target)).expanduser()).resolve()
            if not path.is_file():
                raise ValueError(f"video file {path} not found")
        return value

    @field_validator("resize")
    @classmethod
    def _sane_size(cls, value: tuple[int, int] | None) -> tuple[int, int] | None:
        if value is not None and not (16 <= value[0] <= 7680 and 16 <= value[1] <= 4320):
            msg = "a size [w, h] between [16, 16] and [7680, 4320]"
            raise ValueError(msg)
        return value

    @field_validator("width", "height", "fps", "loop")
    @classmethod
    def _fits_kind(cls, value: Any, info: ValidationInfo) -> Any:
        if not value or "source" not in info.data:
            return value
        kind = parse_source(info.data["source"]).kind
        if info.field_name == "loop" and kind is not Kind.FILE:
            msg = "loop replays a video file; this source is not one"
            raise ValueError(msg)
        if info.field_name != "loop" and kind is not Kind.DEVICE:
            msg = f"{info.field_name} is a camera hint; to scale other sources use resize"
            raise ValueError(msg)
        return value


class Capture(Source[CaptureConfig]):
    """One video source as a stream of ``frame`` arrays (H, W, 3) uint8 BGR::

        [stages.cam0]
        uses = "capture"
        source = "rtsp://user:pw@10.0.0.9/stream1"   # or "videos/a.mp4", "/dev/video0", 0,
        resize = [640, 360]                          #    "gst:... ! appsink", "synthetic:street"

    Streams, cameras and GStreamer pipelines are live (drop the oldest frame when behind)
    and reconnect with backoff; files and scenes wait for the pipeline unless ``live``.
    """

    @property
    def live(self) -> bool:
        if self.config.live is not None:
            return self.config.live
        return parse_source(self.config.source).kind.live_by_default

    # -- setup -------------------------------------------------------------------------------
    def setup(self, ctx: Context) -> None:
        cfg = self.config
        self.ctx = ctx
        self.spec = parse_source(cfg.source)
        self.where = f"stages.{ctx.stage}.source"
        self.name = f"{ctx.stage}: {self.spec.describe()}"
        self.seq = ctx.resume_seq + 1
        self.cap: cv2.VideoCapture | None = None
        self.cursor: FileCursor | None = None
        self.shape: tuple[int, int, int] | None = None
        self._spare: np.ndarray | None = None  # a slot allocated for a read that failed
        self._scratch: np.ndarray | None = None  # decode buffer when resizing
        self.synthetic: SyntheticSource | None = None
        if self.spec.kind is Kind.SCENE:
            self._setup_scene(ctx)
            return
        self.target: str | int = self.spec.target
        if self.spec.kind is Kind.FILE:
            path = ctx.resolve_path(str(self.spec.target))
            if not path.is_file():
                msg = f"{self.where}: video file {path} not found"
                raise SourceError(msg)
            self.target = str(path)
        elif self.spec.kind is Kind.GSTREAMER and not has_gstreamer():
            raise StageSetupError(gstreamer_missing(self.where))
        _quiet_video_libraries()
        self.options = OpenOptions(
            cfg.width, cfg.height, cfg.fps, cfg.open_timeout_s, cfg.read_timeout_s,
            cfg.rtsp_transport,
        )  # fmt: skip
        backoff = Backoff(cfg.backoff_s, cfg.max_backoff_s)
        self.reconnects = self.spec.kind in (Kind.NETWORK, Kind.DEVICE) or (
            self.spec.kind is Kind.GSTREAMER and self.live
        )
        self.reconnector = Reconnector(
            self._open, self.name, ctx.log, ctx.count_event, backoff, cfg.max_reconnects
        )
        self.cap = self._open()
        if self.cap is None and not self.reconnects:
            msg = f"{self.where}: OpenCV cannot open {self.spec.describe()} (not a video?)"
            raise SourceError(msg)
        if self.cap is None:
            self.reconnector.lost(f"cannot open it{_FFMPEG_HINT}")
        elif self.spec.kind is Kind.FILE:
            pace = cfg.realtime or self.live
            self.cursor = FileCursor(self.cap, ctx, cfg.loop, pace, self.name)

    def _setup_scene(self, ctx: Context) -> None:
        """Delegate to the synthetic source, which renders scenes and paces itself."""
        from stages.synthetic.scene import parse_scene_uri

        p = parse_scene_uri(str(self.spec.target))
        options = {k: p[k] for k in ("width", "height", "fps", "seed") if k in p}
        own_ctx = ctx if self.config.resize is None else ctx.with_plain_arrays()
        try:
            synth = SyntheticSource(
                scene=p.get("preset", "easy"), live=self.live, realtime=self.config.realtime,
                **options,
            )  # fmt: skip
            synth.stream_id = self.stream_id
            synth.setup(own_ctx)
        except ValidationError as exc:
            wrong = "; ".join(f"{e['loc'][0]} {e['msg']}" for e in exc.errors())
            msg = f"{self.where}: {wrong}"
            raise SourceError(msg) from None
        except ValueError as exc:
            msg = f"{self.where}: {exc}"
            raise SourceError(msg) from None
        self.synthetic = synth

    def _open(self) -> cv2.VideoCapture | None:
        cap = open_capture(self.spec, self.target, self.options)
        if cap is not None:
            w, h = int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)), int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
            self.shape = (h, w, 3) if w > 0 and h > 0 else None
            self._spare = None
        return cap

    # -- reading -----------------------------------------------------------------------------
    def read(self) -> Message | None:
        if self.synthetic is not None:
            return self._read_scene()
        if self.cursor is not None:
            got = self.cursor.next(self._grab)
            if got is None:
                return None
            (frame, t, mono), seq = got
            return self._message(frame, seq, t, mono)
        while True:
            if self.cap is None:
                self.cap = self.reconnector.reopen() if self.reconnects else None
                if self.cap is None:
                    return None
            grabbed = self._grab()
            if grabbed is not None:
                frame, t, mono = grabbed
                self.seq += 1
                return self._message(frame, self.seq - 1, t, mono)
            self.cap.release()
            self.cap = None
            if not self.reconnects:
                return None  # a GStreamer pipeline with live = false: its end
            self.reconnector.lost("no frame (stream closed, timed out or undecodable)")

    def _message(self, frame: np.ndarray, seq: int, t: float, mono: int) -> Message:
        return Message(
            stream=self.stream_id, seq=seq, t_capture=t, t_mono_ns=mono, arrays={"frame": frame}
        )

    def _grab(self) -> Grab | None:
        """Decode the next frame into a shared-memory slot (directly where OpenCV allows:
        the slot is passed as the output image); None when the read fails."""
        assert self.cap is not None
        if self.config.resize is not None:
            return self._grab_resized(self.config.resize)
        out = self._spare
        if out is None and self.shape is not None:
            out = self.ctx.alloc(self.shape, np.uint8)
        ok, img = self.cap.read(out) if out is not None else self.cap.read()
        t, mono = time.time(), time.monotonic_ns()
        if not ok or img is None:
            self._spare = out
            return None
        self._spare = None
        if img is out:
            return out, t, mono
        bgr = _as_bgr(img)  # first frame of a stream of unknown size, or its size changed
        self.shape = bgr.shape
        frame = self.ctx.alloc(bgr.shape, np.uint8)
        frame[...] = bgr
        return frame, t, mono

    def _grab_resized(self, size: tuple[int, int]) -> Grab | None:
        assert self.cap is not None
        ok, img = self.cap.read(self._scratch)
        t, mono = time.time(), time.monotonic_ns()
        if not ok or img is None:
            return None
        self._scratch = img
        frame = self.ctx.alloc((size[1], size[0], 3), np.uint8)
        cv2.resize(_as_bgr(img), size, dst=frame, interpolation=cv2.INTER_AREA)
        return frame, t, mono

    def _read_scene(self) -> Message | None:
        assert self.synthetic is not None
        msg = self.synthetic.read()
        if msg is None or msg.frame is None or self.config.resize is None:
            return msg
        w, h = self.config.resize
        frame = self.ctx.alloc((h, w, 3), np.uint8)
        cv2.resize(msg.frame, (w, h), dst=frame, interpolation=cv2.INTER_AREA)
        msg.frame = frame
        return msg

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None
        if self.synthetic is not None:
            self.synthetic.close()


_FFMPEG_HINT = " (OPENCV_FFMPEG_LOGLEVEL=16 shows FFmpeg's reasons)"


def _quiet_video_libraries() -> None:
    """One warning per outage from us, not a line per retry from OpenCV and FFmpeg; a user's
    own OPENCV_FFMPEG_LOGLEVEL wins (FFmpeg reads it when first used, after this)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")  # AV_LOG_FATAL
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


def _as_bgr(img: np.ndarray) -> np.ndarray:
    """A decoded image as 3-channel BGR uint8 (cameras may give grey or BGRA)."""
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img
