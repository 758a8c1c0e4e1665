"""The ``line_crossing`` stage: count tracked objects crossing named lines, per stream,
direction and class, and emit ``line_crossing`` and periodic ``counts`` events.

    [stages.lines]
    uses = "line_crossing"
    inputs = ["track"]
    lines.cam0 = [{ name = "door", a = [0, 300], b = [640, 300] }]
    lines."*" = [{ name = "gate", a = [320, 0], b = [320, 360] }]   # every stream

Direction "in" is a move to the clockwise side of a->b (below a left-to-right line). Each
stream has its own LineCounter (hysteresis band ``margin`` px), so the stage is not replicable.
"""

from __future__ import annotations

from typing import ClassVar

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from pipeline.messages import Message
from pipeline.stage import Context, Outputs, Stage
from stages.analytics.base import (
    AnalyticsConfig,
    Snapshots,
    check_unique,
    class_ids,
    final_message,
    for_stream,
    has_counts,
    merge_counts,
    one_or_many,
    tracked,
)
from stages.classes import class_name
from stages.events import line_crossing_event
from stages.line_crossing.counter import CrossingEvent, LineCounter

__all__ = ["LineCrossing", "LineSpec"]


class LineSpec(BaseModel):
    """One counting segment from ``a`` to ``b`` in frame pixels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    a: tuple[float, float]
    b: tuple[float, float]

    @model_validator(mode="after")
    def _has_length(self) -> LineSpec:
        if self.a == self.b:
            msg = f"line {self.name!r} has zero length: a == b == {list(self.a)}"
            raise ValueError(msg)
        return self


class LineCrossing(Stage):
    """Count crossings of ``msg.detections`` (tracked; ID -1 ignored) over each stream's lines.

    Sets ``meta["lines"]`` on every message of a stream with lines and appends events to
    ``meta["events"]``; a final ``counts`` snapshot follows each stream's last frame.
    """

    replicable: ClassVar[bool] = False

    class Config(AnalyticsConfig):
        lines: dict[str, list[LineSpec]] = Field(
            description='stream name (or "*" for all) -> [{name, a = [x, y], b = [x, y]}]'
        )
        margin: float = Field(3.0, ge=0, description="hysteresis band either side of a line, px")
        tolerance: float = Field(4.0, ge=0, description="px past a segment's ends still counted")
        forget_after: int = Field(60, ge=1, description="frames a vanished track is remembered")
        settle_after: int = Field(
            2, ge=1, description="sightings past a line, in the band, that count if it vanishes"
        )

        _one_or_many = field_validator("lines", mode="before")(one_or_many)

        @field_validator("lines")
        @classmethod
        def _unique(cls, v: dict[str, list[LineSpec]]) -> dict[str, list[LineSpec]]:
            check_unique(v, "line")
            return v

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.keep = class_ids(self.config.classes, self.config.names)
        self.counters: dict[str, LineCounter | None] = {}
        self.last: dict[str, Message] = {}
        self.snapshots = Snapshots(self.config.snapshot_every_s)

    def _counter(self, stream: str) -> LineCounter | None:
        if stream not in self.counters:
            specs = for_stream(self.config.lines, stream)
            c = self.config
            self.counters[stream] = (
                LineCounter(
                    {s.name: (s.a, s.b) for s in specs},
                    anchor=c.anchor,
                    margin=c.margin,
                    tolerance=c.tolerance,
                    forget_after=c.forget_after,
                    settle_after=c.settle_after,
                )
                if specs
                else None
            )
        return self.counters[stream]

    def process(self, msg: Message) -> Message:
        counter = self._counter(msg.stream)
        if counter is None:  # no lines for this stream
            return msg
        det = tracked(msg, self.ctx.stage, self.keep)
        if det is None:  # a snapshot flushed upstream at the stream's end: add ours to it
            if has_counts(msg):
                msg.meta["lines"] = self._overlay(counter, counter.totals())
                merge_counts(msg, lines=self._counts(counter))
                self.snapshots.finished.add(msg.stream)
            return msg
        totals = counter.totals()
        gap = msg.seq - msg.prev if msg.prev >= 0 else 1
        crossings = counter.update(det.xyxy, det.tracker_id, det.class_id, frame_gap=gap)
        self._add_events(msg, crossings, totals)
        msg.meta["lines"] = self._overlay(counter, totals)
        if self.snapshots.is_due(msg.stream, msg.t_capture) or has_counts(msg):
            merge_counts(msg, lines=self._counts(counter))
        self.last[msg.stream] = msg
        return msg

    def end_stream(self, stream: str) -> Outputs:
        counter = self.counters.pop(stream, None)
        last = self.last.pop(stream, None)
        done = stream in self.snapshots.finished
        self.snapshots.forget(stream)
        if counter is None or done:
            return None
        out = final_message(stream, last)
        totals = counter.totals()
        self._add_events(out, counter.finish(), totals)  # tracks last seen just past a line
        out.meta["lines"] = self._overlay(counter, totals)
        merge_counts(out, lines=self._counts(counter))
        return out

    def _add_events(
        self, msg: Message, crossings: list[CrossingEvent], totals: dict[str, dict[str, int]]
    ) -> None:
        """Crossing events into ``meta["events"]``, each with the line's running totals as of
        that crossing (``totals`` is advanced)."""
        events = []
        for ev in crossings:
            totals[ev.line][ev.direction] += 1
            events.append(
                line_crossing_event(
                    msg,
                    ev.line,
                    ev.direction,
                    ev.track_id,
                    ev.class_id,
                    ev.point,
                    dict(totals[ev.line]),
                    class_name(ev.class_id, self.config.names),
                )
            )
        if events:
            msg.meta["events"] = [*msg.meta.get("events", []), *events]

    def _counts(self, counter: LineCounter) -> dict[str, dict[str, dict[str, int]]]:
        """Crossings per line, direction and class name, for a counts event."""
        names = self.config.names
        return {
            line: {
                d: {class_name(c, names): n for c, n in sorted(by.items())} for d, by in ds.items()
            }
            for line, ds in counter.counts.items()
        }

    def _overlay(self, counter: LineCounter, totals: dict[str, dict[str, int]]) -> dict:
        """``meta["lines"]``: each line's ends and totals, for drawing."""
        return {
            ln.name: {"a": list(ln.a), "b": list(ln.b), **totals[ln.name]} for ln in counter.lines
        }
