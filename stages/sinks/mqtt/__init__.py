"""The ``mqtt`` sink: events to a broker at QoS 1 through a bounded, optionally spooled outbox."""

from __future__ import annotations

from stages.sinks.mqtt.stage import MqttSink

__all__ = ["MqttSink"]
