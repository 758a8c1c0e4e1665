"""Home Assistant MQTT discovery: the retained config of each entity a pipeline offers.

One device per pipeline and board (``identifiers`` = ``rkpipe-<pipeline>-<stage>-<node>``)
holds a sensor per stream x line x direction x class (``total_increasing``), a sensor per
stream x zone x class (occupancy, ``measurement``), per stream x class a sensor of the objects
in view now and an ``occupancy`` binary_sensor reading the same number, an ``event`` entity
per stream and event topic (line crossings: ``in``/``out``; zones: ``enter``/``loiter``/
``exit``), an ``image`` of the stream's latest event snapshot, a ``connectivity``
binary_sensor per camera and an fps sensor per stream. Every entity reads a plain topic of
the sink and is available while the pipeline's availability topic (its Last Will) says
``online``. Config topics follow ``<prefix>/<component>/<device>/<object_id>/config``; an
empty retained config removes the entity.
"""

from __future__ import annotations

import json
from typing import Any

from pipeline import __version__
from stages.sinks.mqtt.topics import clean_id

__all__ = ["EVENT_TEMPLATE", "HA_EVENT_TYPES", "Discovery", "ha_event_type"]

#: The event entity's ``value_template``: an rkpipe event as HA's event payload, whose
#: ``event_type`` is the direction of a crossing or the zone event's kind (enter, loiter,
#: exit); the rest become the entity's attributes.
EVENT_TEMPLATE = (
    "{{ {'event_type': value_json.direction if value_json.type == 'line_crossing' "
    "else value_json.type[5:], 'line': value_json.get('line'), "
    "'zone': value_json.get('zone'), 'class_name': value_json.class_name, "
    "'track_id': value_json.track_id, 'dwell_s': value_json.get('dwell_s'), "
    "'id': value_json.id, 'time': value_json.time} | tojson }}"
)
#: What HA's event_type is, for each rkpipe event type an event entity takes.
HA_EVENT_TYPES = {
    "line_crossing": ("in", "out"),
    "zone_enter": ("enter",),
    "zone_loiter": ("loiter",),
    "zone_exit": ("exit",),
}


def ha_event_type(event: dict[str, Any]) -> str:
    """The ``event_type`` :data:`EVENT_TEMPLATE` gives ``event`` (for tests and docs)."""
    kind = str(event["type"])
    return str(event["direction"]) if kind == "line_crossing" else kind[len("zone_") :]


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

    def in_view(self, stream: str, cls: str, state: str) -> tuple[str, str]:
        """Objects of ``cls`` the camera of ``stream`` sees now."""
        return self._entity(
            "sensor",
            (stream, "objects", cls),
            name=f"{stream} {cls} in view",
            state_topic=state,
            state_class="measurement",
            icon="mdi:eye",
        )

    def occupied(self, stream: str, cls: str, state: str) -> tuple[str, str]:
        """Whether the camera of ``stream`` sees any ``cls`` now (from the in-view count)."""
        return self._entity(
            "binary_sensor",
            (stream, "occupied", cls),
            name=f"{stream} {cls} occupancy",
            state_topic=state,
            device_class="occupancy",
            value_template="{{ 'ON' if value | int(0) > 0 else 'OFF' }}",
        )

    def events(self, stream: str, key: str, kinds: list[str], state: str) -> tuple[str, str]:
        """An event entity for the rkpipe events of ``kinds`` that arrive on ``state``."""
        types = [t for k in kinds for t in HA_EVENT_TYPES[k]]
        label = " ".join(k.replace("_", " ") for k in kinds)
        return self._entity(
            "event",
            (stream, "event", key),
            name=f"{stream} {label}",
            state_topic=state,
            event_types=types,
            value_template=EVENT_TEMPLATE,
            icon="mdi:motion-sensor",
        )

    def image(self, stream: str, image: str) -> tuple[str, str]:
        """The latest event snapshot of ``stream`` (JPEG bytes)."""
        return self._entity(
            "image",
            (stream, "snapshot"),
            name=f"{stream} snapshot",
            image_topic=image,
            content_type="image/jpeg",
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
        if component == "image":  # HA's MQTT image takes no qos
            del config["qos"]
        return self.topic(component, parts), json.dumps(config, separators=(",", ":"))
