"""What the line_crossing and zones stages share: the stage itself (one analyser per stream,
events, the drawing overlay and counts snapshots), per-stream option tables with a ``"*"``
key (for the streams the table does not name), class filters by name, and the tracked boxes
of a message.

Both stages may add to one ``counts`` event: whichever runs second fills its part into the
event the first left on the message, so a message carries at most one snapshot per stream.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, ClassVar, Generic, Literal, TypeVar

import numpy as np
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

from pipeline.context import Context
from pipeline.detections import DETECTIONS_PREFIX, Detections
from pipeline.errors import StageSetupError
from pipeline.keys import META_EVENTS
from pipeline.messages import Message
from pipeline.names import MAX_STAGE_NAME, ident_problem, label_clashes, label_problem
from pipeline.output_files import FileMode, Modes, file_mode_field
from pipeline.stage import Outputs, Stage, StageConfig
from stages.analytics.event_snapshots import SnapshotOptions, SnapshotWriter
from stages.classes import COCO_NAMES, check_class_names, class_ids, class_name
from stages.events import counts_event

__all__ = [
    "ALL_STREAMS",
    "AnalyticsConfig",
    "Anchor",
    "FrameSizeNeeded",
    "PerStreamAnalytics",
    "PerStreamShapes",
    "ShapeSpec",
    "Snapshots",
    "check_unique",
    "final_message",
    "for_stream",
    "has_counts",
    "merge_counts",
    "outside_frame",
    "relative_points",
    "to_pixels",
    "tracked",
]

ALL_STREAMS = "*"
T = TypeVar("T")
Anchor = Literal["bottom_center", "center", "top_center"]  # the point of a box that is placed
Point = tuple[float, float]


class FrameSizeNeeded(ValueError):
    """Relative (0-1) coordinates met a stream whose messages carry no frame to size them."""


def relative_points(points: Sequence[Point], relative: bool, what: str) -> None:
    """Check the coordinates of a line or zone against its ``relative`` flag: fractions of the
    frame lie in 0-1; pixel coordinates all within 0-1 are a forgotten ``relative = true``."""
    inside = all(0 <= v <= 1 for p in points for v in p)
    if relative and not inside:
        msg = f"{what} has relative = true, so every coordinate is a fraction 0-1 of the frame"
        raise ValueError(msg)
    if not relative and inside:
        msg = f"{what} lies within 1 pixel of the corner; add relative = true for fractions 0-1"
        raise ValueError(msg)


def to_pixels(
    points: Sequence[Point], relative: bool, size: tuple[int, int] | None, what: str
) -> list[Point]:
    """``points`` in pixels: relative ones scaled by the frame's (width, height)."""
    if not relative:
        return [(float(x), float(y)) for x, y in points]
    if size is None:
        raise FrameSizeNeeded(
            f"{what} is relative (0-1), but this stream's messages carry no frame"
        )
    return [(x * size[0], y * size[1]) for x, y in points]


def outside_frame(shapes: Sequence[ShapeSpec], size: tuple[int, int], stream: str) -> list[str]:
    """A warning for each shape with a point outside a ``size`` (width, height) frame: the
    part beyond the edge can never see an object (a line drawn for another resolution)."""
    w, h = size
    out = []
    for shape in shapes:
        given = shape.points()
        off = [
            g for g, (x, y) in zip(given, shape.in_pixels(size), strict=True)
            if not (0 <= x <= w and 0 <= y <= h)
        ]  # fmt: skip
        if not off:
            continue
        where = "lies outside" if len(off) == len(given) else "reaches outside"
        shown = ", ".join(f"({x:g}, {y:g})" for x, y in off)
        unit = "fractions of the frame" if shape.relative else "pixels"
        out.append(
            f"{shape.kind} {shape.name!r} of stream {stream!r} {where} its {w}x{h} frame "
            f"at {shown} ({unit}); nothing is counted beyond the edge"
        )
    return out


def for_stream(table: Mapping[str, Sequence[T]], stream: str) -> list[T]:
    """Entries for ``stream``: its own where the table names it (they replace those under
    ``"*"`` for that stream, as a camera's own line replaces the default one), else those
    under ``"*"``."""
    if stream != ALL_STREAMS and stream in table:
        return list(table[stream])
    return list(table.get(ALL_STREAMS, ()))


def one_or_many(table: Any) -> Any:
    """Let a graph give one entry per stream (``lines.cam0 = {...}``) instead of a list."""
    if isinstance(table, dict):
        return {k: [x] if isinstance(x, dict) else x for k, x in table.items()}
    return table


def one_or_many_schema(schema: dict[str, Any]) -> None:
    """The JSON Schema of a per-stream table that also takes one entry instead of a list."""
    listed = schema["additionalProperties"]
    schema["additionalProperties"] = {"anyOf": [listed, listed["items"]]}


def _true_or_folder_schema(schema: dict[str, Any]) -> None:
    """The JSON Schema of ``snapshot``, which also takes true/false or a folder name."""
    schema["anyOf"] = [*schema["anyOf"], {"type": "boolean"}, {"type": "string"}]


def check_unique(table: Mapping[str, Sequence[Any]], what: str) -> None:
    """Raise ValueError if no entry is given, a key is not a stream name, or two entries a
    stream would see share a name (also once case, spaces and punctuation are set aside:
    they would share a Home Assistant sensor and a snapshot's file name)."""
    if not any(table.values()):
        msg = f'no {what}s given; e.g. {what}s.cam0 = [{{ name = "door", ... }}]'
        raise ValueError(msg)
    for stream in table:
        if stream != ALL_STREAMS and (why := ident_problem(stream, "stream", MAX_STAGE_NAME)):
            raise ValueError(f'{why}; name a source stage, or "*" for every stream')
        names = [item.name for item in for_stream(table, stream)]
        dup = sorted({n for n in names if names.count(n) > 1})
        where = "all streams" if stream == ALL_STREAMS else f"stream {stream!r}"
        if dup:
            msg = f"{what} names must be unique per stream; {where} has {dup} more than once"
            raise ValueError(msg)
        for a, b in label_clashes(names):
            msg = (
                f"{what} names {a!r} and {b!r} of {where} differ only in case, spaces or "
                "punctuation: they would share a Home Assistant sensor and snapshot file "
                "names; rename one"
            )
            raise ValueError(msg)


class ShapeSpec(BaseModel):
    """A named line or zone of a stream, in frame pixels or, with ``relative``, in fractions
    0-1 of the frame's width and height (placed at the stream's first frame)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    kind: ClassVar[str]  # "line" / "zone", in messages

    name: str = Field(min_length=1)
    relative: bool = Field(False, description="the coordinates are fractions 0-1 of the frame")

    def points(self) -> list[Point]:
        """The coordinates as given."""
        raise NotImplementedError

    def check_shape(self) -> None:
        """Raise ValueError for a shape that cannot count anything (no length, no area)."""

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if why := label_problem(value, f"{cls.kind} name", cls.kind):
            raise ValueError(why)
        return value

    @model_validator(mode="after")
    def _valid(self) -> ShapeSpec:
        self.check_shape()
        relative_points(self.points(), self.relative, f"{self.kind} {self.name!r}")
        return self

    def in_pixels(self, size: tuple[int, int] | None) -> list[Point]:
        """The points in pixels of a frame of ``size`` (width, height)."""
        return to_pixels(self.points(), self.relative, size, f"{self.kind} {self.name!r}")


def _unique_per_stream(table: dict[str, list[ShapeSpec]], info: ValidationInfo) -> Any:
    check_unique(table, (info.field_name or "shape").removesuffix("s"))
    return table


S = TypeVar("S", bound=ShapeSpec)
# a config's table of shapes per stream name ("*": every stream); one shape may stand alone
PerStreamShapes = Annotated[
    dict[str, list[S]],
    BeforeValidator(one_or_many),
    AfterValidator(_unique_per_stream),
    Field(json_schema_extra=one_or_many_schema),
]


class AnalyticsConfig(StageConfig):
    """Options both analytics stages have: the anchor, which classes to watch (by name or id,
    names checked against ``names``), and how often a counts snapshot goes out."""

    anchor: Anchor = Field("bottom_center", description="the point of a box that is placed")
    classes: list[int | str] | None = Field(None, description="only these (names/ids)")
    names: list[str] = Field(default_factory=lambda: list(COCO_NAMES))
    snapshot_every_s: float = Field(10.0, ge=0, description="counts event period; 0: off")
    snapshot: SnapshotOptions | None = Field(
        None,
        description="a JPEG per event: true, a folder, or {dir, crop, keep, max_age_h, ...}",
        json_schema_extra=_true_or_folder_schema,
    )
    file_mode: FileMode = file_mode_field()

    @field_validator("snapshot", mode="before")
    @classmethod
    def _snapshot_shorthand(cls, v: Any) -> Any:
        """``snapshot = true`` (defaults), ``false`` (off) or ``"folder"``."""
        if isinstance(v, bool):
            return {} if v else None
        return {"dir": v} if isinstance(v, str) else v

    @field_validator("names")
    @classmethod
    def _class_names(cls, names: list[str]) -> list[str]:
        """Class names are topic levels and parts of HA ids, as line names are."""
        for i, name in enumerate(names):
            if why := label_problem(name, f"class name {i}"):
                raise ValueError(why)
        for a, b in label_clashes(names):
            msg = (
                f"class names {a!r} and {b!r} differ only in case, spaces or punctuation: "
                "they would share Home Assistant sensors; rename one"
            )
            raise ValueError(msg)
        return names

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
    msg: Message,
    lines: Mapping[str, Any] | None = None,
    zones: Mapping[str, Any] | None = None,
    run: str = "",
) -> None:
    """Fill ``lines``/``zones`` into the counts event already on ``msg``, or append a new
    counts event (of run ``run``) when there is none."""
    events = msg.meta.setdefault(META_EVENTS, [])
    new = counts_event(msg, lines, zones, run=run)
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
_RESTART_OPTIONS = ("snapshot", "names", "file_mode")  # what ``reconfigure`` cannot take
W = TypeVar("W")


class PerStreamAnalytics(Stage[C], Generic[C, W]):
    """One analyser ``W`` per stream (a line counter, a zone monitor), fed each message's
    tracked boxes of the wanted classes. It puts its events into ``meta["events"]``, its
    drawing overlay into ``meta[overlay_key]``, and its part of the stream's ``counts``
    snapshots (every ``snapshot_every_s`` and after the stream's last frame)."""

    replicable: ClassVar[bool] = False
    overlay_key: ClassVar[str]  # META_LINES / META_ZONES
    shapes_key: ClassVar[str]  # the config's PerStreamShapes, and its part of a counts event

    def make(self, stream: str, size: tuple[int, int] | None) -> W | None:
        """The analyser for ``stream`` (``size``: its frames' width and height, for relative
        coordinates; None without a frame), or None when the stream has nothing to watch."""
        shapes = self._shapes(stream)
        return self.build({s.name: s.in_pixels(size) for s in shapes}) if shapes else None

    def _shapes(self, stream: str) -> list[ShapeSpec]:
        return for_stream(getattr(self.config, self.shapes_key), stream)

    def build(self, shapes: dict[str, list[Point]]) -> W:
        """An analyser of ``shapes`` (name -> points in pixels)."""
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
        # the classes a counts event always lists, zeros too (for consumers of plain numbers)
        self.zeros = {} if self.keep is None else dict.fromkeys(map(self.class_name, self.keep), 0)
        self.analysers: dict[str, W | None] = {}
        self.sizes: dict[str, tuple[int, int] | None] = {}  # each stream's frame size
        self.last: dict[str, Message] = {}
        self.snapshots = Snapshots(self.config.snapshot_every_s)
        options = self.config.snapshot
        where = f"stages.{ctx.stage}"
        modes = Modes.of(self.config.file_mode)
        self.pictures = SnapshotWriter(options, where, ctx.log, modes) if options else None

    def reconfigure(self, config: C) -> bool:
        """New shapes, classes or analyser options from the next frame; each stream's
        analyser is made anew and ``carry`` keeps its totals. Snapshot pictures, class
        names and file modes need a restart (False)."""
        if any(getattr(config, k) != getattr(self.config, k) for k in _RESTART_OPTIONS):
            return False
        old = self.analysers
        self.config = config
        self.keep = class_ids(config.classes, config.names)
        self.zeros = {} if self.keep is None else dict.fromkeys(map(self.class_name, self.keep), 0)
        self.snapshots.every_s = config.snapshot_every_s
        self.analysers = {}
        for stream, analyser in old.items():
            made = self.make(stream, self.sizes.get(stream))
            if made is not None and analyser is not None:
                self.carry(analyser, made)
            self.analysers[stream] = made
        return True

    def carry(self, old: W, new: W) -> None:
        """Keep what ``old`` counted in ``new`` (shapes of the same name); nothing by default."""

    def _analyser(self, msg: Message) -> W | None:
        """The stream's analyser, made at its first message (with a frame, where relative
        coordinates need the frame's size)."""
        if msg.stream not in self.analysers:
            frame = msg.frame
            size = None if frame is None else (int(frame.shape[1]), int(frame.shape[0]))
            self.sizes[msg.stream] = size
            try:
                self.analysers[msg.stream] = self.make(msg.stream, size)
            except FrameSizeNeeded as exc:
                if DETECTIONS_PREFIX + "xyxy" not in msg.arrays:
                    return None  # a snapshot before any frame: nothing to place yet
                raise StageSetupError(f"{self.ctx.stage}: {exc}") from None
            if size is not None:
                for text in outside_frame(self._shapes(msg.stream), size, msg.stream):
                    self.ctx.log.warning("%s: %s", self.ctx.stage, text)
        return self.analysers[msg.stream]

    def _snapshot(self, msg: Message, analyser: W) -> None:
        merge_counts(msg, **{self.shapes_key: self.counts(analyser)}, run=self.ctx.run_id)

    def process(self, msg: Message) -> Message:
        analyser = self._analyser(msg)
        if analyser is None:
            return msg
        det = tracked(msg, self.ctx.stage, self.keep)
        if det is None:  # a snapshot flushed upstream at the stream's end: add ours to it
            if has_counts(msg):
                msg.meta[self.overlay_key] = self.overlay(analyser)
                self._snapshot(msg, analyser)
                self.snapshots.finished.add(msg.stream)
            return msg
        events = self.observe(msg, analyser, det)
        overlay = msg.meta[self.overlay_key] = self.overlay(analyser)
        if self.pictures and events:  # the events name their snapshots once written
            shots = self.pictures.capture(msg, det, events, self.overlay_key, overlay)
            self.pictures.settle(shots)
            self._count_pictures()
        add_events(msg, events)
        if self.snapshots.is_due(msg.stream, msg.t_capture) or has_counts(msg):
            self._snapshot(msg, analyser)
        self.last[msg.stream] = msg
        return msg

    def _count_pictures(self) -> None:
        if self.pictures:
            for kind, n in self.pictures.counts().items():
                self.ctx.count_event(kind, n)

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

    def close(self) -> None:
        pictures: SnapshotWriter | None = getattr(self, "pictures", None)  # None before setup
        if pictures is not None:
            pictures.close()
            self._count_pictures()
