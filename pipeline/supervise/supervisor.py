"""The supervisor: start one process per stage instance, watch them, restart, drain, clean up.

Children run in their own session, so Ctrl-C reaches only the supervisor, which then drains:
sources stop and mark their streams' end, every stage finishes what it holds and exits in
graph order. A second Ctrl-C, or the grace period running out, kills what is left. A crashed
stage is restarted with backoff while the others keep running; one that keeps crashing
(``restart_limit`` within ``restart_window_s``) ends the run with an error.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import secrets
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import zmq

from ..errors import EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_SETUP
from ..graph.load import Graph
from ..graph.plan import InstanceSpec, Plan, make_plan
from ..health import HealthFile
from ..stats.live_view import LiveView
from ..stats.report import Snapshot, StatsBook
from ..transport.codec import unpackb
from ..transport.framepool import SHM_DIR, pid_alive, sweep_segments
from ..transport.links import configure, gone_dir, stream_owner, zmq_context
from .affinity import thread_env

if TYPE_CHECKING:
    from ..stats.prometheus import MetricsServer

__all__ = ["RunResult", "Supervisor", "new_run_id"]

log = logging.getLogger("rkpipe")


def new_run_id() -> str:
    """``<pid>x<random>``: the pid lets a later run tell whether this one is still alive."""
    return f"{os.getpid()}x{secrets.token_hex(3)}"


@dataclass
class _Child:
    spec: InstanceSpec
    proc: subprocess.Popen | None = None
    started: float = 0.0
    last_seen: float = 0.0
    ready: bool = False
    done: bool = False  # exited cleanly after its inputs ended
    crashes: deque = field(default_factory=deque)
    restart_at: float | None = None
    last_seq: int = -1


@dataclass
class RunResult:
    exit_code: int
    stats: dict
    errors: list[str]


class Supervisor:
    """Runs a plan to completion; ``run`` returns the exit status and the final stats."""

    def __init__(
        self,
        graph: Graph,
        duration: float | None = None,
        frames: int | None = None,
        echo: Callable[[str], None] | None = None,
        log_level: str = "WARNING",
        live: bool | None = False,
        prometheus_port: int | None = None,
    ) -> None:
        self.run_id = new_run_id()
        self.ipc_dir = Path("/tmp") / f"rkpipe-{self.run_id}"
        self.plan: Plan = make_plan(graph, self.run_id, str(self.ipc_dir))
        self.settings = graph.settings
        self.duration = duration
        self.frames = frames
        self.view = LiveView(sys.stderr, live, self.settings.stats_interval_s)
        self.echo = echo or self.view.message
        self.log_level = log_level
        self.children = {s.instance: _Child(s) for s in self.plan.instances}
        self.book = StatsBook(
            {st: [i.instance for i in self.plan.by_stage(st)] for st in self.plan.order()},
            cpus={i.instance: i.cpus for i in self.plan.instances},
            sinks={i.stage for i in self.plan.instances if not i.outputs},
        )
        port = self.settings.prometheus_port if prometheus_port is None else prometheus_port
        self.metrics_port = port
        self.metrics: MetricsServer | None = None
        self.child_output: int | None = None  # the live view's pipe for stage processes' text
        self._output_reader: threading.Thread | None = None
        self.errors: list[str] = []
        self.fatal_exits: list[str] = []  # exited with EXIT_SETUP; its message may come later
        self.interrupted = 0
        self.draining_since: float | None = None
        self.t_ready: float | None = None
        self.source_ends: dict[str, tuple[str, int]] = {}  # stream -> (source stage, last seq)
        self.stage_ends: dict[str, set[str]] = {}  # stage -> streams it passed END on for
        self.health: dict[str, dict] = {}  # stream -> its source's latest health

    # -- start and stop ----------------------------------------------------------------------
    def _spawn(self, child: _Child, restarted: bool = False) -> None:
        spec = child.spec
        finished = [i for i, c in self.children.items() if c.done]
        job = {
            "spec": spec.to_json(),
            "control": self.control_ep,
            "restarted": restarted,
            "finished": finished,
            "resume_seq": child.last_seq if spec.is_source else -1,
            "lost_ends": self._lost_ends(spec) if restarted and not spec.is_source else {},
            "max_frames": None
            if self.frames is None
            else max(0, self.frames - (child.last_seq + 1)),
            "log_level": self.log_level,
        }
        env = {**os.environ, **thread_env(spec.cpus), "RKPIPE_SPEC": json.dumps(job)}
        out = self.child_output
        child.proc = subprocess.Popen(
            [sys.executable, "-m", "pipeline.runtime.child", spec.instance],
            env=env,
            start_new_session=True,
            stderr=out,
            stdout=out if out is not None and sys.stdout.isatty() else None,
        )
        child.started = child.last_seen = time.monotonic()
        child.ready = False

    def _signal(self, child: _Child, sig: int) -> None:
        if child.proc is not None and child.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(sig)

    def _on_signal(self, signum: int, _frame: object) -> None:
        self.interrupted += 1
        if self.interrupted == 1:
            self.echo(f"rkpipe: {signal.Signals(signum).name}: draining (again to stop now)")
            self.begin_drain()
        else:
            for c in self.children.values():
                self._signal(c, signal.SIGKILL)

    def begin_drain(self) -> None:
        """Stop the sources; everything downstream finishes what it holds and exits."""
        if self.draining_since is not None:
            return
        self.draining_since = time.monotonic()
        for c in self.children.values():
            if c.spec.is_source:
                self._signal(c, signal.SIGTERM)

    # -- main loop ---------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Start everything, supervise until done, clean up; never leaves processes or
        shared memory behind."""
        sweep_stale()
        if self.metrics_port is not None:
            from ..stats.prometheus import start_metrics  # optional: needs prometheus-client

            self.metrics = start_metrics(self.settings.prometheus_host, self.metrics_port)
            self.echo(f"rkpipe: metrics at {self.metrics.url}")
        if self.view.live:
            self._pipe_child_output()
        self.ipc_dir.mkdir(parents=True, exist_ok=True)
        self.control_ep = f"ipc://{self.ipc_dir}/control.sock"
        sock = configure(zmq_context().socket(zmq.PULL))
        sock.bind(self.control_ep)
        old = {s: signal.signal(s, self._on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
        t0 = time.monotonic()
        try:
            for spec in reversed(self.plan.instances):  # consumers first: they grant credits
                self._spawn(self.children[spec.instance])
            self._supervise(sock, t0)
        finally:
            for s, h in old.items():
                signal.signal(s, h)
            self._kill_all()
            while sock.poll(200):  # final reports sent just before the processes exited
                self._on_control(unpackb(sock.recv()))
            sock.close(0)
            for name in self.fatal_exits:  # a stage that failed without saying why (rare)
                if not any(e.startswith(f"{name}:") for e in self.errors):
                    self.errors.append(f"{name}: failed to start (exit status {EXIT_SETUP})")
            self.cleanup()
        wall = time.monotonic() - t0
        active = wall - ((self.t_ready or t0) - t0)
        self._finish_view(active)
        stats = {
            "pipeline": self.settings.name,
            "run_id": self.run_id,
            **self.book.to_json(wall, active),
        }
        return RunResult(self._exit_code(), stats, self.errors)

    def _supervise(self, sock: zmq.Socket, t0: float) -> None:
        tick = min(1.0, self.settings.stats_interval_s)  # as often as stages report
        next_tick = time.monotonic() + tick
        while True:
            if sock.poll(100):
                while sock.poll(0):
                    self._on_control(unpackb(sock.recv()))
            now = time.monotonic()
            self._reap(now)
            if all(c.done for c in self.children.values()):
                return
            if self.errors or self.fatal_exits:
                if self.t_ready is None:
                    return  # a stage failed to start: nothing ran, so there is nothing to drain
                self.begin_drain()
            self._check_heartbeats(now)
            self._restart_due(now)
            if self.duration is not None and now - (self.t_ready or t0) >= self.duration:
                self.begin_drain()
            if (
                self.draining_since is not None
                and now - self.draining_since > self.settings.shutdown_grace_s
            ):
                self.echo("rkpipe: drain took too long; stopping the remaining stages")
                return
            if now >= next_tick:
                next_tick = now + tick
                self._show(self._snapshot(now))

    def _on_control(self, event: dict) -> None:
        child = self.children.get(event.get("instance", ""))
        if child is None:
            return
        child.last_seen = time.monotonic()
        kind = event.get("t")
        if kind == "stats":
            self.book.update(child.spec.instance, event.get("pid", 0), event["stats"])
            child.last_seq = max(child.last_seq, *event["stats"].get("last_seq", {}).values(), -1)
        elif kind == "ready":
            child.ready = True
            if self.t_ready is None and all(c.ready for c in self.children.values()):
                self.t_ready = time.monotonic()
                self.echo(f"rkpipe: {len(self.children)} processes running")
        elif kind == "fatal":
            self.errors.append(f"{child.spec.instance}: {event['error']}")
        elif kind == "crash":
            self.echo(f"rkpipe: {child.spec.instance} crashed: {event['error']}")
        elif kind == "done":
            child.done = True
        elif kind == "health" and child.spec.is_source:
            self._set_health(child.spec.stage, str(event.get("state")), str(event.get("detail")))
        elif kind == "stream_end":
            stream, stage = str(event.get("stream", "")), child.spec.stage
            self.stage_ends.setdefault(stage, set()).add(stream)
            if child.spec.is_source:
                self.source_ends[stream] = (stage, int(event.get("last_seq", -1)))

    def _set_health(self, stream: str, state: str, detail: str) -> None:
        """Record a source's new health and share it with every stage (health.json)."""
        old = self.health.get(stream, {})
        reconnects = old.get("reconnects", 0) + (state == "reconnecting" != old.get("state"))
        self.health[stream] = {
            "state": state,
            "detail": detail,
            "since": time.time() if state != old.get("state") else old.get("since", time.time()),
            "reconnects": reconnects,
        }
        HealthFile(self.ipc_dir).write(self.health)

    def _lost_ends(self, spec: InstanceSpec) -> dict[str, int]:
        """Streams that ended upstream of a restarted instance, whose END its stage has not
        passed on: it may have died in the crash. Where streams are pinned to replicas, only
        the stream's own replica is told."""
        upstream = self.plan.upstream(spec.stage)
        pinned = spec.replicas > 1 and any(
            spec.stage in i.partition for i in self.plan.instances if i.outputs
        )
        return {
            stream: last
            for stream, (source, last) in self.source_ends.items()
            if source in upstream
            and stream not in self.stage_ends.get(spec.stage, set())
            and (not pinned or stream_owner(stream, spec.replicas) == spec.replica)
        }

    def _reap(self, now: float) -> None:
        for name, c in self.children.items():
            if c.proc is None or c.proc.poll() is None:
                continue
            code = c.proc.returncode
            c.proc = None
            if code == 0 or c.done:
                c.done = True
                continue
            if code == EXIT_SETUP or self.draining_since is not None:
                c.done = True
                self._mark_gone(name)
                if code == EXIT_SETUP:
                    self.fatal_exits.append(name)
                continue
            self._schedule_restart(c, code, now)

    def _mark_gone(self, instance: str) -> None:
        """Tell the other stages (by a file they look for while waiting) that ``instance``
        ended for good without finishing, so none waits on it for credits or its EOS."""
        gone = gone_dir(str(self.ipc_dir))
        gone.mkdir(parents=True, exist_ok=True)
        (gone / instance).touch()

    def _schedule_restart(self, c: _Child, code: int, now: float) -> None:
        name = c.spec.instance
        window = self.settings.restart_window_s
        while c.crashes and now - c.crashes[0] > window:
            c.crashes.popleft()
        c.crashes.append(now)
        how = f"signal {-code}" if code < 0 else f"status {code}"
        if len(c.crashes) > self.settings.restart_limit:
            self.errors.append(
                f"{name}: exited with {how} {len(c.crashes)} times in {window:.0f}s; giving up"
            )
            c.done = True
            self._mark_gone(name)
            return
        delay = min(30.0, 0.25 * 2 ** (len(c.crashes) - 1))
        self.echo(f"rkpipe: {name} exited with {how}; restarting in {delay:.2f}s")
        c.restart_at = now + delay

    def _restart_due(self, now: float) -> None:
        for c in self.children.values():
            if c.restart_at is not None and now >= c.restart_at and self.draining_since is None:
                c.restart_at = None
                self.book.restarted(c.spec.stage, c.spec.instance)
                self._spawn(c, restarted=True)

    def _check_heartbeats(self, now: float) -> None:
        for c in self.children.values():
            if c.proc is None or c.done:
                continue
            limit = (
                self.settings.heartbeat_timeout_s if c.ready else self.settings.startup_timeout_s
            )
            if now - c.last_seen > limit:
                self.echo(
                    f"rkpipe: {c.spec.instance} silent for {now - c.last_seen:.0f}s; killing it"
                )
                self._signal(c, signal.SIGKILL)
                c.last_seen = now

    def _kill_all(self) -> None:
        """Stop whatever still runs: SIGTERM, a short wait, then SIGKILL."""
        alive = [c for c in self.children.values() if c.proc is not None and c.proc.poll() is None]
        for c in alive:
            self._signal(c, signal.SIGTERM)
        deadline = time.monotonic() + 3.0
        for c in alive:
            try:
                c.proc.wait(max(0.0, deadline - time.monotonic()))  # type: ignore[union-attr]
            except subprocess.TimeoutExpired:
                self._signal(c, signal.SIGKILL)
                c.proc.wait()  # type: ignore[union-attr]

    # -- what the user sees ------------------------------------------------------------------
    def _snapshot(self, now: float, final_s: float | None = None) -> Snapshot:
        run_s = final_s if final_s is not None else now - self.t_ready if self.t_ready else 0.0
        return self.book.snapshot(
            self.settings.name, run_s, self._states(), final=final_s is not None
        )

    def _states(self) -> dict[str, str]:
        states = {}
        for name, c in self.children.items():
            if c.done:
                states[name] = "done"
            elif c.restart_at is not None or c.proc is None:
                states[name] = "restarting"
            else:
                states[name] = "running" if c.ready else "starting"
        return states

    def _show(self, snap: Snapshot) -> None:
        self.view.update(snap)
        if self.metrics is not None:
            self.metrics.update(snap)

    def _finish_view(self, active_s: float) -> None:
        """Leave the whole-run table on screen and stop the metrics endpoint."""
        final = self._snapshot(time.monotonic(), final_s=active_s)
        if self.child_output is not None:
            os.close(self.child_output)
            self.child_output = None
            if self._output_reader is not None:
                self._output_reader.join(timeout=2.0)
        self.view.close(final)
        if self.metrics is not None:
            self.metrics.update(final)
            self.metrics.stop()

    def _pipe_child_output(self) -> None:
        """Route what stage processes print through the view, so it lands above the table
        instead of tearing it apart."""
        read_fd, self.child_output = os.pipe()

        def pump() -> None:
            with os.fdopen(read_fd, "rb") as pipe:
                for raw in pipe:
                    self.view.message(raw.decode(errors="replace").rstrip("\n"))

        self._output_reader = threading.Thread(target=pump, name="stage-output", daemon=True)
        self._output_reader.start()

    def cleanup(self) -> None:
        """Unlink this run's shared memory and sockets."""
        for path in SHM_DIR.glob(f"rkpipe-{self.run_id}-*"):
            path.unlink(missing_ok=True)
        shutil.rmtree(self.ipc_dir, ignore_errors=True)

    def _exit_code(self) -> int:
        if self.errors:
            return EXIT_FAILED
        if self.interrupted:
            return EXIT_INTERRUPTED
        return EXIT_OK


def sweep_stale() -> list[str]:
    """Remove shared memory and socket folders left by runs that were killed."""
    removed = sweep_segments()
    for d in Path("/tmp").glob("rkpipe-*"):
        run = d.name[len("rkpipe-") :].split("x", 1)[0]
        if run.isdigit() and not pid_alive(int(run)):
            shutil.rmtree(d, ignore_errors=True)
            removed.append(str(d))
    return removed
