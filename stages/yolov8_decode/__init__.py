"""The ``yolov8_decode`` stage and its decoders: YOLOv8/YOLO11 outputs (stock or RKNN split
head) to boxes, filtering by class score before decoding, then class-aware NMS."""

from __future__ import annotations

from stages.yolov8_decode.decode import (
    QuantParams,
    decode_yolov8,
)
from stages.yolov8_decode.stage import YoloV8Decode

__all__ = [
    "QuantParams",
    "YoloV8Decode",
    "decode_yolov8",
]
