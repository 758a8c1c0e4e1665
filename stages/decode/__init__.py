"""Postprocess building blocks: letterbox geometry and YOLOv8 output decode (no stages here)."""

from __future__ import annotations

from stages.decode.coco import COCO_NAMES
from stages.decode.letterbox import (
    LetterboxGeometry,
    letterbox_boxes,
    letterbox_geometry,
    letterbox_into,
    letterbox_nchw_into,
    unletterbox_boxes,
)
from stages.decode.yolov8 import (
    QuantParams,
    decode_yolov8,
    decode_yolov8_split,
    decode_yolov8_stock,
)

__all__ = [
    "COCO_NAMES",
    "LetterboxGeometry",
    "QuantParams",
    "decode_yolov8",
    "decode_yolov8_split",
    "decode_yolov8_stock",
    "letterbox_boxes",
    "letterbox_geometry",
    "letterbox_into",
    "letterbox_nchw_into",
    "unletterbox_boxes",
]
