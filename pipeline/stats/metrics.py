"""Per-stage counters and latency histograms, cheap to update and mergeable across replicas.

Latencies go into fixed log-spaced buckets (about 4% wide) so replicas' histograms add up and
percentiles come out of the sum, without shipping samples between processes.
"""

from __future__ import annotations

import math
import os
import time
from collections import Counter
from dataclasses import dataclass, field

import numpy as np

__all__ = ["LatencyHistogram", "StageStats"]

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

    def to_wire(self) -> list[list[int]]:
        nz = np.nonzero(self.counts)[0]
        return [[int(i), int(self.counts[i])] for i in nz]

    @classmethod
    def from_wire(cls, pairs: list[list[int]]) -> LatencyHistogram:
        h = cls()
        for i, n in pairs:
            h.counts[i] += n
        return h


@dataclass
class StageStats:
    """What one stage instance measured since it started; sent to the supervisor periodically."""

    frames_in: int = 0
    frames_out: int = 0
    busy_s: float = 0.0
    drops: Counter = field(default_factory=Counter)
    events: Counter = field(default_factory=Counter)  # notable, not losses (e.g. reconnects)
    streams_in: Counter = field(default_factory=Counter)
    streams_out: Counter = field(default_factory=Counter)
    last_seq: dict[str, int] = field(default_factory=dict)
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)  # capture -> out
    service: LatencyHistogram = field(default_factory=LatencyHistogram)  # time in process()
    queue_depth: int = 0
    started: float = field(default_factory=time.monotonic)
    cpu_start: float = field(default_factory=lambda: sum(os.times()[:2]))

    def count_in(self, stream: str) -> None:
        self.frames_in += 1
        self.streams_in[stream] += 1

    def count_out(self, stream: str, seq: int, t_mono_ns: int) -> None:
        self.frames_out += 1
        self.streams_out[stream] += 1
        self.last_seq[stream] = seq
        self.latency.add((time.monotonic_ns() - t_mono_ns) / 1e6)

    def count_drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] += n

    def count_event(self, kind: str, n: int = 1) -> None:
        self.events[kind] += n

    def to_wire(self) -> dict:
        return {
            "frames_in": self.frames_in,
            "frames_out": self.frames_out,
            "busy_s": self.busy_s,
            "cpu_s": sum(os.times()[:2]) - self.cpu_start,
            "uptime_s": time.monotonic() - self.started,
            "drops": dict(self.drops),
            "events": dict(self.events),
            "streams_in": dict(self.streams_in),
            "streams_out": dict(self.streams_out),
            "last_seq": dict(self.last_seq),
            "latency": self.latency.to_wire(),
            "service": self.service.to_wire(),
            "queue_depth": self.queue_depth,
        }
