"""The ``line_crossing`` stage: count tracked objects crossing named lines, per stream,
direction and class, and emit ``line_crossing`` and periodic ``counts`` events.

    [stages.lines]
    uses = "line_crossing"
    inputs = ["track"]
    lines.cam0 = [{ name = "door", a = [0, 300], b = [640, 300] }]
    lines."*" = [{ name = "gate", a = [0.5, 0], b = [0.5, 1], relative = true }]  # the others

A stream's own list replaces the ``"*"`` one for that stream (cam0 above counts the door
only); every other stream gets the ``"*"`` lines.

Direction "in" is a move to the clockwise side of a->b (below a left-to-right line). Each
stream has its own LineCounter (hysteresis band ``margin`` px), so the stage is not replicable.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from pipeline.detections import Detections
from pipeline.keys import META_LINES
from pipeline.messages import Message
from stages.analytics.base import (
    AnalyticsConfig,
    PerStreamAnalytics,
    PerStreamShapes,
    Point,
    ShapeSpec,
)
from stages.events import line_crossing_event
from stages.line_crossing.counter import CrossingEvent, LineCounter

__all__ = ["LineCrossing", "LineCrossingConfig", "LineSpec"]


class LineSpec(ShapeSpec):
    """One counting segment from ``a`` to ``b``."""

    kind: ClassVar[str] = "line"

    a: tuple[float, float]
    b: tuple[float, float]

    def points(self) -> list[Point]:
        return [self.a, self.b]

    def check_shape(self) -> None:
        if self.a == self.b:
            msg = f"line {self.name!r} has zero length: a == b == {list(self.a)}"
            raise ValueError(msg)


class LineCrossingConfig(AnalyticsConfig):
    lines: PerStreamShapes[LineSpec] = Field(
        description='stream name (or "*": every stream not named; a stream\'s own list '
        "replaces it) -> [{name, a = [x, y], b = [x, y]}]"
    )
    margin: float = Field(3.0, ge=0, description="hysteresis band either side of a line, px")
    tolerance: float = Field(4.0, ge=0, description="px past a segment's ends still counted")
    forget_after: int = Field(60, ge=1, description="frames a vanished track is remembered")
    settle_after: int = Field(
        2, ge=1, description="sightings past a line, in the band, that count if it vanishes"
    )


class LineCrossing(PerStreamAnalytics[LineCrossingConfig, LineCounter]):
    """Count crossings of ``msg.detections`` (tracked; ID -1 ignored) over each stream's lines.

    Sets ``meta["lines"]`` on every message of a stream with lines and appends events to
    ``meta["events"]``; a final ``counts`` snapshot follows each stream's last frame.
    """

    overlay_key: ClassVar[str] = META_LINES
    shapes_key: ClassVar[str] = "lines"

    def build(self, shapes: dict[str, list[Point]]) -> LineCounter:
        c = self.config
        return LineCounter(
            {name: (a, b) for name, (a, b) in shapes.items()},
            anchor=c.anchor,
            margin=c.margin,
            tolerance=c.tolerance,
            forget_after=c.forget_after,
            settle_after=c.settle_after,
        )

    def carry(self, old: LineCounter, new: LineCounter) -> None:
        """A line kept by name keeps its totals, also when it moved."""
        for name, by_dir in old.counts.items():
            if name in new.counts:
                new.counts[name] = {d: dict(by) for d, by in by_dir.items()}

    def observe(self, msg: Message, analyser: LineCounter, det: Detections) -> list[dict]:
        totals = analyser.totals()
        gap = msg.seq - msg.prev if msg.prev >= 0 else 1
        crossings = analyser.update(det.xyxy, det.tracker_id, det.class_id, frame_gap=gap)
        return self._events(msg, crossings, totals)

    def finish(self, msg: Message, analyser: LineCounter) -> list[dict]:
        """Tracks last seen just past a line are counted when the stream ends."""
        totals = analyser.totals()
        return self._events(msg, analyser.finish(), totals)

    def _events(
        self, msg: Message, crossings: list[CrossingEvent], totals: dict[str, dict[str, int]]
    ) -> list[dict]:
        """One event per crossing, each with its line's running totals as of that crossing
        (``totals`` is advanced)."""
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
                    self.class_name(ev.class_id),
                    run=self.ctx.run_id,
                )
            )
        return events

    def counts(self, analyser: LineCounter) -> dict[str, Any]:
        """Crossings per line, direction and class name; every watched class (``classes``)
        is listed, zeros too."""
        return {
            line: {
                d: {**self.zeros, **{self.class_name(c): n for c, n in sorted(by.items())}}
                for d, by in ds.items()
            }
            for line, ds in analyser.counts.items()
        }

    def overlay(self, analyser: LineCounter) -> dict[str, Any]:
        """Each line's ends and totals, for drawing."""
        totals = analyser.totals()
        return {
            ln.name: {"a": list(ln.a), "b": list(ln.b), **totals[ln.name]} for ln in analyser.lines
        }
