"""Matching tracks to detections: vectorized IoU and a thresholded linear assignment.

The assignment uses ``lap.lapjv`` (Jonker-Volgenant, fast on the small dense matrices a tracker
sees) when it is installed, else ``scipy.optimize.linear_sum_assignment`` on the same extended
problem. Leaving a track or detection unmatched costs half the threshold, so a pair is matched
only when that beats leaving both alone (ByteTrack's ``cost_limit`` semantics).
"""

from __future__ import annotations

import numpy as np

try:  # optional accelerator; scipy is a hard dependency
    import lap as _lap
except ImportError:  # pragma: no cover - depends on the environment
    _lap = None
from scipy.optimize import linear_sum_assignment

__all__ = ["HAVE_LAP", "iou_matrix", "linear_assignment"]

HAVE_LAP = _lap is not None
_EMPTY = np.empty((0, 2), np.intp)


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of every box in ``a`` (N, 4) with every box in ``b`` (M, 4)."""
    a = np.asarray(a, np.float64).reshape(-1, 4)
    b = np.asarray(b, np.float64).reshape(-1, 4)
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    wh = np.clip(rb - lt, 0.0, None)
    inter = wh[..., 0] * wh[..., 1]
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def _scipy_assignment(cost: np.ndarray, thresh: float) -> np.ndarray:
    """The same problem as ``lapjv(cost_limit=thresh)``: each row or column may stay unmatched
    at half the limit, so both solvers return the same matching."""
    n_rows, n_cols = cost.shape
    ext = np.full((n_rows + n_cols, n_rows + n_cols), thresh / 2.0)
    ext[n_rows:, n_cols:] = 0.0
    ext[:n_rows, :n_cols] = np.minimum(cost, thresh + 1.0)  # keep inf out of the solver
    rows, cols = linear_sum_assignment(ext)
    keep = (rows < n_rows) & (cols < n_cols)
    rows, cols = rows[keep], cols[keep]
    keep = cost[rows, cols] <= thresh
    return np.stack([rows[keep], cols[keep]], axis=1).astype(np.intp)


def linear_assignment(cost: np.ndarray, thresh: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Minimum-cost matching keeping pairs with cost <= ``thresh``.

    Returns ``(matches (K, 2) of [row, col], unmatched rows, unmatched cols)``.
    """
    n_rows, n_cols = cost.shape
    if n_rows == 0 or n_cols == 0:
        return _EMPTY, np.arange(n_rows), np.arange(n_cols)
    if _lap is not None:
        _, x, y = _lap.lapjv(cost, extend_cost=True, cost_limit=thresh)
        rows = np.flatnonzero(x >= 0)
        return np.stack([rows, x[rows]], axis=1), np.flatnonzero(x < 0), np.flatnonzero(y < 0)
    matches = _scipy_assignment(cost, thresh)
    free_rows = np.ones(n_rows, bool)
    free_rows[matches[:, 0]] = False
    free_cols = np.ones(n_cols, bool)
    free_cols[matches[:, 1]] = False
    return matches, np.flatnonzero(free_rows), np.flatnonzero(free_cols)
