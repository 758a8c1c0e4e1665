"""What a run shows while it runs: the live table on stderr, the stage processes' own text
routed above it (so it never tears the table apart), and the Prometheus endpoint, fed the same
snapshots. The supervisor decides what happened; this only shows it."""

from __future__ import annotations

import os
import sys
import threading
from typing import TYPE_CHECKING

from ..stats.live_view import LiveView
from ..stats.report import Snapshot

if TYPE_CHECKING:
    from ..graph.schema import PipelineSettings
    from ..stats.prometheus import MetricsServer

__all__ = ["RunDisplay"]


class RunDisplay:
    """The live table, the stage output pipe and the metrics endpoint of one run."""

    def __init__(self, live: bool | None, interval_s: float) -> None:
        self.view = LiveView(sys.stderr, live, interval_s)
        self.metrics: MetricsServer | None = None
        self.child_output: int | None = None  # where stage processes write, while live
        self._reader: threading.Thread | None = None

    def message(self, text: str) -> None:
        """A line above the table (or on stderr when there is no table)."""
        self.view.message(text)

    def start(self, settings: PipelineSettings, metrics_port: int | None) -> None:
        """Open the metrics endpoint (when asked for) and, with a live table, the pipe that
        carries the stage processes' text above it."""
        if metrics_port is not None:
            from ..stats.prometheus import start_metrics  # optional: prometheus-client

            self.metrics = start_metrics(
                settings.prometheus_host, metrics_port, settings.prometheus_token, settings.node
            )
            self.message(f"rkpipe: metrics at {self.metrics.url}")
        if self.view.live:
            self._pipe_child_output()

    def show(self, snap: Snapshot) -> None:
        self.view.update(snap)
        if self.metrics is not None:
            self.metrics.update(snap)

    def close(self, final: Snapshot) -> None:
        """Leave the whole-run table on screen and stop the metrics endpoint."""
        if self.child_output is not None:
            os.close(self.child_output)
            self.child_output = None
            if self._reader is not None:
                self._reader.join(timeout=2.0)
        self.view.close(final)
        if self.metrics is not None:
            self.metrics.update(final)
            self.metrics.stop()

    def _pipe_child_output(self) -> None:
        read_fd, self.child_output = os.pipe()

        def pump() -> None:
            with os.fdopen(read_fd, "rb") as pipe:
                for raw in pipe:
                    self.view.message(raw.decode(errors="replace").rstrip("\n"))

        self._reader = threading.Thread(target=pump, name="stage-output", daemon=True)
        self._reader.start()
