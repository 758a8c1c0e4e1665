"""A sink that publishes analytics events to an MQTT broker (paho-mqtt 2.x), losing none while
the broker is away, up to a bound.

Every event in ``msg.meta["events"]`` becomes one JSON message on a topic made from
``topic`` (placeholders: {stream} {type} {line} {zone} {direction} {class_name} {pipeline};
a level whose placeholder the event lacks is left out). ``process`` only queues; a sender
thread publishes at ``qos`` and forgets a message when the broker acknowledges it. Each stream
has a retained status (``status_topic``: {"state": "online"|"offline", ...}); the pipeline
has a retained "online"/"offline" on ``availability_topic``, with "offline" as Last Will.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import ssl
import string
import threading
import time
from typing import Annotated, Any, Literal

from pydantic import Field, field_validator, model_validator

from pipeline.doctor import Check, DoctorContext
from pipeline.errors import StageSetupError
from pipeline.messages import Message
from pipeline.netcheck import tcp_answer
from pipeline.outputs import OutputPath
from pipeline.secrets import remember
from pipeline.stage import Context, Stage, StageConfig
from stages.events import iso_time
from stages.sinks.mqtt.outbox import Item, Outbox

__all__ = ["MqttSink"]

TOPIC_FIELDS = ("stream", "type", "line", "zone", "direction", "class_name", "pipeline")
#: CONNACK reasons that retrying cannot fix, and what to check.
FATAL_CONNACK = {
    0x84: "the broker does not take MQTT 3.1.1",
    0x85: "check client_id",
    0x86: "check username, password or password_env",
    0x87: "check username, password or password_env, and the broker's access rules",
    0x8C: "check username, password or password_env",
}


class MqttSinkConfig(StageConfig):
    host: str = Field("localhost", min_length=1, description="broker host name or address")
    port: int | None = Field(None, ge=1, le=65535, description="default 1883, 8883 with tls")
    client_id: str | None = Field(None, description="default rkpipe-<pipeline>-<stage>-<host>")
    username: str | None = None
    password: str | None = None
    password_env: str | None = Field(None, description="environment variable with password")
    keepalive: int = Field(30, ge=5, le=65535, description="seconds")
    qos: Literal[0, 1, 2] = 1
    topic: str = Field("rkpipe/{stream}/events/{type}", min_length=1)
    status_topic: str = Field("rkpipe/{stream}/status", description='"" turns it off')
    availability_topic: str = Field(
        "rkpipe/status", min_length=1, description="pipeline online/offline; Last Will"
    )
    tls: bool = False
    ca_certs: str | None = Field(None, description="CA bundle (default: system CAs)")
    certfile: str | None = Field(None, description="client certificate (PEM)")
    keyfile: str | None = Field(None, description="client key (PEM)")
    tls_insecure: bool = Field(False, description="skip the broker host name check")
    max_queued: int = Field(10_000, ge=1, description="waiting messages kept in memory")
    max_inflight: int = Field(100, ge=1, le=65535, description="published, not yet acked")
    spool_dir: Annotated[str, OutputPath("dir", base="graph")] | None = Field(
        None, description="keep overflow here, on disk (relative to the graph file)"
    )
    spool_max_mb: float = Field(64.0, gt=0, description="bound of the spool file")
    connect_timeout_s: float = Field(5.0, gt=0, description="first connect, at setup")
    reconnect_min_s: float = Field(1.0, gt=0)
    reconnect_max_s: float = Field(30.0, gt=0)
    flush_timeout_s: float = Field(5.0, ge=0, description="time to deliver what is left")

    @field_validator("topic", "status_topic", "availability_topic")
    @classmethod
    def _template(cls, value: str) -> str:
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
        return self


class MqttSink(Stage[MqttSinkConfig]):
    """Publish each event of each message to MQTT; frames without events publish nothing."""

    replicable = False

    # -- setup ---------------------------------------------------------------------------------
    @classmethod
    def doctor(cls, config: StageConfig, ctx: DoctorContext) -> list[Check]:
        """The broker answers on its port."""
        assert isinstance(config, MqttSinkConfig)
        port = config.port or (8883 if config.tls else 1883)
        why = tcp_answer(config.host, port, 2.0)
        if why:
            fix = "start the broker, or set host/port (RKPIPE_MQTT_HOST) to where it runs"
            return [Check("broker", "fail", why, fix)]
        return [Check("broker", "ok", f"{config.host}:{port} answers")]

    def setup(self, ctx: Context) -> None:
        cfg = self.config
        self.ctx, self.log = ctx, ctx.log
        self.port = cfg.port or (8883 if cfg.tls else 1883)
        self.address = f"{cfg.host}:{self.port}"
        self.pipeline = ctx.pipeline
        host = socket.gethostname().split(".")[0]
        self.client_id = cfg.client_id or _clean_id(f"rkpipe-{self.pipeline}-{ctx.instance}-{host}")
        spool = None
        if cfg.spool_dir:
            spool = ctx.resolve_path(cfg.spool_dir) / f"{_clean_id(ctx.instance)}.jsonl"
        self.outbox = Outbox(cfg.max_queued, spool, int(cfg.spool_max_mb * 2**20))
        if len(self.outbox):
            self.log.warning(
                "mqtt: %d messages left from a previous run in %s", len(self.outbox), spool
            )
        self.online: dict[str, int] = {}  # stream -> events queued
        self.connected = threading.Event()
        self.answered = threading.Event()  # the first connect attempt has an outcome
        self.refused: Any = None
        self.outage_since: float | None = None
        self.dropping = False
        self.flushed = False  # the last stream ended and what was queued had its chance
        self.unpublishable = 0  # dropped by the sender thread, counted from process()
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.client = self._make_client()
        self._connect()
        self.sender = threading.Thread(target=self._send_loop, name="mqtt-send", daemon=True)
        self.sender.start()

    def _make_client(self) -> Any:
        import paho.mqtt.client as mqtt

        cfg = self.config
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=True,
            protocol=mqtt.MQTTv311,
        )
        password = self._password()
        if cfg.username is not None or password is not None:
            client.username_pw_set(cfg.username, password)
        if cfg.tls:
            self._set_tls(client)
        availability = self._topic(cfg.availability_topic, {})
        client.will_set(availability, "offline", qos=1, retain=True)
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
        client.max_inflight_messages_set(cfg.max_inflight)
        client.connect_timeout = cfg.connect_timeout_s
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_publish = lambda *_: self.outbox.wake()
        return client

    def _password(self) -> str | None:
        cfg = self.config
        if cfg.password_env is None:
            return cfg.password
        value = os.environ.get(cfg.password_env)
        if value is None:
            msg = f"mqtt: password_env names {cfg.password_env}, which is not set"
            raise StageSetupError(msg)
        remember(value)  # masked in this process's errors and logs
        return value

    def _set_tls(self, client: Any) -> None:
        cfg = self.config
        paths = {}
        for key in ("ca_certs", "certfile", "keyfile"):
            value = getattr(cfg, key)
            if value is not None:
                path = self.ctx.resolve_path(value)
                if not path.is_file():
                    raise StageSetupError(f"mqtt: {key} {path} does not exist")
                paths[key] = str(path)
        try:
            client.tls_set(**paths, cert_reqs=ssl.CERT_REQUIRED)
        except (ssl.SSLError, OSError) as exc:
            raise StageSetupError(f"mqtt: cannot load TLS files: {exc}") from None
        if cfg.tls_insecure:
            client.tls_insecure_set(True)

    def _connect(self) -> None:
        """Try once now (a refusal for bad credentials ends the run), then keep retrying in
        the background: a broker that is down at start is waited for, not fatal."""
        cfg = self.config
        try:
            self.client.connect(cfg.host, self.port, cfg.keepalive)
        except ssl.SSLError as exc:
            raise StageSetupError(f"mqtt broker {self.address}: TLS failed: {exc}") from None
        except OSError as exc:
            self._unreachable(exc)
            self.client.connect_async(cfg.host, self.port, cfg.keepalive)
        self.client.loop_start()
        self.answered.wait(cfg.connect_timeout_s)
        self.answered.set()  # from now on the callbacks report what happens
        if self.refused is not None and self.refused.value in FATAL_CONNACK:
            self.client.disconnect()
            self.client.loop_stop()
            hint = FATAL_CONNACK[self.refused.value]
            msg = f"mqtt broker {self.address} refused the connection: {self.refused} ({hint})"
            raise StageSetupError(msg)
        if not self.connected.is_set() and self.outage_since is None:
            self._unreachable("no answer")

    # -- client callbacks (paho's network thread) ---------------------------------------------
    def _on_connect(self, client: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        if reason.is_failure:  # at setup, the stage says it; later, say it once
            known = self.refused is not None and self.refused.value == reason.value
            if self.answered.is_set() and not known:
                self.log.warning("mqtt broker %s refused the connection: %s", self.address, reason)
            self.refused = reason
            self.answered.set()
            return
        self.refused = None
        availability = self._topic(self.config.availability_topic, {})
        client.publish(availability, "online", qos=1, retain=True)
        if self.outage_since is not None:
            self.log.warning(
                "mqtt: reconnected to %s after %.1fs; %d messages to send",
                self.address,
                time.monotonic() - self.outage_since,
                len(self.outbox),
            )
        self.outage_since = None
        self.connected.set()
        self.answered.set()
        self.outbox.wake()

    def _on_connect_fail(self, _client: Any, _u: Any) -> None:
        self._unreachable("connection failed")
        self.answered.set()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        if self.refused is not None and self.outage_since is None:
            self.outage_since = time.monotonic()  # the refusal was reported already
        elif not self.stopping.is_set():
            self._unreachable("connection lost" if reason.is_failure else str(reason))

    def _unreachable(self, why: object) -> None:
        if self.outage_since is not None:
            return
        self.outage_since = time.monotonic()
        self.dropping = False
        self.log.warning(
            "mqtt broker %s not reachable (%s); queueing events and retrying", self.address, why
        )

    # -- the sender thread --------------------------------------------------------------------
    def _send_loop(self) -> None:
        qos = self.config.qos
        while not self.stopping.is_set():
            self.outbox.settle()
            item = None
            if self.connected.is_set() and len(self.outbox.inflight) < self.config.max_inflight:
                item = self.outbox.next()
            if item is None:
                self.outbox.wait(0.02 if self.outbox.inflight else 0.2)
                continue
            try:
                info = self.client.publish(item.topic, item.payload, qos=qos, retain=item.retain)
            except ValueError as exc:  # a topic the broker cannot take: say so, go on
                self.log.warning("mqtt: cannot publish on %r: %s", item.topic, exc)
                with self.lock:
                    self.unpublishable += 1
                continue
            if qos == 0 and info.rc != 0:  # QoS 0 is not queued by the client: try again
                self.outbox.retry(item)
                self.outbox.wait(0.05)
                continue
            self.outbox.sending(item, info)

    # -- the stage --------------------------------------------------------------------------
    def process(self, msg: Message) -> Message:
        if not self.sender.is_alive():  # its traceback is above; a restart gets a fresh one
            raise RuntimeError("mqtt: the sender thread died")
        stream = msg.stream
        if stream not in self.online:
            self.online[stream] = 0
            self._status(stream, "online")
        for event in msg.meta.get("events") or ():
            fields = {**event, "stream": event.get("stream", stream)}
            payload = json.dumps(event, separators=(",", ":"), default=_plain)
            self._put(Item(self._topic(self.config.topic, fields), payload))
            self.online[stream] += 1
        return msg

    def end_stream(self, stream: str) -> None:
        """A stream ended: mark it offline; after the last one, deliver what is queued."""
        if stream in self.online:
            self._status(stream, "offline")
            del self.online[stream]
        if not self.online:
            left = self._flush(self.config.flush_timeout_s)
            self.flushed = True
            if left and self.outbox.spool is None:
                self.ctx.count_drop("mqtt_undelivered", left)
        return None

    def _put(self, item: Item) -> None:
        with self.lock:
            bad, self.unpublishable = self.unpublishable, 0
        if bad:
            self.ctx.count_drop("mqtt_bad_topic", bad)
        dropped = self.outbox.put(item)
        if not dropped:
            return
        self.ctx.count_drop("mqtt_outbox_full", dropped)
        if not self.dropping:
            self.dropping = True
            bound = f"{self.config.max_queued} messages"
            if self.outbox.spool is not None:
                bound += f" and {self.config.spool_max_mb:g} MB spooled"
            self.log.warning(
                "mqtt: outbox full (%s) while broker %s is away; dropping the oldest",
                bound,
                self.address,
            )

    def _status(self, stream: str, state: str) -> None:
        if not self.config.status_topic:
            return
        doc: dict[str, Any] = {
            "state": state,
            "stream": stream,
            "pipeline": self.pipeline,
            "client_id": self.client_id,
            "time": iso_time(time.time()),
        }
        if state == "offline":
            doc["events"] = self.online.get(stream, 0)
        topic = self._topic(self.config.status_topic, {"stream": stream})
        self._put(Item(topic, json.dumps(doc), retain=True))

    def _flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` for the broker to acknowledge everything; returns what is
        left."""
        if self.outbox.wait_empty(timeout):
            return 0
        return len(self.outbox)

    def close(self) -> None:
        """Deliver what is left (up to ``flush_timeout_s``), say offline, disconnect; report
        what could not go, and keep it in the spool when there is one."""
        if getattr(self, "client", None) is None:
            return
        for stream in list(self.online):
            self._status(stream, "offline")
        self.online.clear()
        left = self._flush(0.5 if self.flushed else self.config.flush_timeout_s)
        self.stopping.set()
        self.outbox.wake()
        self.sender.join(2.0)
        if self.connected.is_set():
            availability = self._topic(self.config.availability_topic, {})
            info = self.client.publish(availability, "offline", qos=1, retain=True)
            with contextlib.suppress(RuntimeError, ValueError):  # the connection just went
                info.wait_for_publish(min(2.0, self.config.flush_timeout_s + 0.1))
        self.client.disconnect()
        self.client.loop_stop()
        kept = self.outbox.close()
        if left:
            spool = self.outbox.spool
            where = f"kept in {spool.path}" if kept and spool is not None else "lost"
            self.log.warning(
                "mqtt: %d messages not delivered to broker %s (%s)", left, self.address, where
            )

    # -- topics ------------------------------------------------------------------------------
    def _topic(self, template: str, fields: dict[str, Any]) -> str:
        return render_topic(template, {"pipeline": self.pipeline, **fields})


def check_template(value: str) -> str:
    """Reject unknown placeholders and MQTT wildcards in a topic template."""
    if not value:
        return value
    names = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    unknown = [n for n in names if n not in TOPIC_FIELDS]
    if unknown:
        allowed = " ".join("{" + f + "}" for f in TOPIC_FIELDS)
        raise ValueError(f"unknown placeholder {{{unknown[0]}}}; use {allowed}")
    if "+" in value or "#" in value:
        raise ValueError(f"wildcards + and # cannot be published to: {value!r}")
    return value


def render_topic(template: str, fields: dict[str, Any]) -> str:
    """Fill a topic template; values cannot add levels or wildcards, and a level left empty
    (the event has no such field) is dropped."""
    values = {k: re.sub(r"[/+#\x00]", "_", str(fields[k])) for k in TOPIC_FIELDS if k in fields}
    topic = string.Formatter().vformat(template, (), _Blank(values))
    return "/".join(level for level in topic.split("/") if level)


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def _clean_id(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]", "_", text)


def _plain(obj: Any) -> Any:
    return obj.tolist() if hasattr(obj, "tolist") else str(obj)
