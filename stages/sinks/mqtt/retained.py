"""Retained topics that hold a latest value (a total, a camera's status, a discovery config, a
snapshot): only the newest value of each topic waits while the broker is away, and every value
is sent again after each connect, so a broker that lost its retained store gets them back."""

from __future__ import annotations

import threading
from collections.abc import Callable

from stages.sinks.mqtt.outbox import Receipt

__all__ = ["Payload", "Retained"]

Payload = str | bytes


class Retained:
    """topic -> latest payload, with the topics not yet sent since they changed. An empty
    payload removes the topic from the broker, and from here once sent."""

    def __init__(self, on_change: Callable[[], None] = lambda: None) -> None:
        self.on_change = on_change  # wakes the sender
        self.values: dict[str, Payload] = {}
        self.dirty: dict[str, None] = {}  # an ordered set: first changed, first sent
        self.receipts: list[Receipt] = []
        self.lock = threading.Lock()

    def set(self, topic: str, payload: Payload) -> None:
        """Make ``payload`` the topic's value, unless it is already."""
        with self.lock:
            if self.values.get(topic) == payload:
                return
            self.values[topic] = payload
            self.dirty[topic] = None
        self.on_change()

    def clear(self, topic: str) -> None:
        """Remove ``topic`` from the broker (an empty retained message)."""
        self.set(topic, "")

    def get(self, topic: str) -> Payload | None:
        with self.lock:
            return self.values.get(topic)

    def resend_all(self) -> None:
        """Everything goes again (after a connect, or when Home Assistant comes online)."""
        with self.lock:
            self.dirty = dict.fromkeys(self.values)
        self.on_change()

    def take(self) -> list[tuple[str, Payload]]:
        """The changed topics and their values, to publish now."""
        with self.lock:
            out = [(t, self.values[t]) for t in self.dirty if t in self.values]
            self.dirty.clear()
            for topic, payload in out:
                if payload in ("", b""):
                    del self.values[topic]
            return out

    def again(self, topic: str, payload: Payload) -> None:
        """``topic`` could not be handed to the client: send it again (its newest value)."""
        with self.lock:
            self.values.setdefault(topic, payload)
            self.dirty[topic] = None

    def sent(self, receipt: Receipt) -> None:
        with self.lock:
            self.receipts.append(receipt)

    def settled(self) -> bool:
        """Whether everything was sent and acknowledged."""
        with self.lock:
            self.receipts = [r for r in self.receipts if not r.is_published()]
            return not self.dirty and not self.receipts

    def unsent(self) -> int:
        with self.lock:
            return len(self.dirty) + len(self.receipts)
