"""Messages waiting for a broker's acknowledgement, oldest first, within fixed bounds.

A sink puts messages in and returns at once; a sender thread takes them out, hands them to the
client and keeps them "in flight" until the broker acknowledges them. Memory holds up to
``max_queued`` waiting messages; an optional spool file takes the overflow (one JSON line per
message, at most ``spool_max_bytes``) and feeds it back in order. Past both bounds the oldest
waiting message is dropped, and ``put`` says how many were.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

__all__ = ["Item", "Outbox", "Receipt"]


@dataclass
class Item:
    """One message to publish: its topic, JSON payload text, and whether the broker keeps it."""

    topic: str
    payload: str
    retain: bool = False

    def to_line(self) -> bytes:
        return (
            json.dumps({"topic": self.topic, "retain": self.retain, "payload": self.payload}) + "\n"
        ).encode()

    @classmethod
    def from_line(cls, line: bytes) -> Item:
        d = json.loads(line)
        return cls(d["topic"], d["payload"], bool(d.get("retain", False)))


class Receipt(Protocol):
    """What a client hands back for a publish (paho's ``MQTTMessageInfo``)."""

    def is_published(self) -> bool: ...


class Outbox:
    """A bounded FIFO of unacknowledged messages: in flight, then memory, then the spool."""

    def __init__(
        self, max_queued: int, spool: Path | None = None, spool_max_bytes: int = 0
    ) -> None:
        self.max_queued = max_queued
        self.memory: deque[Item] = deque()
        self.inflight: deque[tuple[Item, Receipt]] = deque()
        self.cond = threading.Condition()
        self.spool = _Spool(spool, spool_max_bytes) if spool is not None else None

    # -- the producer side -------------------------------------------------------------------
    def put(self, item: Item) -> int:
        """Queue ``item`` behind everything else; returns how many old messages were dropped
        to keep within the bounds."""
        with self.cond:
            dropped = 0
            if self.spool is None:
                self.memory.append(item)
                while len(self.memory) > self.max_queued:
                    self.memory.popleft()
                    dropped += 1
            elif not self.spool and len(self.memory) < self.max_queued:
                self.memory.append(item)
            else:
                self.spool.append(item)
                while self.spool.nbytes > self.spool.max_bytes and self.spool:
                    if self.memory:  # the oldest waiting message goes; order is kept
                        self.memory.popleft()
                    else:
                        self.spool.pop()
                    dropped += 1
                    self._refill()
            self.cond.notify_all()
            return dropped

    # -- the sender side ---------------------------------------------------------------------
    def next(self) -> Item | None:
        """The oldest message not yet handed to the client, or None."""
        with self.cond:
            if not self.memory:
                self._refill()
            return self.memory.popleft() if self.memory else None

    def retry(self, item: Item) -> None:
        """Put back at the front an ``item`` the client could not take."""
        with self.cond:
            self.memory.appendleft(item)

    def sending(self, item: Item, receipt: Receipt) -> None:
        """``item`` was handed to the client; it stays counted until ``receipt`` says acked."""
        with self.cond:
            self.inflight.append((item, receipt))

    def settle(self) -> int:
        """Forget in-flight messages the broker acknowledged; returns how many."""
        with self.cond:
            before = len(self.inflight)
            self.inflight = deque(x for x in self.inflight if not x[1].is_published())
            done = before - len(self.inflight)
            if done:
                self.cond.notify_all()
            return done

    def wake(self) -> None:
        with self.cond:
            self.cond.notify_all()

    def wait(self, timeout: float) -> None:
        with self.cond:
            self.cond.wait(timeout)

    # -- state -------------------------------------------------------------------------------
    @property
    def waiting(self) -> int:
        """Messages not yet handed to the client (memory and spool)."""
        with self.cond:
            return len(self.memory) + (len(self.spool) if self.spool else 0)

    def __len__(self) -> int:
        """Every message not yet acknowledged."""
        with self.cond:
            return len(self.inflight) + self.waiting

    def wait_empty(self, timeout: float) -> bool:
        """Wait until every message was acknowledged, up to ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while True:
            self.settle()
            if len(self) == 0:
                return True
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            self.wait(min(left, 0.02))

    def close(self) -> int:
        """Keep what is unacknowledged in the spool (sent at the next start); returns how
        many messages were kept there (0 without a spool)."""
        with self.cond:
            if self.spool is None:
                return 0
            self.settle()
            head = [it for it, _ in self.inflight] + list(self.memory)
            self.inflight.clear()
            self.memory.clear()
            return self.spool.rewrite(head)

    def _refill(self) -> None:
        while self.spool and len(self.memory) < self.max_queued:
            try:
                self.memory.append(self.spool.pop())
            except IndexError:  # only unreadable lines were left
                return


class _Spool:
    """An append-only file of JSON lines read from the front; emptied when all is read."""

    def __init__(self, path: Path, max_bytes: int) -> None:
        self.path = path
        self.max_bytes = max_bytes
        path.parent.mkdir(parents=True, exist_ok=True)
        self.file = path.open("a+b")
        self.read_at = 0
        self.file.seek(0)
        self.count = sum(1 for line in self.file if line.strip())
        self.end = self.file.seek(0, os.SEEK_END)

    @property
    def nbytes(self) -> int:
        return self.end - self.read_at

    def __len__(self) -> int:
        return self.count

    def append(self, item: Item) -> None:
        line = item.to_line()
        self.file.write(line)
        self.file.flush()  # on disk (page cache) at once: a crash loses no spooled line
        self.end += len(line)
        self.count += 1

    def pop(self) -> Item:
        """The oldest unread message; a line cut short by a crash is skipped."""
        self.file.flush()
        self.file.seek(self.read_at)
        item = None
        while item is None and self.count:
            line = self.file.readline()
            if not line:
                self.count = 0
                break
            self.read_at += len(line)
            if not line.strip():
                continue
            self.count -= 1
            try:
                item = Item.from_line(line)
            except (ValueError, KeyError):
                continue
        if self.count == 0:
            self._clear()
        if item is None:
            raise IndexError("pop from an empty spool")
        return item

    def _clear(self) -> None:
        self.file.truncate(0)
        self.read_at = self.end = self.count = 0

    def rewrite(self, head: list[Item]) -> int:
        """Write ``head`` then the unread rest to the file, for the next run to send."""
        self.file.flush()
        self.file.seek(self.read_at)
        rest = self.file.read()
        tmp = self.path.with_suffix(".tmp")
        with tmp.open("wb") as f:
            for item in head:
                f.write(item.to_line())
            f.write(rest)
        self.file.close()
        os.replace(tmp, self.path)
        kept = len(head) + self.count
        if kept == 0:
            self.path.unlink(missing_ok=True)
        return kept
