"""Per-stream analytics over tracked boxes: line crossing counts and zone occupancy/dwell."""

from __future__ import annotations

from stages.analytics.lines import CrossingEvent, Line, LineCounter
from stages.analytics.zones import ZoneEvent, ZoneMonitor, points_in_polygon

__all__ = [
    "CrossingEvent",
    "Line",
    "LineCounter",
    "ZoneEvent",
    "ZoneMonitor",
    "points_in_polygon",
]
