"""Counting tracked objects that cross named line segments, per direction and class.

Sides follow ``pipeline.geometry``: ``side_of_line`` > 0 on the clockwise side of a->b; a move
from negative to positive is ``"in"``, positive to negative ``"out"``. Each track remembers the
last side it was confirmed on; inside a band of ``margin`` px around the line the side is not
updated, so an anchor jittering on the line or an object stopping on it is counted at most
once. A side change counts only if the path from the last confirmed point to the new one cuts
the line within the segment (``tolerance`` px past either end), which also catches an anchor
that jumps across the line between two updates.

A track first seen inside the band (at a stream's start, or out from behind something
standing on the line) is taken to be on the side it was first seen on: stepping off on the
other side counts, as it would for the exact line.

A track that vanishes (forgotten after ``forget_after`` frames unseen, or at the stream's end,
``finish``) on the far side of a line but still inside the band, seen there on its last
``settle_after`` sightings or more, is counted then: an object occluded or leaving the view
just after it crossed is not lost, while one standing on the line is still counted at most
once.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import numpy as np

from pipeline.geometry import anchor_points, side_of_line
from stages.analytics.track_rows import TrackRows

__all__ = ["CrossingEvent", "Line", "LineCounter"]

Point = tuple[float, float]


@dataclass(frozen=True)
class Line:
    """A named counting segment from ``a`` to ``b`` in image pixels."""

    name: str
    a: Point
    b: Point


@dataclass(frozen=True)
class CrossingEvent:
    """One counted crossing; ``point`` is where the anchor's path cut the line."""

    line: str
    track_id: int
    class_id: int
    direction: str  # "in" or "out"
    point: Point
    frame: int


def _as_lines(lines: Mapping[str, tuple[Point, Point]] | Iterable[Line]) -> list[Line]:
    """Accept ``{name: (a, b)}`` or ``Line`` objects; reject zero-length or duplicate lines."""
    if isinstance(lines, Mapping):
        lines = [Line(name, tuple(a), tuple(b)) for name, (a, b) in lines.items()]
    out = list(lines)
    names = [ln.name for ln in out]
    if len(set(names)) != len(names):
        msg = f"line names must be unique, got {names}"
        raise ValueError(msg)
    for ln in out:
        if np.hypot(ln.b[0] - ln.a[0], ln.b[1] - ln.a[1]) == 0:
            msg = f"line {ln.name!r} has zero length: a == b == {ln.a}"
            raise ValueError(msg)
    return out


class LineCounter:
    """Crossing counts of one stream's tracks over several lines.

    ``forget_after`` frames without a sighting drops a track's memory (its ID will not return).
    """

    def __init__(
        self,
        lines: Mapping[str, tuple[Point, Point]] | Iterable[Line],
        anchor: str = "bottom_center",
        margin: float = 3.0,
        tolerance: float = 4.0,
        forget_after: int = 60,
        settle_after: int = 2,
    ) -> None:
        self.lines = _as_lines(lines)
        self.anchor = anchor
        self.margin = float(margin)
        self.tolerance = float(tolerance)
        self.forget_after = int(forget_after)
        self.settle_after = max(1, int(settle_after))
        n = len(self.lines)
        self._a = np.array([ln.a for ln in self.lines], np.float64).reshape(n, 2)
        self._ab = np.array([ln.b for ln in self.lines], np.float64).reshape(n, 2) - self._a
        self._len = np.hypot(self._ab[:, 0], self._ab[:, 1])
        self._state = TrackRows(
            {
                "side": ((n,), np.int8, 0),  # last confirmed side per line; 0 = not yet known
                "point": ((n, 2), np.float64, np.nan),  # anchor where side was set (or first seen)
                "dist": ((n,), np.float64, 0.0),  # its signed distance to the line (px)
                "seen": ((), np.int64, 0),  # frame of the last sighting
                "cls": ((), np.int64, -1),  # class at the last sighting
                "last": ((n,), np.float64, 0.0),  # signed distance at the last sighting
                "anchor": ((2,), np.float64, np.nan),  # anchor at the last sighting
                "beyond": ((n,), np.int16, 0),  # sightings in a row past the line, in the band
            }
        )
        self.frame = 0
        self.counts: dict[str, dict[str, dict[int, int]]] = {}
        self.reset_counts()

    def reset_counts(self) -> None:
        """Zero every count (track memory is kept, so no crossing is double counted)."""
        self.counts = {ln.name: {"in": {}, "out": {}} for ln in self.lines}

    def totals(self) -> dict[str, dict[str, int]]:
        """Crossings per line and direction, all classes together."""
        return {
            name: {d: sum(by_cls.values()) for d, by_cls in dirs.items()}
            for name, dirs in self.counts.items()
        }

    def update(
        self, xyxy: np.ndarray, tracker_id: np.ndarray, class_id: np.ndarray, frame_gap: int = 1
    ) -> list[CrossingEvent]:
        """Feed one frame's tracked boxes (untracked ones, ID < 0, are ignored)."""
        self.frame += max(int(frame_gap), 1)
        ids = np.asarray(tracker_id, np.int64).reshape(-1)
        keep = ids >= 0
        ids, cls = ids[keep], np.asarray(class_id, np.int64).reshape(-1)[keep]
        points = anchor_points(np.asarray(xyxy).reshape(-1, 4)[keep], self.anchor)
        rows = self._state.rows(ids)
        events = self._step(rows, points, ids, cls) if len(self.lines) else []
        st = self._state
        st["seen"][rows] = self.frame
        st["cls"][rows] = cls
        st["anchor"][rows] = points
        gone = self.frame - st["seen"] > self.forget_after
        events += self._settle(gone)
        st.drop(gone)
        return events

    def finish(self) -> list[CrossingEvent]:
        """The stream ended: count the crossings of tracks last seen just past a line (see
        the module's docstring), then forget every track."""
        everyone = np.ones(len(self._state), bool)
        events = self._settle(everyone)
        self._state.drop(everyone)
        return events

    def _distances(self, points: np.ndarray) -> np.ndarray:
        """Signed distance (px) of each point to each line, (N, L)."""
        cols = [
            side_of_line(points, ln.a, ln.b) / length
            for ln, length in zip(self.lines, self._len, strict=True)
        ]
        return np.stack(cols, axis=1)

    def _step(
        self, rows: np.ndarray, points: np.ndarray, ids: np.ndarray, cls: np.ndarray
    ) -> list[CrossingEvent]:
        """Update confirmed sides, and return the crossings that cut a segment."""
        st = self._state
        dist = self._distances(points)
        side = np.where(dist > self.margin, 1, np.where(dist < -self.margin, -1, 0))
        prev, p0, d0 = st["side"][rows], st["point"][rows], st["dist"][rows]
        # a track seen only inside the band so far goes by the side it was first seen on
        ref = np.where(prev != 0, prev, np.sign(d0))
        flipped = (ref != 0) & (side != 0) & (side != ref)
        hit = np.zeros_like(flipped)
        cut = np.zeros((*flipped.shape, 2))
        if flipped.any():
            frac = d0 / np.where(flipped, d0 - dist, 1.0)  # d0, dist differ in sign when flipped
            cut = p0 + (points[:, None, :] - p0) * frac[..., None]
            along = np.einsum("nlk,lk->nl", cut - self._a, self._ab) / self._len
            hit = flipped & (along >= -self.tolerance) & (along <= self._len + self.tolerance)
        settled = side != 0
        first = (prev == 0) & ~settled & (d0 == 0)  # its first sighting, inside the band
        confirmed = np.where(settled, side, prev)
        st["side"][rows] = confirmed
        st["point"][rows] = np.where((settled | first)[..., None], points[:, None, :], p0)
        st["dist"][rows] = np.where(settled | first, dist, d0)
        st["last"][rows] = dist
        past = (confirmed != 0) & (np.sign(dist) == -confirmed)  # over the line, in the band
        st["beyond"][rows] = np.where(past, st["beyond"][rows] + 1, 0)
        return self._events(hit, side, cut, ids, cls)

    def _settle(self, rows: np.ndarray) -> list[CrossingEvent]:
        """Count the crossings of vanishing tracks (``rows``, a mask) that were last seen past
        a line inside its band for ``settle_after`` sightings or more."""
        if not rows.any():  # the usual frame: no track given up
            return []
        st = self._state
        due = rows[:, None] & (st["beyond"] >= self.settle_after)
        events = []
        for r, li in np.argwhere(due):
            d0, d1 = st["dist"][r, li], st["last"][r, li]
            p0, p1 = st["point"][r, li], st["anchor"][r]
            cut = p0 + (p1 - p0) * (d0 / (d0 - d1))
            along = float(np.dot(cut - self._a[li], self._ab[li]) / self._len[li])
            if not -self.tolerance <= along <= self._len[li] + self.tolerance:
                continue
            side = -int(st["side"][r, li])
            st["side"][r, li], st["beyond"][r, li] = side, 0
            track, c, seen = int(st.ids[r]), int(st["cls"][r]), int(st["seen"][r])
            events.append(self._count(int(li), side, cut, track, c, seen))
        return events

    def _events(
        self, hit: np.ndarray, side: np.ndarray, cut: np.ndarray, ids: np.ndarray, cls: np.ndarray
    ) -> list[CrossingEvent]:
        """Count and describe each crossing in ``hit`` (N, L)."""
        return [
            self._count(li, int(side[n, li]), cut[n, li], int(ids[n]), int(cls[n]), self.frame)
            for n, li in np.argwhere(hit)
        ]

    def _count(
        self, li: int, side: int, point: np.ndarray, track: int, c: int, frame: int
    ) -> CrossingEvent:
        """Count one crossing of line ``li`` onto ``side`` and describe it."""
        line = self.lines[li].name
        direction = "in" if side > 0 else "out"
        by_cls = self.counts[line][direction]
        by_cls[c] = by_cls.get(c, 0) + 1
        xy = (float(point[0]), float(point[1]))
        return CrossingEvent(line, track, c, direction, xy, frame)
