"""Objects in view now, per stream and class, as retained plain numbers (Frigate's
``frigate/<camera>/<object>``), for Home Assistant presence without drawing a zone:

    {state_prefix}/objects/{class}      tracked objects of that class in the frame now

The count comes from each frame's detections as the sink receives them: those with a tracker
id (after ``bytetrack``; a frame without tracker ids counts every box). A new count is shown
once it held ``hold_s`` seconds of capture time, so one missed or doubled detection does not
make the number (and HA's occupancy sensor) flap; every count starts at 0. Every class of
``classes`` is listed, zeros included, from a stream's first frame with detections; a class
seen or named by a ``counts`` event (the analytics stages' ``classes``) is listed from then
on. A stream that ends shows 0.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.detections import DETECTIONS_PREFIX
from pipeline.messages import Message
from stages.classes import COCO_NAMES, class_name
from stages.sinks.mqtt.discovery import Discovery
from stages.sinks.mqtt.retained import Retained
from stages.sinks.mqtt.topics import level

__all__ = ["Debounced", "Presence"]


@dataclass
class Debounced:
    """One number that changes only after a new value held ``hold_s``."""

    shown: int
    pending: int | None = None
    since: float = 0.0

    def feed(self, n: int, t: float, hold_s: float) -> bool:
        """Take this frame's value at time ``t``; whether ``shown`` changed."""
        if n == self.shown:
            self.pending = None
            return False
        if n != self.pending:
            self.pending, self.since = n, t
        if t - self.since < hold_s:
            return False
        self.shown, self.pending = n, None
        return True


class Presence:
    """Every stream's in-view counts, published through ``retained`` under the stream's
    ``state_prefix`` (``prefix(stream)``), announced to Home Assistant with ``discovery``."""

    def __init__(
        self,
        retained: Retained,
        prefix: Callable[[str], str],
        classes: Sequence[str] | None,
        hold_s: float,
        discovery: Discovery | None = None,
        names: Sequence[str] = COCO_NAMES,
    ) -> None:
        self.retained, self.prefix, self.discovery = retained, prefix, discovery
        self.classes, self.hold_s, self.names = list(classes or ()), hold_s, names
        self.streams: dict[str, dict[str, Debounced]] = {}

    def frame(self, msg: Message) -> None:
        """Count the tracked objects of ``msg`` per class (a message without detections, such
        as a stream's final snapshot, changes nothing)."""
        det = msg.detections
        if det is None:
            return
        tracked = DETECTIONS_PREFIX + "tracker_id" in msg.arrays
        ids = det.class_id[det.tracker_id >= 0] if tracked else det.class_id
        seen = Counter(class_name(int(c), self.names) for c in np.asarray(ids).tolist())
        known = self._stream(msg.stream, seen)
        for cls, number in known.items():
            if number.feed(seen.get(cls, 0), msg.t_capture, self.hold_s):
                self._publish(msg.stream, cls, number.shown)

    def learn(self, stream: str, events: Sequence[Mapping[str, Any]]) -> None:
        """List the classes a ``counts`` event of ``stream`` names (zeros too) from now on."""
        named: set[str] = set()
        for ev in events:
            if ev.get("type") != "counts":
                continue
            for dirs in (ev.get("lines") or {}).values():
                named.update(c for by in dirs.values() if isinstance(by, dict) for c in by)
            for body in (ev.get("zones") or {}).values():
                named.update((body.get("occupancy") or {}) if isinstance(body, dict) else ())
        if named and stream in self.streams:
            self._stream(stream, dict.fromkeys(named, 0))

    def end(self, stream: str) -> None:
        """``stream`` ended: nothing in view."""
        for cls, number in self.streams.get(stream, {}).items():
            number.shown, number.pending = 0, None
            self._publish(stream, cls, 0)

    def _stream(self, stream: str, seen: Mapping[str, int]) -> dict[str, Debounced]:
        """The stream's counters; a class met for the first time starts at 0, published at
        once, and goes up as any change does (a class seen in one frame only stays 0)."""
        known = self.streams.setdefault(stream, {})
        for cls in [*self.classes, *sorted(seen)]:
            if cls not in known:
                known[cls] = Debounced(0)
                self._announce(stream, cls)
                self._publish(stream, cls, 0)
        return known

    def _topic(self, stream: str, cls: str) -> str:
        return f"{self.prefix(stream)}/objects/{level(cls)}"

    def _publish(self, stream: str, cls: str, n: int) -> None:
        self.retained.set(self._topic(stream, cls), str(n))

    def _announce(self, stream: str, cls: str) -> None:
        if self.discovery is not None:
            topic = self._topic(stream, cls)
            self.retained.set(*self.discovery.in_view(stream, cls, topic))
            self.retained.set(*self.discovery.occupied(stream, cls, topic))
