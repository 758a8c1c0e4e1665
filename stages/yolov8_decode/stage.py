"""The ``yolov8_decode`` stage: model outputs -> Detections in frame pixels.

Handles the stock Ultralytics output and the RKNN split head (float or int8), filtering by
class score before decoding boxes; class-aware NMS; boxes mapped back through the letterbox.
"""

from __future__ import annotations

from pydantic import Field, field_validator

from pipeline.errors import ModelError
from pipeline.messages import Message
from pipeline.stage import Context, Stage, StageConfig
from stages.classes import COCO_NAMES
from stages.letterbox.geometry import LetterboxGeometry
from stages.yolov8_decode.decode import decode_yolov8

__all__ = ["YoloV8Decode"]

OUTPUT_PREFIX = "out."


class YoloV8Decode(Stage):
    """Decode ``arrays["out.0"...]`` into ``msg.detections`` and drop the raw outputs."""

    class Config(StageConfig):
        conf: float = Field(0.25, ge=0, le=1, description="minimum class score")
        iou: float = Field(0.45, ge=0, le=1, description="NMS overlap threshold")
        max_det: int = Field(300, ge=1)
        classes: list[int | str] | None = Field(None, description="keep only these (ids or names)")
        names: list[str] = Field(default_factory=lambda: list(COCO_NAMES))

        @field_validator("classes")
        @classmethod
        def _known(cls, v: list[int | str] | None, info) -> list[int | str] | None:
            names = info.data.get("names") or COCO_NAMES
            for c in v or []:
                if isinstance(c, str) and c not in names:
                    msg = (
                        f"unknown class name {c!r}; known names include {', '.join(names[:8])}, ..."
                    )
                    raise ValueError(msg)
            return v

    def setup(self, ctx: Context) -> None:
        names = self.config.names
        self.keep = None
        if self.config.classes is not None:
            self.keep = [
                names.index(c) if isinstance(c, str) else int(c) for c in self.config.classes
            ]
        self.ctx = ctx

    def process(self, msg: Message) -> Message:
        keys = sorted(
            (k for k in msg.arrays if k.startswith(OUTPUT_PREFIX)), key=lambda k: int(k[4:])
        )
        if not keys:
            text = f"{self.ctx.stage}: no model outputs ('out.N') in this message; add infer first"
            raise ModelError(text)
        outputs = [msg.arrays.pop(k) for k in keys]
        geom = msg.meta.get("letterbox")
        det = decode_yolov8(
            outputs,
            conf=self.config.conf,
            iou=self.config.iou,
            classes=self.keep,
            max_det=self.config.max_det,
            geometry=LetterboxGeometry.from_dict(geom) if geom else None,
            quant=msg.meta.pop("quant", None),
        )
        msg.detections = det
        return msg
