"""The ``zones`` stage and its monitor: occupancy, enter/exit and dwell time per polygon."""

from __future__ import annotations

from stages.zones.monitor import ZoneEvent, ZoneMonitor, points_in_polygon
from stages.zones.stage import Zones

__all__ = ["ZoneEvent", "ZoneMonitor", "Zones", "points_in_polygon"]
