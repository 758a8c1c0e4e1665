"""Messages waiting for a broker's acknowledgement, oldest first, within fixed bounds.

A sink puts messages in and returns at once; a sender thread takes them out, hands them to the
client and keeps them "in flight" until the broker acknowledges them: ``acked``, called from the
client's network thread at each PUBACK, puts the acknowledgement in the spool at once. Memory
holds up to ``max_queued`` waiting messages. With a spool (:mod:`.spool`) every message is
written to disk first, memory holds the oldest ``max_queued`` of them, and the bound is
``spool_max_bytes`` of waiting messages. Past the bound the oldest waiting message is dropped,
and ``put`` says how many were.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque
from typing import Protocol

from stages.sinks.mqtt.spool import Item, Spool

__all__ = ["Item", "Outbox", "Receipt"]


EARLY_S = 1.0  # how long a PUBACK that came before its receipt was known is remembered


class Receipt(Protocol):
    """What a client hands back for a publish (paho's ``MQTTMessageInfo``)."""

    mid: int

    def is_published(self) -> bool: ...


class _Handing:
    """The receipt of a message taken by the sender and not yet handed to the client."""

    mid = -1

    def is_published(self) -> bool:
        return False


_HANDING = _Handing()


class Outbox:
    """A bounded FIFO of unacknowledged messages: in flight, then memory, then the spool."""

    def __init__(self, max_queued: int, spool: Spool | None = None) -> None:
        self.max_queued = max_queued
        self.memory: deque[Item] = deque()
        self.memory_bytes = 0
        self.inflight: deque[tuple[Item, Receipt]] = deque()
        self.by_mid: dict[int, Item] = {}  # in flight, by the client's message id
        self.by_key: dict[tuple[str, str], Item] = {}  # in flight, by (topic, payload)
        self.early: OrderedDict[int, float] = OrderedDict()  # PUBACKs before their receipt
        self.cond = threading.Condition()
        self.spool = spool

    # -- the producer side -------------------------------------------------------------------
    def put(self, item: Item) -> int:
        """Queue ``item`` behind everything else (on disk first, with a spool); returns how
        many old messages were dropped to keep within the bounds."""
        with self.cond:
            dropped = 0
            if self.spool is None:
                self._remember(item)
                while len(self.memory) > self.max_queued:
                    self._forget()
                    dropped += 1
            else:
                in_memory = not self.spool.unloaded and len(self.memory) < self.max_queued
                self.spool.append(item, in_memory)
                if in_memory:
                    self._remember(item)
                while self.memory_bytes + self.spool.waiting_bytes > self.spool.max_bytes:
                    # the oldest waiting message goes; order is kept
                    gone = [self._forget()] if self.memory else self.spool.load(1)
                    for old in gone:
                        self.spool.finish(old.n)
                    dropped += 1
                if dropped:
                    self._mark()
            self.cond.notify_all()
            return dropped

    def _remember(self, item: Item) -> None:
        self.memory.append(item)
        self.memory_bytes += item.size

    def _forget(self) -> Item:
        item = self.memory.popleft()
        self.memory_bytes -= item.size
        return item

    # -- the sender side ---------------------------------------------------------------------
    def next(self) -> Item | None:
        """The oldest message not yet handed to the client, or None. It counts as in flight
        from now on: follow with ``sending``, ``retry`` or ``give_up``."""
        with self.cond:
            if not self.memory and self.spool is not None and self.spool.unloaded:
                for item in self.spool.load(self.max_queued):
                    self._remember(item)
            if not self.memory:
                return None
            item = self._forget()
            self.inflight.append((item, _HANDING))
            self.by_key[(item.topic, item.payload)] = item  # the witness may see it at once
            return item

    def sending(self, item: Item, receipt: Receipt) -> None:
        """``item`` was handed to the client; it stays counted until ``receipt`` says acked
        (or ``acked`` names its message id)."""
        with self.cond:
            if not self._drop_inflight(item):  # the witness saw it taken already
                return
            if self.early.pop(receipt.mid, None) is not None or receipt.is_published():
                self._done(item)
                return
            self.inflight.append((item, receipt))
            self.by_mid[receipt.mid] = item
            self.by_key[(item.topic, item.payload)] = item

    def witnessed(self, topic: str, payload: str) -> None:
        """The broker handed on this message (the witness saw it): as good as its PUBACK."""
        with self.cond:
            item = self.by_key.get((topic, payload))
            if item is None:
                return
            for i, (it, receipt) in enumerate(self.inflight):
                if it is item:
                    del self.inflight[i]
                    self._untrack(item, receipt)
                    self._done(item)
                    return

    def _untrack(self, item: Item, receipt: Receipt) -> None:
        if self.by_mid.get(receipt.mid) is item:
            del self.by_mid[receipt.mid]
        if self.by_key.get((item.topic, item.payload)) is item:
            del self.by_key[(item.topic, item.payload)]

    def acked(self, mid: int) -> None:
        """The broker acknowledged the client's message ``mid`` (the client's network
        thread): mark it on disk now, so a kill from here on never sends it again."""
        with self.cond:
            item = self.by_mid.pop(mid, None)
            if item is None:  # not one of ours (a retained value), or its receipt not yet
                now = time.monotonic()
                self.early[mid] = now
                while self.early and next(iter(self.early.values())) < now - EARLY_S:
                    self.early.popitem(last=False)
                return
            for i, (it, receipt) in enumerate(self.inflight):
                if it is item:
                    del self.inflight[i]
                    self._untrack(item, receipt)
                    break
            self._done(item)

    def _done(self, item: Item) -> None:
        if self.spool is not None:
            self.spool.finish(item.n)
            self._mark()
        self.cond.notify_all()

    def retry(self, item: Item) -> None:
        """Put back at the front an ``item`` the client could not take."""
        with self.cond:
            if self._drop_inflight(item):
                self.memory.appendleft(item)
                self.memory_bytes += item.size

    def give_up(self, item: Item) -> None:
        """``item`` cannot be sent at all (the caller counts it)."""
        with self.cond:
            if self._drop_inflight(item):
                self._done(item)

    def _drop_inflight(self, item: Item) -> bool:
        for i in range(len(self.inflight) - 1, -1, -1):
            if self.inflight[i][0] is item:
                self._untrack(item, self.inflight[i][1])
                del self.inflight[i]
                return True
        return False

    def settle(self) -> int:
        """Forget in-flight messages the broker acknowledged; returns how many."""
        with self.cond:
            keep: deque[tuple[Item, Receipt]] = deque()
            done = 0
            for item, receipt in self.inflight:
                if not receipt.is_published():
                    keep.append((item, receipt))
                    continue
                done += 1
                self._untrack(item, receipt)
                if self.spool is not None:
                    self.spool.finish(item.n)
            self.inflight = keep
            if done:
                self._mark()
                self.cond.notify_all()
            return done

    def _mark(self) -> None:
        """Tell the spool the number (and place) of the oldest message still unacknowledged."""
        if self.spool is None:
            return
        heads = [it for it, _ in self.inflight]
        if self.memory:
            heads.append(self.memory[0])
        oldest = min(heads, key=lambda it: it.n, default=None)
        if self.spool.unloaded:
            first_unloaded = self.spool.next_n - self.spool.unloaded
            if oldest is None or first_unloaded < oldest.n:
                self.spool.mark(first_unloaded, self.spool.load_at)
                return
        if oldest is None:
            self.spool.mark(self.spool.next_n, self.spool.end)
        else:
            self.spool.mark(oldest.n, oldest.offset)

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
            return len(self.memory) + (len(self.spool) if self.spool is not None else 0)

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
        """Stop; returns how many messages were never acknowledged. With a spool they are on
        disk already, and the next start sends them first."""
        with self.cond:
            self.settle()
            left = len(self)
            if self.spool is not None:
                self.spool.close(left)
            self.inflight.clear()
            self.by_mid.clear()
            self.by_key.clear()
            self.memory.clear()
            return left
