"""A synthetic street scene: frames and their ground truth, both pure functions of (seed, i),
and the ``synthetic:street?...`` source strings that name one in graph files.

Frames are meant for a live pipeline source (a few ms each at 640x360) and for training and
evaluating detectors, trackers and line counters against exact truth.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl

import numpy as np

from pipeline.geometry import side_of_line
from stages.synthetic.actors import BLOCK, CAR, PRESETS, Actor, spawn_block
from stages.synthetic.layout import Layout, NoiseBank, draw_background
from stages.synthetic.sprites import draw_car, draw_person

__all__ = ["Crossing", "FrameTruth", "Scene", "is_scene_uri", "parse_scene_uri"]

Point = tuple[float, float]


@dataclass(frozen=True)
class FrameTruth:
    """Objects at least partly inside one frame, nearest (drawn last) at the end.

    ``xyxy`` is clipped to the frame; ``full_xyxy`` is the true box (may extend past the
    border; its bottom-centre is the anchor for line crossings); ``visibility`` is the share
    of the true box that is inside the frame and not covered by nearer objects.
    """

    xyxy: np.ndarray  # (N, 4) float32
    class_id: np.ndarray  # (N,) int32: 0 person, 2 car
    track_id: np.ndarray  # (N,) int64, unique per clip, never reused
    visibility: np.ndarray  # (N,) float32 in [0, 1]
    full_xyxy: np.ndarray  # (N, 4) float32


@dataclass(frozen=True)
class Crossing:
    """The anchor of ``track_id`` crossed segment ``line`` between frames ``frame-1`` and
    ``frame``; ``direction`` is "in" (negative to positive side) or "out"."""

    frame: int
    track_id: int
    class_id: int
    line: str
    direction: str


class Scene:
    """A street with people and cars; ``preset`` is "easy", "hard" or "empty"."""

    def __init__(
        self,
        preset: str = "easy",
        seed: int = 0,
        width: int = 640,
        height: int = 360,
        fps: float = 30.0,
    ) -> None:
        if preset not in PRESETS:
            msg = f"unknown scene preset {preset!r}; expected one of {sorted(PRESETS)}"
            raise ValueError(msg)
        if seed < 0:
            msg = f"scene seed must be >= 0, got {seed}"
            raise ValueError(msg)
        if width < 64 or height < 64 or fps <= 0:
            msg = f"scene size must be at least 64x64 and fps > 0, got {width}x{height}@{fps}"
            raise ValueError(msg)
        self.preset, self.seed, self.fps = preset, int(seed), float(fps)
        self.width, self.height = int(width), int(height)
        self._p = PRESETS[preset]
        rng = np.random.default_rng([self.seed, 1])
        self.layout = Layout(self.width, self.height, rng.uniform(0.25, 0.75) * self.width)
        self.background = draw_background(self.layout, rng)
        self.noise = NoiseBank(self.height, self.width, self._p.noise, rng)
        # Longest life: the longest path at the slowest speed, in blocks.
        longest = 2.2 * (self.width + self.height) + 500
        slowest = min(self._p.walk_speed[0], self._p.car_speed[0]) * 30.0 / self.fps
        self._span = int(np.ceil(longest / slowest / BLOCK)) + 1
        self._blocks: dict[int, list[Actor]] = {}

    def _block(self, k: int) -> list[Actor]:
        """Actors spawned in block ``k`` (cached; a block is a pure function of seed and k)."""
        if k < -self._span:
            return []
        if k not in self._blocks:
            if len(self._blocks) > 4096:
                self._blocks.clear()
            args = (self.layout, self._p, 1.0 / self.fps)
            self._blocks[k] = spawn_block(self.seed, k, -self._span, *args)
        return self._blocks[k]

    def actors(self, first: int, last: int) -> list[Actor]:
        """Every actor that may be on its path during frames ``first`` .. ``last``."""
        blocks = range((first // BLOCK) - self._span, last // BLOCK + 1)
        out = []
        for k in blocks:
            out += [a for a in self._block(k) if a.t0 <= last and a.t0 + a.life >= first]
        return out

    def _state(self, i: int) -> tuple[list[Actor], np.ndarray, np.ndarray]:
        """Actors on their path at frame ``i`` in drawing order, their true boxes and the
        arc length they travelled (for the walking phase)."""
        if i < 0:
            msg = f"frame index must be >= 0, got {i}"
            raise ValueError(msg)
        live, boxes, walked = [], [], []
        for a in self.actors(i, i):
            s = a.travelled(np.array([i]))
            if np.isnan(s[0]):
                continue
            x, y = a.position(s)[0]
            k = float(self.layout.scale(y))
            w, h = a.size[0] * k, a.size[1] * k
            live.append(a)
            boxes.append((x - w / 2, y - h, x + w / 2, y))
            walked.append(s[0])
        boxes_a = np.array(boxes, np.float64).reshape(-1, 4)
        order = sorted(range(len(live)), key=lambda j: (boxes_a[j, 3], live[j].track_id))
        return [live[j] for j in order], boxes_a[order], np.array(walked)[order]

    def draw_objects(self, i: int, canvas: np.ndarray) -> np.ndarray:
        """Draw frame ``i``'s objects (no background, no noise) onto ``canvas``, in place."""
        actors, boxes, walked = self._state(i)
        for a, box, s in zip(actors, boxes, walked, strict=True):
            if box[2] < 0 or box[0] >= self.width or box[3] < 0 or box[1] >= self.height:
                continue
            if a.class_id == CAR:
                draw_car(canvas, box, a.colors, a.style)
            else:
                stride = 0.6 * (box[3] - box[1])
                draw_person(canvas, box, a.colors, a.style, 2 * np.pi * s / max(stride, 1.0))
        return canvas

    def render(self, i: int) -> np.ndarray:
        """Frame ``i`` as an (H, W, 3) uint8 BGR image; the same for a given (seed, i)."""
        img = self.draw_objects(i, self.background.copy())
        rng = np.random.default_rng([self.seed, int(i) + 2**40, 3])
        dy, dx = rng.integers(0, NoiseBank.PAD, 2)
        self.noise.apply(img, int(dy), int(dx))
        return img

    def truth(self, i: int) -> FrameTruth:
        """Ground truth of frame ``i``: boxes, classes, IDs and visibility of what is in it."""
        actors, full, _ = self._state(i)
        clip = full.copy()
        clip[:, 0::2] = clip[:, 0::2].clip(0, self.width)
        clip[:, 1::2] = clip[:, 1::2].clip(0, self.height)
        inside = (clip[:, 2] - clip[:, 0] >= 1) & (clip[:, 3] - clip[:, 1] >= 1)
        vis = self._visibility(full)
        keep = np.flatnonzero(inside)
        return FrameTruth(
            xyxy=clip[keep].astype(np.float32),
            class_id=np.array([actors[j].class_id for j in keep], np.int32),
            track_id=np.array([actors[j].track_id for j in keep], np.int64),
            visibility=vis[keep].astype(np.float32),
            full_xyxy=full[keep].astype(np.float32),
        )

    def _visibility(self, boxes: np.ndarray, grid: int = 12) -> np.ndarray:
        """Share of each box (in drawing order) inside the frame and not under a later box,
        measured on a grid of sample points."""
        if len(boxes) == 0:
            return np.zeros(0)
        t = (np.arange(grid) + 0.5) / grid
        px = boxes[:, None, 0] + t[None, :] * (boxes[:, 2] - boxes[:, 0])[:, None]
        py = boxes[:, None, 1] + t[None, :] * (boxes[:, 3] - boxes[:, 1])[:, None]
        x = np.repeat(px, grid, axis=1)  # (N, G*G)
        y = np.tile(py, (1, grid))
        seen = (x >= 0) & (x < self.width) & (y >= 0) & (y < self.height)
        for j in range(1, len(boxes)):
            b = boxes[j]
            cover = (x[:j] >= b[0]) & (x[:j] < b[2]) & (y[:j] >= b[1]) & (y[:j] < b[3])
            seen[:j] &= ~cover
        return seen.mean(axis=1)

    def crossings(self, lines: Mapping[str, tuple[Point, Point]], frames: int) -> list[Crossing]:
        """Every crossing of the named segments by an object's anchor in frames 0..frames-1,
        sorted by (frame, track_id, line)."""
        out: list[Crossing] = []
        if frames <= 1:
            return out
        for a in self.actors(0, frames - 1):
            lo = max(0, int(np.ceil(a.t0)))
            f = np.arange(lo, min(frames, int(a.t0 + a.life) + 2))
            pts = a.anchors(f)
            ok = ~np.isnan(pts[:, 0])
            f, pts = f[ok], pts[ok]
            for name, (p, q) in lines.items():
                for frame, d in _cuts(f, pts, p, q):
                    out.append(Crossing(frame, a.track_id, a.class_id, name, d))
        return sorted(out, key=lambda c: (c.frame, c.track_id, c.line))


def _cuts(frames: np.ndarray, pts: np.ndarray, a: Point, b: Point) -> list[tuple[int, str]]:
    """(frame, direction) of each change of side of the line a-b along ``pts`` (points on the
    line keep the side before them) where the step between the two cuts the segment a-b."""
    side = np.sign(side_of_line(pts, a, b))
    off = np.flatnonzero(side != 0)
    flips = np.flatnonzero(side[off][1:] != side[off][:-1])
    out = []
    for j in flips:
        p, q = off[j], off[j + 1]
        if _hits_segment(pts[p], pts[q], a, b):
            out.append((int(frames[q]), "in" if side[q] > 0 else "out"))
    return out


def _hits_segment(p: np.ndarray, q: np.ndarray, a: Point, b: Point) -> bool:
    """Whether the line a-b is cut by p->q within the segment (p, q on opposite sides)."""
    ab = np.subtract(b, a)
    pq = q - p
    denom = ab[0] * pq[1] - ab[1] * pq[0]
    if denom == 0:
        return False
    ap = p - np.asarray(a)
    u = (ap[0] * pq[1] - ap[1] * pq[0]) / denom
    return bool(-1e-9 <= u <= 1 + 1e-9)


SCENE_NAMES = ("street",)
_PARAMS: dict[str, type] = {"seed": int, "preset": str, "width": int, "height": int, "fps": float}


def is_scene_uri(source: str) -> bool:
    """Whether a capture ``source`` names a synthetic scene rather than a file or camera."""
    return isinstance(source, str) and source.startswith("synthetic:")


def parse_scene_uri(uri: str) -> dict[str, Any]:
    """Keyword arguments for ``Scene`` from ``synthetic:street?seed=3&preset=hard`` (params
    seed, preset, width, height, fps; all optional); a clear ValueError for anything else."""
    scheme, sep, rest = uri.partition(":")
    if scheme != "synthetic" or not sep:
        msg = f"scene source {uri!r} must start with 'synthetic:', e.g. 'synthetic:street?seed=3'"
        raise ValueError(msg)
    name, _, query = rest.partition("?")
    if name not in SCENE_NAMES:
        msg = f"scene source {uri!r}: unknown scene {name!r}; expected one of {list(SCENE_NAMES)}"
        raise ValueError(msg)
    out: dict[str, Any] = {}
    for key, value in parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query)):
        if key not in _PARAMS:
            msg = f"scene source {uri!r}: unknown parameter {key!r}; expected {list(_PARAMS)}"
            raise ValueError(msg)
        try:
            out[key] = _PARAMS[key](value)
        except ValueError:
            msg = f"scene source {uri!r}: {key}={value!r} is not a valid {_PARAMS[key].__name__}"
            raise ValueError(msg) from None
    if out.get("preset", "easy") not in PRESETS:
        msg = f"scene source {uri!r}: unknown preset {out['preset']!r}; expected {sorted(PRESETS)}"
        raise ValueError(msg)
    return out
