"""A test stage that writes more into its frame pool than it declares (``frame_bytes`` 0), so
the check before the run passes and the pool's own allocation meets a small /dev/shm."""

from __future__ import annotations

import numpy as np

from pipeline import Message, Stage, StageConfig


class BigArraysConfig(StageConfig):
    mb: int = 16  # one array of this many MB per message


class BigArrays(Stage[BigArraysConfig]):
    """Add an array of ``mb`` MB to each message (into this stage's pool)."""

    def process(self, msg: Message) -> Message:
        msg.arrays["big"] = np.ones(self.config.mb * 2**20, np.uint8)
        return msg
