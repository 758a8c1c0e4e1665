"""Class names: the 80 COCO names in the order YOLOv8 models trained on COCO number them, and
the checks stages make when a graph picks classes by name."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["COCO_NAMES", "check_class_names", "class_ids", "class_name"]

COCO_NAMES: tuple[str, ...] = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat",
    "traffic light", "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog",
    "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella",
    "handbag", "tie", "suitcase", "frisbee", "skis", "snowboard", "sports ball", "kite",
    "baseball bat", "baseball glove", "skateboard", "surfboard", "tennis racket", "bottle",
    "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple", "sandwich",
    "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote",
    "keyboard", "cell phone", "microwave", "oven", "toaster", "sink", "refrigerator", "book",
    "clock", "vase", "scissors", "teddy bear", "hair drier", "toothbrush",
)  # fmt: skip


def class_name(class_id: int, names: Sequence[str] = COCO_NAMES) -> str:
    """The name of ``class_id`` in ``names`` (COCO by default), or ``class_<id>`` past them."""
    return names[class_id] if 0 <= class_id < len(names) else f"class_{class_id}"


def check_class_names(classes: Sequence[int | str] | None, names: Sequence[str]) -> None:
    """Raise ValueError naming the first class name the model does not know."""
    for c in classes or []:
        if isinstance(c, str) and c not in names:
            msg = f"unknown class name {c!r}; known names include {', '.join(names[:8])}, ..."
            raise ValueError(msg)


def class_ids(classes: Sequence[int | str] | None, names: Sequence[str]) -> np.ndarray | None:
    """The class ids of ``classes`` (ids or names in ``names``); None for None (all)."""
    if classes is None:
        return None
    return np.array([names.index(c) if isinstance(c, str) else int(c) for c in classes], np.int64)
