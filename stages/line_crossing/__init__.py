"""The ``line_crossing`` stage and its counter: tracked objects crossing named lines, per
direction and class."""

from __future__ import annotations

from stages.line_crossing.counter import CrossingEvent, Line, LineCounter
from stages.line_crossing.stage import LineCrossing

__all__ = ["CrossingEvent", "Line", "LineCounter", "LineCrossing"]
