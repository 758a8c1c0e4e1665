"""How a stage process waits for its next message: spin briefly, then park (adaptive).

Parked in ``poll``, a consumer is woken through ZeroMQ's I/O thread and the kernel: each
wake-up costs tens of microseconds on a busy board or a VM, and is most of a hop's latency.
When messages come close together, polling without blocking for a moment (yielding the CPU
between tries, so the I/O thread that shares the core can deliver) catches the next one
without that wake-up: the "spin, yield, then park" idle strategy of low-latency messaging
systems. It is adaptive, as adaptive mutexes are: a process spins only while spinning has
been catching messages, so a stage fed at camera rates (a frame every 33 ms) parks at once
and burns nothing.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["SpinThenPark"]

T = TypeVar("T")

_TRUST = 8  # misses in a row, after a catch, before spinning stops


class SpinThenPark:
    """Wait on a ``poll(timeout_ms)`` function; spin up to ``spin_us`` first when it pays.

    ``trust`` counts how far spinning is believed to pay: a spin that catches a message sets
    it to full, one that comes back empty-handed lowers it; at zero the process parks at once,
    and a parked wait that ended within ``spin_us`` (a spin would have caught it) raises it
    again. ``spins``, ``caught`` and ``parks`` count what happened, for tests and benchmarks.
    """

    def __init__(self, spin_us: float) -> None:
        self.spin_ns = max(0, int(spin_us * 1000))
        self.trust = _TRUST if self.spin_ns else 0
        self.spins = self.caught = self.parks = 0

    def wait(self, poll: Callable[[int], T], timeout_ms: int) -> T:
        """``poll``'s result: at once when something is ready, else within ``timeout_ms``."""
        if timeout_ms == 0:
            return poll(0)
        if self.trust > 0:
            self.spins += 1
            end = time.perf_counter_ns() + self.spin_ns
            while True:
                ready = poll(0)
                if ready:
                    self.caught += 1
                    self.trust = _TRUST
                    return ready
                if time.perf_counter_ns() >= end:
                    break
                os.sched_yield()
            self.trust -= 1
        self.parks += 1
        t0 = time.perf_counter_ns()
        ready = poll(timeout_ms)
        if ready and self.trust < _TRUST and time.perf_counter_ns() - t0 < self.spin_ns:
            self.trust += 1
        return ready
