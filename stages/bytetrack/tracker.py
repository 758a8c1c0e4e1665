"""ByteTrack for one stream: IoU association in two stages (high-score, then low-score boxes).

Zhang et al., "ByteTrack: Multi-Object Tracking by Associating Every Detection Box" (2022).
Low-score boxes (often occluded objects) never start tracks but may continue one, which keeps
IDs through partial occlusion without admitting false positives as new objects. Differences
from the reference: IDs are handed out at confirmation, so a one-frame false positive burns no
ID; dropped frames are predicted through (``frame_gap``); matching may be class-aware.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from stages.bytetrack.association import iou_matrix, linear_assignment
from stages.bytetrack.kalman import BoxKalman, xyxy_to_cxcywh
from stages.bytetrack.tracks import LOST, TRACKED, TrackTable

__all__ = ["TrackResult", "TrackSnapshot", "Tracker"]

_BLOCKED = 1e3  # cost of a forbidden pair (class mismatch): above any threshold


@dataclass
class _Dets:
    """One frame's detections and, per detection, the track row it went to (-1: none)."""

    xyxy: np.ndarray
    conf: np.ndarray
    cls: np.ndarray
    row: np.ndarray

    @classmethod
    def of(cls, xyxy: np.ndarray, confidence: np.ndarray, class_id: np.ndarray) -> _Dets:
        """Coerce and check the parallel arrays of one frame."""
        boxes = np.asarray(xyxy, np.float32).reshape(-1, 4)
        conf = np.asarray(confidence, np.float32).reshape(-1)
        ids = np.asarray(class_id, np.int32).reshape(-1)
        if not len(boxes) == len(conf) == len(ids):
            msg = f"xyxy has {len(boxes)} rows, confidence {len(conf)}, class_id {len(ids)}"
            raise ValueError(msg)
        return cls(boxes, conf, ids, np.full(len(boxes), -1, np.intp))


@dataclass(frozen=True)
class TrackResult:
    """The input detections, in input order, with ``tracker_id`` (-1: not tracked), the
    track's centre ``velocity`` (N, 2) in px/frame and ``age`` in frames since the track began
    (0 when not tracked); a tracked box's ``class_id`` is its track's voted class."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    tracker_id: np.ndarray
    velocity: np.ndarray
    age: np.ndarray

    def tracked(self) -> TrackResult:
        """Only the detections that belong to a confirmed track."""
        keep = self.tracker_id >= 0
        return TrackResult(*(getattr(self, f.name)[keep] for f in fields(self)))


@dataclass(frozen=True)
class TrackSnapshot:
    """Confirmed tracks now held: filtered boxes, voted class, last score, age and hits in
    frames, velocity (px/frame), whether lost, and frames since last matched."""

    tracker_id: np.ndarray
    xyxy: np.ndarray
    class_id: np.ndarray
    score: np.ndarray
    age: np.ndarray
    hits: np.ndarray
    velocity: np.ndarray
    lost: np.ndarray
    frames_since_seen: np.ndarray


class Tracker:
    """Multi-object tracker for ONE stream; keep one instance per stream.

    Thresholds follow ByteTrack: ``track_thresh`` splits high from low scores, only boxes at or
    above ``new_track_thresh`` start tracks, ``match_thresh`` etc. bound the cost ``1 - IoU``
    (times score when ``fuse_score``). Lost tracks live ``track_buffer`` frames at 30 FPS,
    scaled to ``frame_rate``: 60 (2 s, twice the paper's 30) so that someone walking behind a
    car keeps one ID on both sides of a counting line. A track is confirmed (gets an ID) after
    ``min_hits`` consecutive matches; tracks born on the very first frame are confirmed at once.

    One pass beyond the paper's: high boxes still unmatched get a second try at the lost
    tracks, on boxes grown by ``rematch_buffer`` times their width and height on each side (the
    buffered IoU of C-BIoU). Someone who slowed or turned while hidden comes back away from
    where the track predicts; plain IoU would give them a new ID.
    """

    def __init__(
        self,
        track_thresh: float = 0.5,
        low_thresh: float = 0.1,
        new_track_thresh: float | None = None,
        match_thresh: float = 0.8,
        low_match_thresh: float = 0.5,
        unconfirmed_match_thresh: float = 0.7,
        track_buffer: int = 60,
        frame_rate: float = 30.0,
        min_hits: int = 2,
        class_aware: bool = False,
        fuse_score: bool = True,
        rematch_buffer: float = 0.4,
        rematch_thresh: float = 0.8,
    ) -> None:
        self.track_thresh = track_thresh
        self.low_thresh = low_thresh
        self.new_track_thresh = track_thresh + 0.1 if new_track_thresh is None else new_track_thresh
        self.match_thresh = match_thresh
        self.low_match_thresh = low_match_thresh
        self.unconfirmed_match_thresh = unconfirmed_match_thresh
        self.max_time_lost = max(1, round(frame_rate / 30.0 * track_buffer))
        self.min_hits = max(1, min_hits)
        self.class_aware = class_aware
        self.fuse_score = fuse_score
        self.rematch_buffer = rematch_buffer
        self.rematch_thresh = rematch_thresh
        self.kalman = BoxKalman()
        self.tracks = TrackTable()
        self.frame = 0
        self._next_id = 1

    def reset(self) -> None:
        """Forget every track (the stream restarted); IDs keep counting up, never reused."""
        self.tracks = TrackTable()
        self.frame = 0

    def update(
        self,
        xyxy: np.ndarray,
        confidence: np.ndarray,
        class_id: np.ndarray,
        frame_gap: int = 1,
    ) -> TrackResult:
        """Advance by ``frame_gap`` frames (> 1 after drops) and associate this frame's boxes."""
        d = _Dets.of(xyxy, confidence, class_id)
        steps = max(int(frame_gap), 1)
        first = self.frame == 0
        self.frame += steps
        self._expire()
        self._predict(steps)
        self._associate(d)
        self._apply_matches(d)
        self._birth(d)
        self._confirm(first)
        result = self._result(d)
        t = self.tracks
        t.keep((t.track_id >= 0) | (t.last_frame == self.frame))  # unconfirmed must not miss
        return result

    def _expire(self) -> None:
        """Drop tracks missed for longer than the buffer (a long gap expires every track)."""
        t = self.tracks
        t.keep(self.frame - t.last_frame <= self.max_time_lost)

    def _predict(self, steps: int) -> None:
        """Move every track ahead; lost tracks keep their size (no size velocity)."""
        t = self.tracks
        if len(t):
            t.mean[t.state == LOST, 6:] = 0.0
            t.mean, t.cov = self.kalman.predict(t.mean, t.cov, steps)

    def _match(
        self,
        rows: np.ndarray,
        dets: np.ndarray,
        d: _Dets,
        thresh: float,
        fuse: bool,
        buffer: float = 0.0,
    ) -> np.ndarray:
        """Match track ``rows`` to detections ``dets`` on cost ``1 - IoU`` (x score if fused;
        both boxes grown by ``buffer`` times their size each side first, if given), record the
        pairs in ``d.row``, and return the rows left unmatched."""
        if len(rows) == 0 or len(dets) == 0:
            return rows
        sim = iou_matrix(_grow(self.tracks.xyxy(rows), buffer), _grow(d.xyxy[dets], buffer))
        if fuse:
            sim *= d.conf[dets][None, :]
        cost = 1.0 - sim
        if self.class_aware:
            cost[self.tracks.class_id[rows][:, None] != d.cls[dets][None, :]] = _BLOCKED
        pairs, free_rows, _ = linear_assignment(cost, thresh)
        d.row[dets[pairs[:, 1]]] = rows[pairs[:, 0]]
        return rows[free_rows]

    def _associate(self, d: _Dets) -> None:
        """ByteTrack's passes: high boxes to tracked+lost, low boxes to the still-unmatched
        tracked ones, leftover high boxes to lost tracks on grown boxes, then to unconfirmed
        tracks."""
        t = self.tracks
        high = np.flatnonzero(d.conf >= self.track_thresh)
        low = np.flatnonzero((d.conf >= self.low_thresh) & (d.conf < self.track_thresh))
        confirmed = t.track_id >= 0
        left = self._match(np.flatnonzero(confirmed), high, d, self.match_thresh, self.fuse_score)
        left = left[t.state[left] == TRACKED]  # lost tracks are not revived by weak boxes
        self._match(left, low, d, self.low_match_thresh, False)
        if self.rematch_buffer > 0:  # lost tracks, on buffered boxes: back from behind things
            rest = high[d.row[high] < 0]
            lost = np.flatnonzero(confirmed & (t.state == LOST))
            lost = np.setdiff1d(lost, d.row[d.row >= 0])
            self._match(lost, rest, d, self.rematch_thresh, False, self.rematch_buffer)
        rest = high[d.row[high] < 0]
        unconfirmed = np.flatnonzero(~confirmed)
        self._match(unconfirmed, rest, d, self.unconfirmed_match_thresh, self.fuse_score)

    def _apply_matches(self, d: _Dets) -> None:
        """Kalman-correct matched tracks; unmatched ones are marked lost (the unconfirmed
        among them are dropped at the end of ``update``)."""
        t = self.tracks
        dets = np.flatnonzero(d.row >= 0)
        rows = d.row[dets]
        if len(rows):
            z = xyxy_to_cxcywh(d.xyxy[dets])
            t.mean[rows], t.cov[rows] = self.kalman.update(t.mean[rows], t.cov[rows], z)
            t.state[rows] = TRACKED
            t.hits[rows] += 1
            t.score[rows] = d.conf[dets]
            t.last_frame[rows] = self.frame
            t.vote_class(rows, d.cls[dets])
        t.state[t.last_frame < self.frame] = LOST

    def _birth(self, d: _Dets) -> None:
        """Start unconfirmed tracks from unmatched high-score detections (rows added last)."""
        dets = np.flatnonzero((d.row < 0) & (d.conf >= self.new_track_thresh))
        if len(dets):
            mean, cov = self.kalman.initiate(xyxy_to_cxcywh(d.xyxy[dets]))
            d.row[dets] = len(self.tracks) + np.arange(len(dets))
            self.tracks.append(mean, cov, d.conf[dets], d.cls[dets], self.frame)

    def _confirm(self, first: bool) -> None:
        """Give an ID to every track with enough consecutive hits (all of them on frame one)."""
        t = self.tracks
        fresh = t.last_frame == self.frame
        ready = (t.track_id < 0) & fresh & ((t.hits >= self.min_hits) | first)
        n = int(ready.sum())
        t.track_id[ready] = np.arange(self._next_id, self._next_id + n)
        self._next_id += n

    def _result(self, d: _Dets) -> TrackResult:
        """Per input detection: tracker ID, voted class and velocity of its confirmed track;
        other detections keep their own class, ID -1 and zero velocity."""
        t = self.tracks
        has = d.row >= 0
        has[has] = t.track_id[d.row[has]] >= 0
        rows = d.row[has]
        tracker_id = np.full(len(d.row), -1, np.int64)
        tracker_id[has] = t.track_id[rows]
        cls = d.cls.copy()
        cls[has] = t.class_id[rows]
        velocity = np.zeros((len(d.row), 2), np.float32)
        velocity[has] = t.mean[rows, 4:6]
        age = np.zeros(len(d.row), np.int64)
        age[has] = self.frame - t.start_frame[rows]
        return TrackResult(d.xyxy, d.conf, cls, tracker_id, velocity, age)

    def snapshot(self) -> TrackSnapshot:
        """The confirmed tracks held now, tracked and lost, for inspection and overlays."""
        t = self.tracks
        rows = np.flatnonzero(t.track_id >= 0)
        return TrackSnapshot(
            tracker_id=t.track_id[rows].copy(),
            xyxy=t.xyxy(rows).astype(np.float32),
            class_id=t.class_id[rows].copy(),
            score=t.score[rows].copy(),
            age=(self.frame - t.start_frame[rows]).astype(np.int64),
            hits=t.hits[rows].copy(),
            velocity=t.mean[rows, 4:6].astype(np.float32),
            lost=t.state[rows] == LOST,
            frames_since_seen=(self.frame - t.last_frame[rows]).astype(np.int64),
        )


def _grow(xyxy: np.ndarray, buffer: float) -> np.ndarray:
    """Boxes enlarged by ``buffer`` times their width and height on each side."""
    if buffer <= 0:
        return xyxy
    xyxy = np.asarray(xyxy, np.float64)
    wh = (xyxy[:, 2:] - xyxy[:, :2]) * buffer
    return np.concatenate([xyxy[:, :2] - wh, xyxy[:, 2:] + wh], axis=1)
