"""The ``capture`` source stage: frames from a video file, a network stream, a camera, a
GStreamer pipeline or a synthetic scene, decoded straight into shared memory.

Network streams are decoded by a decoder process the stage owns (ffmpeg or gst-launch, in
hardware where the machine has it) or by OpenCV; live sources reconnect with backoff when
they drop and report their health (connecting, live, reconnecting, down). Files end at EOF
(or loop), skip undecodable frames and count them, and number frames by their index in
the file so a restarted stage resumes where it stopped.
"""

from __future__ import annotations

import os
import time

import cv2
import numpy as np
from pydantic import ValidationError

from pipeline.doctor import Check, DoctorContext
from pipeline.errors import SourceError, StageSetupError
from pipeline.messages import Message
from pipeline.stage import Context, Source, StageConfig
from stages.capture.config import CaptureConfig
from stages.capture.decoder_errors import explain
from stages.capture.decoders import Choice, DecoderStream, choose_decoder, decoder_stream
from stages.capture.doctor import capture_checks, capture_frame_bytes
from stages.capture.opencv_stream import OpenCVStream
from stages.capture.opener import (
    Kind,
    OpenOptions,
    gstreamer_missing,
    has_gstreamer,
    parse_source,
    tcp_answer,
)
from stages.capture.reconnect import Backoff, Reconnector
from stages.capture.video_file import FileCursor
from stages.synthetic.stage import SyntheticSource

__all__ = ["Capture"]


class Capture(Source[CaptureConfig]):
    """One video source as a stream of ``frame`` arrays (H, W, 3) uint8 BGR::

        [stages.cam0]
        uses = "capture"
        source = "rtsp://user:pw@10.0.0.9/stream1"   # or "videos/a.mp4", "/dev/video0", 0,
        resize = [640, 360]                          #    "gst:... ! appsink", "synthetic:street"
        decoder = "auto"                             # ffmpeg | gstreamer | opencv

    Streams, cameras and GStreamer pipelines are live (drop the oldest frame when behind)
    and reconnect with backoff; files and scenes wait for the pipeline unless ``live``.
    """

    @property
    def live(self) -> bool:
        if self.config.live is not None:
            return self.config.live
        return parse_source(self.config.source).kind.live_by_default

    @classmethod
    def frame_bytes(cls, config: StageConfig) -> int:
        assert isinstance(config, CaptureConfig)
        return capture_frame_bytes(config)

    @classmethod
    def doctor(cls, config: StageConfig, ctx: DoctorContext) -> list[Check]:
        assert isinstance(config, CaptureConfig)
        return capture_checks(config, ctx)

    # -- setup -------------------------------------------------------------------------------
    def setup(self, ctx: Context) -> None:
        cfg = self.config
        self.ctx = ctx
        self.spec = parse_source(cfg.source)
        self.where = f"stages.{ctx.stage}.source"
        self.name = f"{ctx.stage}: {self.spec.describe()}"
        self.seq = ctx.resume_seq + 1
        self.cursor: FileCursor | None = None
        self.synthetic: SyntheticSource | None = None
        self.opened = False
        if self.spec.kind is Kind.SCENE:
            self._setup_scene(ctx)
            return
        self.stream = self._make_stream(ctx)
        backoff = Backoff(cfg.backoff_s, cfg.max_backoff_s)
        self.reconnects = self.spec.kind in (Kind.NETWORK, Kind.DEVICE) or (
            self.spec.kind is Kind.GSTREAMER and self.live
        )
        self.reconnector = Reconnector(
            self.stream, self.name, ctx.log, ctx.count_event, ctx.report_health, backoff,
            cfg.max_reconnects, cfg.down_after_s, self._answers,
        )  # fmt: skip
        self._cap_period = 1 / cfg.fps if cfg.fps and self.spec.kind is Kind.NETWORK else 0.0
        self._next_due = 0.0
        if not self.reconnects:
            self.opened = self.stream.open()
            if not self.opened:
                msg = f"{self.where}: OpenCV cannot open {self.spec.describe()} (not a video?)"
                raise SourceError(msg)
            if self.spec.kind is Kind.FILE:
                assert isinstance(self.stream, OpenCVStream) and self.stream.cap is not None
                pace = cfg.realtime or self.live
                self.cursor = FileCursor(self.stream.cap, ctx, cfg.loop, pace, self.name)
            return
        self.opened = self.reconnector.connect()

    def _make_stream(self, ctx: Context) -> OpenCVStream | DecoderStream:
        """The decoder process or OpenCV capture that reads this source."""
        cfg = self.config
        target: str | int = self.spec.target
        if self.spec.kind is Kind.FILE:
            path = ctx.resolve_path(str(self.spec.target))
            if not path.is_file():
                msg = f"{self.where}: video file {path} not found"
                raise SourceError(msg)
            target = str(path)
        elif self.spec.kind is Kind.GSTREAMER and not has_gstreamer():
            raise StageSetupError(gstreamer_missing(self.where))
        choice = Choice("opencv")
        if self.spec.kind is Kind.NETWORK:
            try:
                choice = choose_decoder(cfg.decoder, cfg.hwaccel, cfg.ffmpeg_path)
            except StageSetupError as exc:
                raise StageSetupError(f"stages.{ctx.stage}.decoder: {exc}") from None
            auto = f" ({choice.why})" if cfg.decoder == "auto" else ""
            ctx.log.warning("%s: decoding with %s%s", self.name, choice.describe(), auto)
        if choice.decoder != "opencv":
            return decoder_stream(
                choice, str(target), ctx, ffmpeg_path=cfg.ffmpeg_path,
                rtsp_transport=cfg.rtsp_transport, resize=cfg.resize, fps=cfg.fps,
                open_timeout_s=cfg.open_timeout_s, read_timeout_s=cfg.read_timeout_s,
            )  # fmt: skip
        _quiet_video_libraries()
        options = OpenOptions(
            cfg.width, cfg.height, cfg.fps, cfg.open_timeout_s, cfg.read_timeout_s,
            cfg.rtsp_transport,
        )  # fmt: skip
        return OpenCVStream(self.spec, target, options, ctx, cfg.resize)

    def _answers(self) -> str:
        """Whether the camera answers at all ("" if so), for a first open still pending, in
        the words the open's own failure would use."""
        if self.spec.kind is not Kind.NETWORK:
            return ""
        why = tcp_answer(str(self.spec.target), 0.5)
        return explain([why]) or why

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

    # -- reading -----------------------------------------------------------------------------
    def read(self) -> Message | None:
        if self.synthetic is not None:
            return self._read_scene()
        if self.cursor is not None:
            got = self.cursor.next(self.stream.grab)
            if got is None:
                return None
            (frame, t, mono), seq = got
            return self._message(frame, seq, t, mono)
        while True:
            if not self.opened:
                self.opened = self.reconnects and self.reconnector.reopen()
                if not self.opened:
                    return None
            grabbed = self.stream.grab()
            if grabbed is not None:
                if self.reconnects:
                    self.reconnector.live()
                if not self._due():
                    continue
                frame, t, mono = grabbed
                self.seq += 1
                return self._message(frame, self.seq - 1, t, mono)
            self.stream.close()
            self.opened = False
            if not self.reconnects:
                return None  # a GStreamer pipeline with live = false: its end
            self.reconnector.lost(self.stream.error)

    def _due(self) -> bool:
        """The ``fps`` cap on a stream OpenCV reads (decoder processes cap it themselves):
        whether this frame is due, or comes too soon after the last one kept."""
        if not self._cap_period or isinstance(self.stream, DecoderStream):
            return True
        now, period = time.monotonic(), self._cap_period
        if now < self._next_due - period / 4:  # a frame a little early still counts
            return False
        on_grid = now - self._next_due < period  # else start the grid again from now
        self._next_due = (self._next_due if on_grid else now) + period
        return True

    def _message(self, frame: np.ndarray, seq: int, t: float, mono: int) -> Message:
        return Message(
            stream=self.stream_id, seq=seq, t_capture=t, t_mono_ns=mono, arrays={"frame": frame}
        )

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
        stream = getattr(self, "stream", None)
        if stream is not None:
            stream.close()
        if self.synthetic is not None:
            self.synthetic.close()


def _quiet_video_libraries() -> None:
    """One warning per outage from us, not a line per retry from OpenCV and FFmpeg; a user's
    own OPENCV_FFMPEG_LOGLEVEL wins (FFmpeg reads it when first used, after this)."""
    os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "8")  # AV_LOG_FATAL
    cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)
