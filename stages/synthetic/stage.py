"""A synthetic video source, deterministic from a seed, no files needed: street scenes with
people and cars (``scene = "easy"`` or ``"hard"``, see stages.synthetic) or plain moving boxes.

It renders straight into a shared-memory slot, so frames cost no copy on the way out. With
``live = true`` it behaves like a camera (paced at ``fps``, drops the oldest frame when the
pipeline falls behind); otherwise like a file (waits, loses nothing).
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
from pydantic import Field

from pipeline.messages import Message
from pipeline.stage import Context, Source, StageConfig

__all__ = ["SyntheticSource"]


class SyntheticSourceConfig(StageConfig):
    width: int = Field(640, ge=16, le=7680)
    height: int = Field(360, ge=16, le=4320)
    fps: float = Field(30.0, gt=0, le=1000)
    frames: int | None = Field(None, ge=0, description="stop after this many (None: endless)")
    seed: int = 0
    scene: Literal["boxes", "easy", "hard", "empty"] = Field(
        "boxes", description="street scene preset with people and cars, or plain boxes"
    )
    objects: int = Field(6, ge=0, le=500, description="number of boxes (scene = boxes)")
    live: bool = False
    realtime: bool = Field(False, description="pace at fps (always true when live)")


class SyntheticSource(Source[SyntheticSourceConfig]):
    """Frames of coloured boxes moving over a grey background; frame i is a pure function
    of (seed, i), so a restarted source continues exactly where it stopped."""

    @classmethod
    def frame_bytes(cls, config: StageConfig) -> int:
        assert isinstance(config, SyntheticSourceConfig)
        return config.width * config.height * 3

    def setup(self, ctx: Context) -> None:
        cfg = self.config
        rng = np.random.default_rng(cfg.seed)
        n = cfg.objects
        self.size = rng.uniform(0.05, 0.2, (n, 2)) * (cfg.width, cfg.height)
        self.start = rng.uniform(0, 1, (n, 2)) * (cfg.width, cfg.height)
        self.vel = rng.uniform(-4, 4, (n, 2))
        self.colors = rng.integers(30, 255, (n, 3))
        self.scene = None
        if cfg.scene != "boxes":
            from stages.synthetic.scene import Scene

            self.scene = Scene(
                cfg.scene, seed=cfg.seed, width=cfg.width, height=cfg.height, fps=cfg.fps
            )
        self.index = ctx.resume_seq + 1
        self.ctx = ctx
        self.t0 = time.monotonic()

    @property
    def live(self) -> bool:
        return self.config.live

    def render(self, i: int, out: np.ndarray) -> None:
        """Draw frame ``i`` into ``out`` (H, W, 3) uint8."""
        cfg = self.config
        if self.scene is not None:
            out[...] = self.scene.render(i)
            return
        out[...] = 96
        span = np.array([cfg.width, cfg.height], float)
        pos = np.mod(self.start + self.vel * i, span)
        for (x, y), (w, h), c in zip(
            pos.astype(int), self.size.astype(int), self.colors, strict=True
        ):
            out[y : y + h, x : x + w] = c
        out[0, :4] = np.frombuffer(np.uint32(i).tobytes(), np.uint8)[:4, None]  # frame id stamp

    def read(self) -> Message | None:
        cfg = self.config
        if cfg.frames is not None and self.index >= cfg.frames:
            return None
        if cfg.live or cfg.realtime:
            due = self.t0 + (self.index - self.ctx.resume_seq - 1) / cfg.fps
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
        frame = self.ctx.alloc((cfg.height, cfg.width, 3), np.uint8)
        self.render(self.index, frame)
        msg = Message(stream=self.stream_id, seq=self.index, arrays={"frame": frame})
        self.index += 1
        return msg
