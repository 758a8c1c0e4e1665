"""Agreement checks: does a converted model find the boxes the float model finds?

Both sides are decoded with rkpipe's own decoders, so the figures are what the pipeline
would see: recall of the float model's boxes (same class, IoU >= 0.5, greedy by score), the
mean IoU of the matched pairs, and the boxes the converted model adds.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.detections import Detections
from pipeline.errors import ModelError
from stages.bytetrack.association import iou_matrix
from stages.yolov8_decode.decode import decode_yolov8, decode_yolov8_split

__all__ = [
    "Agreement",
    "agreement",
    "check_cut",
    "onnx_detections",
    "sim_detections",
]

MATCH_IOU = 0.5


@dataclass(frozen=True)
class Agreement:
    """How well ``candidate`` detections reproduce ``reference`` ones over some images."""

    images: int
    reference: int
    matched: int
    extra: int
    mean_iou: float

    @property
    def recall(self) -> float:
        return self.matched / self.reference if self.reference else 0.0

    def summary(self) -> str:
        return (
            f"recall {self.recall:.3f} ({self.matched}/{self.reference} float boxes matched), "
            f"mean IoU {self.mean_iou:.3f}, {self.extra} extra boxes, {self.images} images"
        )


def _match(ref: Detections, cand: Detections) -> tuple[list[float], int]:
    """IoUs of the greedy same-class matches (reference boxes by score), and the unmatched
    candidate count."""
    if len(ref) == 0 or len(cand) == 0:
        return [], len(cand)
    iou = iou_matrix(ref.xyxy, cand.xyxy)
    iou[ref.class_id[:, None] != cand.class_id[None, :]] = 0.0
    free = np.ones(len(cand), bool)
    ious = []
    for r in np.argsort(-ref.confidence, kind="stable"):
        row = np.where(free, iou[r], 0.0)
        c = int(row.argmax())
        if row[c] >= MATCH_IOU:
            free[c] = False
            ious.append(float(row[c]))
    return ious, int(free.sum())


def agreement(refs: Sequence[Detections], cands: Sequence[Detections]) -> Agreement:
    """Match per image and add up."""
    ious: list[float] = []
    extra = 0
    for ref, cand in zip(refs, cands, strict=True):
        got, more = _match(ref, cand)
        ious += got
        extra += more
    total = sum(len(r) for r in refs)
    mean = float(np.mean(ious)) if ious else 0.0
    return Agreement(len(refs), total, len(ious), extra, mean)


def _session(model: Any) -> Any:
    """An ONNX Runtime CPU session from a path or an in-memory ModelProto."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    opts.log_severity_level = 3
    src = str(model) if isinstance(model, Path) else model.SerializeToString()
    return ort.InferenceSession(src, opts, providers=["CPUExecutionProvider"])


def onnx_detections(model: Any, images: Sequence[np.ndarray], conf: float) -> list[Detections]:
    """Run a float ONNX (stock or split head) on RGB uint8 (H, W, 3) inputs and decode."""
    sess = _session(model)
    name = sess.get_inputs()[0].name
    dets = []
    for rgb in images:
        x = np.ascontiguousarray(rgb.transpose(2, 0, 1)[None], np.float32) / np.float32(255)
        dets.append(decode_yolov8(sess.run(None, {name: x}), conf=conf))
    return dets


def sim_detections(npz: Path, count: int, conf: float) -> list[Detections]:
    """Decode the simulator outputs ``out{i}_{j}`` saved by the build script."""
    data = np.load(npz)
    dets = []
    for i in range(count):
        outs = [data[k] for k in sorted((k for k in data if k.startswith(f"out{i}_")), key=_j)]
        dets.append(decode_yolov8_split(outs, conf=conf))
    return dets


def _j(key: str) -> int:
    return int(key.rsplit("_", 1)[1])


def check_cut(
    original: Any, cut: Any, images: Sequence[np.ndarray], conf: float = 0.25
) -> Agreement:
    """The cut model, split-decoded, must give the original's detections (stock decode)."""
    refs = onnx_detections(original, images, conf)
    cands = onnx_detections(cut, images, conf)
    result = agreement(refs, cands)
    if result.matched != result.reference or result.extra or result.mean_iou < 0.999:
        msg = f"the cut model does not reproduce the original's detections: {result.summary()}"
        raise ModelError(msg)
    return result
