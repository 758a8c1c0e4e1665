"""What the line_crossing and zones stages share: the stage itself (one analyser per stream,
events, the drawing overlay and counts snapshots), per-stream option tables with a ``"*"``
key, class filters by name, and the tracked boxes of a message.

Both stages may add to one ``counts`` event: whichever runs second fills its part into the
event the first left on the message, so a message carries at most one snapshot per stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
from pydantic import Field, model_validator

from pipeline.context import Context
from pipeline.detections import DETECTIONS_PREFIX, Detections
from pipeline.errors import StageSetupError
from pipeline.keys import META_EVENTS
from pipeline.messages import Message
from pipeline.stage import Outputs, Stage, StageConfig
from stages.classes import COCO_NAMES, check_class_names, class_ids, class_name
from stages.events import counts_event

__all__ = [
    "ALL_STREAMS",
    "AnalyticsConfig",
    "Anchor",
    "PerStreamAnalytics",
    "Snapshots",
    "check_unique",
    "final_message",
    "for_stream",
    "has_counts",
    "merge_counts",
    "tracked",
]

ALL_STREAMS = "*"
T = TypeVar("T")
Anchor = Literal["bottom_center", "center", "top_center"]  # the point of a box that is placed


def for_stream(table: Mapping[str, Sequence[T]], stream: str) -> list[T]:
    """Entries for ``stream``: those under ``"*"`` followed by the stream's own."""
    own = table.get(stream, ()) if stream != ALL_STREAMS else ()
    return [*table.get(ALL_STREAMS, ()), *own]


def one_or_many(table: Any) -> Any:
    """Let a graph give one entry per stream (``lines.cam0 = {...}``) instead of a list."""
    if isinstance(table, dict):
        return {k: [x] if isinstance(x, dict) else x for k, x in table.items()}
    return table


def check_unique(table: Mapping[str, Sequence[Any]], what: str) -> None:
    """Raise ValueError if no entry is given, or two entries a stream would see share a name."""
    if not any(table.values()):
        msg = f'no {what}s given; e.g. {what}s.cam0 = [{{ name = "door", ... }}]'
        raise ValueError(msg)
    for stream in table:
        names = [item.name for item in for_stream(table, stream)]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            where = "all streams" if stream == ALL_STREAMS else f"stream {stream!r}"
            msg = f"{what} names must be unique per stream; {where} has {dup} more than once"
            raise ValueError(msg)


class AnalyticsConfig(StageConfig):
    """Options both analytics stages have: the anchor, which classes to watch (by name or id,
    names checked against ``names``), and how often a counts snapshot goes out."""

    anchor: Anchor = Field("bottom_center", description="the point of a box that is placed")
    classes: list[int | str] | None = Field(None, description="only these (names/ids)")
    names: list[str] = Field(default_factory=lambda: list(COCO_NAMES))
    snapshot_every_s: float = Field(10.0, ge=0, description="counts event period; 0: off")

    @model_validator(mode="after")
    def _known_classes(self) -> AnalyticsConfig:
        check_class_names(self.classes, self.names)
        return self


def tracked(msg: Message, stage: str, keep: np.ndarray | None) -> Detections | None:
    """The message's tracked boxes of the wanted classes; None for a message with neither
    frame nor detections that carries events (a snapshot flushed at a stream's end)."""
    if DETECTIONS_PREFIX + "xyxy" not in msg.arrays:
        if msg.frame is None and msg.meta.get(META_EVENTS):
            return None
        text = f"{stage}: no detections in this message; add yolov8_decode and bytetrack first"
        raise StageSetupError(text)
    if DETECTIONS_PREFIX + "tracker_id" not in msg.arrays:
        text = f"{stage}: detections have no tracker IDs; add bytetrack before this stage"
        raise StageSetupError(text)
    det = msg.detections
    assert det is not None
    return det if keep is None else det[np.isin(det.class_id, keep)]


def has_counts(msg: Message) -> bool:
    """Whether ``msg`` already carries a counts event of its stream."""
    return any(
        ev.get("type") == "counts" and ev.get("stream") == msg.stream
        for ev in msg.meta.get(META_EVENTS, ())
    )


def merge_counts(
    msg: Message, lines: Mapping[str, Any] | None = None, zones: Mapping[str, Any] | None = None
) -> None:
    """Fill ``lines``/``zones`` into the counts event already on ``msg``, or append a new
    counts event when there is none."""
    events = msg.meta.setdefault(META_EVENTS, [])
    new = counts_event(msg, lines, zones)
    for ev in events:
        if ev.get("type") == "counts" and ev.get("stream") == msg.stream:
            ev["lines"].update(new["lines"])
            ev["zones"].update(new["zones"])
            return
    events.append(new)


@dataclass
class Snapshots:
    """When each stream's next periodic counts snapshot is due (``every_s`` 0: never), on the
    capture clock; and which streams already had their final snapshot."""

    every_s: float
    due: dict[str, float] = field(default_factory=dict)
    finished: set[str] = field(default_factory=set)

    def is_due(self, stream: str, t_capture: float) -> bool:
        if self.every_s <= 0:
            return False
        due = self.due.setdefault(stream, t_capture + self.every_s)
        if t_capture < due:
            return False
        nxt = due + self.every_s
        self.due[stream] = nxt if nxt > t_capture else t_capture + self.every_s
        return True

    def forget(self, stream: str) -> None:
        self.due.pop(stream, None)
        self.finished.discard(stream)


def final_message(stream: str, last: Message | None) -> Message:
    """An empty message after ``last`` to carry a stream's final snapshot (the runtime gives it
    the end-of-stream marker's place)."""
    if last is None:
        return Message(stream, 0)
    return Message(stream, last.seq + 1, last.seq, last.t_capture, last.t_mono_ns)


def add_events(msg: Message, events: list[dict[str, Any]]) -> None:
    """Append events to ``meta["events"]`` (a new list: the message's meta may be shared)."""
    if events:
        msg.meta[META_EVENTS] = [*msg.meta.get(META_EVENTS, []), *events]


C = TypeVar("C", bound=AnalyticsConfig)
W = TypeVar("W")


class PerStreamAnalytics(Stage[C], Generic[C, W]):
    """One analyser ``W`` per stream (a line counter, a zone monitor), fed each message's
    tracked boxes of the wanted classes. It puts its events into ``meta["events"]``, its
    drawing overlay into ``meta[overlay_key]``, and its part of the stream's ``counts``
    snapshots (every ``snapshot_every_s`` and after the stream's last frame)."""

    replicable: ClassVar[bool] = False
    overlay_key: ClassVar[str]  # META_LINES / META_ZONES
    counts_key: ClassVar[str]  # "lines" / "zones" in a counts event

    def make(self, stream: str) -> W | None:
        """The analyser for ``stream``, or None when the stream has nothing to watch."""
        raise NotImplementedError

    def observe(self, msg: Message, analyser: W, det: Detections) -> list[dict[str, Any]]:
        """Feed one frame's boxes; the events it caused."""
        raise NotImplementedError

    def finish(self, msg: Message, analyser: W) -> list[dict[str, Any]]:
        """Events still due when the stream ends (none by default)."""
        return []

    def overlay(self, analyser: W) -> dict[str, Any]:
        """What a sink draws for this analyser now."""
        raise NotImplementedError

    def counts(self, analyser: W) -> dict[str, Any]:
        """This analyser's part of a counts event, by class name."""
        raise NotImplementedError

    def class_name(self, class_id: int) -> str:
        return class_name(class_id, self.config.names)

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.keep = class_ids(self.config.classes, self.config.names)
        self.analysers: dict[str, W | None] = {}
        self.last: dict[str, Message] = {}
        self.snapshots = Snapshots(self.config.snapshot_every_s)

    def _analyser(self, stream: str) -> W | None:
        if stream not in self.analysers:
            self.analysers[stream] = self.make(stream)
        return self.analysers[stream]

    def _snapshot(self, msg: Message, analyser: W) -> None:
        merge_counts(msg, **{self.counts_key: self.counts(analyser)})

    def process(self, msg: Message) -> Message:
        analyser = self._analyser(msg.stream)
        if analyser is None:
            return msg
        det = tracked(msg, self.ctx.stage, self.keep)
        if det is None:  # a snapshot flushed upstream at the stream's end: add ours to it
            if has_counts(msg):
                msg.meta[self.overlay_key] = self.overlay(analyser)
                self._snapshot(msg, analyser)
                self.snapshots.finished.add(msg.stream)
            return msg
        add_events(msg, self.observe(msg, analyser, det))
        msg.meta[self.overlay_key] = self.overlay(analyser)
        if self.snapshots.is_due(msg.stream, msg.t_capture) or has_counts(msg):
            self._snapshot(msg, analyser)
        self.last[msg.stream] = msg
        return msg

    def end_stream(self, stream: str) -> Outputs:
        analyser = self.analysers.pop(stream, None)
        last = self.last.pop(stream, None)
        done = stream in self.snapshots.finished
        self.snapshots.forget(stream)
        if analyser is None or done:
            return None
        out = final_message(stream, last)
        add_events(out, self.finish(out, analyser))
        out.meta[self.overlay_key] = self.overlay(analyser)
        self._snapshot(out, analyser)
        return out
