"""The street a scene happens on: where sidewalks and lanes are, how big things look at a given
depth, the static background (drawn once per scene), and cheap per-frame sensor noise.

All positions are fractions of the frame height/width, so any frame size gets the same street.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

__all__ = ["Layout", "NoiseBank", "draw_background"]

Color = tuple[int, int, int]


@dataclass(frozen=True)
class Layout:
    """Bands of the street, top to bottom: buildings, far sidewalk, road, near sidewalk."""

    width: int
    height: int
    crosswalk_x: float  # centre of the zebra crossing, px

    @property
    def far_walk(self) -> tuple[float, float]:
        """Range of anchor (feet) y for people on the far sidewalk."""
        return 0.335 * self.height, 0.385 * self.height

    @property
    def near_walk(self) -> tuple[float, float]:
        """Range of anchor (feet) y for people on the near sidewalk."""
        return 0.84 * self.height, 0.965 * self.height

    @property
    def far_lane(self) -> float:
        """Anchor (wheel) y of cars driving right to left."""
        return 0.56 * self.height

    @property
    def near_lane(self) -> float:
        """Anchor (wheel) y of cars driving left to right."""
        return 0.735 * self.height

    @property
    def road(self) -> tuple[float, float]:
        """Top and bottom curb y."""
        return 0.40 * self.height, 0.78 * self.height

    def scale(self, y: float | np.ndarray) -> float | np.ndarray:
        """Apparent size of an object whose feet are at ``y``: farther (higher) is smaller."""
        return np.clip(0.45 + 0.55 * np.asarray(y, np.float64) / self.height, 0.45, 1.0)


def _texture(rng: np.random.Generator, h: int, w: int, sigma: float, blur: int) -> np.ndarray:
    """Static low-frequency grey texture (float32, zero mean) so surfaces are not flat."""
    t = rng.normal(0.0, sigma, (h, w)).astype(np.float32)
    return cv2.GaussianBlur(t, (0, 0), blur) * (blur**0.5)


def _jitter(rng: np.random.Generator, base: Color, amount: int) -> Color:
    c = np.clip(np.asarray(base) + rng.integers(-amount, amount + 1, 3), 0, 255)
    b, g, r = (int(v) for v in c)
    return b, g, r


def _buildings(img: np.ndarray, rng: np.random.Generator, bottom: int) -> None:
    """Facades with windows, doors and shop signs along the top band."""
    w = img.shape[1]
    x = -int(rng.integers(0, 40))
    while x < w:
        bw = int(rng.integers(60, 170))
        top = int(rng.integers(0, max(bottom // 4, 1)))
        wall = _jitter(rng, (120, 130, 150), 60)
        cv2.rectangle(img, (x, top), (x + bw, bottom), wall, -1)
        win = _jitter(rng, (90, 70, 50), 30)
        step = int(rng.integers(16, 26))
        for wy in range(top + 8, bottom - 30, step):
            for wx in range(x + 6, x + bw - 12, step):
                lit = rng.random() < 0.25
                cv2.rectangle(img, (wx, wy), (wx + 8, wy + 10), (150, 210, 230) if lit else win, -1)
        door = x + int(rng.integers(10, max(bw - 30, 11)))
        cv2.rectangle(
            img, (door, bottom - 26), (door + 14, bottom), _jitter(rng, (40, 50, 60), 30), -1
        )
        if rng.random() < 0.5:
            cv2.rectangle(
                img,
                (x + 4, bottom - 40),
                (x + bw - 4, bottom - 31),
                _jitter(rng, (60, 60, 200), 90),
                -1,
            )
        x += bw


def _clutter(img: np.ndarray, rng: np.random.Generator, lay: Layout) -> None:
    """Static street furniture: trees, lamp posts, bins, manhole covers."""
    h, w = img.shape[:2]
    for _ in range(int(rng.integers(2, 6))):  # trees in front of the buildings
        x, y = int(rng.integers(0, w)), int(lay.far_walk[0]) - 2
        cv2.rectangle(img, (x - 2, y - 30), (x + 2, y), (40, 60, 80), -1)
        cv2.circle(img, (x, y - 38), int(rng.integers(10, 18)), _jitter(rng, (50, 120, 60), 30), -1)
    for _ in range(int(rng.integers(2, 5))):  # lamp posts on the near sidewalk edge
        x, y = int(rng.integers(0, w)), int(lay.road[1]) + 6
        cv2.line(img, (x, y), (x, y - int(0.3 * h)), (60, 60, 60), 3)
        cv2.rectangle(
            img, (x - 8, y - int(0.3 * h) - 3), (x + 2, y - int(0.3 * h) + 2), (70, 70, 70), -1
        )
    for _ in range(int(rng.integers(1, 4))):  # bins
        x, y = int(rng.integers(0, w)), int(lay.far_walk[0]) + 2
        cv2.rectangle(img, (x, y - 14), (x + 9, y), _jitter(rng, (50, 90, 50), 40), -1)
    for _ in range(int(rng.integers(0, 3))):  # manhole covers
        x = int(rng.integers(0, w))
        y = int(rng.uniform(*lay.road))
        cv2.ellipse(img, (x, y), (12, 4), 0, 0, 360, (55, 55, 55), -1)


def _road(img: np.ndarray, rng: np.random.Generator, lay: Layout) -> None:
    """Asphalt, curbs, lane marks and a zebra crossing."""
    w = img.shape[1]
    top, bottom = (int(v) for v in lay.road)
    cv2.rectangle(img, (0, top), (w, bottom), _jitter(rng, (75, 75, 78), 15), -1)
    cv2.line(img, (0, top), (w, top), (170, 170, 170), 2)
    cv2.line(img, (0, bottom), (w, bottom), (170, 170, 170), 3)
    mid = int(0.59 * lay.height)
    dash, gap = int(rng.integers(20, 40)), int(rng.integers(15, 30))
    for x in range(-int(rng.integers(0, dash + gap)), w, dash + gap):
        cv2.line(img, (x, mid), (x + dash, mid), (200, 200, 200), 2)
    xc, half = int(lay.crosswalk_x), 28
    for y in range(top + 5, bottom - 4, 9):
        cv2.rectangle(img, (xc - half, y), (xc + half, y + 4), (205, 205, 205), -1)


def draw_background(lay: Layout, rng: np.random.Generator) -> np.ndarray:
    """The scene's static background (H, W, 3) uint8 BGR, a pure function of ``rng``'s state."""
    h, w = lay.height, lay.width
    img = np.empty((h, w, 3), np.uint8)
    img[:] = _jitter(rng, (170, 160, 150), 30)
    far0, near0 = int(0.30 * h), int(lay.road[1])
    _buildings(img, rng, far0)
    walk = _jitter(rng, (150, 155, 160), 25)
    cv2.rectangle(img, (0, far0), (w, int(lay.road[0])), walk, -1)
    cv2.rectangle(img, (0, near0), (w, h), walk, -1)
    tile = int(rng.integers(24, 40))
    for x in range(0, w, tile):
        cv2.line(img, (x, far0), (x, int(lay.road[0])), (130, 130, 135), 1)
        cv2.line(img, (x, near0), (x - 30, h), (130, 130, 135), 1)
    _road(img, rng, lay)
    _clutter(img, rng, lay)
    tex = _texture(rng, h, w, 6.0, 3)
    return np.clip(img + tex[..., None], 0, 255).astype(np.uint8)


class NoiseBank:
    """Sensor noise for every frame from one precomputed field, shifted per frame: a fresh
    Gaussian field per frame would cost more than the whole rest of a render."""

    PAD = 48

    def __init__(self, height: int, width: int, sigma: float, rng: np.random.Generator) -> None:
        shape = (height + self.PAD, width + self.PAD, 3)
        noise = np.clip(rng.normal(0.0, sigma, shape), -3 * sigma, 3 * sigma).round()
        self.pos = np.maximum(noise, 0).astype(np.uint8)
        self.neg = np.maximum(-noise, 0).astype(np.uint8)
        self.amplitude = int(np.ceil(3 * sigma))
        self.height, self.width = height, width

    def apply(self, img: np.ndarray, dy: int, dx: int) -> None:
        """Add the noise field shifted by (dy, dx) to ``img`` in place (saturating)."""
        if self.amplitude == 0:
            return
        sl = np.s_[dy : dy + self.height, dx : dx + self.width]
        cv2.add(img, self.pos[sl], dst=img)
        cv2.subtract(img, self.neg[sl], dst=img)
