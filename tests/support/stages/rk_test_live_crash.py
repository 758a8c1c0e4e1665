"""A live source whose reader fails: a bug after some frames, or a setup-type error."""

from __future__ import annotations

import time

import numpy as np

from pipeline import Message, Source, StageConfig, StageSetupError


class FailingCameraConfig(StageConfig):
    after: int = 5
    fatal: bool = False


class FailingCamera(Source[FailingCameraConfig]):
    """Live frames; read() raises after ``after`` frames (``fatal``: a StageSetupError)."""

    def setup(self, ctx):
        self.ctx = ctx
        self.i = ctx.resume_seq + 1

    @property
    def live(self) -> bool:
        return True

    def read(self):
        if self.i >= self.config.after:
            if self.config.fatal:
                raise StageSetupError("camera rtsp://cam/1 refused the login")
            raise RuntimeError(f"decoder bug at frame {self.i}")
        time.sleep(0.01)
        frame = self.ctx.alloc((8, 8, 3), np.uint8)
        msg = Message(stream="s", seq=self.i, arrays={"frame": frame})
        self.i += 1
        return msg
