"""Reading a video file: frame index -> seq, loop passes, skipping undecodable frames,
resuming after a restart, and playing at the file's own frame rate."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

import cv2

from pipeline.stage import Context

__all__ = ["FileCursor"]

Grabbed = tuple[Any, float, int]


class FileCursor:
    """Where a capture stands in a video file. Seq = index in the file (plus the length of
    earlier passes when looping), so a restarted stage seeks to resume_seq + 1 and a frame
    lost to corruption leaves a gap that is counted as a ``corrupt`` drop."""

    MAX_SKIP = 300  # undecodable frames in a row before the rest of the file is given up

    def __init__(self, cap: cv2.VideoCapture, ctx: Context, loop: bool, pace: bool, name: str):
        self.cap, self.ctx, self.loop, self.name = cap, ctx, loop, name
        self.count = max(0, int(cap.get(cv2.CAP_PROP_FRAME_COUNT)))
        self.period = self._period(cap.get(cv2.CAP_PROP_FPS)) if pace else None
        self.base = 0  # seq of frame 0 in this pass
        self.index = 0  # the next frame expected from the file
        self._due: float | None = None
        self._decoded = 0  # frames decoded in this pass (a pass of none ends a loop)
        start = ctx.resume_seq + 1
        if start > 0:  # a restart: continue after the last frame sent
            pos = start % self.count if loop and self.count else start
            self.base, self.index = start - pos, pos
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, pos)

    def _period(self, fps: float) -> float:
        if fps > 0 and math.isfinite(fps) and fps <= 1000:
            return 1.0 / fps
        self.ctx.log.warning("%s: the file gives no frame rate; playing at 30 fps", self.name)
        return 1.0 / 30

    def next(self, grab: Callable[[], Grabbed | None]) -> tuple[Grabbed, int] | None:
        """The next decodable frame and its seq; None at the end (after the last pass)."""
        while True:
            got = self._next_in_pass(grab)
            if got is not None:
                return got[0], self.base + got[1]
            if not self.loop or self._decoded == 0:
                return None
            self.base += max(self.count, self.index)
            self.index = self._decoded = 0
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, 0)

    def _next_in_pass(self, grab: Callable[[], Grabbed | None]) -> tuple[Grabbed, int] | None:
        failures = 0
        while True:
            self._pace()
            grabbed = grab()
            if grabbed is not None:
                index = max(self.index, int(self.cap.get(cv2.CAP_PROP_POS_FRAMES)) - 1)
                if index > self.index:  # the decoder skipped frames it could not read
                    self.ctx.count_drop("corrupt", index - self.index)
                self.index = index + 1
                self._decoded += 1
                return grabbed, index
            if self.index >= self.count:
                return None  # the end of the file
            self._due = None  # no frame was shown: keep the pace from the next one
            failures += 1
            if failures == 1:
                self.ctx.log.warning(
                    "%s: undecodable frame %d; skipping to the next", self.name, self.index
                )
            if failures > self.MAX_SKIP:
                self.ctx.log.warning(
                    "%s: %d undecodable frames in a row; skipping the rest of the file",
                    self.name,
                    failures,
                )
                self.ctx.count_drop("corrupt", self.count - self.index)
                self.index = self.count
                return None
            self.ctx.count_drop("corrupt")
            self.index += 1
            self.cap.set(cv2.CAP_PROP_POS_FRAMES, self.index)

    def _pace(self) -> None:
        """Sleep until the next frame is due at the file's rate; after a stall of over a
        second, start the clock again rather than rush to catch up."""
        if self.period is None:
            return
        now = time.monotonic()
        if self._due is None or now - self._due > 1.0:
            self._due = now
        elif self._due > now:
            time.sleep(self._due - now)
        self._due += self.period
