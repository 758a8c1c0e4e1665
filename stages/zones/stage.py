"""The ``zones`` stage: occupancy per class of named polygons, and ``zone_enter`` /
``zone_exit`` events with dwell time, per stream.

    [stages.zones]
    uses = "zones"
    inputs = ["track"]
    zones.cam0 = [{ name = "crosswalk", polygon = [[300, 140], [360, 140], [360, 280]] }]

A track is inside when its anchor (bottom-centre by default) is; a state change needs
``enter_frames`` / ``exit_frames`` frames in a row, so a box on the border raises no event
storm. Dwell is on the capture clock. Each stream has its own monitor: not replicable.
"""

from __future__ import annotations

from typing import Any, ClassVar

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
from stages.events import zone_enter_event, zone_exit_event
from stages.zones.monitor import ZoneEvent, ZoneMonitor

__all__ = ["ZoneSpec", "Zones"]


class ZoneSpec(BaseModel):
    """One named polygon in frame pixels (at least 3 points, non-zero area)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(min_length=1)
    polygon: list[tuple[float, float]] = Field(min_length=3)

    @model_validator(mode="after")
    def _has_area(self) -> ZoneSpec:
        p = self.polygon
        area = sum(p[i - 1][0] * p[i][1] - p[i][0] * p[i - 1][1] for i in range(len(p))) / 2
        if area == 0:
            msg = f"zone {self.name!r} has zero area: its points lie on one line"
            raise ValueError(msg)
        return self


class Zones(Stage):
    """Watch each stream's zones for ``msg.detections`` (tracked; ID -1 ignored).

    Sets ``meta["zones"]`` on every message of a stream with zones and appends events to
    ``meta["events"]``; a final ``counts`` snapshot follows each stream's last frame.
    """

    replicable: ClassVar[bool] = False

    class Config(AnalyticsConfig):
        zones: dict[str, list[ZoneSpec]] = Field(
            description='stream name (or "*" for all) -> [{name, polygon = [[x, y], ...]}]'
        )
        enter_frames: int = Field(2, ge=1, description="frames inside in a row to enter")
        exit_frames: int = Field(2, ge=1, description="frames outside in a row to leave")
        forget_after_s: float = Field(2.0, gt=0, description="unseen this long: the track left")

        _one_or_many = field_validator("zones", mode="before")(one_or_many)

        @field_validator("zones")
        @classmethod
        def _unique(cls, v: dict[str, list[ZoneSpec]]) -> dict[str, list[ZoneSpec]]:
            check_unique(v, "zone")
            return v

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.keep = class_ids(self.config.classes, self.config.names)
        self.monitors: dict[str, ZoneMonitor | None] = {}
        self.last: dict[str, Message] = {}
        self.snapshots = Snapshots(self.config.snapshot_every_s)

    def _monitor(self, stream: str) -> ZoneMonitor | None:
        if stream not in self.monitors:
            specs = for_stream(self.config.zones, stream)
            c = self.config
            self.monitors[stream] = (
                ZoneMonitor(
                    {s.name: s.polygon for s in specs},
                    anchor=c.anchor,
                    enter_frames=c.enter_frames,
                    exit_frames=c.exit_frames,
                    forget_after=c.forget_after_s,
                )
                if specs
                else None
            )
        return self.monitors[stream]

    def process(self, msg: Message) -> Message:
        monitor = self._monitor(msg.stream)
        if monitor is None:  # no zones for this stream
            return msg
        det = tracked(msg, self.ctx.stage, self.keep)
        if det is None:  # a snapshot flushed upstream at the stream's end: add ours to it
            if has_counts(msg):
                msg.meta["zones"] = self._overlay(monitor)
                merge_counts(msg, zones=self._counts(monitor))
                self.snapshots.finished.add(msg.stream)
            return msg
        found = monitor.update(det.xyxy, det.tracker_id, det.class_id, msg.t_capture)
        if found:
            events = [self._event(msg, ev) for ev in found]
            msg.meta["events"] = [*msg.meta.get("events", []), *events]
        msg.meta["zones"] = self._overlay(monitor)
        if self.snapshots.is_due(msg.stream, msg.t_capture) or has_counts(msg):
            merge_counts(msg, zones=self._counts(monitor))
        self.last[msg.stream] = msg
        return msg

    def end_stream(self, stream: str) -> Outputs:
        monitor = self.monitors.pop(stream, None)
        last = self.last.pop(stream, None)
        done = stream in self.snapshots.finished
        self.snapshots.forget(stream)
        if monitor is None or done:
            return None
        out = final_message(stream, last)
        out.meta["zones"] = self._overlay(monitor)
        merge_counts(out, zones=self._counts(monitor))
        return out

    def _event(self, msg: Message, ev: ZoneEvent) -> dict[str, Any]:
        name = class_name(ev.class_id, self.config.names)
        if ev.kind == "enter":
            return zone_enter_event(msg, ev.zone, ev.track_id, ev.class_id, name)
        return zone_exit_event(msg, ev.zone, ev.track_id, ev.class_id, ev.dwell or 0.0, name)

    def _counts(self, monitor: ZoneMonitor) -> dict[str, dict[str, int]]:
        """Objects inside each zone now, per class name, for a counts event."""
        return {
            zone: {class_name(c, self.config.names): n for c, n in sorted(by.items())}
            for zone, by in monitor.occupancy().items()
        }

    def _overlay(self, monitor: ZoneMonitor) -> dict[str, Any]:
        """``meta["zones"]``: each zone's polygon and how many objects are inside, for drawing."""
        occupancy = monitor.occupancy()
        return {
            name: {"polygon": poly.tolist(), "occupancy": sum(occupancy[name].values())}
            for name, poly in zip(monitor.names, monitor.polygons, strict=True)
        }
