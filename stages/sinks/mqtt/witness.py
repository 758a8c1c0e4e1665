"""The witness: a second session of the mqtt sink, subscribed to its own event topics, that sees
each event as the broker hands it on, so a restarted sink never sends again what the broker
had already taken.

QoS 1 alone cannot tell: the broker takes a message and hands it to subscribers before its
PUBACK reaches the sink, and a kill in between leaves the message unacknowledged in the spool.
The witness is a persistent session (``clean_session`` false, its own client id) subscribed at
QoS 1: the broker queues for it every event it takes, and the witness acknowledges one only
after the outbox has recorded it (paho sends the PUBACK after ``on_message`` returns). So what
the broker took while the sink was dying is still queued for the witness at the next start:
``catch_up`` reconnects, receives that backlog, then a marker it sends itself (the broker keeps
one session's messages in order), and the spool leaves out every message the backlog holds.
A clean close unsubscribes, so nothing queues between runs; where the broker lost the
session (a restart without persistence) the sink sends again, as QoS 1 allows.
"""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import string
import threading
from collections.abc import Callable

from stages.sinks.mqtt.config import MqttSinkConfig
from stages.sinks.mqtt.connection import Connection
from stages.sinks.mqtt.topics import clean_id

__all__ = ["Key", "Witness", "topic_filters"]

Key = tuple[str, str]  # (topic, payload): what the broker took
MAX_BACKLOG = 100_000  # messages remembered while catching up


def topic_filters(template: str) -> list[str]:
    """Subscription filters that match every topic ``template`` renders: each level with a
    placeholder is ``+``; a level that is a placeholder alone may also be left out (an event
    without that field), so each such choice gets its own filter."""
    levels = [lv for lv in template.split("/") if lv]
    alone = [i for i, lv in enumerate(levels) if _fields(lv) and _is_alone(lv)]
    filters: list[str] = []
    for r in range(len(alone) + 1):
        for dropped in itertools.combinations(alone, r):
            kept = ["+" if _fields(lv) else lv for i, lv in enumerate(levels) if i not in dropped]
            text = "/".join(kept)
            if text and text not in filters:
                filters.append(text)
    return filters


def _fields(level: str) -> list[str]:
    return [f for _, f, _, _ in string.Formatter().parse(level) if f is not None]


def _is_alone(level: str) -> bool:
    return level.startswith("{") and level.endswith("}") and len(_fields(level)) == 1


class Witness:
    """The witness session: ``catch_up`` at setup, then ``seen`` is called for each event the
    broker hands on (from paho's network thread, before the witness acknowledges it)."""

    def __init__(
        self,
        cfg: MqttSinkConfig,
        client_id: str,
        filters: list[str],
        resolve: Callable[[str], os.PathLike],
        log: logging.Logger,
    ) -> None:
        self.marker_topic = f"rkpipe-witness/{clean_id(client_id)}"
        self.conn = Connection(cfg, f"{client_id}-witness", "", resolve, _quiet(log), True)
        self.conn.subscriptions = [*filters, self.marker_topic]
        self.conn.on_message = self._on_message
        self.backlog: set[Key] = set()
        self.seen: Callable[[str, str], None] = self._remember
        self.nonce = ""
        self.caught_up = threading.Event()

    def catch_up(self, timeout: float) -> set[Key] | None:
        """Connect and take what the broker queued for this session; None if it could not be
        done within ``timeout`` (the broker away): then nothing is known to be taken."""
        self.conn.open()  # waits for the first answer, up to connect_timeout_s
        if not self.conn.connected.is_set():
            return None
        self.nonce = secrets.token_hex(8)
        self.conn.publish(self.marker_topic, self.nonce, 1, False)
        if not self.caught_up.wait(timeout):
            return None
        return self.backlog

    def close(self, keep: bool) -> None:
        """Leave; ``keep`` the subscriptions when messages are left unacknowledged (the next
        start learns from them), else unsubscribe so nothing queues between runs."""
        if not keep and self.conn.connected.is_set():
            self.conn.client.unsubscribe(self.conn.subscriptions)
        self.conn.close(0.0, leave=keep)

    def _remember(self, topic: str, payload: str) -> None:
        if len(self.backlog) < MAX_BACKLOG:
            self.backlog.add((topic, payload))

    def _on_message(self, topic: str, payload: bytes, _retained: bool) -> None:
        if topic == self.marker_topic:
            if payload.decode(errors="replace") == self.nonce:
                self.caught_up.set()
            return
        try:
            self.seen(topic, payload.decode())
        except UnicodeDecodeError:
            return  # not one of ours: the sink publishes JSON text


def _quiet(log: logging.Logger) -> logging.Logger:
    """The witness's own logger: the sink's connection already says what the broker does."""
    quiet = logging.getLogger(f"{log.name}.witness")
    quiet.setLevel(logging.ERROR)
    return quiet
