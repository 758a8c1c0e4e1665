"""People and cars, and the paths they move along.

Time is cut into blocks of ``BLOCK`` frames; each block spawns its own actors from a generator
seeded by (seed, block). An actor is a pure function of its block, so any frame can be
rendered without replaying the ones before it, and IDs (block, index) are never reused.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from stages.synthetic.layout import Layout

__all__ = ["BLOCK", "PRESETS", "Actor", "Preset", "spawn_block"]

BLOCK = 60  # frames per spawning block
PER_BLOCK = 1024  # most actors one block may spawn (ID stride)
PERSON, CAR = 0, 2  # COCO class ids

Span = tuple[float, float]


@dataclass(frozen=True)
class Preset:
    """How busy and how hard a scene is. Speeds are px per frame at 30 fps."""

    groups_per_s: float  # walking groups spawned per second
    cars_per_s: float
    group_size: tuple[int, int]  # people per group, inclusive
    walk_speed: Span
    car_speed: Span
    wobble: float  # speed variation along the path, fraction of the mean speed
    cross_share: float  # share of groups that cross the road
    diagonal: float  # most sideways drift while crossing, px
    person_height: Span  # at scale 1 (nearest); perspective shrinks farther ones
    car_width: Span
    noise: float  # sensor noise sigma, grey levels


PRESETS: dict[str, Preset] = {
    "easy": Preset(
        0.22, 0.28, (1, 1), (0.7, 1.8), (2.5, 5.0), 0.0, 0.35, 0.0, (40, 92), (80, 130), 2.5
    ),
    "hard": Preset(
        0.6, 0.8, (1, 4), (0.6, 3.2), (2.5, 10.0), 0.3, 0.45, 90.0, (34, 92), (70, 135), 4.0
    ),
    "empty": Preset(
        0.0, 0.0, (1, 1), (1.0, 1.0), (1.0, 1.0), 0.0, 0.0, 0.0, (40, 40), (80, 80), 2.5
    ),
}


@dataclass(frozen=True, eq=False)
class Actor:
    """One object over its whole life: anchor (bottom-centre) path at constant-ish speed."""

    track_id: int
    class_id: int
    t0: float  # frame at which it starts its path
    path: np.ndarray  # (K, 2) anchor waypoints, first and last off-screen
    speed: float  # px per frame
    wobble: tuple[float, float, float]  # amplitude px, angular freq per frame, phase
    size: tuple[float, float]  # (w, h) at scale 1
    colors: tuple[tuple[int, int, int], ...]
    style: int

    @cached_property
    def cum(self) -> np.ndarray:
        """Arc length at each waypoint."""
        return np.concatenate([[0.0], np.cumsum(np.hypot(*np.diff(self.path, axis=0).T))])

    @cached_property
    def length(self) -> float:
        return float(self.cum[-1])

    @cached_property
    def life(self) -> int:
        """Frames from ``t0`` after which it is surely gone."""
        return int(np.ceil((self.length + 2 * self.wobble[0]) / self.speed)) + 1

    def travelled(self, frames: np.ndarray) -> np.ndarray:
        """Arc length along the path at each frame (NaN outside the path)."""
        dt = np.asarray(frames, np.float64) - self.t0
        amp, omega, phase = self.wobble
        s = self.speed * dt + amp * (np.sin(omega * dt + phase) - np.sin(phase))
        return np.where((dt >= 0) & (s >= 0) & (s < self.length), s, np.nan)

    def position(self, s: np.ndarray) -> np.ndarray:
        """Anchor (x, y) at each arc length, (F, 2); NaN rows for NaN lengths."""
        x = np.interp(s, self.cum, self.path[:, 0])
        y = np.interp(s, self.cum, self.path[:, 1])
        return np.where(np.isnan(s)[:, None], np.nan, np.stack([x, y], axis=1))

    def anchors(self, frames: np.ndarray) -> np.ndarray:
        """Anchor (x, y) at each frame, (F, 2); NaN rows where it is not on its path."""
        return self.position(self.travelled(frames))


def _color(rng: np.random.Generator, palette: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    """A palette colour, or sometimes any colour; never pure black (tests see black as empty)."""
    if rng.random() < 0.3:
        r, g, b = (int(v) for v in rng.integers(20, 256, 3))
        return r, g, b
    base = np.asarray(palette[int(rng.integers(len(palette)))])
    r, g, b = (int(v) for v in np.clip(base + rng.integers(-15, 16, 3), 12, 255))
    return r, g, b


CLOTHES = [
    (40, 40, 40),
    (200, 200, 200),
    (120, 60, 20),
    (30, 30, 150),
    (50, 120, 50),
    (140, 100, 60),
]
SKIN = [(180, 200, 240), (140, 170, 210), (90, 120, 170), (60, 80, 120)]
HAIR = [(20, 20, 20), (30, 50, 90), (60, 100, 150), (180, 180, 190)]
PAINT = [(230, 230, 230), (25, 25, 25), (170, 170, 170), (40, 40, 180), (150, 80, 30), (40, 80, 40)]


def _walk_path(rng: np.random.Generator, lay: Layout, p: Preset, margin: float) -> np.ndarray:
    """Waypoints of a walker: along a sidewalk, or across the road and away."""
    w, h = lay.width, lay.height
    left, right = -margin, w + margin
    bands = [lay.far_walk, lay.near_walk]
    if rng.random() >= p.cross_share:
        y = rng.uniform(*bands[int(rng.integers(2))])
        y2 = y + rng.uniform(-0.01, 0.01) * h
        ends = (left, right) if rng.random() < 0.5 else (right, left)
        return np.array([[ends[0], y], [w / 2, (y + y2) / 2], [ends[1], y2]])
    xc = lay.crosswalk_x + rng.uniform(-20, 20) if p.diagonal == 0 else rng.uniform(0.1, 0.9) * w
    drift = rng.uniform(-p.diagonal, p.diagonal)
    y_far, y_near = rng.uniform(*lay.far_walk), rng.uniform(*lay.near_walk)
    go = 1.0 if rng.random() < 0.5 else -1.0  # sideways direction along the sidewalks
    start, end = (left, right) if go > 0 else (right, left)
    if rng.random() < 0.5:  # up from the near side: from the bottom border or a side
        first = [[xc, h + margin]] if rng.random() < 0.5 else [[start, y_near]]
        pts = [*first, [xc, y_near], [xc + drift, y_far], [end, y_far]]
    else:  # down from the far side, leaving at the bottom or a side
        last = [[xc + drift, h + margin]] if rng.random() < 0.5 else [[end, y_near]]
        pts = [[start, y_far], [xc, y_far], [xc + drift, y_near], *last]
    return np.array(pts, np.float64)


def _person(rng: np.random.Generator, p: Preset) -> dict:
    """Size, clothes and style of one person."""
    hgt = rng.uniform(*p.person_height)
    colors = (_color(rng, SKIN), _color(rng, HAIR), _color(rng, CLOTHES), _color(rng, CLOTHES))
    return {"size": (0.34 * hgt, hgt), "colors": colors, "style": int(rng.integers(3))}


def _car(
    rng: np.random.Generator,
    lay: Layout,
    p: Preset,
    near: bool,
    t0: float,
    speed: float,
    tid: int,
    k30: float,
) -> Actor:
    """One car along its lane: near lane to the right, far lane to the left."""
    width = rng.uniform(*p.car_width)
    style = int(rng.integers(3))
    size = (width, width * (0.36, 0.42, 0.5)[style])
    margin = size[0] / 2 + 4
    y = (lay.near_lane if near else lay.far_lane) + rng.uniform(-0.012, 0.012) * lay.height
    xs = (-margin, lay.width + margin) if near else (lay.width + margin, -margin)
    colors = (_color(rng, PAINT), (int(rng.integers(60, 110)), 50, 40))
    wobble = _wobble(rng, p, 0.02 * k30)
    path = np.array([[xs[0], y], [xs[1], y]])
    return Actor(tid, CAR, t0, path, speed, wobble, size, colors, style + 3 * int(near))


def _lane_cars(
    seed: int, block: int, lay: Layout, p: Preset, frame_s: float, tid: int
) -> list[Actor]:
    """The cars that start in ``block``. Each lane is a queue: one speed per lane and scene,
    and start slots far enough apart (the longest car, the most two wobbles can close, and a
    gap) that no car ever drives through the one ahead. A slot holds a car or stays empty so
    the lanes carry ``cars_per_s`` together (as far as their slots allow); a slot is a pure
    function of its number (its time), so a block needs nothing from the ones before it."""
    k30 = 30.0 * frame_s
    cars: list[Actor] = []
    for lane, near in enumerate((False, True)):
        speed = np.random.default_rng([seed, lane, 23]).uniform(*p.car_speed) * k30
        room = p.car_width[1] + 4 * 40 * p.wobble + 24  # px between two cars' starts
        slot = room / speed / 0.75  # frames; a car starts in the first quarter of its slot
        share = min(1.0, p.cars_per_s * frame_s / 2 * slot)
        for j in range(
            int(np.ceil(block * BLOCK / slot)), int(np.ceil((block + 1) * BLOCK / slot))
        ):
            rng = np.random.default_rng([seed, lane, j + 2**31, 31])  # the same at any fps
            if rng.random() < share:
                t0 = (j + 0.25 * rng.random()) * slot
                cars.append(_car(rng, lay, p, near, t0, speed, tid + len(cars), k30))
    return cars


def _wobble(rng: np.random.Generator, p: Preset, omega: float) -> tuple[float, float, float]:
    """Amplitude, frequency and phase of a speed variation (keeps the motion forward)."""
    return (p.wobble * rng.uniform(10, 40), omega, rng.uniform(0, 2 * np.pi))


def spawn_block(
    seed: int, block: int, first: int, lay: Layout, p: Preset, frame_s: float
) -> list[Actor]:
    """Actors that start in ``block`` (frames block*BLOCK ...); ``first`` is the lowest block
    that exists (so IDs stay positive); ``frame_s`` is seconds per frame (1 / fps)."""
    rng = np.random.default_rng([seed, block - first, 17])
    k30 = 30.0 * frame_s  # px per frame at 30 fps -> px per frame at this fps
    tid = (block - first) * PER_BLOCK + 1
    actors = _lane_cars(seed, block, lay, p, frame_s, tid)
    for _ in range(int(rng.poisson(p.groups_per_s * frame_s * BLOCK))):
        look = _person(rng, p)
        margin = look["size"][1] + 4
        path = _walk_path(rng, lay, p, margin)
        speed = rng.uniform(*p.walk_speed) * k30
        t0 = (block + rng.random()) * BLOCK
        wob = _wobble(rng, p, speed / 25)  # amplitude <= 40 * wobble px, so still forward
        behind = step = 0.0  # px along the path behind the first walker; next spacing
        for k in range(int(rng.integers(p.group_size[0], p.group_size[1] + 1))):
            if k:  # a step or so behind the one before: never inside another walker
                look = _person(rng, p)
                behind += step * look["size"][1]
            shift = np.array([0.0, rng.uniform(-0.02, 0.02) * lay.height])
            step = rng.uniform(0.4, 0.9)  # drawn for every walker: the same draws per group
            actors.append(
                Actor(
                    tid + len(actors), PERSON, t0 + behind / speed, path + shift, speed, wob, **look
                )
            )
    return actors[:PER_BLOCK]
