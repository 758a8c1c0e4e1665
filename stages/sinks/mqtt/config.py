"""The mqtt sink's options, checked when the graph is loaded."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from pipeline.output_files import FileMode, file_mode_field
from pipeline.outputs import OutputDir
from pipeline.stage import StageConfig
from stages.analytics.event_snapshots import SNAPSHOT_DIR
from stages.sinks.mqtt.topics import check_command_prefix, check_template

__all__ = ["MqttSinkConfig"]


class MqttSinkConfig(StageConfig):
    host: str = Field("localhost", min_length=1, description="broker host name or address")
    port: int | None = Field(None, ge=1, le=65535, description="default 1883, 8883 with tls")
    client_id: str | None = Field(
        None, description="default rkpipe-<pipeline>-<stage>-<node>-<run id>: one per run"
    )
    username: str | None = None
    password: str | None = None
    password_env: str | None = Field(None, description="environment variable with password")
    keepalive: int = Field(30, ge=5, le=65535, description="seconds")
    qos: Literal[0, 1, 2] = 1
    topic: str = Field("rkpipe/{node}/{stream}/events/{type}", min_length=1)
    status_topic: str = Field(
        "rkpipe/{node}/{stream}/status", description='retained "online"/"offline"; "" turns it off'
    )
    availability_topic: str = Field(
        "rkpipe/{node}/status", min_length=1, description="pipeline online/offline; Last Will"
    )
    state_prefix: str = Field(
        "rkpipe/{node}/{stream}", description='retained totals under it; "" turns them off'
    )
    state_dir: str = Field("out/mqtt", min_length=1, description="line totals kept across runs")
    snapshot_topic: str = Field(
        "rkpipe/{node}/{stream}/snapshot/{type}", description='event snapshots (JPEG); "" turns off'
    )
    snapshot_root: str = Field(
        SNAPSHOT_DIR, description="the snapshots folder event snapshot paths start from"
    )
    presence_classes: list[str] | None = Field(
        None,
        description="classes whose in-view counts are always published, zeros too (default: "
        "those seen, and those the analytics stages' counts events name)",
    )
    presence_hold_s: float = Field(
        1.0, ge=0, description="an in-view count changes once the new one held this long"
    )
    ha_discovery: bool = Field(False, description="announce sensors to Home Assistant")
    ha_prefix: str = Field("homeassistant", min_length=1, description="HA discovery prefix")
    commands: bool = Field(
        False,
        description="take commands on {state_prefix}/lines/<line>/set (move a line) and change "
        "the graph file with them: anyone who may publish to the broker then may",
    )
    tls: bool = False
    ca_certs: str | None = Field(None, description="CA bundle (default: system CAs)")
    certfile: str | None = Field(None, description="client certificate (PEM)")
    keyfile: str | None = Field(None, description="client key (PEM)")
    tls_insecure: bool = Field(False, description="skip the broker host name check")
    max_queued: int = Field(10_000, ge=1, description="waiting messages kept in memory")
    max_inflight: int = Field(100, ge=1, le=65535, description="published, not yet acked")
    spool_dir: OutputDir | None = Field(None, description="every message on disk first, here")
    spool_max_mb: float = Field(64.0, gt=0, description="bound of the spooled messages")
    witness: bool = Field(
        True,
        description="with spool_dir: a second session sees what the broker took, so a "
        "restarted sink never sends it again",
    )
    connect_timeout_s: float = Field(5.0, gt=0, description="first connect, at setup")
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    flush_timeout_s: float = Field(5.0, ge=0, description="time to deliver what is left")
    file_mode: FileMode = file_mode_field()

    @field_validator("topic", "status_topic", "availability_topic", "state_prefix")
    @classmethod
    def _template(cls, value: str) -> str:
        return check_template(value)

    @field_validator("snapshot_topic")
    @classmethod
    def _snapshot_template(cls, value: str) -> str:
        check_template(value)
        if value and "{type}" not in value:
            raise ValueError("snapshot_topic needs {type}: each event type keeps its latest")
        return value

    @field_validator("ha_prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        if "{" in value:
            raise ValueError("ha_prefix takes no placeholders")
        return check_template(value)

    @model_validator(mode="after")
    def _consistent(self) -> MqttSinkConfig:
        if self.password is not None and self.password_env is not None:
            raise ValueError("set password or password_env, not both")
        tls_keys = ("ca_certs", "certfile", "keyfile", "tls_insecure")
        if not self.tls and any(getattr(self, k) for k in tls_keys):
            raise ValueError(f"{', '.join(tls_keys)} need tls = true")
        if self.reconnect_max_s < self.reconnect_min_s:
            raise ValueError("reconnect_max_s must be at least reconnect_min_s")
        if self.ha_discovery and not (self.state_prefix and self.status_topic):
            raise ValueError("ha_discovery needs state_prefix and status_topic (its sensors)")
        for key in ("status_topic", "state_prefix"):
            value = getattr(self, key)
            if value and "{stream}" not in value:
                raise ValueError(f"{key} needs {{stream}}: every stream has its own")
        if self.commands:
            check_command_prefix(self.state_prefix)
        return self
