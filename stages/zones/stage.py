"""The ``zones`` stage: occupancy per class of named polygons, and ``zone_enter`` /
``zone_exit`` events with dwell time (and, with ``loiter_s``, one ``zone_loiter`` per stay
while the object is still inside), per stream.

    [stages.zones]
    uses = "zones"
    inputs = ["track"]
    zones.cam0 = [{ name = "crosswalk", polygon = [[300, 140], [360, 140], [360, 280]] }]
    zones.cam1 = [{ name = "lot", polygon = [[0, 0.5], [1, 0.5], [1, 1]], relative = true }]

A track is inside when its anchor (bottom-centre by default) is; a state change needs
``enter_frames`` / ``exit_frames`` frames in a row, so a box on the border raises no event
storm. Dwell is on the capture clock. Each stream has its own monitor: not replicable.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import Field

from pipeline.detections import Detections
from pipeline.keys import META_ZONES
from pipeline.messages import Message
from stages.analytics.base import (
    AnalyticsConfig,
    PerStreamAnalytics,
    PerStreamShapes,
    Point,
    ShapeSpec,
)
from stages.events import zone_enter_event, zone_exit_event, zone_loiter_event
from stages.zones.monitor import ZoneEvent, ZoneMonitor

__all__ = ["ZoneSpec", "Zones", "ZonesConfig"]


class ZoneSpec(ShapeSpec):
    """One named polygon (at least 3 points, non-zero area)."""

    kind: ClassVar[str] = "zone"

    polygon: list[tuple[float, float]] = Field(min_length=3)

    def points(self) -> list[Point]:
        return list(self.polygon)

    def check_shape(self) -> None:
        p = self.polygon
        area = sum(p[i - 1][0] * p[i][1] - p[i][0] * p[i - 1][1] for i in range(len(p))) / 2
        if area == 0:
            msg = f"zone {self.name!r} has zero area: its points lie on one line"
            raise ValueError(msg)


class ZonesConfig(AnalyticsConfig):
    zones: PerStreamShapes[ZoneSpec] = Field(
        description='stream name (or "*": every stream not named; a stream\'s own list '
        "replaces it) -> [{name, polygon = [[x, y], ...]}]"
    )
    enter_frames: int = Field(2, ge=1, description="frames inside in a row to enter")
    exit_frames: int = Field(2, ge=1, description="frames outside in a row to leave")
    forget_after_s: float = Field(2.0, gt=0, description="unseen this long: the track left")
    loiter_s: float | None = Field(
        None, gt=0, description="inside this long, still inside: one zone_loiter event per stay"
    )


class Zones(PerStreamAnalytics[ZonesConfig, ZoneMonitor]):
    """Watch each stream's zones for ``msg.detections`` (tracked; ID -1 ignored).

    Sets ``meta["zones"]`` on every message of a stream with zones and appends events to
    ``meta["events"]``; a final ``counts`` snapshot follows each stream's last frame.
    """

    overlay_key: ClassVar[str] = META_ZONES
    shapes_key: ClassVar[str] = "zones"

    def build(self, shapes: dict[str, list[Point]]) -> ZoneMonitor:
        c = self.config
        return ZoneMonitor(
            shapes,
            anchor=c.anchor,
            enter_frames=c.enter_frames,
            exit_frames=c.exit_frames,
            forget_after=c.forget_after_s,
            loiter=c.loiter_s,
        )

    def observe(self, msg: Message, analyser: ZoneMonitor, det: Detections) -> list[dict]:
        found = analyser.update(det.xyxy, det.tracker_id, det.class_id, msg.t_capture)
        return [self._event(msg, ev) for ev in found]

    def _event(self, msg: Message, ev: ZoneEvent) -> dict[str, Any]:
        name = self.class_name(ev.class_id)
        run = self.ctx.run_id
        if ev.kind == "enter":
            return zone_enter_event(msg, ev.zone, ev.track_id, ev.class_id, name, run=run)
        dwell = ev.dwell or 0.0
        build = zone_loiter_event if ev.kind == "loiter" else zone_exit_event
        return build(msg, ev.zone, ev.track_id, ev.class_id, dwell, name, run=run)

    def counts(self, analyser: ZoneMonitor) -> dict[str, Any]:
        """Objects inside each zone now, per class name; every watched class (``classes``)
        is listed, zeros too."""
        return {
            zone: {**self.zeros, **{self.class_name(c): n for c, n in sorted(by.items())}}
            for zone, by in analyser.occupancy().items()
        }

    def overlay(self, analyser: ZoneMonitor) -> dict[str, Any]:
        """Each zone's polygon and how many objects are inside, for drawing."""
        occupancy = analyser.occupancy()
        return {
            name: {"polygon": poly.tolist(), "occupancy": sum(occupancy[name].values())}
            for name, poly in zip(analyser.names, analyser.polygons, strict=True)
        }
