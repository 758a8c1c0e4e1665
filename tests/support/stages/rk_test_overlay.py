"""A test stage that gives frames of the synthetic street scene something to draw: its true
objects as tracked detections, plus a counting line and a zone whose counts follow the seq.

Counts are ``in = seq // 10`` and ``out = seq // 20`` on line "door", occupancy ``seq % 5`` in
zone "curb", so a test that reads a seq off a page or a file knows which counts go with it.
"""

from __future__ import annotations

import numpy as np

from pipeline import Context, Message, Stage, StageConfig
from pipeline.detections import Detections
from stages.synthetic import Scene


class Overlay(Stage):
    """Add the scene's truth as Detections (tracker ids set) and meta["lines"]/["zones"]."""

    class Config(StageConfig):
        scene: str = "easy"
        seed: int = 0
        seeds: dict[str, int] = {}  # per-stream seed, as the sources have (default: seed)
        width: int = 640
        height: int = 360
        fps: float = 30.0
        box: list[float] | None = None  # an extra fixed box (x1, y1, x2, y2), track id 999
        overlays: bool = True  # set meta["lines"] and meta["zones"]
        drop: list[int] = []  # seqs to drop (return nothing), to make gaps downstream

    def setup(self, ctx: Context) -> None:
        self.scenes: dict[str, Scene] = {}

    def _scene(self, stream: str) -> Scene:
        if stream not in self.scenes:
            c = self.config
            seed = c.seeds.get(stream, c.seed)
            self.scenes[stream] = Scene(c.scene, seed, c.width, c.height, c.fps)
        return self.scenes[stream]

    def process(self, msg: Message) -> Message | None:
        if msg.seq in self.config.drop:
            return None
        truth = self._scene(msg.stream).truth(msg.seq)
        dets = Detections(truth.xyxy, np.full(len(truth.xyxy), 0.9), truth.class_id, truth.track_id)
        if self.config.box is not None:
            extra = Detections(np.array([self.config.box]), [0.75], [2], [999])
            dets = Detections.merge([dets, extra])
        msg.detections = dets
        if self.config.overlays:
            msg.meta.update(overlays(msg.seq, self.config.width, self.config.height))
        return msg


def overlays(seq: int, w: int, h: int) -> dict:
    """meta["lines"] and meta["zones"] for frame ``seq`` of a ``w`` x ``h`` stream."""
    return {
        "lines": {
            "door": {"a": [0, h * 0.75], "b": [w, h * 0.75], "in": seq // 10, "out": seq // 20}
        },
        "zones": {
            "curb": {
                "polygon": [[w * 0.6, h * 0.1], [w * 0.95, h * 0.1], [w * 0.95, h * 0.4]],
                "occupancy": seq % 5,
            }
        },
    }
