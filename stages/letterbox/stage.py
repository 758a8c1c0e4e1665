"""The ``letterbox`` stage: resize and pad each frame into the model's input, in shared memory.

The tensor is written straight into a slot of this stage's pool (no extra copy on the way to
inference), and the geometry travels in ``meta["letterbox"]`` so boxes map back to the frame.
"""

from __future__ import annotations

from typing import Literal

import cv2
import numpy as np
from pydantic import Field

from pipeline.keys import META_LETTERBOX, TENSOR
from pipeline.messages import Message
from pipeline.stage import Context, Stage, StageConfig
from stages.letterbox.geometry import letterbox_geometry, letterbox_into, letterbox_nchw_into

__all__ = ["Letterbox"]


class LetterboxConfig(StageConfig):
    size: tuple[int, int] = Field((640, 640), description="model input (width, height)")
    layout: Literal["nchw_float", "nhwc_uint8"] = "nchw_float"
    output: str = TENSOR


class Letterbox(Stage[LetterboxConfig]):
    """Frame (H, W, 3) BGR -> model input under ``arrays[output]``.

    ``layout = "nchw_float"`` (ONNX: RGB float32 / 255, shape 1x3xHxW) or ``"nhwc_uint8"``
    (RKNN: RGB uint8, 1xHxWx3; the NPU does the normalisation).
    """

    @classmethod
    def frame_bytes(cls, config: StageConfig) -> int:
        assert isinstance(config, LetterboxConfig)
        w, h = config.size
        return w * h * 3 * (4 if config.layout == "nchw_float" else 1)

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self._geom: dict[tuple[int, int], object] = {}

    def process(self, msg: Message) -> Message | None:
        frame = msg.frame
        if frame is None:
            self.ctx.count_drop("no_frame")
            return None
        w, h = self.config.size
        geom = self._geom.get(frame.shape[:2])
        if geom is None:
            geom = self._geom[frame.shape[:2]] = letterbox_geometry(frame.shape[:2], (h, w))
        if self.config.layout == "nchw_float":
            out = self.ctx.alloc((1, 3, h, w), np.float32)
            letterbox_nchw_into(frame, out, geom)  # type: ignore[arg-type]
        else:
            out = self.ctx.alloc((1, h, w, 3), np.uint8)
            letterbox_into(frame, out[0], geom)  # type: ignore[arg-type]
            cv2.cvtColor(out[0], cv2.COLOR_BGR2RGB, dst=out[0])
        msg.arrays[self.config.output] = out
        msg.meta[META_LETTERBOX] = geom.to_dict()  # type: ignore[attr-defined]
        return msg
