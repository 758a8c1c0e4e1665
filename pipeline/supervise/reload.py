"""Reloading a running run's graph (SIGHUP, ``rkpipe reload``): the file is read and
validated again as ``rkpipe validate`` does; a bad edit changes nothing and says why in one
line; otherwise what changed is applied where a run can take it, one line each.

Applied today: a stage's changed options, sent to its processes (``runtime.reconfigure``),
which take them in place between two messages when the stage can (``Stage.reconfigure``),
else that stage alone is restarted with them through the restart path, its counts kept in
its ledger. Everything else (a source's options, stages added or removed, links, replicas,
``[pipeline]`` settings) is named as needing a restart, and the run keeps the old.

The outcome of the latest reload is left in the run folder (``reload.json``) for
``rkpipe reload`` to read and print.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import GraphError
from ..graph.diff import diff_graphs
from ..graph.load import Graph, load_graph
from ..graph.plan import InstanceSpec, make_plan
from ..runtime import reconfigure

if TYPE_CHECKING:
    from .supervisor import _Child

__all__ = ["OUTCOME_FILE", "Reloader", "read_outcome"]

OUTCOME_FILE = "reload.json"


class Reloader:
    """One run's reloads: what is running now, and how to reach its processes."""

    def __init__(
        self,
        graph: Graph,
        run_id: str,
        run_dir: Path,
        children: dict[str, _Child],
        echo: Callable[[str], None],
    ) -> None:
        self.graph = graph  # what runs: the file as last applied
        self.run_id = run_id
        self.run_dir = run_dir
        self.children = children
        self.echo = echo
        self.count = 0
        self.waiting: dict[str, int] = {}  # instance -> pid of a process to signal when ready
        self._write({"reload": 0, "ok": True, "lines": []})  # names the run's graph

    def reload(self) -> bool:
        """Read the graph file again and apply what changed; False if it was not valid."""
        self.count += 1
        path = self.graph.path
        try:
            new = load_graph(path, cpus=self.graph.topology)
            plan = make_plan(new, self.run_id, str(self.run_dir))
        except GraphError as exc:
            why = "; ".join(" ".join(p.split()) for p in exc.problems)  # one line
            self._say(
                False, [f"rkpipe: reload: {why} (nothing changed; the run goes on as it was)"]
            )
            return False
        diff = diff_graphs(self.graph, new)
        lines = [
            f"rkpipe: reload: {what} needs a restart for now (not applied)" for what in diff.restart
        ]
        applied = {}
        for name, options in diff.options.items():
            if self.graph.stages[name].is_source:
                lines.append(
                    f"rkpipe: reload: source {name!r}: new options need a restart for now"
                    " (not applied)"
                )
                continue
            old = self.graph.stages[name].options
            keys = sorted(k for k in {*old, *options} if old.get(k) != options.get(k))
            lines.append(f"rkpipe: reload: {name}: new {', '.join(keys)}; sent to its processes")
            for spec in plan.by_stage(name):
                self._send(spec)
            applied[name] = new.stages[name]
        if diff.empty:
            lines.append(f"rkpipe: reload: {path}: nothing changed")
        self.graph = dataclasses.replace(self.graph, stages={**self.graph.stages, **applied})
        self._say(True, lines)
        return True

    def _send(self, spec: InstanceSpec) -> None:
        """Give one process its new options; one not running now starts with them."""
        child = self.children.get(spec.instance)
        if child is None:
            return
        child.spec = dataclasses.replace(child.spec, options=spec.options)
        reconfigure.write_options(self.run_dir, spec.instance, spec.options)
        if child.proc is None or child.proc.poll() is not None:
            return
        if child.ready:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(reconfigure.SIGNAL)
        else:  # the signal would end a process not yet set to take it: sent once it is ready
            self.waiting[spec.instance] = child.proc.pid

    def ready(self, child: _Child) -> None:
        """A process is set up: one started before a reload is given its new options now."""
        proc = child.proc
        if proc is not None and self.waiting.pop(child.spec.instance, None) == proc.pid:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(reconfigure.SIGNAL)

    def took(self, child: _Child, ok: bool, why: str) -> bool:
        """A process's answer; True when it must be restarted to take its options."""
        name = child.spec.instance
        if ok:
            self.echo(f"rkpipe: reload: {name} took its new options in place")
            return False
        reason = f" ({why})" if why else ""
        self.echo(
            f"rkpipe: reload: {name} cannot take its new options in place{reason}; restarting it"
        )
        return True

    def _say(self, ok: bool, lines: list[str]) -> None:
        for line in lines:
            self.echo(line)
        self._write({"reload": self.count, "ok": ok, "lines": lines})

    def _write(self, outcome: dict) -> None:
        outcome["graph"] = str(self.graph.path.resolve())
        tmp = self.run_dir / f".{OUTCOME_FILE}.tmp"
        with contextlib.suppress(OSError):  # the run goes on even if nobody can read it
            tmp.write_text(json.dumps(outcome))
            os.replace(tmp, self.run_dir / OUTCOME_FILE)


def read_outcome(run_dir: Path) -> dict | None:
    """The latest reload's outcome in a run folder, or None before the first."""
    try:
        data = json.loads((run_dir / OUTCOME_FILE).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


RELOAD_SIGNAL = signal.SIGHUP
__all__ += ["RELOAD_SIGNAL"]
