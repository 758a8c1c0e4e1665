"""Reconnecting a live source: exponential backoff with jitter, one log line per outage, an
outage counter, an optional limit after which the stream ends, and the source's health as
a person sees it (``connecting``, ``live``, ``reconnecting``, ``down``) with one readable
reason.

A camera that never answers is ``down`` from the first failed try, or within about a
second when the first try hangs and ``answers`` finds that it does not answer (one that
answers but is slow to send a first frame is still ``connecting``), and is retried all the
while; one that was live and dropped is ``reconnecting``, and ``down`` once the outage
passes ``down_after_s`` or the retries are given up.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Protocol

__all__ = ["Backoff", "Reconnector", "Stream"]

FIRST_ANSWER_S = 0.5  # a first open still pending this long asks whether the camera answers


class Stream(Protocol):
    """What a reconnector reopens: ``open`` returns whether it worked, ``error`` why not."""

    error: str

    def open(self) -> bool: ...


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


class Reconnector:
    """Opens a stream and reopens it after it drops: logs each outage once, counts it
    (``count("reconnect")``), retries with backoff until it opens or ``max_attempts``
    failures in a row, and reports every change of health through ``report(state, why)``."""

    def __init__(
        self,
        stream: Stream,
        name: str,
        log: logging.Logger,
        count: Callable[[str], None],
        report: Callable[[str, str], None],
        backoff: Backoff,
        max_attempts: int | None = None,
        down_after_s: float = 30.0,
        answers: Callable[[], str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.stream, self.name, self.log, self.count = stream, name, log, count
        self.backoff, self.max_attempts, self.sleep = backoff, max_attempts, sleep
        self.down_after_s = down_after_s
        self.answers = answers  # "" when the camera answers at all, else why not
        self._report = report
        self.outages = 0
        self.state = ""
        self._detail = ""
        self._was_live = False
        self._since: float | None = None
        self._lock = threading.Lock()

    def report(self, state: str, detail: str = "") -> None:
        """Pass on a change of health (a repeat of the last report is not sent again)."""
        with self._lock:
            if (state, detail) == (self.state, self._detail):
                return
            self.state, self._detail = state, detail
            self._report(state, detail)

    def connect(self) -> bool:
        """The first open; the source is ``down`` if it fails, or if it is still pending
        after FIRST_ANSWER_S and ``answers`` says the camera does not answer (the open
        itself may take ``open_timeout_s`` to fail)."""
        self.report("connecting")
        watchdog = threading.Timer(FIRST_ANSWER_S, self._no_answer)
        watchdog.daemon = True
        watchdog.start()
        try:
            opened = self.stream.open()
        finally:
            watchdog.cancel()
        if not opened:
            self.lost(self.stream.error)
        return opened

    def _no_answer(self) -> None:
        with self._lock:
            pending = self.state == "connecting"
        why = (self.answers() if self.answers else "") if pending else ""
        if why and self.state == "connecting":
            self.report("down", why)

    def live(self) -> None:
        """A frame arrived."""
        self._was_live = True
        if self.state != "live":
            self.report("live")

    def lost(self, reason: str) -> None:
        """The source dropped (or never opened): count and log it once per outage (at
        info: the run's supervisor tells a person, from the health reported)."""
        self.report("reconnecting" if self._was_live else "down", reason)
        if self._since is not None:
            return
        self._since = time.monotonic()
        self.outages += 1
        self.count("reconnect")
        limit = "" if self.max_attempts is None else f", at most {self.max_attempts} tries"
        self.log.info(  # the run's supervisor tells a person, from the health reported
            "%s: %s; reconnecting (backoff %gs doubling to %gs%s)",
            self.name,
            reason,
            self.backoff.initial_s,
            self.backoff.max_s,
            limit,
        )

    def reopen(self) -> bool:
        """Retry until the stream opens (True) or the attempt limit is reached (False,
        after logging an error and reporting ``down``)."""
        while self.max_attempts is None or self.backoff.attempts < self.max_attempts:
            self.sleep(self.backoff.next_delay())
            if self.stream.open():
                down = time.monotonic() - (self._since or time.monotonic())
                self.log.info(
                    "%s: back after %.1fs (%d tries)", self.name, down, self.backoff.attempts
                )
                self.backoff.reset()
                self._since = None
                return True
            self._failed(self.stream.error)
        self.log.error(
            "%s: giving up after %d failed reconnects; ending the stream",
            self.name,
            self.backoff.attempts,
        )
        self.report("down", f"gave up after {self.backoff.attempts} tries: {self._detail}")
        return False

    def _failed(self, reason: str) -> None:
        """One more try failed: keep the reason current, and a long outage is ``down``."""
        outage = time.monotonic() - (self._since or time.monotonic())
        long = self.state == "down" or outage >= self.down_after_s
        self.report("down" if long else "reconnecting", reason or self._detail)
