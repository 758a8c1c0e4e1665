"""Box agreement: does a converted model find the boxes the float model finds (or the labels)?

Both sides are decoded with rkpipe's own decoders, so the figures are what the pipeline
would see: recall of the reference boxes (same class, IoU >= 0.5, greedy by score), the
mean IoU of the matched pairs, the boxes the candidate adds, and recall per class.
Also here: running an ONNX model on the check images, and reading the simulator's outputs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.detections import Detections
from stages.bytetrack.association import iou_matrix
from stages.yolov8_decode.decode import decode_yolov8

__all__ = [
    "MAX_DET",
    "Agreement",
    "agreement",
    "decode_all",
    "onnx_outputs",
    "sim_outputs",
]

MATCH_IOU = 0.5
MAX_DET = 300  # boxes kept per image, as yolov8_decode's default


@dataclass(frozen=True)
class Agreement:
    """How well ``candidate`` detections reproduce ``reference`` ones over some images;
    ``per_class`` maps a class id to (matched, reference) counts."""

    images: int
    reference: int
    matched: int
    extra: int
    mean_iou: float
    per_class: dict[int, tuple[int, int]] = field(default_factory=dict)

    @property
    def recall(self) -> float:
        return self.matched / self.reference if self.reference else 1.0

    @property
    def empty(self) -> bool:
        """Neither side has a box: the two agree, with nothing to measure."""
        return self.reference == 0 and self.extra == 0

    def summary(self) -> str:
        if self.empty:
            return f"no boxes on either side ({self.images} images): they agree"
        if self.reference == 0:
            return f"no reference boxes, {self.extra} candidate boxes ({self.images} images)"
        return (
            f"recall {self.recall:.3f} ({self.matched}/{self.reference} boxes matched), "
            f"mean IoU {self.mean_iou:.3f}, {self.extra} extra boxes, {self.images} images"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.images,
            "reference_boxes": self.reference,
            "matched": self.matched,
            "extra": self.extra,
            "recall": round(self.recall, 4),
            "mean_iou": round(self.mean_iou, 4),
        }


def _match(ref: Detections, cand: Detections) -> tuple[list[float], list[int], int]:
    """IoUs and reference indices of the greedy same-class matches (reference boxes by
    score), and the unmatched candidate count."""
    if len(ref) == 0 or len(cand) == 0:
        return [], [], len(cand)
    iou = iou_matrix(ref.xyxy, cand.xyxy)
    iou[ref.class_id[:, None] != cand.class_id[None, :]] = 0.0
    free = np.ones(len(cand), bool)
    ious, hits = [], []
    for r in np.argsort(-ref.confidence, kind="stable"):
        row = np.where(free, iou[r], 0.0)
        c = int(row.argmax())
        if row[c] >= MATCH_IOU:
            free[c] = False
            ious.append(float(row[c]))
            hits.append(int(r))
    return ious, hits, int(free.sum())


def agreement(refs: Sequence[Detections], cands: Sequence[Detections]) -> Agreement:
    """Match per image and add up, overall and per class."""
    ious: list[float] = []
    extra = 0
    per_class: dict[int, list[int]] = {}
    for ref, cand in zip(refs, cands, strict=True):
        got, hits, more = _match(ref, cand)
        ious += got
        extra += more
        for cls in ref.class_id.tolist():
            per_class.setdefault(cls, [0, 0])[1] += 1
        for r in hits:
            per_class[int(ref.class_id[r])][0] += 1
    total = sum(len(r) for r in refs)
    mean = float(np.mean(ious)) if ious else 0.0
    counts = {c: (m, n) for c, (m, n) in sorted(per_class.items())}
    return Agreement(len(refs), total, len(ious), extra, mean, counts)


def _session(model: Any) -> Any:
    """An ONNX Runtime CPU session from a path or an in-memory ModelProto."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    src = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def onnx_outputs(model: Any, images: Sequence[np.ndarray]) -> list[list[np.ndarray]]:
    """A float ONNX model's outputs for each RGB uint8 (H, W, 3) input (scaled to 0..1)."""
    sess = _session(model)
    name = sess.get_inputs()[0].name
    outs = []
    for rgb in images:
        x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], np.float32) / np.float32(255)
        outs.append(sess.run(None, {name: x}))
    return outs


def decode_all(outputs: Sequence[Sequence[np.ndarray]], conf: float) -> list[Detections]:
    """Each image's outputs (stock or split head, e.g. from ``onnx_outputs``) decoded."""
    return [decode_yolov8(list(o), conf=conf, max_det=MAX_DET) for o in outputs]


def sim_outputs(npz: Path, count: int) -> list[list[np.ndarray]]:
    """The simulator outputs ``out{i}_{j}`` saved by the build script, per image."""
    data = np.load(npz)
    per_image = []
    for i in range(count):
        keys = sorted((k for k in data if k.startswith(f"out{i}_")), key=_j)
        per_image.append([data[k] for k in keys])
    return per_image


def _j(key: str) -> int:
    return int(key.rsplit("_", 1)[1])
