"""The mqtt sink's connection to its broker (paho-mqtt 2.x): credentials and TLS, the first
connect (a refusal for bad credentials ends the run; a broker that is down is waited for),
reconnects with backoff, the Last Will, and one log line per outage.

Errors and logs name the broker as host:port only: never a user name, password or the path
of a key file.
"""

from __future__ import annotations

import logging
import os
import ssl
import threading
import time
from collections.abc import Callable
from typing import Any

from pipeline.errors import StageSetupError
from pipeline.secrets import remember
from stages.sinks.mqtt.config import MqttSinkConfig

__all__ = ["FATAL_CONNACK", "Connection"]

#: CONNACK reasons that retrying cannot fix, and what to check.
FATAL_CONNACK = {
    0x84: "the broker does not take MQTT 3.1.1",
    0x85: "check client_id",
    0x86: "check username, password or password_env",
    0x87: "check username, password or password_env, and the broker's access rules",
    0x8C: "check username, password or password_env",
}


class Connection:
    """One paho client: ``open`` connects (or starts waiting for the broker), the callbacks
    keep ``connected`` true while the session is up, ``close`` says offline and leaves.
    Without ``will_topic`` it says nothing online/offline; ``persistent`` keeps its session
    (and what the broker queues for it) across disconnects."""

    def __init__(
        self,
        cfg: MqttSinkConfig,
        client_id: str,
        will_topic: str,
        resolve: Callable[[str], os.PathLike],
        log: logging.Logger,
        persistent: bool = False,
    ) -> None:
        self.cfg, self.client_id, self.will_topic, self.log = cfg, client_id, will_topic, log
        self.port = cfg.port or (8883 if cfg.tls else 1883)
        self.address = f"{cfg.host}:{self.port}"
        self.connected = threading.Event()
        self.answered = threading.Event()  # the first connect attempt has an outcome
        self.closing = threading.Event()
        self.refused: Any = None
        self.outage_since: float | None = None
        self.on_up: Callable[[], None] = lambda: None  # after each connect, paho's thread
        # a message on a subscription (topic, payload, retained), paho's thread
        self.on_message: Callable[[str, bytes, bool], None] = lambda _t, _p, _r: None
        self.on_acked: Callable[[int], None] = lambda _mid: None  # a PUBACK, paho's thread
        self.queued: Callable[[], int] = lambda: 0  # messages waiting, for the log
        self.subscriptions: list[str] = []
        self.client = self._make_client(resolve, persistent)

    def _make_client(self, resolve: Callable[[str], os.PathLike], persistent: bool) -> Any:
        import paho.mqtt.client as mqtt

        self._no_conn, self._queued = mqtt.MQTT_ERR_NO_CONN, mqtt.MQTT_ERR_SUCCESS
        cfg = self.cfg
        client = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            clean_session=not persistent,
            protocol=mqtt.MQTTv311,
        )
        password = self._password()
        if cfg.username is not None or password is not None:
            client.username_pw_set(cfg.username, password)
        if cfg.tls:
            _set_tls(client, cfg, resolve)
        if self.will_topic:
            client.will_set(self.will_topic, "offline", qos=1, retain=True)
        client.reconnect_delay_set(cfg.reconnect_min_s, cfg.reconnect_max_s)  # type: ignore[arg-type]
        client.max_inflight_messages_set(cfg.max_inflight)
        client.connect_timeout = cfg.connect_timeout_s
        client.on_connect = self._on_connect
        client.on_connect_fail = self._on_connect_fail
        client.on_disconnect = self._on_disconnect
        client.on_message = lambda _c, _u, m: self.on_message(
            m.topic, bytes(m.payload), bool(m.retain)
        )
        client.on_publish = lambda _c, _u, mid, _rc, _p: self.on_acked(mid)
        return client

    def _password(self) -> str | None:
        cfg = self.cfg
        if cfg.password_env is None:
            return cfg.password
        value = os.environ.get(cfg.password_env)
        if value is None:
            msg = f"mqtt: password_env names {cfg.password_env}, which is not set"
            raise StageSetupError(msg)
        remember(value)  # masked in this process's errors and logs
        return value

    def open(self) -> None:
        """Try once now (a refusal for bad credentials ends the run), then keep retrying in
        the background: a broker that is down at start is waited for, not fatal."""
        cfg = self.cfg
        try:
            self.client.connect(cfg.host, self.port, cfg.keepalive)
        except ssl.SSLError as exc:
            reason = exc.reason or type(exc).__name__
            raise StageSetupError(f"mqtt broker {self.address}: TLS failed: {reason}") from None
        except OSError as exc:
            self._unreachable(exc.strerror or type(exc).__name__)
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

    def publish(self, topic: str, payload: str | bytes, qos: int, retain: bool) -> Any:
        """Hand a message to the client; its receipt (``rc`` 0: queued by the client).

        A QoS 1/2 message published in the instant the connection drops cannot be written,
        yet the client keeps it and sends it after the reconnect. paho marks its receipt
        ``MQTT_ERR_NO_CONN``, which makes ``is_published`` raise for good even once the broker
        acknowledged it; it is waiting, not failed, so the receipt is made to say so."""
        info = self.client.publish(topic, payload, qos=qos, retain=retain)
        if qos > 0 and info.rc == self._no_conn:
            info.rc = self._queued
        return info

    def close(self, wait_s: float, leave: bool = False) -> None:
        """Say offline on the availability topic (waiting up to ``wait_s``), disconnect;
        ``leave``: the process is ending, do not wait for the network thread."""
        self.closing.set()
        if self.connected.is_set() and self.will_topic:
            info = self.publish(self.will_topic, "offline", 1, True)
            deadline = time.monotonic() + wait_s
            while not info.is_published() and self.connected.is_set():
                if time.monotonic() > deadline:
                    break
                time.sleep(0.01)
        self.client.disconnect()
        if not leave:
            self.client.loop_stop()

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
        if self.will_topic:
            client.publish(self.will_topic, "online", qos=1, retain=True)
        if self.subscriptions:
            client.subscribe([(t, 1) for t in self.subscriptions])
        if self.outage_since is not None:
            self.log.warning(
                "mqtt: reconnected to %s after %.1fs; %d messages to send",
                self.address,
                time.monotonic() - self.outage_since,
                self.queued(),
            )
        self.outage_since = None
        self.connected.set()
        self.answered.set()
        self.on_up()

    def _on_connect_fail(self, _client: Any, _u: Any) -> None:
        self._unreachable("connection failed")
        self.answered.set()

    def _on_disconnect(self, _c: Any, _u: Any, _flags: Any, reason: Any, _p: Any) -> None:
        self.connected.clear()
        if self.refused is not None and self.outage_since is None:
            self.outage_since = time.monotonic()  # the refusal was reported already
        elif not self.closing.is_set():
            self._unreachable("connection lost" if reason.is_failure else str(reason))

    def _unreachable(self, why: object) -> None:
        if self.outage_since is not None:
            return
        self.outage_since = time.monotonic()
        self.log.warning(
            "mqtt broker %s not reachable (%s); queueing events and retrying", self.address, why
        )


def _set_tls(client: Any, cfg: MqttSinkConfig, resolve: Callable[[str], os.PathLike]) -> None:
    """Load the CA and client certificate; a failure names the option, never its path (a
    key's path may itself say too much)."""
    paths = {}
    for key in ("ca_certs", "certfile", "keyfile"):
        value = getattr(cfg, key)
        if value is not None:
            path = resolve(value)
            if not os.path.isfile(path):
                raise StageSetupError(f"mqtt: the file given as {key} does not exist")
            paths[key] = os.fspath(path)
    try:
        client.tls_set(**paths, cert_reqs=ssl.CERT_REQUIRED)
    except ssl.SSLError as exc:
        which = ", ".join(paths) or "system CAs"
        reason = exc.reason or type(exc).__name__
        raise StageSetupError(f"mqtt: cannot load the TLS files ({which}): {reason}") from None
    except OSError as exc:
        which = ", ".join(paths)
        msg = f"mqtt: cannot read the TLS files ({which}): {exc.strerror or type(exc).__name__}"
        raise StageSetupError(msg) from None
    if cfg.tls_insecure:
        client.tls_insecure_set(True)
