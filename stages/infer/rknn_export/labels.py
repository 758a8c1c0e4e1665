"""Ground truth for the export check: YOLO label files that come with the calibration images.

``frame.jpg`` reads ``frame.txt`` beside it, or, in Ultralytics' data set layout,
``.../labels/frame.txt`` for ``.../images/frame.jpg``. One object per line,
``class cx cy w h`` normalised to the image (extra columns, such as segment points, are
ignored). An image without a label file is left out; an empty file means "no objects".
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pipeline.detections import Detections
from stages.infer.rknn_export.calibration import UsageError
from stages.letterbox.geometry import LetterboxGeometry, letterbox_boxes

__all__ = ["label_file", "read_labels"]


def label_file(image: Path) -> Path | None:
    """The label file of ``image``, or None when it has none."""
    beside = image.with_suffix(".txt")
    if beside.is_file():
        return beside
    if image.parent.name == "images":
        other = image.parent.parent / "labels" / beside.name
        if other.is_file():
            return other
    return None


def _parse(txt: Path, num_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """(class ids (n,), normalised cx, cy, w, h (n, 4)); one error line for a bad line."""
    ids, boxes = [], []
    for n, line in enumerate(txt.read_text().splitlines(), 1):
        words = line.split()
        if not words:
            continue
        try:
            cls, values = int(words[0]), [float(w) for w in words[1:5]]
        except ValueError:
            values = []
        if len(values) != 4 or not 0 <= cls < num_classes:
            msg = (
                f"{txt}:{n}: expected 'class cx cy w h' (class 0-{num_classes - 1}, "
                f"coordinates 0..1), got {line.strip()!r}"
            )
            raise UsageError(msg)
        ids.append(cls)
        boxes.append(values)
    return np.asarray(ids, np.int32), np.asarray(boxes, np.float32).reshape(-1, 4)


def read_labels(image: Path, geometry: LetterboxGeometry, num_classes: int) -> Detections | None:
    """The labelled objects of ``image`` in model-input pixels (confidence 1), or None."""
    txt = label_file(image)
    if txt is None:
        return None
    cls, cxcywh = _parse(txt, num_classes)
    size = np.array([geometry.src_w, geometry.src_h] * 2, np.float32)
    half = cxcywh[:, 2:] / 2
    xyxy = np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1) * size
    return Detections(letterbox_boxes(xyxy, geometry), np.ones(len(cls), np.float32), cls)
