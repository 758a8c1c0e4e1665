"""The ``bytetrack`` stage and its tracker: ByteTrack over a batched Kalman filter, one
tracker per stream."""

from __future__ import annotations

from stages.bytetrack.association import iou_matrix, linear_assignment
from stages.bytetrack.kalman import BoxKalman
from stages.bytetrack.stage import ByteTrack
from stages.bytetrack.tracker import Tracker, TrackResult

__all__ = ["BoxKalman", "ByteTrack", "TrackResult", "Tracker", "iou_matrix", "linear_assignment"]
