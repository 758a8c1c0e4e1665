"""JSON Schemas of Home Assistant's documented MQTT discovery options for the event, image
and occupancy binary_sensor entities (home-assistant.io/integrations/event.mqtt, image.mqtt,
binary_sensor.mqtt): a config may hold only these keys, with the documented types."""

from __future__ import annotations

__all__ = ["EVENT", "IMAGE", "OCCUPANCY"]

COMMON = {
    "availability": {"type": "array", "minItems": 1},
    "availability_mode": {"enum": ["all", "any", "latest"]},
    "device": {"type": "object", "required": ["identifiers"]},
    "origin": {"type": "object", "required": ["name"]},
    "enabled_by_default": {"type": "boolean"},
    "encoding": {"type": "string"},
    "entity_category": {"enum": ["config", "diagnostic"]},
    "icon": {"type": "string", "pattern": "^mdi:"},
    "json_attributes_template": {"type": "string"},
    "json_attributes_topic": {"type": "string"},
    "name": {"type": ["string", "null"]},
    "object_id": {"type": "string"},
    "unique_id": {"type": "string", "minLength": 1},
}
EVENT = {
    "type": "object",
    "properties": COMMON
    | {
        "device_class": {"enum": ["button", "doorbell", "motion"]},
        "event_types": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "qos": {"enum": [0, 1, 2]},
        "state_topic": {"type": "string", "minLength": 1},
        "value_template": {"type": "string"},
    },
    "required": ["state_topic", "event_types", "unique_id", "device"],
    "additionalProperties": False,
}
IMAGE = {
    "type": "object",
    "properties": COMMON
    | {
        "content_type": {"type": "string"},
        "image_encoding": {"enum": ["b64"]},
        "image_topic": {"type": "string", "minLength": 1},
        "url_template": {"type": "string"},
        "url_topic": {"type": "string"},
    },
    "required": ["image_topic", "unique_id", "device"],
    "additionalProperties": False,
}
OCCUPANCY = {
    "type": "object",
    "properties": COMMON
    | {
        "device_class": {"const": "occupancy"},
        "expire_after": {"type": "integer"},
        "force_update": {"type": "boolean"},
        "off_delay": {"type": "integer"},
        "payload_off": {"type": "string"},
        "payload_on": {"type": "string"},
        "qos": {"enum": [0, 1, 2]},
        "state_topic": {"type": "string", "minLength": 1},
        "value_template": {"type": "string"},
    },
    "required": ["state_topic", "unique_id", "device"],
    "additionalProperties": False,
}
