"""What a running stage instance knows about its place in the run, and the services the
runtime gives it: output arrays in shared memory, and counters for drops and events."""

from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from .node import default_node

__all__ = ["HEALTH_STATES", "Context", "InlineRuntime", "StageRuntime"]

#: What a source says of its camera: trying for the first time, delivering frames, lost and
#: trying again, or given up / not reachable for long.
HEALTH_STATES = ("connecting", "live", "reconnecting", "down")


class StageRuntime(Protocol):
    """The runtime services behind a Context: the stage process's worker, or
    :class:`InlineRuntime` when a stage runs inline (unit tests, ``pipeline.testing``)."""

    def alloc(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray: ...

    def count_drop(self, reason: str, n: int = 1) -> None: ...

    def count_event(self, kind: str, n: int = 1) -> None: ...

    def report_health(self, state: str, detail: str = "") -> None: ...

    def source_health(self) -> dict[str, dict[str, Any]]: ...

    def run_stats(self) -> dict[str, Any]: ...

    def keep_alive(self) -> bool: ...


class InlineRuntime:
    """Plain arrays and in-memory counters, for stages run outside a stage process."""

    def __init__(self) -> None:
        self.drops: Counter[str] = Counter()
        self.events: Counter[str] = Counter()
        self.health: list[tuple[str, str]] = []  # every (state, detail) reported, in order

    def alloc(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.empty(shape, dtype)

    def count_drop(self, reason: str, n: int = 1) -> None:
        self.drops[reason] += n

    def count_event(self, kind: str, n: int = 1) -> None:
        self.events[kind] += n

    def report_health(self, state: str, detail: str = "") -> None:
        self.health.append((state, detail))

    def source_health(self) -> dict[str, dict[str, Any]]:
        return {}

    def run_stats(self) -> dict[str, Any]:
        return {}

    def keep_alive(self) -> bool:
        return True


class _PlainArrays:
    """Counts through to another runtime, but hands out ordinary arrays."""

    def __init__(self, inner: StageRuntime) -> None:
        self.inner = inner

    def alloc(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.empty(shape, dtype)

    def count_drop(self, reason: str, n: int = 1) -> None:
        self.inner.count_drop(reason, n)

    def count_event(self, kind: str, n: int = 1) -> None:
        self.inner.count_event(kind, n)

    def report_health(self, state: str, detail: str = "") -> None:
        self.inner.report_health(state, detail)

    def source_health(self) -> dict[str, dict[str, Any]]:
        return self.inner.source_health()

    def run_stats(self) -> dict[str, Any]:
        return self.inner.run_stats()

    def keep_alive(self) -> bool:
        return self.inner.keep_alive()


@dataclass
class Context:
    """Where a stage instance runs (stage, replica, CPUs, graph folder, run) and the runtime
    services it may call (:meth:`alloc`, :meth:`count_drop`, :meth:`count_event`)."""

    stage: str
    pipeline: str = "pipeline"  # the graph's [pipeline] name
    node: str = field(default_factory=default_node)  # the board: [pipeline] node
    replica: int = 0
    replicas: int = 1
    cpus: list[int] = field(default_factory=list)
    graph_dir: Path = field(default_factory=Path.cwd)
    run_id: str = "inline"
    resume_seq: int = -1  # a restarted source continues after this frame
    restarted: bool = False  # this process replaces one that crashed: don't clobber its output
    max_frames: int | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("rkpipe"))
    runtime: StageRuntime = field(default_factory=InlineRuntime)

    @property
    def instance(self) -> str:
        """``name`` for a single instance, ``name.N`` for replica N."""
        return self.stage if self.replicas == 1 else f"{self.stage}.{self.replica}"

    def resolve_path(self, path: str | Path) -> Path:
        """A path from the graph file, resolved against the graph file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.graph_dir / p)

    def alloc(self, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        """An output array in this stage's shared-memory pool: write into it and send it on,
        and no copy is made on the way out. Outside a stage process it is a plain array."""
        return self.runtime.alloc(tuple(shape), np.dtype(dtype))

    def count_drop(self, reason: str, n: int = 1) -> None:
        """Record frames this stage dropped on purpose (e.g. a corrupt frame), by reason."""
        self.runtime.count_drop(reason, n)

    def count_event(self, kind: str, n: int = 1) -> None:
        """Record something notable that lost no frame (a camera reconnect), by kind."""
        self.runtime.count_event(kind, n)

    def report_health(self, state: str, detail: str = "") -> None:
        """A source says how its camera is: one of ``HEALTH_STATES``, with a short reason
        (``"connection refused"``). Reported at once to the supervisor, which shows it in the
        live table, the metrics and the run summary, and shares it with every stage."""
        if state not in HEALTH_STATES:
            msg = f"unknown source health {state!r}; expected one of {', '.join(HEALTH_STATES)}"
            raise ValueError(msg)
        self.runtime.report_health(state, detail)

    def source_health(self) -> dict[str, dict[str, Any]]:
        """Every source's latest health, by stream: ``{"state", "detail", "since"}`` (Unix
        seconds), ``"reconnects"``; for sinks that publish camera status. Empty inline."""
        return self.runtime.source_health()

    def run_stats(self) -> dict[str, Any]:
        """The run's live figures, as of the supervisor's last stats tick (see
        ``stats.live_file.snapshot_json``): per stage instance its state, rates and counts;
        per stream what the sinks delivered. Empty inline."""
        return self.runtime.run_stats()

    def keep_alive(self) -> bool:
        """For long work in ``end_stream``/``close`` (a sink flushing to a slow server): call
        it at least once a second. It reports this process alive (the supervisor kills a stage
        silent for ``heartbeat_timeout_s``) and returns False once the run wants this process
        to stop now: then wrap up at once, counting what is left."""
        return self.runtime.keep_alive()

    def with_plain_arrays(self) -> Context:
        """This context, but :meth:`alloc` gives ordinary arrays (for frames that are
        resized before they leave, so the shared-memory slot would be wasted)."""
        return replace(self, runtime=_PlainArrays(self.runtime))
