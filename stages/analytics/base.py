"""What the line_crossing and zones stages share: per-stream option tables with a ``"*"`` key,
class filters by name, the tracked boxes of a message, and the counts snapshot schedule.

Both stages may add to one ``counts`` event: whichever runs second fills its part into the
event the first left on the message, so a message carries at most one snapshot per stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, TypeVar

import numpy as np
from pydantic import Field, model_validator

from pipeline.detections import DETECTIONS_PREFIX, Detections
from pipeline.errors import StageSetupError
from pipeline.messages import Message
from pipeline.stage import StageConfig
from stages.classes import COCO_NAMES
from stages.events import counts_event

__all__ = [
    "ALL_STREAMS",
    "AnalyticsConfig",
    "Anchor",
    "Snapshots",
    "check_class_names",
    "check_unique",
    "class_ids",
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


def check_class_names(classes: Sequence[int | str] | None, names: Sequence[str]) -> None:
    """Raise ValueError naming the first class name the model does not know."""
    for c in classes or []:
        if isinstance(c, str) and c not in names:
            msg = f"unknown class name {c!r}; known names include {', '.join(names[:8])}, ..."
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


def class_ids(classes: Sequence[int | str] | None, names: Sequence[str]) -> np.ndarray | None:
    """The class ids to keep (None: all)."""
    if classes is None:
        return None
    return np.array([names.index(c) if isinstance(c, str) else int(c) for c in classes])


def tracked(msg: Message, stage: str, keep: np.ndarray | None) -> Detections | None:
    """The message's tracked boxes of the wanted classes; None for a message with neither
    frame nor detections that carries events (a snapshot flushed at a stream's end)."""
    if DETECTIONS_PREFIX + "xyxy" not in msg.arrays:
        if msg.frame is None and msg.meta.get("events"):
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
        for ev in msg.meta.get("events", ())
    )


def merge_counts(
    msg: Message, lines: Mapping[str, Any] | None = None, zones: Mapping[str, Any] | None = None
) -> None:
    """Fill ``lines``/``zones`` into the counts event already on ``msg``, or append a new
    counts event when there is none."""
    events = msg.meta.setdefault("events", [])
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
