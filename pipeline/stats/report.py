"""Combine stage instances' stats into per-stage figures: the periodic summary and the JSON.

An instance's counters (frames, drops, events) are cumulative over all its processes: they
live in its ledger and every report carries their value when it was made. Its timings (busy
and CPU time, latency histograms) are each process's own since it started, so totals add the
last report of every process an instance has had.
"""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from .metrics import LatencyHistogram

__all__ = ["InstanceRow", "InstanceStats", "Rates", "Snapshot", "StatsBook"]

_SUMMED = ("frames_in", "frames_out", "busy_s", "cpu_s")
_COUNTERS = ("frames_in", "frames_out", "drops", "events", "streams_in", "streams_out")


@dataclass
class InstanceStats:
    """The latest report of each incarnation (pid) of one instance."""

    reports: dict[int, dict[str, Any]] = field(default_factory=dict)

    def total(self) -> dict[str, Any]:
        """Timings summed over the incarnations; counters as the latest report has them
        (they already cover every incarnation)."""
        reports = list(self.reports.values())
        total = merge_reports([{k: v for k, v in r.items() if k not in _COUNTERS} for r in reports])
        latest = reports[-1] if reports else {}
        counters = merge_reports([{k: latest[k] for k in _COUNTERS if k in latest}])
        total.update({k: counters[k] for k in _COUNTERS})
        for k in ("busy_s", "cpu_s"):
            total[k] = sum(r.get(k, 0) for r in reports)
        return total


def merge_reports(reports: list[dict[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {k: 0 for k in _SUMMED}
    drops: Counter = Counter()
    events: Counter = Counter()
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
        events.update(r.get("events", {}))
        streams_in.update(r.get("streams_in", {}))
        streams_out.update(r.get("streams_out", {}))
        lat.merge(_hist(r.get("latency")))
        svc.merge(_hist(r.get("service")))
        depth += r.get("queue_depth", 0)
        uptime = max(uptime, r.get("uptime_s", 0.0))
    out.update(
        drops=dict(drops),
        events=dict(events),
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


@dataclass
class Rates:
    """Per-second figures of one instance over a window; zero while it is not running."""

    fps_in: float = 0.0
    fps_out: float = 0.0
    cpu_percent: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    stream_fps: dict[str, float] = field(default_factory=dict)


@dataclass
class InstanceRow(Rates):
    """One stage instance in a snapshot: its counts since the run began and its rates."""

    stage: str = ""
    instance: str = ""
    cpus: list[int] = field(default_factory=list)
    state: str = "running"  # starting | running | restarting | done
    frames_in: int = 0
    frames_out: int = 0
    drops: dict[str, int] = field(default_factory=dict)
    queue_depth: int = 0
    restarts: int = 0
    sink: bool = False
    streams_out: dict[str, int] = field(default_factory=dict)
    cpu_s: float = 0.0  # CPU seconds since the run began
    latency: LatencyHistogram = field(default_factory=LatencyHistogram)  # since the run began


@dataclass
class Snapshot:
    """What the live view and the metrics endpoint show: one row per instance, and the
    frames delivered per stream at the sinks."""

    pipeline: str
    run_s: float
    rows: list[InstanceRow]
    streams: dict[str, int]
    stream_fps: dict[str, float]
    final: bool = False
    #: each source's health: state (connecting, live, reconnecting, down), detail, since,
    #: reconnects, last_frame_age_s
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def sink_fps(self) -> float:
        return sum(self.stream_fps.values())


class RateTracker:
    """Rates from the difference between an instance's report now and the one used last
    time, timed by the process's own uptime, so they do not depend on when reports land."""

    def __init__(self) -> None:
        self._last: dict[str, tuple[int, dict[str, Any], Rates]] = {}

    def rates(self, instance: str, pid: int, report: dict[str, Any]) -> Rates:
        if not report:
            return Rates()
        last = self._last.get(instance)
        if last is not None and last[1] is report:
            return last[2]  # no news since the last snapshot
        # a new process: its counters started from where its predecessor left them
        base = last[1] if last is not None and last[0] == pid else report.get("base", {})
        rates = _between(base, report)
        self._last[instance] = (pid, report, rates)
        return rates


def _between(a: dict[str, Any], b: dict[str, Any]) -> Rates:
    dt = b.get("uptime_s", 0.0) - a.get("uptime_s", 0.0)
    if dt <= 0:
        return Rates()
    recent = LatencyHistogram(_hist(b.get("latency")).counts - _hist(a.get("latency")).counts)
    a_streams = a.get("streams_out", {})
    return Rates(
        fps_in=(b.get("frames_in", 0) - a.get("frames_in", 0)) / dt,
        fps_out=(b.get("frames_out", 0) - a.get("frames_out", 0)) / dt,
        cpu_percent=100 * (b.get("cpu_s", 0.0) - a.get("cpu_s", 0.0)) / dt,
        p50_ms=recent.percentile(50),
        p99_ms=recent.percentile(99),
        stream_fps={s: (n - a_streams.get(s, 0)) / dt for s, n in b.get("streams_out", {}).items()},
    )


def _whole_run(total: dict[str, Any], run_s: float) -> Rates:
    run_s = max(run_s, 1e-6)
    return Rates(
        fps_in=total["frames_in"] / run_s,
        fps_out=total["frames_out"] / run_s,
        cpu_percent=100 * total["cpu_s"] / max(total["uptime_s"], 1e-6),
        p50_ms=total["latency"].percentile(50),
        p99_ms=total["latency"].percentile(99),
        stream_fps={s: n / run_s for s, n in total["streams_out"].items()},
    )


class StatsBook:
    """All instances' stats, grouped by stage; live figures come from :meth:`snapshot`."""

    def __init__(
        self,
        stages: dict[str, list[str]],
        cpus: dict[str, list[int]] | None = None,
        sinks: set[str] | frozenset[str] = frozenset(),
    ) -> None:
        self.stages = stages  # stage -> instance ids
        self.instances = {i: InstanceStats() for ids in stages.values() for i in ids}
        self.cpus = cpus or {}
        self.sinks = sinks  # stages with no consumers: their per-stream counts are delivered
        self.restarts: Counter = Counter()
        self.instance_restarts: Counter = Counter()
        self.t_start = time.monotonic()
        self._rates = RateTracker()
        self.bases: dict[str, dict[str, Any]] = {}

    def add_stage(self, stage: str, instances: list[str], cpus: list[int]) -> None:
        """Instances that joined the run: a source a reload added (listed first), or more
        processes of a stage already here."""
        if stage in self.stages:
            self.stages[stage] += [i for i in instances if i not in self.stages[stage]]
        else:
            self.stages = {stage: list(instances), **self.stages}
        for inst in instances:
            self.instances[inst] = InstanceStats()
            self.cpus[inst] = cpus

    def update(self, instance: str, pid: int, report: dict[str, Any]) -> None:
        if instance in self.instances:
            reports = self.instances[instance].reports
            if pid not in reports:  # a new process: rates start from the counters it found
                report = {**report, "base": self.bases.get(instance, {})}
            reports[pid] = report

    def started(self, instance: str, counters: dict[str, Any]) -> None:
        """A new process of ``instance`` starts with its counters at ``counters``."""
        self.bases[instance] = counters

    def set_counters(self, instance: str, counters: dict[str, Any]) -> None:
        """The instance's final counters (read from its ledger after every process ended)."""
        reports = self.instances[instance].reports
        if reports:
            latest = next(reversed(reports))
            reports[latest] = {**reports[latest], **counters}
        else:
            reports[0] = counters

    def restarted(self, stage: str, instance: str | None = None) -> None:
        self.restarts[stage] += 1
        self.instance_restarts[instance or stage] += 1

    def stage_totals(self, stage: str) -> dict[str, Any]:
        return merge_reports([self.instances[i].total() for i in self.stages[stage]])

    def snapshot(
        self,
        name: str,
        run_s: float,
        states: dict[str, str] | None = None,
        final: bool = False,
    ) -> Snapshot:
        """Every instance's figures now: rates between its last two reports (or, when
        ``final``, over the whole ``run_s``), for the live view and the metrics endpoint."""
        states = states or {}
        rows = []
        for stage, ids in self.stages.items():
            for inst in ids:
                state = states.get(inst, "running")
                rows.append(self._row(stage, inst, state, run_s if final else None))
        streams: dict[str, int] = {}
        stream_fps: dict[str, float] = {}
        for stage in self.sinks:  # a stream's delivered count: the most any sink stage saw
            per: Counter = Counter()
            fps: Counter = Counter()
            for r in (r for r in rows if r.stage == stage):
                per.update(r.streams_out)
                fps.update(r.stream_fps)
            for s, n in per.items():
                streams[s] = max(streams.get(s, 0), n)
                stream_fps[s] = max(stream_fps.get(s, 0.0), fps.get(s, 0.0))
        return Snapshot(name, run_s, rows, dict(sorted(streams.items())), stream_fps, final)

    def _row(self, stage: str, inst: str, state: str, final_s: float | None) -> InstanceRow:
        reports = self.instances[inst].reports
        total = self.instances[inst].total()
        latest = next(reversed(reports.items())) if reports else (0, {})
        if final_s is not None:
            rates = _whole_run(total, final_s)
        else:
            rates = self._rates.rates(inst, *latest)
            if state != "running":
                rates = Rates()
        return InstanceRow(
            stage=stage,
            instance=inst,
            cpus=list(self.cpus.get(inst, [])),
            state=state,
            frames_in=total["frames_in"],
            frames_out=total["frames_out"],
            drops={k: v for k, v in total["drops"].items() if v},
            queue_depth=int(latest[1].get("queue_depth", 0)),
            restarts=self.instance_restarts.get(inst, 0),
            sink=stage in self.sinks,
            streams_out=dict(total["streams_out"]),
            cpu_s=total["cpu_s"],
            latency=total["latency"],
            **asdict(rates),
        )

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
                "events": {k: v for k, v in t["events"].items() if v},
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
