"""The ``letterbox`` stage: resize and pad each frame into the model's input, in shared memory.

The tensor is written straight into a slot of this stage's pool (no extra copy on the way to
inference), and the geometry travels in ``meta["letterbox"]`` so boxes map back to the frame.
"""

from __future__ import annotations

from typing import Any, Literal

import cv2
import numpy as np
from pydantic import Field

from pipeline.keys import META_LETTERBOX, TENSOR
from pipeline.messages import Message
from pipeline.stage import Context, Stage, StageConfig
from stages.letterbox.geometry import letterbox_geometry, letterbox_into, letterbox_nchw_into

__all__ = ["Letterbox"]


MODEL_SIZE: Literal["model"] = "model"
FALLBACK_SIZE = (640, 640)  # for size = "model" when no stage fed fixes a size


class LetterboxConfig(StageConfig):
    size: tuple[int, int] | Literal["model"] = Field(
        MODEL_SIZE,
        description='model input (width, height); "model": the input size of the model of '
        "the infer stage it feeds (ONNX input shape, .rknn sidecar), else 640x640",
    )
    layout: Literal["nchw_float", "nhwc_uint8"] = "nchw_float"
    output: str = TENSOR

    @property
    def wh(self) -> tuple[int, int]:
        """The (width, height) written: ``size``, or 640x640 for a "model" left unresolved
        (a stage built outside a graph, or feeding no stage that fixes a size)."""
        return FALLBACK_SIZE if self.size == MODEL_SIZE else self.size


def _wxh(size: tuple[int, int]) -> str:
    return f"{size[0]}x{size[1]}"


class Letterbox(Stage[LetterboxConfig]):
    """Frame (H, W, 3) BGR -> model input under ``arrays[output]``.

    ``layout = "nchw_float"`` (ONNX: RGB float32 / 255, shape 1x3xHxW) or ``"nhwc_uint8"``
    (RKNN: RGB uint8, 1xHxWx3; the NPU does the normalisation). ``size = "model"`` (the
    default) takes the input size of the model it feeds, so a graph and its model cannot
    disagree; an explicit size that does not match that model is a graph error.
    """

    @classmethod
    def from_consumers(
        cls, config: StageConfig, sizes: dict[str, tuple[int, int]]
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """``size = "model"`` from the infer stage fed; an explicit size must match it."""
        assert isinstance(config, LetterboxConfig)
        if not sizes:
            return {}, []
        if len(set(sizes.values())) > 1:
            each = ", ".join(f'"{name}" {_wxh(size)}' for name, size in sizes.items())
            why = f"feeds models of different input sizes ({each}): use one letterbox per size"
            return {}, [("size", why)]
        name, want = next(iter(sizes.items()))
        if config.size == MODEL_SIZE:
            return {"size": list(want)}, []
        if config.size != want:
            why = (
                f"size = [{config.size[0]}, {config.size[1]}] ({_wxh(config.size)}) does not "
                f'match the input of the model of stage "{name}", {_wxh(want)}: remove size '
                f'(the default, "model", takes the model\'s) or set size = [{want[0]}, {want[1]}]'
            )
            return {}, [("size", why)]
        return {}, []

    @classmethod
    def frame_bytes(cls, config: StageConfig) -> int:
        assert isinstance(config, LetterboxConfig)
        w, h = config.wh
        return w * h * 3 * (4 if config.layout == "nchw_float" else 1)

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self._geom: dict[tuple[int, int], object] = {}

    def process(self, msg: Message) -> Message | None:
        frame = msg.frame
        if frame is None:
            self.ctx.count_drop("no_frame")
            return None
        w, h = self.config.wh
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
