"""Stages used only by the tests, imported by `uses = "rk_test_stages:Name"`."""

from __future__ import annotations

import os
import random
import signal
import threading
import time

import numpy as np

from pipeline import Context, Message, Source, Stage, StageConfig
from pipeline.errors import StageSetupError
from stages.synthetic.stage import SyntheticSource


class RandomDelayConfig(StageConfig):
    max_ms: float = 20.0


class RandomDelay(Stage[RandomDelayConfig]):
    """Sleep a random time per message (seeded by stream and seq), to scramble arrival order."""

    def process(self, msg: Message) -> Message:
        rng = random.Random(f"{msg.stream}:{msg.seq}")
        time.sleep(rng.uniform(0, self.config.max_ms) / 1000)
        return msg


class FrameCheckerConfig(StageConfig):
    width: int = 640
    height: int = 360
    seed: int = 0
    objects: int = 6
    hold_ms: float = 0.0


class FrameChecker(Stage[FrameCheckerConfig]):
    """Compare each frame with what the synthetic source renders for its seq; record the
    verdict in meta["frame_ok"], after an optional delay spent holding the frame."""

    def setup(self, ctx: Context) -> None:
        cfg = self.config
        self.src = SyntheticSource(
            width=cfg.width, height=cfg.height, seed=cfg.seed, objects=cfg.objects
        )
        self.src.setup(Context(stage="check"))
        self.expected = np.empty((cfg.height, cfg.width, 3), np.uint8)

    def process(self, msg: Message) -> Message:
        frame = msg.frame
        before = frame.copy()
        if self.config.hold_ms:
            time.sleep(self.config.hold_ms / 1000)
        self.src.render(msg.seq, self.expected)
        msg.meta["frame_ok"] = bool(np.array_equal(before, self.expected))
        return msg


class CrashOnSeqConfig(StageConfig):
    seq: int = 10


class CrashOnSeq(Stage[CrashOnSeqConfig]):
    """Raise on one seq, to prove a crashing stage is restarted."""

    def process(self, msg: Message) -> Message:
        if msg.seq == self.config.seq and msg.meta.get("crashed") is None:
            raise RuntimeError("planted crash")
        return msg


class DeviceWaitConfig(StageConfig):
    max_ms: float = 8.0
    drop_every: int = 0
    crash_seq: int = -1


class DeviceWait(Stage[DeviceWaitConfig]):
    """Waits on a pretend device per message (sleeps, GIL released) with ``overlap`` on, as
    inference does; drops every ``drop_every``-th message and can crash at one seq."""

    overlap = 2

    def process(self, msg: Message) -> Message | None:
        if msg.seq == self.config.crash_seq:
            raise RuntimeError(f"device fault at seq {msg.seq}")
        rng = random.Random(f"{msg.stream}:{msg.seq}")
        time.sleep(rng.uniform(0, self.config.max_ms) / 1000)
        if self.config.drop_every and msg.seq % self.config.drop_every == 0:
            return None
        msg.meta["device"] = True
        return msg


class DieAtStreamEndConfig(StageConfig):
    stream: str
    marker: str
    at: str = "end"
    seq: int = -1
    #: Wait this long before dying so frames already sent leave the process's socket
    #: buffers (a frame still queued there when the process dies is lost, and counted).
    settle_s: float = 0.3


class DieAtStreamEnd(Stage[DieAtStreamEndConfig]):
    """Dies (SIGKILL: no cleanup, as a segfault would) once, on one stream's END (``at = "end"``) or
    on one of its frames (``at = "seq"``, ``seq``); a marker file makes it happen only once."""

    def _die_once(self) -> None:
        if not os.path.exists(self.config.marker):
            open(self.config.marker, "w").close()
            time.sleep(self.config.settle_s)
            os.kill(os.getpid(), signal.SIGKILL)

    def process(self, msg: Message) -> Message:
        cfg = self.config
        if cfg.at == "seq" and msg.stream == cfg.stream and msg.seq == cfg.seq:
            self._die_once()
        return msg

    def end_stream(self, stream: str) -> None:
        if self.config.at == "end" and stream == self.config.stream:
            self._die_once()


class EndRecorderConfig(StageConfig):
    path: str


class EndRecorder(Stage[EndRecorderConfig]):
    """A sink that appends each stream it is told has ended to a file, one line each."""

    def process(self, msg: Message) -> Message:
        return msg

    def end_stream(self, stream: str) -> None:
        with open(self.config.path, "a") as f:
            f.write(stream + "\n")


class WhichReplicaConfig(StageConfig):
    slow_replica: int = 0
    delay_s: float = 1.0


class WhichReplica(Stage[WhichReplicaConfig]):
    """Stamps ``meta["replica"]`` with the replica that processed the message; replica
    ``slow_replica`` takes ``delay_s`` to set up (it connects last)."""

    def setup(self, ctx: Context) -> None:
        self.replica = ctx.replica
        if ctx.replica == self.config.slow_replica:
            time.sleep(self.config.delay_s)

    def process(self, msg: Message) -> Message:
        msg.meta["replica"] = self.replica
        return msg


class FlakyCameraConfig(StageConfig):
    frames: int = 30
    outage_at: int = 10  # after this many frames the "camera" is lost for a moment
    outage_s: float = 0.3  # that long
    fps: float = 0  # > 0: paced like a camera


class FlakyCamera(Source[FlakyCameraConfig]):
    """A synthetic camera that reports connecting, live, reconnecting and live again."""

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        ctx.report_health("connecting", "opening synthetic camera")
        cfg = self.config
        pace = {"realtime": True, "fps": cfg.fps} if cfg.fps > 0 else {}
        self.scene = SyntheticSource(width=64, height=48, frames=cfg.frames, **pace)
        self.scene.setup(ctx)
        self.n = 0

    def read(self) -> Message | None:
        if self.n == 0:
            self.ctx.report_health("live")
        if self.n == self.config.outage_at:
            self.ctx.report_health("reconnecting", "stream lost")
            time.sleep(self.config.outage_s)
            self.ctx.report_health("live")
        self.n += 1
        return self.scene.read()


class HealthTag(Stage):
    """Copy every source's health, as this stage sees it, into meta["health"]."""

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx

    def process(self, msg: Message) -> Message:
        msg.meta["health"] = self.ctx.source_health()
        return msg


class CarelessConfig(StageConfig):
    url: str
    api_key: str
    crash: bool = False  # fail in process (a bug: traceback) instead of in setup
    thread_crash: bool = False  # a thread of the stage dies quoting the url, then setup fails


class Careless(Stage[CarelessConfig]):
    """Logs its options and fails quoting them, as a careless stage might: the secrets in its
    log line, setup error or traceback must reach the user masked."""

    def setup(self, ctx: Context) -> None:
        cfg = self.config
        ctx.log.warning("connecting to %s with api_key=%s", cfg.url, cfg.api_key)
        if cfg.thread_crash:
            reader = threading.Thread(target=self._lose, name="careless-reader")
            reader.start()
            reader.join()
            raise StageSetupError("its reader thread died")
        if not cfg.crash:
            raise StageSetupError(f"{cfg.url} refused the key {cfg.api_key}")

    def _lose(self) -> None:
        raise RuntimeError(f"lost {self.config.url} holding {self.config.api_key}")

    def process(self, msg: Message) -> Message:
        raise RuntimeError(f"lost {self.config.url} holding {self.config.api_key}")


class DownCameraConfig(StageConfig):
    seconds: float = 60.0  # how long it keeps trying before its stream ends


class DownCamera(Source[DownCameraConfig]):
    """A camera that never connects: connecting at setup, then down, and no frame ever."""

    @property
    def live(self) -> bool:
        return True

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        ctx.report_health("connecting", "opening rtsp://admin:down-Pw-31@10.0.0.9/s")

    def read(self) -> Message | None:
        self.ctx.report_health("down", "connection refused; retrying in 8 s")
        deadline = time.monotonic() + self.config.seconds
        while time.monotonic() < deadline:
            time.sleep(0.1)
        return None


class SlowFirstConfig(StageConfig):
    first_s: float = 1.5


class SlowFirst(Stage[SlowFirstConfig]):
    """Takes ``first_s`` over its first message, as a model does on its first inference."""

    def setup(self, ctx: Context) -> None:
        self.first = True

    def process(self, msg: Message) -> Message:
        if self.first:
            self.first = False
            time.sleep(self.config.first_s)
        return msg
