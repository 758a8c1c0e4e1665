"""Synthetic YOLOv8 outputs with planted objects, for tests, benchmarks and simulated NPUs.

Each planted box gets a high class score at a few anchors of one stride, with box-distribution
logits that encode the distances from each anchor centre to the box sides; every other anchor
gets low background scores and random logits, as a trained model's outputs mostly look.
``split_to_stock`` turns the split head into the stock single-tensor layout the way the
exported model's in-graph DFL does, so both layouts describe the same boxes.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["plant_split_head", "quantize_outputs", "random_scene", "split_to_stock"]

_BINS = 16
_FLOOR = -12.0  # logit of an empty DFL bin: exp(-12) leaves < 1e-3 stride units of error
_NEIGHBOURS = ((0, 0), (0, 1), (1, 0), (0, -1), (-1, 0), (1, 1), (-1, -1), (1, -1), (-1, 1))


def random_scene(
    n: int, input_hw: tuple[int, int] = (640, 640), nc: int = 80, seed: int = 0
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` random boxes xyxy (n, 4) in input pixels, class ids and scores in [0.3, 0.95]."""
    rng = np.random.default_rng(seed)
    h, w = input_hw
    size = rng.uniform(12, 400, (n, 2)) * rng.uniform(0.4, 1.0, (n, 1))
    centre = rng.uniform(0, 1, (n, 2)) * ([w, h] - size) + size / 2
    xyxy = np.concatenate([centre - size / 2, centre + size / 2], axis=1)
    return xyxy.astype(np.float32), rng.integers(0, nc, n), rng.uniform(0.3, 0.95, n)


def _dfl_logits(dist: np.ndarray) -> np.ndarray:
    """Logits (4, bins) whose softmax expectation per side equals ``dist`` (4,) bins."""
    d = np.clip(dist, 0, _BINS - 1 - 1e-3)
    lo = np.floor(d).astype(int)
    frac = d - lo
    logits = np.full((4, _BINS), _FLOOR, np.float32)
    with np.errstate(divide="ignore"):
        logits[np.arange(4), lo] = np.maximum(np.log(1 - frac), _FLOOR)
        logits[np.arange(4), lo + 1] = np.maximum(np.log(frac), _FLOOR)
    return logits


def _stride_for(box: np.ndarray, strides: Sequence[int]) -> int:
    """The finest stride whose 16 bins reach the box sides from its centre."""
    half = max(box[2] - box[0], box[3] - box[1]) / 2
    return next((s for s in strides if half / s < _BINS - 3), strides[-1])


def _plant(
    box: np.ndarray,
    cls: int,
    score: float,
    heads: list[tuple[np.ndarray, np.ndarray]],
    strides: Sequence[int],
    per_object: int,
    rng: np.random.Generator,
) -> None:
    """Write one object into the (box, cls) arrays of its stride, at up to ``per_object``
    anchors around its centre whose distances fit the bins."""
    stride = _stride_for(box, strides)
    box_t, cls_t = heads[list(strides).index(stride)]
    gh, gw = cls_t.shape[1:]
    cx, cy = int((box[0] + box[2]) / 2 // stride), int((box[1] + box[3]) / 2 // stride)
    planted = 0
    for dy, dx in _NEIGHBOURS:
        gx, gy = cx + dx, cy + dy
        if planted == per_object or not (0 <= gx < gw and 0 <= gy < gh):
            continue
        jitter = rng.normal(0, 1.5, 4) * (planted > 0)
        ax, ay = (gx + 0.5) * stride, (gy + 0.5) * stride
        dist = (np.array([ax - box[0], ay - box[1], box[2] - ax, box[3] - ay]) + jitter) / stride
        if dist.min() < 0 or dist.max() >= _BINS - 1:
            continue
        box_t[:, gy, gx] = _dfl_logits(dist).reshape(-1)
        cls_t[cls, gy, gx] = score * (1.0 if planted == 0 else rng.uniform(0.5, 0.95))
        planted += 1


def plant_split_head(
    xyxy: np.ndarray,
    class_id: np.ndarray,
    score: np.ndarray,
    input_hw: tuple[int, int] = (640, 640),
    nc: int = 80,
    with_sum: bool = False,
    per_object: int = 3,
    seed: int = 0,
    strides: Sequence[int] = (8, 16, 32),
) -> list[np.ndarray]:
    """Float32 split-head outputs [box, cls(, sum)] per stride (NCHW) with the given boxes
    (input pixels) planted; background class scores are sigmoid(N(-9, 1.2))."""
    rng = np.random.default_rng(seed)
    heads = []
    for s in strides:
        gh, gw = input_hw[0] // s, input_hw[1] // s
        box_t = rng.normal(0, 2, (4 * _BINS, gh, gw)).astype(np.float32)
        cls_t = (1 / (1 + np.exp(-rng.normal(-9, 1.2, (nc, gh, gw))))).astype(np.float32)
        heads.append((box_t, cls_t))
    for b, c, p in zip(np.asarray(xyxy, np.float32), class_id, score, strict=True):
        _plant(b, int(c), float(p), heads, strides, per_object, rng)
    outputs = []
    for box_t, cls_t in heads:
        outputs += [box_t[None], cls_t[None]]
        if with_sum:
            outputs.append(np.clip(cls_t.sum(0, keepdims=True), 0, 1)[None])
    return outputs


def quantize_outputs(
    outputs: Sequence[np.ndarray], dtype: type = np.int8
) -> tuple[list[np.ndarray], list[tuple[int, float]]]:
    """Per-tensor asymmetric quantization as RKNN does it: (tensors, [(zero_point, scale)])."""
    info = np.iinfo(dtype)
    tensors, params = [], []
    for x in outputs:
        lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
        scale = (hi - lo) / (info.max - info.min) or 1.0
        zero_point = round(info.min - lo / scale)
        q: np.ndarray = np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)
        tensors.append(q)
        params.append((zero_point, scale))
    return tensors, params


def split_to_stock(
    outputs: Sequence[np.ndarray], strides: Sequence[int] = (8, 16, 32)
) -> np.ndarray:
    """The stock (1, 4 + nc, N) output for float NCHW split-head ``outputs``: DFL over every
    anchor, boxes as cx, cy, w, h in input pixels, anchors stride by stride, row-major."""
    per = len(outputs) // 3
    columns = []
    for i, s in enumerate(strides):
        box_t, cls_t = outputs[per * i][0], outputs[per * i + 1][0]
        _, gh, gw = cls_t.shape
        x = box_t.reshape(4, _BINS, gh * gw).astype(np.float64)
        e = np.exp(x - x.max(axis=1, keepdims=True))
        dist = (e * np.arange(_BINS)[:, None]).sum(1) / e.sum(1)
        ax, ay = np.meshgrid(np.arange(gw) + 0.5, np.arange(gh) + 0.5)
        x1, y1 = ax.ravel() - dist[0], ay.ravel() - dist[1]
        x2, y2 = ax.ravel() + dist[2], ay.ravel() + dist[3]
        cxcywh = np.stack([(x1 + x2) / 2, (y1 + y2) / 2, x2 - x1, y2 - y1]) * s
        columns.append(np.concatenate([cxcywh, cls_t.reshape(len(cls_t), -1)]))
    return np.concatenate(columns, axis=1)[None].astype(np.float32)
