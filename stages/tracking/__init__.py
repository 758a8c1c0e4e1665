"""Multi-object tracking for one stream at a time: ByteTrack over a batched Kalman filter."""

from __future__ import annotations

from stages.tracking.association import iou_matrix, linear_assignment
from stages.tracking.bytetrack import ByteTracker, TrackResult, TrackSnapshot
from stages.tracking.kalman import BoxKalman

__all__ = [
    "BoxKalman",
    "ByteTracker",
    "TrackResult",
    "TrackSnapshot",
    "iou_matrix",
    "linear_assignment",
]
