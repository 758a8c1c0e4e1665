"""Home Assistant entities that follow the events: an ``event`` entity per stream and event
topic, and an ``image`` of each stream's latest event snapshot.

An event entity reads the events the sink publishes anyway (``topic``); its value template
turns each into HA's payload (``event_type`` ``in``/``out`` for a crossing, ``enter``/
``loiter``/``exit`` for a zone). It is announced when a stream's ``counts`` event shows lines
or zones, or when an event of a kind not yet announced arrives; the first ``counts`` event
removes those of an earlier run its stream no longer needs. With ``{type}`` in ``topic``
each kind has its own entity; without it, one entity per stream takes them all. A topic that
varies with the event itself ({line}, {zone}, {direction}, {class_name}) cannot be one
entity's state topic: then there are none.

The image entity reads ``snapshot_topic`` with ``{type}`` = ``latest``, where each stream's
newest snapshot of any type goes (retained), beside the one per type.
"""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from stages.sinks.mqtt.discovery import HA_EVENT_TYPES, Discovery
from stages.sinks.mqtt.retained import Payload, Retained

__all__ = ["LATEST", "HaEntities"]

LATEST = "latest"  # the {type} of each stream's newest snapshot
PER_EVENT = frozenset({"line", "zone", "direction", "class_name"})


class HaEntities:
    """Announces event and image entities through ``retained``; ``topic(template, fields)``
    renders a topic as the sink does."""

    def __init__(
        self,
        retained: Retained,
        discovery: Discovery | None,
        topic: Callable[[str, dict[str, Any]], str],
        event_template: str,
        snapshot_template: str,
    ) -> None:
        self.retained, self.discovery, self.topic = retained, discovery, topic
        self.event_template, self.snapshot_template = event_template, snapshot_template
        fields = {f for _, f, _, _ in string.Formatter().parse(event_template) if f}
        self.events_ok = not fields & PER_EVENT
        self.by_type = "type" in fields
        self.kinds: dict[str, set[str]] = {}  # stream -> kinds announced
        self.layouts: set[str] = set()  # streams whose first counts event came
        self.images: set[str] = set()

    def seen(self, stream: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Announce the event entities ``events`` (of ``stream``) show a need for. The
        stream's first ``counts`` event tells its lines and zones: the entities of an earlier
        run that it leaves without use are removed."""
        if self.discovery is None or not self.events_ok:
            return
        kinds: set[str] = set()
        layout: set[str] | None = None
        for ev in events:
            kind = ev.get("type")
            if kind in HA_EVENT_TYPES:
                kinds.add(str(kind))
            elif kind == "counts":
                layout = set()
                if ev.get("lines"):
                    layout.add("line_crossing")
                if ev.get("zones"):
                    layout.update(("zone_enter", "zone_loiter", "zone_exit"))
                kinds |= layout
        own = self.kinds.setdefault(stream, set())
        if layout is not None and stream not in self.layouts:
            self.layouts.add(stream)
            self._forget(stream, set(HA_EVENT_TYPES) - kinds - own)
        new = kinds - own
        if not new:
            return
        own |= kinds
        if self.by_type:
            for kind in sorted(new):
                self._announce(stream, kind, [kind])
        else:
            self._announce(stream, "events", [k for k in HA_EVENT_TYPES if k in own])

    def _forget(self, stream: str, kinds: set[str]) -> None:
        """Remove the entities of ``kinds`` (with one entity for all: nothing to remove)."""
        assert self.discovery is not None
        if self.by_type:
            for kind in sorted(kinds):
                self.retained.clear(self.discovery.topic("event", (stream, "event", kind)))

    def _announce(self, stream: str, key: str, kinds: list[str]) -> None:
        assert self.discovery is not None
        state = self.topic(self.event_template, {"stream": stream, "type": kinds[0]})
        self.retained.set(*self.discovery.events(stream, key, kinds, state))

    def snapshot(self, stream: str, fields: dict[str, Any], data: Payload) -> None:
        """Keep ``data`` as ``stream``'s latest snapshot (and announce its image once)."""
        if not self.snapshot_template:
            return
        topic = self.topic(self.snapshot_template, {**fields, "type": LATEST})
        self.retained.set(topic, data)
        if self.discovery is not None and stream not in self.images:
            self.images.add(stream)
            self.retained.set(*self.discovery.image(stream, topic))
