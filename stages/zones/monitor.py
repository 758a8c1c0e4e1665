"""Zone occupancy, enter/exit events and dwell time of tracked objects in named polygons.

A track's anchor (bottom-centre by default) is tested against each polygon every frame. Its
state flips only after ``enter_frames`` consecutive frames inside (or ``exit_frames`` outside),
so a box jittering on the border raises no event storm; the event is dated at the first frame
of that run. Dwell is exit time minus entry time, in the seconds of the timestamps passed in.
With ``loiter`` set, a track still inside that long after its entry raises one ``loiter``
event (per stay: a track that leaves and comes back may loiter again), dated at the frame
that found it. A track unseen for ``forget_after`` seconds leaves every zone (dated when last
seen).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.geometry import anchor_points
from stages.analytics.track_rows import TrackRows

__all__ = ["ZoneEvent", "ZoneMonitor", "points_in_polygon"]


@dataclass(frozen=True)
class ZoneEvent:
    """A track entering, loitering in or leaving a zone; ``dwell`` (seconds inside so far) is
    set on loiter and exit."""

    zone: str
    track_id: int
    class_id: int
    kind: str  # "enter", "loiter" or "exit"
    timestamp: float
    dwell: float | None = None


def points_in_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Whether each point (N, 2) lies inside ``polygon`` (V, 2), by the even-odd rule."""
    p = np.asarray(points, np.float64).reshape(-1, 1, 2)
    v1 = np.asarray(polygon, np.float64).reshape(1, -1, 2)
    v2 = np.roll(v1, -1, axis=1)
    px, py = p[..., 0], p[..., 1]
    straddles = (v1[..., 1] > py) != (v2[..., 1] > py)
    dy = np.where(straddles, v2[..., 1] - v1[..., 1], 1.0)
    x_cross = v1[..., 0] + (py - v1[..., 1]) * (v2[..., 0] - v1[..., 0]) / dy
    return np.count_nonzero(straddles & (px < x_cross), axis=1) % 2 == 1


class ZoneMonitor:
    """Occupancy and enter/exit/dwell of one stream's tracks over several named polygons."""

    def __init__(
        self,
        zones: Mapping[str, Sequence[tuple[float, float]]],
        anchor: str = "bottom_center",
        enter_frames: int = 2,
        exit_frames: int = 2,
        forget_after: float = 2.0,
        loiter: float | None = None,
    ) -> None:
        self.names = list(zones)
        self.polygons = [np.asarray(zones[n], np.float64).reshape(-1, 2) for n in self.names]
        for name, poly in zip(self.names, self.polygons, strict=True):
            if len(poly) < 3:
                msg = f"zone {name!r} needs at least 3 points, got {len(poly)}"
                raise ValueError(msg)
        self.anchor = anchor
        self.enter_frames = max(int(enter_frames), 1)
        self.exit_frames = max(int(exit_frames), 1)
        self.forget_after = float(forget_after)
        self.loiter = None if loiter is None else float(loiter)
        z = len(self.names)
        self._state = TrackRows(
            {
                "inside": ((z,), bool, False),  # confirmed state per zone
                "streak": ((z,), np.int32, 0),  # consecutive frames contradicting it
                "streak_t": ((z,), np.float64, np.nan),  # timestamp of the streak's first frame
                "entered": ((z,), np.float64, np.nan),  # timestamp of the confirmed entry
                "loitered": ((z,), bool, False),  # this stay raised its loiter event
                "class_id": ((), np.int64, -1),
                "seen": ((), np.float64, 0.0),
            }
        )

    def update(
        self, xyxy: np.ndarray, tracker_id: np.ndarray, class_id: np.ndarray, timestamp: float
    ) -> list[ZoneEvent]:
        """Feed one frame's tracked boxes (ID < 0 ignored) taken at ``timestamp`` seconds."""
        ids = np.asarray(tracker_id, np.int64).reshape(-1)
        keep = ids >= 0
        ids, cls = ids[keep], np.asarray(class_id, np.int64).reshape(-1)[keep]
        points = anchor_points(np.asarray(xyxy).reshape(-1, 4)[keep], self.anchor)
        st = self._state
        rows = st.rows(ids)
        st["class_id"][rows] = cls
        st["seen"][rows] = timestamp
        raw = np.zeros((len(ids), len(self.names)), bool)
        for zi, poly in enumerate(self.polygons):
            raw[:, zi] = points_in_polygon(points, poly)
        events = self._step(rows, raw, float(timestamp))
        events += self._loitering(rows, raw, float(timestamp))
        return events + self._forget(float(timestamp))

    def _step(self, rows: np.ndarray, raw: np.ndarray, now: float) -> list[ZoneEvent]:
        """Advance the hysteresis of each (track, zone) with this frame's raw inside test."""
        st = self._state
        inside, streak = st["inside"][rows], st["streak"][rows]
        streak_t = st["streak_t"][rows]
        differs = raw != inside
        streak = np.where(differs, streak + 1, 0)
        streak_t = np.where(differs & (streak == 1), now, streak_t)
        need = np.where(inside, self.exit_frames, self.enter_frames)
        flip = differs & (streak >= need)
        events = [
            self._event(int(rows[n]), int(zi), float(streak_t[n, zi]))
            for n, zi in np.argwhere(flip)
        ]
        st["inside"][rows] = inside ^ flip
        st["streak"][rows] = np.where(flip, 0, streak)
        st["streak_t"][rows] = streak_t
        return events

    def _loitering(self, rows: np.ndarray, raw: np.ndarray, now: float) -> list[ZoneEvent]:
        """Tracks inside a zone for ``loiter`` s, and inside in this frame (not on their way
        out), that have not said so in this stay."""
        if self.loiter is None:
            return []
        st = self._state
        due = st["inside"][rows] & raw & ~st["loitered"][rows]
        due &= now - st["entered"][rows] >= self.loiter  # NaN (not inside) compares False
        out = []
        for n, zi in np.argwhere(due):
            row = int(rows[n])
            st["loitered"][row, zi] = True
            tid, cls = int(st.ids[row]), int(st["class_id"][row])
            dwell = now - float(st["entered"][row, zi])
            out.append(ZoneEvent(self.names[zi], tid, cls, "loiter", now, dwell))
        return out

    def _event(self, row: int, zi: int, when: float) -> ZoneEvent:
        """Flip one (track, zone) state and describe it; entry time is kept for the dwell."""
        st = self._state
        tid, cls = int(st.ids[row]), int(st["class_id"][row])
        if not st["inside"][row, zi]:
            st["entered"][row, zi] = when
            st["loitered"][row, zi] = False
            return ZoneEvent(self.names[zi], tid, cls, "enter", when)
        dwell = when - float(st["entered"][row, zi])
        st["entered"][row, zi] = np.nan
        return ZoneEvent(self.names[zi], tid, cls, "exit", when, dwell)

    def _forget(self, now: float) -> list[ZoneEvent]:
        """Drop tracks unseen for ``forget_after`` s; those inside a zone exit at last sight."""
        st = self._state
        stale = now - st["seen"] > self.forget_after
        leaving = np.argwhere(stale[:, None] & st["inside"])
        events = [self._event(int(r), int(zi), float(st["seen"][r])) for r, zi in leaving]
        st.drop(stale)
        return events

    def occupancy(self) -> dict[str, dict[int, int]]:
        """Tracks now inside each zone, counted per class."""
        st = self._state
        out: dict[str, dict[int, int]] = {}
        for zi, name in enumerate(self.names):
            classes, counts = np.unique(st["class_id"][st["inside"][:, zi]], return_counts=True)
            out[name] = dict(zip(classes.tolist(), counts.tolist(), strict=True))
        return out

    def dwell(self, now: float) -> dict[str, dict[int, float]]:
        """Seconds each track now inside each zone has spent there, up to ``now``."""
        st = self._state
        return {
            name: {
                int(st.ids[r]): now - float(st["entered"][r, zi])
                for r in np.flatnonzero(st["inside"][:, zi])
            }
            for zi, name in enumerate(self.names)
        }
