"""Combine stage instances' stats into per-stage figures: the periodic summary and the JSON.

Each process reports cumulative counters since it started; a restarted instance is a new
process, so totals add the last report of every process an instance has had.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..metrics import LatencyHistogram

__all__ = ["InstanceStats", "StatsBook"]

_SUMMED = ("frames_in", "frames_out", "busy_s", "cpu_s")


@dataclass
class InstanceStats:
    """The latest cumulative report of each incarnation (pid) of one instance."""

    reports: dict[int, dict[str, Any]] = field(default_factory=dict)

    def total(self) -> dict[str, Any]:
        return merge_reports(list(self.reports.values()))


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: 0 for k in _SUMMED}
    drops: Counter = Counter()
    streams_in: Counter = Counter()
    streams_out: Counter = Counter()
    lat, svc = LatencyHistogram(), LatencyHistogram()
    depth, uptime = 0, 0.0
    for r in reports:
        if not r:
            continue
        for k in _SUMMED:
            out[k] += r.get(k, 0)
        drops.update(r.get("drops", {}))
        streams_in.update(r.get("streams_in", {}))
        streams_out.update(r.get("streams_out", {}))
        lat.merge(_hist(r.get("latency")))
        svc.merge(_hist(r.get("service")))
        depth += r.get("queue_depth", 0)
        uptime = max(uptime, r.get("uptime_s", 0.0))
    out.update(
        drops=dict(drops),
        streams_in=dict(streams_in),
        streams_out=dict(streams_out),
        latency=lat,
        service=svc,
        queue_depth=depth,
        uptime_s=uptime,
    )
    return out


def _hist(value: Any) -> LatencyHistogram:
    if isinstance(value, LatencyHistogram):
        return value
    return LatencyHistogram.from_wire(value or [])


class StatsBook:
    """All instances' stats, grouped by stage, with rates over the last summary window."""

    def __init__(self, stages: dict[str, list[str]]) -> None:
        self.stages = stages  # stage -> instance ids
        self.instances = {i: InstanceStats() for ids in stages.values() for i in ids}
        self.restarts: Counter = Counter()
        self.t_start = time.monotonic()
        self._window: dict[str, tuple[float, int, LatencyHistogram]] = {}

    def update(self, instance: str, pid: int, report: dict[str, Any]) -> None:
        if instance in self.instances:
            self.instances[instance].reports[pid] = report

    def restarted(self, stage: str) -> None:
        self.restarts[stage] += 1

    def stage_totals(self, stage: str) -> dict[str, Any]:
        return merge_reports([self.instances[i].total() for i in self.stages[stage]])

    def summary_lines(self) -> list[str]:
        """One line per stage over the last window: fps, latency, drops, queue, CPU."""
        now = time.monotonic()
        lines = []
        for stage in self.stages:
            t = self.stage_totals(stage)
            t0, n0, h0 = self._window.get(stage, (self.t_start, 0, LatencyHistogram()))
            fps = (t["frames_out"] - n0) / max(now - t0, 1e-6)
            recent = LatencyHistogram(t["latency"].counts - h0.counts)
            p50, p99 = recent.percentile(50), recent.percentile(99)
            self._window[stage] = (
                now,
                t["frames_out"],
                LatencyHistogram(t["latency"].counts.copy()),
            )
            drops = sum(t["drops"].values())
            cpu = 100 * t["cpu_s"] / max(t["uptime_s"], 1e-6)
            lines.append(
                f"  {stage:<14} {fps:7.1f} fps  out {t['frames_out']:>7}  "
                f"lat p50 {_ms(p50)} p99 {_ms(p99)}  drops {drops:>4}  q {t['queue_depth']:>3}  "
                f"cpu {cpu:5.1f}%"
            )
        return lines

    def to_json(self, wall_s: float, active_s: float) -> dict[str, Any]:
        """The ``--stats-out`` document."""
        stages: dict[str, Any] = {}
        for stage, ids in self.stages.items():
            t = self.stage_totals(stage)
            uptime = max(t["uptime_s"], 1e-6)
            stages[stage] = {
                "instances": ids,
                "frames_in": t["frames_in"],
                "frames_out": t["frames_out"],
                "drops": sum(t["drops"].values()),
                "drops_by_reason": {k: v for k, v in t["drops"].items() if v},
                "fps": t["frames_out"] / max(active_s, 1e-6),
                "latency_ms": _percentiles(t["latency"]),
                "service_ms": _percentiles(t["service"]),
                "busy": t["busy_s"] / uptime / len(ids),
                "cpu_percent": 100 * t["cpu_s"] / uptime,
                "queue_depth": t["queue_depth"],
                "restarts": self.restarts.get(stage, 0),
                "streams": {
                    s: {
                        "frames_in": t["streams_in"].get(s, 0),
                        "frames_out": t["streams_out"].get(s, 0),
                    }
                    for s in sorted(set(t["streams_in"]) | set(t["streams_out"]))
                },
            }
        return {"wall_s": wall_s, "active_s": active_s, "stages": stages}


def _percentiles(h: LatencyHistogram) -> dict[str, float | None]:
    return {
        "p50": h.percentile(50),
        "p90": h.percentile(90),
        "p99": h.percentile(99),
        "count": len(h),
    }


def _ms(v: float | None) -> str:
    return "    -  " if v is None else f"{v:6.1f}ms" if v >= 1 else f"{v * 1000:5.0f}us"
