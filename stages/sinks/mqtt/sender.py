"""The mqtt sink's sender thread: while the broker is connected it hands the client the
outbox's messages (at most ``max_inflight`` unacknowledged) and the retained topics that
changed; about once a second it calls ``poll`` (camera health), connected or not."""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

from stages.sinks.mqtt.connection import Connection
from stages.sinks.mqtt.outbox import Outbox
from stages.sinks.mqtt.retained import Retained

__all__ = ["Sender"]

POLL_S = 1.0


class Sender:
    """Runs the thread; ``take_unpublishable`` hands the main thread what it could not send
    (topics the client refuses), to count there."""

    def __init__(
        self,
        conn: Connection,
        outbox: Outbox,
        retained: Retained,
        qos: int,
        poll: Callable[[], None],
        log: logging.Logger,
    ) -> None:
        self.conn, self.outbox, self.retained = conn, outbox, retained
        self.qos, self.poll, self.log = qos, poll, log
        self.max_inflight = conn.cfg.max_inflight
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.unpublishable = 0
        self.thread = threading.Thread(target=self._run, name="mqtt-send", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.stopping.set()
        self.outbox.wake()
        self.thread.join(2.0)

    def is_alive(self) -> bool:
        return self.thread.is_alive()

    def take_unpublishable(self) -> int:
        with self.lock:
            n, self.unpublishable = self.unpublishable, 0
            return n

    def _run(self) -> None:
        next_poll = 0.0
        while not self.stopping.is_set():
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + POLL_S
                self.poll()
            self.outbox.settle()
            connected = self.conn.connected.is_set()
            if connected:
                self._send_retained()
            item = None
            if connected and len(self.outbox.inflight) < self.max_inflight:
                item = self.outbox.next()
            if item is None:
                self.outbox.wait(0.02 if self.outbox.inflight else 0.2)
                continue
            info = self._publish(item.topic, item.payload, self.qos, item.retain)
            if info is None:
                self.outbox.give_up(item)
                continue
            if info.rc != 0:  # not queued by the client (QoS 0 while away, its queue full)
                self.outbox.retry(item)
                self.outbox.wait(0.05)
                continue
            self.outbox.sending(item, info)

    def _send_retained(self) -> None:
        for topic, payload in self.retained.take():
            info = self._publish(topic, payload, 1, True)
            if info is not None and info.rc != 0:  # not queued by the client: again later
                self.retained.again(topic, payload)
            elif info is not None:
                self.retained.sent(info)

    def _publish(self, topic: str, payload: str | bytes, qos: int, retain: bool) -> Any:
        try:
            return self.conn.publish(topic, payload, qos, retain)
        except ValueError as exc:  # a topic the broker cannot take: say so, go on
            self.log.warning("mqtt: cannot publish on %r: %s", topic, exc)
            with self.lock:
                self.unpublishable += 1
            return None
