"""The supervisor: start one process per stage instance, watch them, restart, drain, clean up.

Stage processes run in the run's own process group, each bound to die with the supervisor
(``spawn``), so however the supervisor ends, no process of the run is left. Ctrl-C or
SIGTERM drains: sources stop and mark their streams' end, every stage finishes what it holds
and exits in graph order. A second one, or the grace period running out, kills what is
left; either way the stats are written, the summary printed, and every segment and socket
removed. A stage that dies is restarted, disabled or ends the run by its ``on_failure``
(``restart``). The run's frame accounting lives in per-instance ledgers in shared memory,
made here before any stage starts; deaths, stream ends and the delivery report are
the run's books (``accounting.run_book``).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import zmq

from ..accounting.run_book import RunBook
from ..errors import (
    EXIT_FAILED,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_SETUP,
    EXIT_TERMINATED,
    TransportError,
)
from ..graph.load import Graph
from ..graph.plan import InstanceSpec, Plan, make_plan
from ..outputs import declared_outputs
from ..runtime.child import PARENT_ENV
from ..runtime.job import GRAPH_ENV, JOB_ENV, TOKEN_ENV, Job
from ..runtime.ledger import Ledger
from ..secrets import known as known_secrets
from ..stats.live_file import LiveFile, snapshot_json
from ..stats.metrics import counters_of
from ..stats.report import Snapshot, StatsBook
from ..stats.summary import silent_sources
from ..transport.codec import unpackb
from ..transport.framepool import SHM_DIR
from ..transport.links import configure, gone_dir, secure_endpoint, zmq_context
from .affinity import thread_env
from .camera_health import CameraHealth
from .graph_watch import GraphWatch
from .reload import Changes, Reloader
from .restart import RestartPolicy
from .run_display import RunDisplay
from .runs import Run, new_run, sweep_stale
from .spawn import ProcessGroup, python_child

__all__ = ["RunResult", "Supervisor"]

log = logging.getLogger("rkpipe")
_ECHO_S = 0.1  # one signal delivered twice arrives within microseconds; a person, not
_CONTROL_KINDS = {
    "stats",
    "ready",
    "fatal",
    "crash",
    "done",
    "stream_end",
    "health",
    "reconfigured",
}


@dataclass
class _Child:
    spec: InstanceSpec
    policy: RestartPolicy
    proc: subprocess.Popen | None = None
    started: float = 0.0
    last_seen: float = 0.0
    ready: bool = False
    done: bool = False  # exited cleanly after its inputs ended (or was disabled / given up)
    disabled: bool = False
    restart_at: float | None = None
    replacing: bool = False  # killed by a reload to start again with new options
    retiring: bool = False  # a source a reload removed: stopped once set up, never restarted
    let_go: bool = False  # a replica a reload let go: ends once its producers say EOS
    exits: list[str] = field(default_factory=list)  # how earlier processes ended


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
        stats_interval_s: float | None = None,
        watch: bool = False,
    ) -> None:
        self.graph = graph
        self.watch = GraphWatch(graph.path) if watch else None  # --watch: reload when saved
        self.run_info: Run | None = None
        self.run_id = "pending"
        self.settings = graph.settings
        self.duration = duration
        self.frames = frames
        interval = stats_interval_s or self.settings.stats_interval_s
        self.display = RunDisplay(live, interval)
        self.echo = echo or self.display.message
        self.log_level = log_level
        port = self.settings.prometheus_port if prometheus_port is None else prometheus_port
        self.metrics_port = port
        self.errors: list[str] = []
        self.fatal_exits: list[str] = []  # exited with EXIT_SETUP; its message may come later
        self.signals: list[int] = []
        self.reload_wanted = False  # SIGHUP: read the graph again (``reload``)
        self._signalled = 0.0  # when the last stop request came
        self.draining_since: float | None = None
        self.killed = False  # stopped at once (a second signal)
        self.cut_short = False  # the drain ran past its grace period
        self.t_ready: float | None = None
        self.started_at = time.time()
        self.rejected = 0  # control messages refused
        self.failed_late: list[str] = []  # failures the run went on after (a disabled sink)
        self.group = ProcessGroup()
        self.token = secrets.token_hex(16)
        self.ledgers: dict[str, Ledger] = {}
        self.run_ledger: Ledger | None = None

    # -- the plan, once the run has its place ----------------------------------------------------
    def _prepare(self) -> None:
        run = self.run_info = new_run()
        self.run_id = run.run_id
        self.ipc_dir = run.run_dir
        self.cameras = CameraHealth(self.ipc_dir, self.echo)  # each source's latest health
        self.live_file = LiveFile(self.ipc_dir)  # the live figures, for a stage's API
        self.plan: Plan = make_plan(self.graph, self.run_id, str(self.ipc_dir))
        self.children = {s.instance: self._child(s) for s in self.plan.instances}
        for inst in self.children:
            self.ledgers[inst] = Ledger.create(self._ledger_path(inst))
        self.run_ledger = Ledger.create(self._ledger_path("run"))
        self.reloader = Reloader(self.graph, self.run_id, self.ipc_dir, self.children, self.echo)
        self.accounts = RunBook(
            self.plan, self.run_ledger, self.ledgers, gone_dir(str(self.ipc_dir))
        )
        self.book = StatsBook(
            {st: [i.instance for i in self.plan.by_stage(st)] for st in self.plan.order()},
            cpus={i.instance: i.cpus for i in self.plan.instances},
            sinks={i.stage for i in self.plan.instances if not i.outputs},
        )

    def _child(self, spec: InstanceSpec) -> _Child:
        policy = RestartPolicy(
            spec.on_failure,  # type: ignore[arg-type]
            self.settings.restart_limit,
            self.settings.restart_window_s,
        )
        return _Child(spec, policy)

    def _ledger_path(self, name: str) -> Path:
        return SHM_DIR / f"rkpipe-{self.run_id}-ledger-{name}"

    # -- start and stop --------------------------------------------------------------------------
    def _spawn(self, child: _Child, restarted: bool = False) -> None:
        spec = child.spec
        job = Job(
            spec=spec,
            control=self.control_ep,
            run_dir=str(self.ipc_dir),
            ledger=str(self._ledger_path(spec.instance)),
            run_ledger=str(self._ledger_path("run")),
            restarted=restarted,
            finished=[i for i, c in self.children.items() if c.done and not c.disabled],
            lost_ends=self.accounts.lost_ends(spec) if restarted and not spec.is_source else {},
            max_frames=self.frames,
            log_level=self.log_level,
            secrets=known_secrets(),  # masked in the stage's errors and logs too
        )
        env = {
            **os.environ,
            **thread_env(spec.cpus),
            JOB_ENV: job.to_env(),
            TOKEN_ENV: self.token,
            GRAPH_ENV: str(self.graph.path.resolve()),
            PARENT_ENV: str(os.getpid()),
        }
        out = self.display.child_output
        child.proc = self.group.spawn(
            python_child("pipeline.runtime.child", spec.instance),
            env,
            stderr=out,
            stdout=out if out is not None and sys.stdout.isatty() else None,
        )
        if restarted:
            self.book.started(spec.instance, counters_of(self.ledgers[spec.instance].snapshot()))
        child.started = child.last_seen = time.monotonic()
        child.ready = False

    def _signal(self, child: _Child, sig: int) -> None:
        if child.proc is not None and child.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(sig)

    def on_signal(self, signum: int) -> None:
        """SIGINT/SIGTERM: the first drains, the second kills now; more change nothing.
        The same signal again within ``_ECHO_S`` is the same request delivered twice (GNU
        timeout signals the process, then its group), not a person asking again.
        Never raises, so teardown always completes."""
        now = time.monotonic()
        if self.signals and self.signals[-1] == signum and now - self._signalled < _ECHO_S:
            return
        self._signalled = now
        self.signals.append(signum)
        if len(self.signals) == 1:
            name = signal.Signals(signum).name
            self.echo(f"rkpipe: {name}: draining (again to stop now)")
            self.begin_drain()
        elif len(self.signals) == 2:
            self.echo("rkpipe: stopping now")
            self.kill_now()

    def on_reload(self) -> None:
        """SIGHUP: read the graph again at the next turn of the loop, not in the handler."""
        self.reload_wanted = True

    def begin_drain(self) -> None:
        """Stop the sources; everything downstream finishes what it holds and exits."""
        if self.draining_since is not None:
            return
        self.draining_since = time.monotonic()
        for c in self.children.values():
            if c.spec.is_source:
                self._signal(c, signal.SIGTERM)

    def kill_now(self) -> None:
        self.killed = True
        self.group.kill()
        for c in self.children.values():
            self._signal(c, signal.SIGKILL)

    # -- main loop -------------------------------------------------------------------------------
    def run(self) -> RunResult:
        """Start everything, supervise until done, clean up; never leaves processes or
        shared memory behind."""
        sweep_stale()
        self._prepare()
        try:
            return self._run()
        finally:
            self.cleanup()  # whatever happened: no segment, socket or lock is left

    def _run(self) -> RunResult:
        sock = None
        t0 = time.monotonic()
        try:
            self.display.start(self.settings, self.metrics_port)
            self.control_ep = f"ipc://{self.ipc_dir}/control.sock"
            sock = configure(zmq_context().socket(zmq.PULL))
            secure_endpoint(sock, self.control_ep)
            for spec in reversed(self.plan.instances):  # consumers first: they grant credits
                if not self.killed:
                    self._spawn(self.children[spec.instance])
            self._supervise(sock, t0)
        finally:
            self._kill_all()
            if sock is not None:
                while sock.poll(200):  # final reports sent just before the processes exited
                    self._receive(sock)
                sock.close(0)
            for name in self.fatal_exits:  # a stage that failed without saying why (rare)
                if not any(e.startswith(f"{name}:") for e in self.errors):
                    self.errors.append(f"{name}: failed to start (exit status {EXIT_SETUP})")
        wall = time.monotonic() - t0
        active = wall - ((self.t_ready or t0) - t0)
        stats = self._final_stats(wall, active)
        if stats["ran"] and not self.errors:  # every run ends with its word
            self.errors += silent_sources(stats)
        self.display.close(self._snapshot(time.monotonic(), final_s=active))
        self.errors += self.failed_late
        return RunResult(self._exit_code(), stats, self.errors)

    def _supervise(self, sock: zmq.Socket, t0: float) -> None:
        tick = min(1.0, self.settings.stats_interval_s)  # as often as stages report
        next_tick = time.monotonic() + tick
        while not self.killed:
            if sock.poll(100):
                while sock.poll(0):
                    self._receive(sock)
            now = time.monotonic()
            self._reap(now)
            if all(c.done for c in self.children.values()):
                return
            if self.errors or self.fatal_exits:
                if self.t_ready is None:
                    return  # a stage failed to start: nothing ran, so there is nothing to drain
                self.begin_drain()
            self._check_heartbeats(now)
            if self.watch is not None and self.watch.changed(now):
                self.reload_wanted = True
            if self.reload_wanted and self.draining_since is None:
                self.reload_wanted = False
                changes = self.reloader.reload()
                self.graph = self.reloader.graph
                if changes is not None:
                    self._apply(changes)
                if self.watch is not None:
                    self.watch.seen()
            self.errors += self.cameras.down_too_long(self.settings.fail_on_source_down_s)
            self._restart_due(now)
            if self.duration is not None and self.t_ready and now - self.t_ready >= self.duration:
                self.begin_drain()  # the duration counts from when every stage is set up
            if (
                self.draining_since is not None
                and now - self.draining_since > self.settings.shutdown_grace_s
            ):
                self.echo("rkpipe: drain took too long; stopping the remaining stages")
                self.cut_short = True
                return
            if now >= next_tick:
                next_tick = now + tick
                self.cameras.tick()
                snap = self._snapshot(now)
                self.display.show(snap)
                with contextlib.suppress(OSError):  # the run goes on if nobody can read it
                    self.live_file.write(snapshot_json(snap))

    def _apply(self, changes: Changes) -> None:
        """What a reload leaves to the lifecycle: start the sources and processes it added
        (their ledgers first), stop the sources it removed (their streams end in order), mark
        the processes it let go (they end once their producers' EOS came), and account from
        now on by the plan of what runs."""
        self.accounts.adopt(changes.plan)
        self.plan = changes.plan
        for spec in changes.start:
            child = self.children.get(spec.instance)
            if child is not None:  # a replica let go earlier, wanted again: its counts go on
                child.spec, child.let_go, child.done = spec, False, False
                self._spawn(child, restarted=True)
                continue
            self.ledgers[spec.instance] = Ledger.create(self._ledger_path(spec.instance))
            child = self.children[spec.instance] = self._child(spec)
            self.book.add_stage(spec.stage, [spec.instance], spec.cpus)
            self._spawn(child)
        for name in changes.retire:
            child = self.children[name]
            child.retiring = True
            self.cameras.remove(child.spec.stage)
            if child.ready:
                self._signal(child, signal.SIGTERM)
        for name in changes.let_go:
            child = self.children[name]
            child.let_go = True
            if child.proc is None and not child.done:  # restarting: it will not be needed
                self._gone_for_good(child)

    # -- the control channel ---------------------------------------------------------------------
    def _receive(self, sock: zmq.Socket) -> None:
        """One control message, checked first: anything malformed, or without the run's
        token, is refused and counted, never raised."""
        raw = sock.recv()
        try:
            event = unpackb(raw)
            ok = (
                isinstance(event, dict)
                and event.get("t") in _CONTROL_KINDS
                and isinstance(event.get("instance"), str)
                and isinstance(event.get("token"), str)
                and hmac.compare_digest(event["token"], self.token)
                and event["instance"] in self.children
            )
        except TransportError:
            ok = False
        if not ok:
            self.rejected += 1
            if self.rejected in (1, 10, 100, 1000):
                self.echo(f"rkpipe: refused {self.rejected} malformed control message(s)")
            return
        try:
            self._on_control(event)
        except (KeyError, TypeError, ValueError) as exc:  # well-formed but nonsense fields
            self.rejected += 1
            log.warning("refused a control message from %s: %s", event["instance"], exc)

    def _on_control(self, event: dict[str, Any]) -> None:
        child = self.children[event["instance"]]
        child.last_seen = time.monotonic()
        kind = event["t"]
        if kind == "stats":
            report = event.get("stats")
            if not isinstance(report, dict):
                raise ValueError("stats is not a map")
            pid = int(event.get("pid", 0))
            self.book.update(child.spec.instance, pid, self._with_counters(child, report))
        elif kind == "ready":
            child.ready = True
            self.reloader.ready(child)
            if child.retiring:
                self._signal(child, signal.SIGTERM)
            if self.t_ready is None and all(c.ready for c in self.children.values()):
                self.t_ready = time.monotonic()
                self.echo(f"rkpipe: {len(self.children)} processes running")
        elif kind == "fatal":
            self.errors.append(f"{child.spec.instance}: {str(event.get('error'))[:500]}")
        elif kind == "crash":
            self.echo(f"rkpipe: {child.spec.instance} crashed: {str(event.get('error'))[:500]}")
        elif kind == "done":
            child.done = True
        elif kind == "stream_end":
            stream = str(event.get("stream"))
            if child.spec.is_source:
                self.accounts.stream_ended(
                    child.spec, stream, int(event["end"]), int(event["source_drops"])
                )
            else:
                self.accounts.stream_ended(child.spec, stream)
        elif kind == "reconfigured":
            what = event.get("what")
            what = [str(w) for w in what] if isinstance(what, list) else None
            if self.reloader.took(child, bool(event.get("ok")), str(event.get("error", "")), what):
                child.replacing = True  # restarted with its new options once it is gone
                self._signal(child, signal.SIGKILL)
        elif kind == "health" and child.spec.is_source:
            state, detail = str(event.get("state")), str(event.get("detail"))
            self.cameras.update(child.spec.stage, state, detail)

    def _with_counters(self, child: _Child, report: dict[str, Any]) -> dict[str, Any]:
        """A process's report of its timings, with its instance's counters from the ledger."""
        timing = {
            k: report[k]
            for k in ("busy_s", "cpu_s", "uptime_s", "latency", "service", "queue_depth")
            if isinstance(report.get(k), (int, float, list))
        }
        return {**timing, **counters_of(self.ledgers[child.spec.instance].snapshot())}

    # -- deaths and restarts ---------------------------------------------------------------------
    def _reap(self, now: float) -> None:
        for name, c in self.children.items():
            if c.proc is None or c.proc.poll() is None:
                continue
            code = c.proc.returncode
            c.proc = None
            if code == 0 or c.done:
                c.done = True
                if c.retiring:
                    self.echo(f"rkpipe: reload: {name} stopped; its stream ended")
                elif c.let_go:
                    self.echo(f"rkpipe: reload: {name} finished what it held and ended")
                continue
            self.accounts.died()  # where every stage sees it: frames before it may be lost
            if c.let_go:  # a replica a reload let go: not started again
                c.exits.append(c.policy.describe(code))
                self._gone_for_good(c)
                continue
            if c.replacing and self.draining_since is None:  # a reload's, not a failure
                c.replacing = False
                c.restart_at = now
                continue
            c.exits.append(c.policy.describe(code))
            if code == EXIT_SETUP or self.draining_since is not None:
                c.done = True
                self.accounts.mark_gone(name)
                if code == EXIT_SETUP:
                    self.fatal_exits.append(name)
                continue
            self._after_death(c, code, now)

    def _gone_for_good(self, c: _Child) -> None:
        """An instance that will not run again: nobody waits on it for credits or EOS."""
        c.done, c.restart_at = True, None
        self.accounts.mark_gone(c.spec.instance)

    def _after_death(self, c: _Child, code: int, now: float) -> None:
        name, how = c.spec.instance, c.policy.describe(code)
        decision, delay = c.policy.died(now)
        if decision == "restart":
            self.echo(f"rkpipe: {name} exited with {how}; restarting in {delay:.2f}s")
            c.restart_at = now + delay
            return
        c.done = True
        self.accounts.mark_gone(name)
        window = self.settings.restart_window_s
        if decision == "disable":
            c.disabled = True
            text = (
                f"{name} exited with {how} {len(c.policy.deaths)} times in {window:.0f}s; "
                "it was disabled for the rest of the run (the others went on)"
            )
            self.echo(f"rkpipe: error: {text}")
            self.failed_late.append(text)  # the run goes on, but does not end well
        elif c.spec.on_failure == "stop":
            self.errors.append(f"{name}: exited with {how} (on_failure = stop)")
        else:
            self.errors.append(
                f"{name}: exited with {how} {len(c.policy.deaths)} times in {window:.0f}s; "
                "giving up"
            )

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
        """Stop whatever still runs: SIGTERM, a short wait, then SIGKILL, to the group too."""
        alive = [c for c in self.children.values() if c.proc is not None and c.proc.poll() is None]
        for c in alive:
            self._signal(c, signal.SIGTERM)
        deadline = time.monotonic() + (0.0 if self.killed else 3.0)
        for c in alive:
            assert c.proc is not None
            try:
                c.proc.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._signal(c, signal.SIGKILL)
                c.proc.wait()
            if c.proc.returncode not in (0, None) and not c.done:
                c.exits.append(c.policy.describe(c.proc.returncode))
        self.group.kill()

    # -- what the user sees ----------------------------------------------------------------------
    def _snapshot(self, now: float, final_s: float | None = None) -> Snapshot:
        run_s = final_s if final_s is not None else now - self.t_ready if self.t_ready else 0.0
        snap = self.book.snapshot(
            self.settings.name, run_s, self._states(), final=final_s is not None
        )
        snap.sources = self.cameras.streams
        return snap

    def _states(self) -> dict[str, str]:
        states = {}
        for name, c in self.children.items():
            if c.disabled:
                states[name] = "disabled"
            elif c.done:
                states[name] = "done"
            elif c.restart_at is not None or c.proc is None:
                states[name] = "restarting"
            else:
                states[name] = "running" if c.ready else "starting"
        return states

    def _final_stats(self, wall: float, active: float) -> dict[str, Any]:
        """The ``--stats-out`` document: per stage, and the delivery check per stream."""
        disabled = {n for n, c in self.children.items() if c.disabled}
        delivery = self.accounts.report(disabled, stopped=self.killed or self.cut_short)
        for inst in self.children:  # counters even of processes that were killed
            self.book.set_counters(inst, counters_of(self.ledgers[inst].snapshot()))
        graph_dir = self.graph.graph_dir
        return {
            "schema": "rkpipe.stats/2",
            "ran": self.t_ready is not None,  # every stage was set up: the run started
            "pipeline": self.settings.name,
            "run_id": self.run_id,
            "started": _iso(self.started_at),
            "finished": _iso(time.time()),
            **self.book.to_json(wall, active),
            "exact": delivery["exact"],
            "streams": delivery["streams"],
            "health": self.cameras.final(),
            "outputs": {
                name: {key: str(path) for key, path in declared_outputs(sdef.config, graph_dir)}
                for name, sdef in self.graph.stages.items()
                if declared_outputs(sdef.config, graph_dir)
            },
            "disabled": sorted(disabled),
            "removed": sorted(self.reloader.removed),  # sources a reload took away
            "control_rejected": self.rejected,
        }

    def cleanup(self) -> None:
        """Remove this run's shared memory, sockets and lock (idempotent)."""
        for ledger in self.ledgers.values():
            ledger.close()
        self.ledgers.clear()
        if self.run_ledger is not None:
            self.run_ledger.close()
            self.run_ledger = None
        if self.run_info is not None:
            self.run_info.release()
            self.run_info = None

    def _exit_code(self) -> int:
        if self.errors:
            return EXIT_FAILED
        if self.signals:
            return EXIT_TERMINATED if self.signals[0] == signal.SIGTERM else EXIT_INTERRUPTED
        return EXIT_OK


def _iso(t: float) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"
