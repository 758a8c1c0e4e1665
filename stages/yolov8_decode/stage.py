"""The ``yolov8_decode`` stage: model outputs -> Detections in frame pixels.

Handles the stock Ultralytics output and the RKNN split head (float or int8), filtering by
class score before decoding boxes; class-aware NMS; boxes mapped back through the letterbox.
"""

from __future__ import annotations

from pydantic import Field, model_validator

from pipeline.errors import ModelError
from pipeline.keys import META_LETTERBOX, META_QUANT, OUTPUT_PREFIX, output_index
from pipeline.messages import Message
from pipeline.stage import Context, Stage, StageConfig
from stages.classes import COCO_NAMES, check_class_names, class_ids
from stages.letterbox.geometry import LetterboxGeometry
from stages.yolov8_decode.decode import decode_yolov8

__all__ = ["YoloV8Decode"]


class YoloV8DecodeConfig(StageConfig):
    conf: float = Field(0.25, ge=0, le=1, description="minimum class score")
    iou: float = Field(0.45, ge=0, le=1, description="NMS overlap threshold")
    max_det: int = Field(300, ge=1)
    classes: list[int | str] | None = Field(None, description="keep only these (ids or names)")
    names: list[str] = Field(default_factory=lambda: list(COCO_NAMES))

    @model_validator(mode="after")
    def _known_classes(self) -> YoloV8DecodeConfig:
        check_class_names(self.classes, self.names)
        return self


class YoloV8Decode(Stage[YoloV8DecodeConfig]):
    """Decode ``arrays["out.0"...]`` into ``msg.detections`` and drop the raw outputs."""

    def setup(self, ctx: Context) -> None:
        keep = class_ids(self.config.classes, self.config.names)
        self.keep = None if keep is None else keep.tolist()
        self.ctx = ctx

    def reconfigure(self, config: YoloV8DecodeConfig) -> bool:
        """Every option applies from the next message: decoding holds no state."""
        self.config = config
        keep = class_ids(config.classes, config.names)
        self.keep = None if keep is None else keep.tolist()
        return True

    def process(self, msg: Message) -> Message:
        keys = sorted((k for k in msg.arrays if k.startswith(OUTPUT_PREFIX)), key=output_index)
        if not keys:
            text = f"{self.ctx.stage}: no model outputs ('out.N') in this message; add infer first"
            raise ModelError(text)
        outputs = [msg.arrays.pop(k) for k in keys]
        geom = msg.meta.get(META_LETTERBOX)
        det = decode_yolov8(
            outputs,
            conf=self.config.conf,
            iou=self.config.iou,
            classes=self.keep,
            max_det=self.config.max_det,
            geometry=LetterboxGeometry.from_dict(geom) if geom else None,
            quant=msg.meta.pop(META_QUANT, None),
        )
        msg.detections = det
        return msg
