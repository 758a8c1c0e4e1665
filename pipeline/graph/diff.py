"""What changed between two loaded graphs, for a reload: stages whose options alone changed
(applied in place where the stage can), sources added or removed (started, or ended as a
stream ends, with the stages that read them rewired), stages whose number of processes
changed (``resized``), and everything else (other stages, links), which a run cannot take
without a restart yet."""

from __future__ import annotations

from dataclasses import dataclass, field

from .load import Graph, StageDef

__all__ = ["GraphDiff", "diff_graphs"]


@dataclass
class GraphDiff:
    """``options``: stage name -> its new options; ``added`` / ``removed``: sources started
    or ended; ``rewired``: stages that read an added or removed source, their new inputs;
    ``resized``: stages whose number of processes changed, their new number; ``restart``:
    one line per other change."""

    options: dict[str, dict] = field(default_factory=dict)
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    rewired: dict[str, list[str]] = field(default_factory=dict)
    resized: dict[str, int] = field(default_factory=dict)
    restart: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not (self.options or self.added or self.removed or self.resized or self.restart)


def diff_graphs(old: Graph, new: Graph) -> GraphDiff:
    """The difference from ``old`` to ``new``, stage by stage. A source added or removed
    is applied when only the stages that read it change, by their ``inputs``, and those
    stages were there before; anything more is named for a restart."""
    out = GraphDiff()
    added = set(new.stages) - set(old.stages)
    removed = set(old.stages) - set(new.stages)
    live_added = {n for n in added if new.stages[n].is_source}
    live_removed = {n for n in removed if old.stages[n].is_source}
    for name in sorted(added - live_added):
        out.restart.append(f"stage {name!r} added")
    for name in sorted(removed - live_removed):
        out.restart.append(f"stage {name!r} removed")
    for name in sorted(live_added):
        readers = [n for n, s in new.stages.items() if name in s.common.inputs]
        if all(r in old.stages for r in readers):
            out.added.append(name)
        else:
            out.restart.append(f"source {name!r} added (a stage that reads it is new)")
    out.removed = sorted(live_removed)
    moved = {*out.added, *out.removed}
    for name in sorted(set(old.stages) & set(new.stages)):
        a, b = old.stages[name], new.stages[name]
        changed = sorted(
            k for k in type(a.common).model_fields if getattr(a.common, k) != getattr(b.common, k)
        )
        if changed == ["inputs"] and set(a.common.inputs) ^ set(b.common.inputs) <= moved:
            out.rewired[name] = list(b.common.inputs)
            changed = []
        n_a, n_b = _processes(a), _processes(b)
        if changed in ([], ["replicas"]) and n_a != n_b and _resizable(a, b, n_a, n_b):
            out.resized[name] = n_b  # e.g. infer's npu_cores [0, 1] -> [0, 1, 2]
            if a.options != b.options:
                out.options[name] = dict(b.options)
            continue
        if not changed and n_a != n_b:
            keys = sorted(
                k for k in {*a.options, *b.options} if a.options.get(k) != b.options.get(k)
            )
            changed = [f"{', '.join(keys)} (its number of processes)"]
        if changed:
            out.restart.append(f"stage {name!r}: {', '.join(changed)} changed")
        elif a.options != b.options:
            out.options[name] = dict(b.options)
    # a source read by a stage that changes otherwise too is not started or ended alone
    stuck = [
        n
        for n in set(old.stages) & set(new.stages)
        if old.stages[n].common.inputs != new.stages[n].common.inputs and n not in out.rewired
    ]
    if any(name in new.stages[r].common.inputs for r in stuck for name in out.added) or any(
        name in old.stages[r].common.inputs for r in stuck for name in out.removed
    ):
        out.restart += [f"source {n!r} added" for n in out.added]
        out.restart += [f"source {n!r} removed" for n in out.removed]
        out.restart += [f"stage {n!r}: inputs changed" for n in sorted(out.rewired)]
        out.added, out.removed, out.rewired = [], [], {}
    if old.settings != new.settings:
        out.restart.append("[pipeline] settings changed")
    return out


def _processes(sdef: StageDef) -> int:
    """How many processes a stage runs: its ``replicas``, or what its options decide."""
    per = sdef.cls.replica_options(sdef.config)
    return len(per) if per else sdef.common.replicas


def _resizable(a: StageDef, b: StageDef, n_a: int, n_b: int) -> bool:
    """A stage's processes can be added or let go while it runs: not a source, its streams
    not pinned to replicas (their owners would move), and several before and after (one
    process has another instance name)."""
    return (
        not a.is_source
        and a.common.partition == b.common.partition == "free"
        and min(n_a, n_b) >= 2
    )
