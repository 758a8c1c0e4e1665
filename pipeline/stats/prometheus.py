"""A Prometheus endpoint in the supervisor: the live view's figures, per stage and replica.

It serves the latest snapshot from its own registry (not the library's global one), so a
scrape costs no work in the stage processes and shows exactly what the table shows. The
label for an instance is ``replica`` rather than ``instance``: Prometheus sets ``instance``
on every scraped series itself, and would rename ours to ``exported_instance``.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

from ..errors import RkpipeError
from .report import InstanceRow, Snapshot

__all__ = ["MetricsServer", "start_metrics"]

INSTALL_HINT = "pip install 'rkpipe[metrics]'  (or: pip install prometheus-client)"
_LABELS = ["stage", "replica"]


class SnapshotCollector:
    """Turns the latest snapshot into metric families at each scrape."""

    def __init__(self) -> None:
        self._snap: Snapshot | None = None
        self._lock = threading.Lock()

    def update(self, snap: Snapshot) -> None:
        with self._lock:
            self._snap = snap

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        with self._lock:
            snap = self._snap
        if snap is None:
            return
        run = GaugeMetricFamily("rkpipe_run_seconds", "seconds since every stage was ready")
        run.add_metric([], snap.run_s)
        yield run

        def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Any:
            return CounterMetricFamily(name, doc, labels=[*_LABELS, *extra])

        def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> Any:
            return GaugeMetricFamily(name, doc, labels=[*_LABELS, *extra])

        f_in = counter("rkpipe_frames_in", "frames taken in")
        f_out = counter("rkpipe_frames_out", "frames sent on (or consumed, at a sink)")
        drops = counter("rkpipe_drops", "frames dropped, by reason", ("reason",))
        restarts = counter("rkpipe_restarts", "times the process was restarted")
        fps = gauge("rkpipe_fps", "frames per second over the last report", ("direction",))
        lat = gauge("rkpipe_latency_ms", "capture-to-output latency percentiles", ("quantile",))
        queue = gauge("rkpipe_queue_depth", "messages waiting inside the process")
        cpu = gauge("rkpipe_cpu_percent", "CPU time of the process, % of one core")
        up = gauge("rkpipe_running", "1 while the process runs, else 0")
        sink = counter("rkpipe_sink_frames", "frames delivered at a sink, per stream", ("stream",))
        for r in snap.rows:
            labels = [r.stage, _replica(r)]
            f_in.add_metric(labels, r.frames_in)
            f_out.add_metric(labels, r.frames_out)
            for reason, n in r.drops.items():
                drops.add_metric([*labels, reason], n)
            restarts.add_metric(labels, r.restarts)
            fps.add_metric([*labels, "in"], r.fps_in)
            fps.add_metric([*labels, "out"], r.fps_out)
            for q, v in (("0.5", r.p50_ms), ("0.99", r.p99_ms)):
                if v is not None:
                    lat.add_metric([*labels, q], v)
            queue.add_metric(labels, r.queue_depth)
            cpu.add_metric(labels, r.cpu_percent)
            up.add_metric(labels, 1.0 if r.state == "running" else 0.0)
            if r.sink:
                for stream, n in r.streams_out.items():
                    sink.add_metric([*labels, stream], n)
        yield from (f_in, f_out, drops, restarts, fps, lat, queue, cpu, up, sink)


def _replica(r: InstanceRow) -> str:
    _, dot, tail = r.instance.rpartition(".")
    return tail if dot and r.instance != r.stage else "0"


class MetricsServer:
    """The HTTP endpoint; ``update`` it with each snapshot, ``stop`` it at the end."""

    def __init__(self, server: Any, collector: SnapshotCollector, host: str) -> None:
        self._server = server
        self.collector = collector
        self.host = host
        self.port: int = server.server_address[1]

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/metrics"

    def update(self, snap: Snapshot) -> None:
        self.collector.update(snap)

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


def start_metrics(host: str, port: int) -> MetricsServer:
    """Serve ``/metrics`` on ``host:port`` (0: any free port) from a background thread.
    Raises RkpipeError, before any stage starts, if it cannot."""
    try:
        from prometheus_client import CollectorRegistry, start_http_server
    except ImportError:
        msg = f"the Prometheus endpoint needs the prometheus-client package: {INSTALL_HINT}"
        raise RkpipeError(msg) from None
    collector = SnapshotCollector()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    try:
        started = start_http_server(port, addr=host, registry=registry)
    except OSError as exc:
        msg = f"prometheus_port {port}: cannot listen on {host}:{port}: {exc.strerror or exc}"
        raise RkpipeError(msg) from None
    if not started:  # prometheus-client before 0.17 returns nothing we could stop
        msg = f"prometheus-client is too old to serve metrics; {INSTALL_HINT}"
        raise RkpipeError(msg)
    return MetricsServer(started[0], collector, host)
