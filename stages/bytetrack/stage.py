"""The ``bytetrack`` stage: one ByteTrack per stream, IDs unique within a stream, never reused.

Frames dropped upstream are known from sequence numbers (``seq - prev``), so the motion model
predicts across the gap and tracks survive drops. A stream's state is cleared when it ends.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import Field

from pipeline.detections import Detections
from pipeline.messages import Message
from pipeline.stage import Context, Stage, StageConfig
from stages.bytetrack.tracker import Tracker

__all__ = ["ByteTrack"]


class ByteTrackConfig(StageConfig):
    track_thresh: float = Field(0.5, ge=0, le=1, description="high-score detections")
    low_thresh: float = Field(0.1, ge=0, le=1, description="low-score detections kept for matching")
    match_thresh: float = Field(0.8, ge=0, le=1)
    track_buffer: int = Field(
        60, ge=1, description="frames a lost track is kept (at 30 fps): 2 s bridges occlusions"
    )
    frame_rate: float = Field(30.0, gt=0)
    min_hits: int = Field(2, ge=1)
    class_aware: bool = True
    rematch_buffer: float = Field(
        0.4,
        ge=0,
        description="lost tracks are matched once more on boxes grown by this much of their"
        " size each side: a person back from behind a car keeps the ID; 0 = off",
    )

    def tracker(self) -> Tracker:
        """A fresh tracker with these settings (one per stream)."""
        return Tracker(
            track_thresh=self.track_thresh,
            low_thresh=self.low_thresh,
            match_thresh=self.match_thresh,
            track_buffer=self.track_buffer,
            frame_rate=self.frame_rate,
            min_hits=self.min_hits,
            class_aware=self.class_aware,
            rematch_buffer=self.rematch_buffer,
        )


class ByteTrack(Stage[ByteTrackConfig]):
    """Assign ``tracker_id`` to ``msg.detections`` (-1 for boxes not yet confirmed), with
    each row's track velocity (px/frame) and age (frames) in ``det.velocity``/``det.age``."""

    replicable: ClassVar[bool] = False

    def setup(self, ctx: Context) -> None:
        self.trackers: dict[str, Tracker] = {}

    def _tracker(self, stream: str) -> Tracker:
        t = self.trackers.get(stream)
        if t is None:
            t = self.trackers[stream] = self.config.tracker()
        return t

    def process(self, msg: Message) -> Message:
        det = msg.detections or Detections.empty()
        gap = msg.seq - msg.prev if msg.prev >= 0 else 1
        res = self._tracker(msg.stream).update(
            det.xyxy, det.confidence, det.class_id, frame_gap=gap
        )
        # per-row track facts travel with the rows they describe (filtered with them)
        msg.detections = Detections(
            res.xyxy,
            res.confidence,
            res.class_id,
            res.tracker_id,
            data={"velocity": res.velocity, "age": res.age},
        )
        return msg

    def end_stream(self, stream: str) -> None:
        self.trackers.pop(stream, None)
