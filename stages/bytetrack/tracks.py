"""The live tracks of one stream, stored as parallel arrays so every step is a batch op.

A per-track Python object costs a few microseconds per track per frame in attribute access
alone; with 50 objects that is most of a 1 ms budget, so rows of arrays are used instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields

import numpy as np

from stages.bytetrack.kalman import cxcywh_to_xyxy

__all__ = ["LOST", "TRACKED", "TrackTable"]

TRACKED = 0  # matched recently; takes part in both association stages
LOST = 1  # missed; kept for re-identification by high-score detections until it expires


def _empty(dtype: type, *shape: int) -> np.ndarray:
    return np.empty((0, *shape), dtype)


@dataclass
class TrackTable:
    """One row per live track. ``track_id`` is -1 until the track is confirmed."""

    mean: np.ndarray = field(default_factory=lambda: _empty(np.float64, 8))
    cov: np.ndarray = field(default_factory=lambda: _empty(np.float64, 8, 8))
    track_id: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    state: np.ndarray = field(default_factory=lambda: _empty(np.int8))
    score: np.ndarray = field(default_factory=lambda: _empty(np.float32))
    class_id: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    class_votes: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    hits: np.ndarray = field(default_factory=lambda: _empty(np.int32))
    start_frame: np.ndarray = field(default_factory=lambda: _empty(np.int64))
    last_frame: np.ndarray = field(default_factory=lambda: _empty(np.int64))

    def __len__(self) -> int:
        return len(self.track_id)

    def append(
        self, mean: np.ndarray, cov: np.ndarray, score: np.ndarray, class_id: np.ndarray, frame: int
    ) -> None:
        """Add unconfirmed tracks born from detections in ``frame``."""
        n = len(mean)
        if n == 0:
            return
        new = {
            "mean": mean,
            "cov": cov,
            "track_id": np.full(n, -1, np.int64),
            "state": np.full(n, TRACKED, np.int8),
            "score": score,
            "class_id": class_id,
            "class_votes": np.ones(n, np.int32),
            "hits": np.ones(n, np.int32),
            "start_frame": np.full(n, frame, np.int64),
            "last_frame": np.full(n, frame, np.int64),
        }
        for f in fields(self):
            old = getattr(self, f.name)
            setattr(self, f.name, np.concatenate([old, np.asarray(new[f.name], old.dtype)]))

    def keep(self, mask: np.ndarray) -> None:
        """Drop every row where ``mask`` is False."""
        if mask.all():
            return
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name)[mask])

    def vote_class(self, rows: np.ndarray, class_id: np.ndarray) -> None:
        """Streaming majority vote (Boyer-Moore) of the class seen at each update of ``rows``:
        the class held by most of a track's detections wins, one flicker does not flip it."""
        same = self.class_id[rows] == class_id
        votes = self.class_votes[rows] + np.where(same, 1, -1)
        flip = votes <= 0
        self.class_id[rows] = np.where(flip, class_id, self.class_id[rows])
        self.class_votes[rows] = np.where(flip, 1, votes)

    def xyxy(self, rows: np.ndarray | slice = slice(None)) -> np.ndarray:
        """Predicted/filtered boxes of ``rows`` as corners."""
        return cxcywh_to_xyxy(self.mean[rows, :4])
