"""Home Assistant MQTT discovery: the retained config of each entity a pipeline offers.

One device per pipeline (``identifiers`` = the sink's client id) holds a sensor per stream x
line x direction x class (``total_increasing``), a sensor per stream x zone x class
(occupancy, ``measurement``), a ``connectivity`` binary_sensor per camera and an fps sensor per
stream. Every entity reads a plain retained state topic of the sink and is available while the
pipeline's availability topic (its Last Will) says ``online``. Config topics follow
``<prefix>/<component>/<node_id>/<object_id>/config``; an empty retained config removes the
entity.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline import __version__
from stages.sinks.mqtt.topics import clean_id

__all__ = ["Discovery"]


class Discovery:
    """Builds (config topic, payload) pairs for one pipeline's device."""

    def __init__(self, prefix: str, node: str, pipeline: str, availability_topic: str) -> None:
        self.prefix = prefix
        self.node = clean_id(node)
        self.shared: dict[str, Any] = {
            "availability": [
                {
                    "topic": availability_topic,
                    "payload_available": "online",
                    "payload_not_available": "offline",
                }
            ],
            "device": {
                "identifiers": [self.node],
                "name": f"rkpipe {pipeline}",
                "manufacturer": "rkpipe",
                "model": "video analytics pipeline",
                "sw_version": __version__,
            },
            "origin": {"name": "rkpipe", "sw_version": __version__},
            "qos": 1,
        }

    def line(self, stream: str, line: str, direction: str, cls: str, state: str) -> tuple[str, str]:
        """Crossings of ``line`` in ``direction`` by ``cls`` since the first run."""
        return self._entity(
            "sensor",
            (stream, line, direction, cls),
            name=f"{stream} {line} {direction} {cls}",
            state_topic=state,
            state_class="total_increasing",
            icon="mdi:counter",
        )

    def zone(self, stream: str, zone: str, cls: str, state: str) -> tuple[str, str]:
        """Objects of ``cls`` inside ``zone`` now."""
        return self._entity(
            "sensor",
            (stream, "zone", zone, cls),
            name=f"{stream} {zone} {cls}",
            state_topic=state,
            state_class="measurement",
            icon="mdi:account-group",
        )

    def camera(self, stream: str, status: str) -> tuple[str, str]:
        """Whether the camera of ``stream`` is delivering frames."""
        return self._entity(
            "binary_sensor",
            (stream, "connected"),
            name=f"{stream} connected",
            state_topic=status,
            device_class="connectivity",
            payload_on="online",
            payload_off="offline",
            entity_category="diagnostic",
        )

    def fps(self, stream: str, state: str) -> tuple[str, str]:
        """Frames per second of ``stream`` reaching the sink."""
        return self._entity(
            "sensor",
            (stream, "fps"),
            name=f"{stream} fps",
            state_topic=state,
            state_class="measurement",
            unit_of_measurement="fps",
            suggested_display_precision=1,
            icon="mdi:speedometer",
            entity_category="diagnostic",
        )

    def topic(self, component: str, parts: tuple[str, ...]) -> str:
        """The config topic of an entity: where to publish it, or an empty payload to remove
        it."""
        return f"{self.prefix}/{component}/{self.node}/{self._object_id(parts)}/config"

    def _object_id(self, parts: tuple[str, ...]) -> str:
        return clean_id("_".join(parts))

    def _entity(self, component: str, parts: tuple[str, ...], **fields: Any) -> tuple[str, str]:
        config = {
            "unique_id": f"{self.node}_{self._object_id(parts)}",
            **fields,
            **self.shared,
        }
        return self.topic(component, parts), json.dumps(config, separators=(",", ":"))
