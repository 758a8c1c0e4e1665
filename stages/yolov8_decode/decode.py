"""YOLOv8 output decode: threshold on class score first, decode only the survivors, then NMS.

Two output layouts are understood:

* stock Ultralytics: one tensor (1, 4 + nc, N), rows cx, cy, w, h (input pixels) then nc
  sigmoided class scores (also accepted transposed, (1, N, 4 + nc));
* RKNN split head: per stride 8, 16, 32 a box distribution (1, 64, H, W) (4 sides x 16 DFL
  bins), class scores (1, nc, H, W) sigmoided, and optionally a score sum (1, 1, H, W): 6 or
  9 tensors, NCHW or NHWC, float or int8/uint8 with per-tensor (zero_point, scale).

A straightforward decode runs the distribution softmax over all 8400 anchors before looking
at a score; here the class-score maximum (or the score sum) picks the few anchors worth it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

from pipeline.detections import Detections
from pipeline.errors import ModelError
from stages.letterbox.geometry import LetterboxGeometry, unletterbox_boxes
from stages.yolov8_decode.heads import Head, QuantParams, dequantize, split_heads

__all__ = ["QuantParams", "decode_yolov8", "split_candidates", "stock_candidates"]

_Candidates = tuple[np.ndarray, np.ndarray, np.ndarray]  # anchor index, score, class id


def _quant_floor(conf: float, qp: QuantParams | None, dtype: np.dtype) -> float:
    """A threshold on raw tensor values that keeps every value whose dequantized form is
    > conf (one step lax; the exact test follows on dequantized survivors)."""
    if qp is None:
        return conf
    zero_point, scale = qp
    info = np.iinfo(dtype)
    return min(max(math.floor(conf / scale + zero_point), info.min), info.max)


def _best_class(
    scores: np.ndarray, conf: float, qp: QuantParams | None, cand: np.ndarray | None = None
) -> _Candidates:
    """Anchors (columns of ``scores`` (nc, N)) whose best class score is > ``conf``, with
    that score and class; ``cand`` restricts the search to some columns first."""
    if cand is not None:
        scores = scores[:, cand]
    # one pass of compares is cheaper than a max over all classes of every anchor
    hit = (scores >= _quant_floor(conf, qp, scores.dtype)) if qp else (scores > conf)
    idx = np.flatnonzero(np.logical_or.reduce(hit, axis=0))
    sub = scores[:, idx]
    cls = sub.argmax(axis=0).astype(np.int32)
    score = dequantize(sub[cls, np.arange(len(idx))], qp)
    if cand is not None:
        idx = cand[idx]
    if qp is None:
        return idx, score, cls
    keep = score > conf  # the exact test, on dequantized scores
    return idx[keep], score[keep], cls[keep]


def _dfl(logits: np.ndarray, qp: QuantParams | None) -> np.ndarray:
    """Distances (4, k) from box-distribution logits (4 * bins, k): softmax expectation.
    One shift by the overall maximum keeps exp in range when the logits span < 80, which
    saves numpy's slow per-side reduction; wider spans take it."""
    bins = logits.shape[0] // 4
    x = dequantize(logits, qp).reshape(4, bins, logits.shape[-1])
    if x.size == 0:
        return np.zeros((4, 0), np.float32)
    hi = x.max()
    e = np.exp(x - (hi if hi - x.min() < 80 else x.max(axis=1, keepdims=True)))
    weights = np.stack([np.arange(bins, dtype=np.float32), np.ones(bins, np.float32)])
    num, den = (weights @ e).transpose(1, 0, 2)  # (4, 2, k): sum of bin * p, sum of p
    return num / den


def _head_candidates(head: Head, conf: float) -> _Candidates:
    """Survivors of one stride: score sum as a cheap pre-filter when present."""
    cand = None
    if head.sum is not None:
        margin = 1e-4 + sum(qp[1] for qp in (head.sum_q, head.cls_q) if qp is not None)
        floor = _quant_floor(conf - margin, head.sum_q, head.sum.dtype)
        cand = np.flatnonzero(head.sum >= floor)
    return _best_class(head.cls, conf, head.cls_q, cand)


def _decode_head(head: Head, conf: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes xyxy (k, 4) in input pixels, scores and classes of one stride's survivors."""
    idx, score, cls = _head_candidates(head, conf)
    dist = _dfl(head.box[:, idx], head.box_q)  # (4, k): left, top, right, bottom
    centre = np.stack(np.divmod(idx, head.width)[::-1]).astype(np.float32) + 0.5  # (2, k): x, y
    xyxy = np.concatenate([centre - dist[:2], centre + dist[2:]]) * np.float32(head.stride)
    return xyxy.T, score, cls


def _nms(
    xyxy: np.ndarray, score: np.ndarray, cls: np.ndarray, conf: float, iou: float
) -> np.ndarray:
    """Indices kept by class-aware NMS, highest score first.

    Each class is moved by more than the whole coordinate range, so boxes of two classes
    never overlap. (``cv2.dnn.NMSBoxesBatched`` moves them by the largest coordinate + 1,
    which does not separate classes when coordinates are negative.)"""
    xywh = xyxy.astype(np.float64)
    span = float(xywh.max() - xywh.min()) + 1.0
    xywh += cls[:, None].astype(np.float64) * span
    xywh[:, 2:] -= xywh[:, :2]
    keep = cv2.dnn.NMSBoxes(xywh, score, conf, iou)  # type: ignore[arg-type]
    return np.asarray(keep, np.intp).reshape(-1)


def _finish(
    xyxy: np.ndarray,
    score: np.ndarray,
    cls: np.ndarray,
    conf: float,
    iou: float,
    classes: Sequence[int] | None,
    max_det: int,
    geometry: LetterboxGeometry | None,
) -> Detections:
    """Keep-list, NMS, ``max_det`` and the mapping back to source pixels."""
    if classes is not None:
        wanted = np.isin(cls, np.asarray(classes, np.int32))
        xyxy, score, cls = xyxy[wanted], score[wanted], cls[wanted]
    if len(score) == 0:
        return Detections.empty()
    keep = _nms(xyxy, score, cls, conf, iou)[:max_det]
    boxes = xyxy[keep] if geometry is None else unletterbox_boxes(xyxy[keep], geometry)
    return Detections(boxes, score[keep], cls[keep])


def stock_candidates(
    output: np.ndarray, conf: float, quant: QuantParams | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Boxes (xyxy), scores and classes above ``conf`` in the stock Ultralytics output
    (1, 4 + nc, N) or its transpose (1, N, 4 + nc), before NMS."""
    batched = output.ndim == 3 and output.shape[0] == 1
    pred = output[0] if batched else output
    if pred.ndim == 2 and pred.shape[0] > pred.shape[1]:
        pred = pred.T  # (N, 4 + nc) -> (4 + nc, N), a view
    if pred.ndim != 2 or pred.shape[0] < 5 or (pred.dtype.kind != "f" and quant is None):
        msg = f"not a YOLOv8 output: shape {output.shape} {output.dtype} (quant={quant})"
        raise ModelError(msg)
    quant = None if pred.dtype.kind == "f" else quant
    idx, score, cls = _best_class(pred[4:], conf, quant)
    cxcy, half = np.split(dequantize(pred[:4, idx], quant), 2)
    half *= np.float32(0.5)
    return np.concatenate([cxcy - half, cxcy + half]).T, score, cls


def split_candidates(
    outputs: Sequence[np.ndarray],
    conf: float,
    quant: Sequence[QuantParams | None] | None = None,
    strides: Sequence[int] = (8, 16, 32),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The same for the RKNN split head (6 or 9 tensors; ``quant`` one entry per tensor)."""
    parts = [_decode_head(head, conf) for head in split_heads(outputs, quant, strides)]
    xyxy, score, cls = (np.concatenate(p) for p in zip(*parts, strict=True))
    return xyxy, score, cls


def decode_yolov8(
    outputs: Sequence[np.ndarray],
    conf: float = 0.25,
    iou: float = 0.45,
    classes: Sequence[int] | None = None,
    max_det: int = 300,
    geometry: LetterboxGeometry | None = None,
    quant: Sequence[QuantParams | None] | None = None,
) -> Detections:
    """Decode YOLOv8 outputs of either layout, told apart by the number of tensors.

    Keeps anchors whose best class score is > ``conf``; ``classes`` then keeps only those
    class ids (of the best class, as Ultralytics does); class-aware NMS at ``iou``; at most
    ``max_det``, best first. Boxes are in source pixels with ``geometry``, else input pixels.
    ``quant`` holds (zero_point, scale) per output (None for a float one)."""
    if len(outputs) == 1:
        found = stock_candidates(outputs[0], conf, quant[0] if quant else None)
    else:
        found = split_candidates(outputs, conf, quant)
    return _finish(*found, conf, iou, classes, max_det, geometry)
