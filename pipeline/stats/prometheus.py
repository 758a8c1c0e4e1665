"""A Prometheus endpoint in the supervisor: the live view's figures, per stage and replica.

It serves the latest snapshot from its own registry (not the library's global one), so a
scrape costs no work in the stage processes and shows exactly what the table shows. Names
follow Prometheus' conventions: base units (``_seconds``, ratios where 1 is one CPU core),
counters end in ``_total``, latency is a histogram, and every series carries the board's
``node`` id and the graph's ``pipeline`` name (boards scraped by one Prometheus, or federated,
stay apart even where their ``instance`` target labels are rewritten). The label for an
instance is ``replica`` rather than ``instance``: Prometheus sets ``instance`` on every
scraped series itself, and would rename ours to ``exported_instance``.

Only requests that name this machine in their Host header are answered (no DNS rebinding),
and, with ``prometheus_token``, only those that carry it as ``Authorization: Bearer``: a graph
cannot listen beyond localhost without one.
"""

from __future__ import annotations

import platform
import socket
import threading
from collections.abc import Iterator
from http.server import ThreadingHTTPServer
from typing import Any

from .. import __version__
from ..errors import RkpipeError
from ..httpguard import bearer, host_names, host_part, known_host, token_matches
from ..node import default_node
from .report import InstanceRow, Snapshot

__all__ = ["LATENCY_BUCKETS_S", "MetricsServer", "SnapshotCollector", "start_metrics"]

INSTALL_HINT = "pip install 'rkpipe[metrics]'  (or: pip install prometheus-client)"
_LABELS = ["node", "pipeline", "stage", "replica"]
#: Upper bounds of the latency histogram, seconds (each within 2% of the stats' own buckets).
LATENCY_BUCKETS_S = (0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0)


class SnapshotCollector:
    """Turns the latest snapshot into metric families at each scrape."""

    def __init__(self, node: str = "") -> None:
        self.node = node or default_node()
        self._snap: Snapshot | None = None
        self._lock = threading.Lock()

    def update(self, snap: Snapshot) -> None:
        with self._lock:
            self._snap = snap

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import GaugeMetricFamily

        info = GaugeMetricFamily(
            "rkpipe_build_info", "rkpipe build: version and Python", labels=["version", "python"]
        )
        info.add_metric([__version__, platform.python_version()], 1.0)
        yield info
        with self._lock:
            snap = self._snap
        if snap is None:
            return
        run = GaugeMetricFamily(
            "rkpipe_run_seconds",
            "seconds since every stage was ready",
            labels=["node", "pipeline"],
        )
        run.add_metric([self.node, snap.pipeline], snap.run_s)
        yield run
        yield from _instance_families(self.node, snap)
        yield from _source_families(self.node, snap)


def _source_families(node: str, snap: Snapshot) -> Iterator[Any]:
    """Camera health: up (live) or not, and reconnects, per stream."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    up = GaugeMetricFamily(
        "rkpipe_source_up",
        "1 while the stream's source is live, else 0",
        labels=["node", "pipeline", "stream"],
    )
    again = CounterMetricFamily(
        "rkpipe_source_reconnects", "times the source lost its camera and tried again",
        labels=["node", "pipeline", "stream"],
    )  # fmt: skip
    for stream, h in sorted(snap.sources.items()):
        up.add_metric([node, snap.pipeline, stream], float(h.get("state") == "live"))
        again.add_metric([node, snap.pipeline, stream], float(h.get("reconnects", 0)))
    yield up
    yield again


def _instance_families(node: str, snap: Snapshot) -> Iterator[Any]:
    """One family per figure of the live table, with a sample per stage instance."""
    from prometheus_client.core import (
        CounterMetricFamily,
        GaugeMetricFamily,
        HistogramMetricFamily,
    )

    def counter(name: str, doc: str, extra: tuple[str, ...] = ()) -> Any:
        return CounterMetricFamily(name, doc, labels=[*_LABELS, *extra])

    def gauge(name: str, doc: str, extra: tuple[str, ...] = ()) -> Any:
        return GaugeMetricFamily(name, doc, labels=[*_LABELS, *extra])

    f_in = counter("rkpipe_frames_in", "frames taken in")
    f_out = counter("rkpipe_frames_out", "frames sent on (or consumed, at a sink)")
    drops = counter("rkpipe_drops", "frames dropped, by reason", ("reason",))
    restarts = counter("rkpipe_restarts", "times the process was restarted")
    cpu_s = counter("rkpipe_cpu_seconds", "CPU time of the process since the run began")
    fps = gauge("rkpipe_frames_per_second", "frame rate over the last report", ("direction",))
    cpu = gauge("rkpipe_cpu_usage_ratio", "CPU use over the last report (1 = one core)")
    queue = gauge("rkpipe_queue_depth", "messages waiting inside the process")
    up = gauge("rkpipe_stage_up", "1 while the process runs, else 0")
    sink = counter("rkpipe_sink_frames", "frames delivered at a sink, per stream", ("stream",))
    lat = HistogramMetricFamily(
        "rkpipe_latency_seconds", "capture-to-output latency since the run began", labels=_LABELS
    )
    for r in snap.rows:
        labels = [node, snap.pipeline, r.stage, _replica(r)]
        f_in.add_metric(labels, r.frames_in)
        f_out.add_metric(labels, r.frames_out)
        for reason, n in r.drops.items():
            drops.add_metric([*labels, reason], n)
        restarts.add_metric(labels, r.restarts)
        cpu_s.add_metric(labels, r.cpu_s)
        fps.add_metric([*labels, "in"], r.fps_in)
        fps.add_metric([*labels, "out"], r.fps_out)
        cpu.add_metric(labels, r.cpu_percent / 100)
        queue.add_metric(labels, r.queue_depth)
        up.add_metric(labels, 1.0 if r.state == "running" else 0.0)
        lat.add_metric(labels, *_latency_buckets(r))
        if r.sink:
            for stream, n in r.streams_out.items():
                sink.add_metric([*labels, stream], n)
    yield from (f_in, f_out, drops, restarts, cpu_s, fps, cpu, queue, up, lat, sink)


def _latency_buckets(r: InstanceRow) -> tuple[list[tuple[str, float]], float]:
    """Cumulative ``(le, count)`` pairs in seconds, ending at +Inf, and the sum in seconds."""
    h = r.latency
    buckets = [(repr(b), float(h.count_upto(b * 1000))) for b in LATENCY_BUCKETS_S]
    buckets.append(("+Inf", float(len(h))))
    return buckets, h.approx_sum_ms() / 1000


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


def _guarded_handler(registry: Any, token: str | None) -> type:
    """A MetricsHandler that answers only requests naming this machine (Host) and, with a
    ``token``, carrying it (``Authorization: Bearer``), before any work."""
    from prometheus_client.exposition import MetricsHandler

    allowed = {"localhost", *host_names()}

    class Guarded(MetricsHandler):
        timeout = 10  # a client that sends nothing for this long is dropped

        def do_GET(self) -> None:
            if not known_host(host_part(self.headers.get("Host", "")), allowed):
                return self._refuse(403, b"unknown host name\n")
            given = bearer(self.headers.get("Authorization", ""))
            if token is not None and not token_matches(given, token):
                return self._refuse(401, b"this endpoint needs its token (Bearer)\n")
            super().do_GET()

        def _refuse(self, code: int, body: bytes) -> None:
            self.send_response(code)
            if code == 401:
                self.send_header("WWW-Authenticate", "Bearer")
            self.send_header("Content-Type", "text/plain; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    Guarded.registry = registry
    return Guarded


def start_metrics(host: str, port: int, token: str | None = None, node: str = "") -> MetricsServer:
    """Serve ``/metrics`` on ``host:port`` (0: any free port) from a background thread, every
    series labelled with ``node``, to requests that name this machine and carry ``token``
    (where set). Raises RkpipeError, before any stage starts, if it cannot."""
    try:
        from prometheus_client import CollectorRegistry
    except ImportError:
        msg = f"the Prometheus endpoint needs the prometheus-client package: {INSTALL_HINT}"
        raise RkpipeError(msg) from None
    collector = SnapshotCollector(node)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    server_cls = type("MetricsHTTPServer", (ThreadingHTTPServer,), {"address_family": family})
    try:
        server = server_cls((host, port), _guarded_handler(registry, token))
    except OSError as exc:
        msg = f"prometheus_port {port}: cannot listen on {host}:{port}: {exc.strerror or exc}"
        raise RkpipeError(msg) from None
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="metrics", daemon=True).start()
    return MetricsServer(server, collector, host)
