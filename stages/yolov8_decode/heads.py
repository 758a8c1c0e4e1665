"""Sort the RKNN split-head outputs of YOLOv8 into per-stride heads, without copying.

An export cut at the head convolutions yields, per stride, a box distribution (4 x bins
channels), class scores (nc channels) and optionally a clamped score sum (1 channel). Tensors
are grouped by their grid size, so the order of the outputs only matters to break ties when
the channel counts cannot tell box from class scores (nc = 64, or nc = 1 with a score sum).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import ModelError

__all__ = ["Head", "QuantParams", "dequantize", "split_heads"]

QuantParams = tuple[int, float]  # (zero_point, scale): real = (q - zero_point) * scale
_BOX_CHANNELS = 64  # 4 sides x 16 DFL bins


def dequantize(values: np.ndarray, qp: QuantParams | None) -> np.ndarray:
    """Float32 values of a (possibly quantized) array; a float array passes through."""
    if qp is None:
        return values.astype(np.float32, copy=False)
    zero_point, scale = qp
    return (values.astype(np.float32) - np.float32(zero_point)) * np.float32(scale)


@dataclass
class Head:
    """One stride's tensors as channel-major views: ``box`` (4 * bins, H * W), ``cls``
    (nc, H * W), ``sum`` (H * W,) or None, each with its quant params (None: float)."""

    box: np.ndarray
    cls: np.ndarray
    sum: np.ndarray | None
    box_q: QuantParams | None
    cls_q: QuantParams | None
    sum_q: QuantParams | None
    width: int
    stride: int


def _layout(outputs: Sequence[np.ndarray], per_head: int) -> tuple[bool, list[list[int]]]:
    """(is NHWC, output indices grouped by grid size, largest grid first).

    A reading is accepted only when it gives three grids of ``per_head`` tensors each and
    every grid halves both sides of the one before: NHWC tensors of a 64-class head read
    as NCHW also group into three (H, C) "grids", but C does not halve."""
    for nhwc in (False, True):
        groups: dict[tuple[int, ...], list[int]] = {}
        for i, t in enumerate(outputs):
            groups.setdefault(t.shape[1:3] if nhwc else t.shape[2:4], []).append(i)
        if len(groups) == 3 and all(len(g) == per_head for g in groups.values()):
            order = sorted(groups, key=lambda hw: -hw[0] * hw[1])
            halves = all(
                a == 2 * b
                for hw, nxt in itertools.pairwise(order)
                for a, b in zip(hw, nxt, strict=True)
            )
            if halves:
                return nhwc, [groups[hw] for hw in order]
    shapes = [tuple(t.shape) for t in outputs]
    msg = f"cannot read YOLOv8 split-head outputs: shapes {shapes} do not form 3 strides"
    raise ModelError(msg)


def _roles(channels: list[int]) -> list[int]:
    """Positions of (box, cls[, sum]) in a group, by channel count, ties kept in order."""
    n = len(channels)

    def rank(i: int) -> int:
        if channels[i] == _BOX_CHANNELS:
            return 0
        return 2 if n == 3 and channels[i] == 1 else 1

    return sorted(range(n), key=rank)


def _flat(t: np.ndarray, nhwc: bool) -> np.ndarray:
    """(1, C, H, W) or (1, H, W, C) -> a (C, H * W) view."""
    if nhwc:
        return t.reshape(-1, t.shape[3]).T
    return t.reshape(t.shape[1], -1)


def _quant_of(
    t: np.ndarray, i: int, quant: Sequence[QuantParams | None] | None
) -> QuantParams | None:
    """The quant params of output ``i``: None for a float tensor; required for an integer one."""
    if t.dtype.kind == "f":
        return None
    qp = quant[i] if quant is not None and i < len(quant) else None
    if qp is None:
        msg = f"output {i} is {t.dtype} but no (zero_point, scale) was given to dequantize it"
        raise ModelError(msg)
    return int(qp[0]), float(qp[1])


def split_heads(
    outputs: Sequence[np.ndarray],
    quant: Sequence[QuantParams | None] | None,
    strides: Sequence[int] = (8, 16, 32),
) -> list[Head]:
    """Group 6 or 9 split-head outputs into three ``Head`` s, finest stride first."""
    if len(outputs) not in (6, 9) or any(t.ndim != 4 or t.shape[0] != 1 for t in outputs):
        shapes = [tuple(t.shape) for t in outputs]
        msg = f"expected 6 or 9 YOLOv8 split-head outputs of shape (1, C, H, W), got {shapes}"
        raise ModelError(msg)
    nhwc, groups = _layout(outputs, len(outputs) // 3)
    heads = []
    for group, stride in zip(groups, strides, strict=True):
        chan = [outputs[i].shape[3 if nhwc else 1] for i in group]
        idx = [group[r] for r in _roles(chan)]
        flat = [_flat(outputs[i], nhwc) for i in idx]
        q = [_quant_of(outputs[i], i, quant) for i in idx]
        width = outputs[idx[0]].shape[2 if nhwc else 3]
        heads.append(
            Head(
                box=flat[0],
                cls=flat[1],
                sum=flat[2][0] if len(flat) == 3 else None,
                box_q=q[0],
                cls_q=q[1],
                sum_q=q[2] if len(q) == 3 else None,
                width=width,
                stride=stride,
            )
        )
    _check_heads(heads, outputs)
    return heads


def _check_heads(heads: list[Head], outputs: Sequence[np.ndarray]) -> None:
    """The three heads must share nc and cover the same input size."""
    sizes = {h.width * h.stride for h in heads}
    ncs = {h.cls.shape[0] for h in heads}
    if len(sizes) != 1 or len(ncs) != 1 or any(h.box.shape[0] % 4 for h in heads):
        shapes = [tuple(t.shape) for t in outputs]
        msg = f"YOLOv8 split-head outputs disagree (input width {sizes}, classes {ncs}): {shapes}"
        raise ModelError(msg)
