"""Per-stage counters and latency histograms, cheap to update and mergeable across replicas.

Latencies go into fixed log-spaced buckets (about 4% wide) so replicas' histograms add up and
percentiles come out of the sum, without shipping samples between processes.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from typing import TYPE_CHECKING, Any

import numpy as np

from ..accounting.keys import drop_key, event_key

if TYPE_CHECKING:
    from ..runtime.ledger import Ledger

__all__ = ["LatencyHistogram", "MemoryCounters", "StageStats", "counters_of"]

_LO_MS = 0.001  # 1 microsecond
_PER_DECADE = 60
_BUCKETS = _PER_DECADE * 8  # 1 us .. 100 s


class LatencyHistogram:
    """Counts of latencies (milliseconds) in log-spaced buckets."""

    def __init__(self, counts: np.ndarray | None = None) -> None:
        self.counts = np.zeros(_BUCKETS, np.int64) if counts is None else counts

    def add(self, ms: float) -> None:
        i = int(math.log10(max(ms, _LO_MS) / _LO_MS) * _PER_DECADE)
        self.counts[min(i, _BUCKETS - 1)] += 1

    def merge(self, other: LatencyHistogram) -> None:
        self.counts += other.counts

    def __len__(self) -> int:
        return int(self.counts.sum())

    def percentile(self, q: float) -> float | None:
        """The q-th percentile in ms (bucket midpoint), or None if empty."""
        total = self.counts.sum()
        if total == 0:
            return None
        rank = np.searchsorted(np.cumsum(self.counts), q / 100 * total, side="left")
        return float(_LO_MS * 10 ** ((rank + 0.5) / _PER_DECADE))

    def count_upto(self, ms: float) -> int:
        """Latencies up to ``ms``, to the nearest bucket edge (within 2% of ``ms``)."""
        edge = round(math.log10(max(ms, _LO_MS) / _LO_MS) * _PER_DECADE)
        return int(self.counts[: min(edge, _BUCKETS)].sum())

    def approx_sum_ms(self) -> float:
        """The sum of all latencies in ms, each taken at its bucket's midpoint (within 2%)."""
        mids = _LO_MS * 10 ** ((np.arange(_BUCKETS) + 0.5) / _PER_DECADE)
        return float(self.counts @ mids)

    def to_wire(self) -> list[list[int]]:
        nz = np.nonzero(self.counts)[0]
        return [[int(i), int(self.counts[i])] for i in nz]

    @classmethod
    def from_wire(cls, pairs: list[list[int]]) -> LatencyHistogram:
        h = cls()
        for i, n in pairs:
            h.counts[i] += n
        return h


class StageStats:
    """What one stage instance measured. Counters (frames in and out per stream, drops by
    reason, events) live in the instance's ledger, shared memory that outlives the process,
    so a killed process's counts are never lost; timings (busy, CPU, latency histograms) go
    to the supervisor with each report."""

    def __init__(self, ledger: Ledger | None = None) -> None:
        self.ledger = ledger if ledger is not None else MemoryCounters()
        self.busy_s = 0.0
        self.latency = LatencyHistogram()  # capture -> out
        self.service = LatencyHistogram()  # time in process()
        self.queue_depth = 0
        self.started = time.monotonic()
        self.cpu_start = sum(os.times()[:2])

    def count_in(self, stream: str) -> None:
        self.ledger.add("in")
        self.ledger.add(f"in:{stream}")

    def count_out(self, stream: str, seq: int, t_mono_ns: int) -> None:
        self.ledger.add("out")
        self.ledger.add(f"out:{stream}")
        self.latency.add((time.monotonic_ns() - t_mono_ns) / 1e6)

    def count_drop(self, reason: str, n: int = 1) -> None:
        self.ledger.add(drop_key(reason), n)

    def count_event(self, kind: str, n: int = 1) -> None:
        self.ledger.add(event_key(kind), n)

    def counters(self) -> dict[str, Any]:
        return counters_of(self.ledger.snapshot())

    def to_wire(self) -> dict[str, Any]:
        """The timings a report carries (the counters are read from the ledger)."""
        return {
            "busy_s": self.busy_s,
            "cpu_s": sum(os.times()[:2]) - self.cpu_start,
            "uptime_s": time.monotonic() - self.started,
            "latency": self.latency.to_wire(),
            "service": self.service.to_wire(),
            "queue_depth": self.queue_depth,
        }


class MemoryCounters:
    """Ledger-like counters in a dict, for stages run inline."""

    def __init__(self) -> None:
        self.values: Counter[str] = Counter()

    def add(self, key: str, n: int = 1) -> int:
        self.values[key] += n
        return self.values[key]

    def snapshot(self) -> dict[str, int]:
        return dict(self.values)


def counters_of(snapshot: dict[str, int]) -> dict[str, Any]:
    """A ledger's counters as report fields: frames_in/out, streams_in/out, drops, events."""
    out: dict[str, Any] = {
        "frames_in": snapshot.get("in", 0),
        "frames_out": snapshot.get("out", 0),
        "streams_in": {},
        "streams_out": {},
        "drops": {},
        "events": {},
    }
    fields = {"in": "streams_in", "out": "streams_out", "drop": "drops", "event": "events"}
    for key, value in snapshot.items():
        kind, _, name = key.partition(":")
        if name and kind in fields:
            out[fields[kind]][name] = value
    return out
