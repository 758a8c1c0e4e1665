"""Reloading a running run's graph (SIGHUP, ``rkpipe reload``): the file is read and
validated again as ``rkpipe validate`` does; a bad edit changes nothing and says why in one
line; otherwise what changed is applied where a run can take it, one line each.

Applied today: a stage's changed options, sent to its processes (``runtime.reconfigure``),
which take them in place between two messages when the stage can (``Stage.reconfigure``),
else that stage alone is restarted with them through the restart path, its counts kept in
its ledger; a source added (its process started, the stages that read it told to connect)
or removed (stopped as at the end of a run: its stream ends in order, its tally closes); a
stage's processes added or let go (``npu_cores``, ``replicas``: the producers feed the new
ones, and end the ones let go with an EOS after what they sent them). Everything else (a
source's options, other stages added or removed, links, ``[pipeline]`` settings) is named as
needing a restart, and the run keeps the old.

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
from ..graph.plan import InstanceSpec, Plan, make_plan
from ..runtime import reconfigure
from ..transport.links import gone_dir

if TYPE_CHECKING:
    from .supervisor import _Child

__all__ = ["OUTCOME_FILE", "Changes", "Reloader", "read_outcome"]

OUTCOME_FILE = "reload.json"


@dataclasses.dataclass
class Changes:
    """What a reload leaves to the supervisor: processes to start (a source added), to stop
    (a source removed), and the plan of what runs now."""

    plan: Plan
    start: list[InstanceSpec] = dataclasses.field(default_factory=list)
    retire: list[str] = dataclasses.field(default_factory=list)
    let_go: list[str] = dataclasses.field(default_factory=list)  # replicas that drain and end


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
        self.removed: set[str] = set()  # sources removed in this run: their names stay taken
        self._write({"reload": 0, "ok": True, "lines": []})  # names the run's graph

    def reload(self) -> Changes | None:
        """Read the graph file again and apply what changed; None if it was not valid (or
        named a source removed earlier in this run)."""
        self.count += 1
        path = self.graph.path
        try:
            new = load_graph(path, cpus=self.graph.topology)
            plan = make_plan(new, self.run_id, str(self.run_dir))
        except GraphError as exc:
            why = "; ".join(" ".join(p.split()) for p in exc.problems)  # one line
            self._refuse(why)
            return None
        diff = diff_graphs(self.graph, new)
        again = sorted(set(diff.added) & self.removed)
        if again:
            self._refuse(
                f"{path}: source {again[0]!r} was removed earlier in this run; give it a new"
                " name (its stream ended, and a stream does not start twice in a run)"
            )
            return None
        busy = sorted(
            i
            for i, c in self.children.items()
            if c.spec.stage in diff.resized and c.let_go and not c.done
        )
        if busy:
            self._refuse(
                f"{path}: {busy[0]} is still finishing what it held since the last reload;"
                " reload again once it has ended"
            )
            return None
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
            applied[name] = new.stages[name]
            if name in diff.resized and set(keys) <= set(new.stages[name].cls.layout_options):
                continue  # said as its number of processes below
            lines.append(f"rkpipe: reload: {name}: new {', '.join(keys)}; sent to its processes")
        for name in diff.added:
            lines.append(f"rkpipe: reload: source {name!r} added; starting it")
            applied[name] = new.stages[name]
        for name in diff.removed:
            lines.append(f"rkpipe: reload: source {name!r} removed; its stream ends")
        for name, inputs in diff.rewired.items():
            lines.append(f"rkpipe: reload: {name}: now reads {', '.join(inputs)}")
            applied[name] = new.stages[name]
        for name, n in diff.resized.items():
            was = len([c for c in self.children.values() if c.spec.stage == name and not c.done])
            how = "starting" if n > was else "letting go of"
            lines.append(f"rkpipe: reload: {name}: {n} processes (was {was}); {how} {abs(n - was)}")
            applied[name] = new.stages[name]
        if diff.empty:
            lines.append(f"rkpipe: reload: {path}: nothing changed")
        stages = {n: applied.get(n, s) for n, s in self.graph.stages.items()}
        stages.update((n, s) for n, s in applied.items() if n not in stages)
        for name in diff.removed:
            del stages[name]
        self.graph = dataclasses.replace(self.graph, stages=stages)
        changes = Changes(make_plan(self.graph, self.run_id, str(self.run_dir)))
        for name in diff.options:
            if name in applied:
                layout = set(new.stages[name].cls.layout_options) if name in diff.resized else set()
                for spec in plan.by_stage(name):
                    self._send(spec, quietly=layout)
        for name in diff.resized:
            self._resize(name, plan, changes)
        self.removed.update(diff.removed)
        for name in diff.rewired:
            for spec in plan.by_stage(name):
                self._rewire(spec)
        for name in diff.added:
            changes.start += plan.by_stage(name)
        for name in diff.removed:
            changes.retire += [i for i, c in self.children.items() if c.spec.stage == name]
        self._say(True, lines)
        return changes

    def _refuse(self, why: str) -> None:
        self._say(False, [f"rkpipe: reload: {why} (nothing changed; the run goes on as it was)"])

    def _rewire(self, spec: InstanceSpec, renewed: list[str] | None = None) -> None:
        """Tell one process of a stage that reads an added or removed source its inputs;
        one not running now starts with them."""
        child = self.children.get(spec.instance)
        if child is None:
            return
        # a removed source is read until it has ended: its END (and what it sent before)
        # must still reach this stage, also through a process of it started meanwhile
        leaving = [
            i
            for i in child.spec.inputs
            if i[0] in self.removed and i not in spec.inputs and not self._ended(i[1])
        ]
        inputs = [*spec.inputs, *leaving]
        sources = sorted({*spec.source_inputs, *(i[0] for i in leaving)})
        child.spec = dataclasses.replace(
            child.spec, inputs=inputs, source_inputs=sources, input_curve=spec.input_curve
        )
        reconfigure.write_inputs(
            self.run_dir, spec.instance, inputs, sources, spec.input_curve, renewed or []
        )
        self._poke(child)

    def _ended(self, instance: str) -> bool:
        child = self.children.get(instance)
        return child is None or child.done

    def _send(self, spec: InstanceSpec, quietly: set[str] | frozenset[str] = frozenset()) -> None:
        """Give one process its new options; one not running now starts with them. Where
        only ``quietly`` options differ for it (they lay out processes), it is not told."""
        child = self.children.get(spec.instance)
        if child is None:
            return
        old = child.spec.options
        differ = {k for k in {*old, *spec.options} if old.get(k) != spec.options.get(k)}
        child.spec = dataclasses.replace(child.spec, options=spec.options)
        reconfigure.write_options(self.run_dir, spec.instance, spec.options)
        if differ - set(quietly):
            self._poke(child)

    def _resize(self, name: str, plan: Plan, changes: Changes) -> None:
        """A stage's number of processes changed: start the new ones; tell its producers
        whom they feed now (the ones let go get their EOS after what was sent them, finish
        it and end) and its consumers whom they read (new inlets)."""
        now = {s.instance for s in plan.by_stage(name)}
        back = [i for i in now if i in self.children and self.children[i].let_go]
        for instance in back:  # let go earlier, wanted again: nobody may take it for gone
            (gone_dir(str(self.run_dir)) / instance).unlink(missing_ok=True)
        changes.start += [
            s for s in plan.by_stage(name) if s.instance not in self.children or s.instance in back
        ]
        let_go = [i for i, c in self.children.items() if c.spec.stage == name and i not in now]
        changes.let_go += let_go
        stages = self.graph.stages
        for producer in stages[name].common.inputs:
            for spec in plan.by_stage(producer):
                child = self.children.get(spec.instance)
                if child is not None:
                    released = sorted({*child.spec.released, *let_go} - now)  # back: served
                    child.spec = dataclasses.replace(
                        child.spec, outputs=spec.outputs, released=released
                    )  # a restarted producer still ends what it let go
                    reconfigure.write_outputs(self.run_dir, spec.instance, spec.outputs)
                    self._poke(child)
        for consumer in [n for n, s in stages.items() if name in s.common.inputs]:
            for spec in plan.by_stage(consumer):
                self._rewire(spec, renewed=back)

    def _poke(self, child: _Child) -> None:
        """Signal a process to read what was left for it (once it is set up to take it)."""
        if child.proc is None or child.proc.poll() is not None:
            return
        if child.ready:
            with contextlib.suppress(ProcessLookupError):
                child.proc.send_signal(reconfigure.SIGNAL)
        else:  # the signal would end a process not yet set to take it: sent once it is ready
            self.waiting[child.spec.instance] = child.proc.pid

    def ready(self, child: _Child) -> None:
        """A process is set up: one started before a reload is given its new options now."""
        proc = child.proc
        if proc is not None and self.waiting.pop(child.spec.instance, None) == proc.pid:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(reconfigure.SIGNAL)

    def took(self, child: _Child, ok: bool, why: str, what: list[str] | None = None) -> bool:
        """A process's answer; True when it must be restarted to take its options.
        ``what``: the producers it connected to, and "options" if it had new ones."""
        name = child.spec.instance
        what = what if what is not None else ["options"]
        joined = [w for w in what if w != "options" and not w.startswith("-")]
        if joined:
            self.echo(f"rkpipe: reload: {name} connected to {', '.join(joined)}")
        let_go = [w[1:] for w in what if w.startswith("-")]
        if let_go:
            self.echo(f"rkpipe: reload: {name} let go of {', '.join(let_go)}")
        if ok:
            if "options" in what:
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
