"""Drawing one person or one car so that it fills its box: top, bottom and both sides are
touched by the drawing, so the ground-truth box is the tight box of what is seen."""

from __future__ import annotations

import cv2
import numpy as np

__all__ = ["draw_car", "draw_person"]

Color = tuple[int, int, int]
SHOE = (35, 30, 30)
TYRE = (28, 28, 28)
RIM = (150, 150, 155)


def _i(v: float) -> int:
    return round(v)


def _rect(img: np.ndarray, x0: float, y0: float, x1: float, y1: float, c: Color) -> None:
    """Fill the pixels of [x0, x1) x [y0, y1) (at least one pixel each way)."""
    a, b = _i(x0), max(_i(x1) - 1, _i(x0))
    cv2.rectangle(img, (a, _i(y0)), (b, max(_i(y1) - 1, _i(y0))), c, -1)


def _poly(img: np.ndarray, pts: list[tuple[float, float]], c: Color) -> None:
    cv2.fillPoly(img, [np.round(np.array(pts)).astype(np.int32)], c)


def _trapezoid(img: np.ndarray, top: tuple, bottom: tuple, y0: float, y1: float, c: Color) -> None:
    """Fill the quad with x span ``top`` at ``y0`` and ``bottom`` at ``y1``."""
    _poly(img, [(top[0], y0), (top[1], y0), (bottom[1], y1), (bottom[0], y1)], c)


def _legs(img: np.ndarray, box: tuple, c: Color, swing: float) -> None:
    """Two legs from the hips to the feet (apart by ``swing`` in [-1, 1]) with shoes."""
    x0, y0, x1, y1 = box
    w, h = x1 - x0, y1 - y0
    cx, leg = (x0 + x1) / 2, max(0.2 * w, 1.0)
    for side in (-1, 1):
        fx = cx + side * swing * (w / 2 - leg / 2 - 0.5)
        hx = cx + side * 0.12 * w
        foot = y1 - 0.04 * h
        _trapezoid(
            img, (hx - leg / 2, hx + leg / 2), (fx - leg / 2, fx + leg / 2), y0 + 0.52 * h, foot, c
        )
        _rect(img, fx - leg / 2 - 0.5, y1 - 0.05 * h, fx + leg / 2 + 0.5, y1, SHOE)


def draw_person(
    img: np.ndarray, box: np.ndarray, colors: tuple[Color, ...], style: int, phase: float
) -> None:
    """A walking person in ``box`` (x0, y0, x1, y1): head, body, swinging arms and legs.

    ``colors`` = (skin, hair, top, bottom); ``style`` 0 trousers, 1 skirt, 2 long coat;
    ``phase`` is the stride phase in radians.
    """
    skin, hair, top, bottom = colors
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    cx, shoulder = (x0 + x1) / 2, y0 + 0.17 * h
    swing = float(np.sin(phase))
    _legs(img, (x0, y0, x1, y1), top if style == 2 else bottom, swing)
    _rect(img, cx - 0.33 * w, shoulder, cx + 0.33 * w, y0 + (0.75 if style == 2 else 0.56) * h, top)
    if style == 1:  # skirt
        span = (cx - 0.3 * w, cx + 0.3 * w), (cx - 0.42 * w, cx + 0.42 * w)
        _trapezoid(img, *span, y0 + 0.48 * h, y0 + 0.72 * h, bottom)
    arm = max(0.17 * w, 1.0)
    end = y0 + (0.5 - 0.04 * abs(swing)) * h
    for ax0 in (x0, x1 - arm):  # arms hang at the sides, filling the box's width
        _rect(img, ax0, shoulder + 0.01 * h, ax0 + arm, end, top)
        _rect(img, ax0, end, ax0 + arm, end + 0.06 * h, skin)
    r, rad = 0.08 * h, max(_i(0.08 * h), 1)
    cv2.circle(img, (_i(cx), _i(y0 + r)), rad, skin, -1)
    cv2.ellipse(img, (_i(cx), _i(y0 + r)), (rad, max(_i(r * 0.6), 1)), 0, 180, 360, hair, -1)
    _rect(img, cx - 0.06 * w, y0 + 0.14 * h, cx + 0.06 * w, shoulder + 1, skin)  # neck


def draw_car(img: np.ndarray, box: np.ndarray, colors: tuple[Color, ...], style: int) -> None:
    """A side view of a car in ``box``: body, cabin with windows, wheels, lights.

    ``colors`` = (paint, glass); ``style % 3`` sedan / hatchback / van, ``style >= 3`` faces
    right (moving right), else left.
    """
    paint, glass = colors
    x0, y0, x1, y1 = (float(v) for v in box)
    w, h = x1 - x0, y1 - y0
    body, right = style % 3, style >= 3
    r = 0.2 * h
    belt = y0 + (0.45, 0.42, 0.38)[body] * h
    _rect(img, x0, belt, x1, y1 - 0.7 * r, paint)
    roof = [(0.30, 0.72), (0.24, 0.86), (0.08, 0.95)][body]
    back, front = (roof[0], roof[1]) if right else (1 - roof[1], 1 - roof[0])
    foot_b, foot_f = (0.08, 0.78) if right else (0.22, 0.92)
    _poly(
        img,
        [
            (x0 + foot_b * w, belt + 1),
            (x0 + back * w, y0),
            (x0 + front * w, y0),
            (x0 + foot_f * w, belt + 1),
        ],
        paint,
    )
    inset = max(0.12 * (belt - y0), 1.0)
    gx0 = x0 + (back + (foot_b - back) * 0.1) * w + inset
    gx1 = x0 + (front + (foot_f - front) * 0.1) * w - inset
    if gx1 - gx0 > 2:
        _rect(img, gx0, y0 + inset, gx1, belt - inset * 0.5, glass)
        _rect(img, (gx0 + gx1) / 2 - 0.5, y0 + inset, (gx0 + gx1) / 2 + 1, belt, paint)
    lamp = max(0.05 * w, 1.0)
    head, tail = (x1 - lamp, x0) if right else (x0, x1 - lamp)
    _rect(img, head, belt + 0.1 * h, head + lamp, belt + 0.22 * h, (170, 235, 245))
    _rect(img, tail, belt + 0.1 * h, tail + lamp, belt + 0.22 * h, (30, 30, 200))
    rad = max(_i(r), 1)
    for fx in (0.2, 0.8):
        c = (_i(x0 + fx * w), _i(y1 - 1) - rad)  # lowest tyre row is the box's last row
        cv2.circle(img, c, rad, TYRE, -1)
        cv2.circle(img, c, max(_i(r * 0.45), 1), RIM, -1)
