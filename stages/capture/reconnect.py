"""Reconnecting a live source: exponential backoff with jitter, one warning per outage, an
outage counter, and an optional limit after which the stream ends."""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable
from typing import Generic, TypeVar

__all__ = ["Backoff", "Reconnector"]

T = TypeVar("T")


class Backoff:
    """Delays of ``initial_s`` doubling up to ``max_s``, each moved by up to ``jitter``
    (a fraction) so many cameras that dropped together do not retry in lockstep."""

    def __init__(self, initial_s: float = 0.5, max_s: float = 10.0, jitter: float = 0.1) -> None:
        self.initial_s, self.max_s, self.jitter = initial_s, max(max_s, initial_s), jitter
        self.attempts = 0
        self._rng = random.Random()

    def next_delay(self) -> float:
        """The wait before the next attempt; each call counts one attempt."""
        base = min(self.max_s, self.initial_s * 2 ** min(self.attempts, 32))
        self.attempts += 1
        return base * (1 + self._rng.uniform(-self.jitter, self.jitter))

    def reset(self) -> None:
        self.attempts = 0


class Reconnector(Generic[T]):
    """Reopens a source after it drops: logs the outage once, counts it, then retries with
    backoff until ``open_fn`` returns something or ``max_attempts`` failures in a row."""

    def __init__(
        self,
        open_fn: Callable[[], T | None],
        name: str,
        log: logging.Logger,
        count: Callable[[str], None],
        backoff: Backoff,
        max_attempts: int | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.open_fn, self.name, self.log, self.count = open_fn, name, log, count
        self.backoff, self.max_attempts, self.sleep = backoff, max_attempts, sleep
        self.outages = 0
        self._since: float | None = None

    def lost(self, reason: str) -> None:
        """The source dropped (or never opened): warn and count once per outage."""
        if self._since is not None:
            return
        self._since = time.monotonic()
        self.outages += 1
        self.count("reconnect")
        limit = "" if self.max_attempts is None else f", at most {self.max_attempts} tries"
        self.log.warning(
            "%s: %s; reconnecting (backoff %gs doubling to %gs%s)",
            self.name,
            reason,
            self.backoff.initial_s,
            self.backoff.max_s,
            limit,
        )

    def reopen(self) -> T | None:
        """Retry until the source opens (returned) or the attempt limit is reached (None,
        after logging an error)."""
        while self.max_attempts is None or self.backoff.attempts < self.max_attempts:
            self.sleep(self.backoff.next_delay())
            opened = self.open_fn()
            if opened is not None:
                down = time.monotonic() - (self._since or time.monotonic())
                self.log.info(
                    "%s: back after %.1fs (%d tries)", self.name, down, self.backoff.attempts
                )
                self.backoff.reset()
                self._since = None
                return opened
        self.log.error(
            "%s: giving up after %d failed reconnects; ending the stream",
            self.name,
            self.backoff.attempts,
        )
        return None
