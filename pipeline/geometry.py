"""Plane geometry shared by ground truth and analytics, so both agree on sides and anchors.

Image coordinates: x right, y down. For a line from ``a`` to ``b``, ``side_of_line`` is positive
on the side that a clockwise turn of a->b points to (for a->b pointing right, that is below
the line). A crossing from the negative to the positive side is direction ``"in"``; from
positive to negative it is ``"out"``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["anchor_points", "side_of_line"]


def side_of_line(points: np.ndarray, a: tuple[float, float], b: tuple[float, float]) -> np.ndarray:
    """Signed side of each point (N, 2) relative to the line a->b: >0, <0, or 0 on it."""
    p = np.asarray(points, np.float64).reshape(-1, 2)
    ax, ay = a
    bx, by = b
    return (bx - ax) * (p[:, 1] - ay) - (by - ay) * (p[:, 0] - ax)


def anchor_points(xyxy: np.ndarray, anchor: str = "bottom_center") -> np.ndarray:
    """The point of each box (N, 4) that represents its position: bottom_center (feet/wheels,
    the default for crossings), center, or top_center."""
    b = np.asarray(xyxy, np.float64).reshape(-1, 4)
    cx = (b[:, 0] + b[:, 2]) / 2
    if anchor == "bottom_center":
        return np.stack([cx, b[:, 3]], axis=1)
    if anchor == "center":
        return np.stack([cx, (b[:, 1] + b[:, 3]) / 2], axis=1)
    if anchor == "top_center":
        return np.stack([cx, b[:, 1]], axis=1)
    msg = f"unknown anchor {anchor!r}; expected bottom_center, center or top_center"
    raise ValueError(msg)
