"""What changed between two loaded graphs, for a reload: stages whose options alone changed
(applied in place where the stage can) and everything else (sources, links, replicas), which
a run cannot take without a restart yet."""

from __future__ import annotations

from dataclasses import dataclass, field

from .load import Graph

__all__ = ["GraphDiff", "diff_graphs"]


@dataclass
class GraphDiff:
    """``options``: stage name -> its new options; ``restart``: one line per other change."""

    options: dict[str, dict] = field(default_factory=dict)
    restart: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.options and not self.restart


def diff_graphs(old: Graph, new: Graph) -> GraphDiff:
    """The difference from ``old`` to ``new``, stage by stage."""
    out = GraphDiff()
    for name in sorted(set(new.stages) - set(old.stages)):
        out.restart.append(f"stage {name!r} added")
    for name in sorted(set(old.stages) - set(new.stages)):
        out.restart.append(f"stage {name!r} removed")
    for name in sorted(set(old.stages) & set(new.stages)):
        a, b = old.stages[name], new.stages[name]
        if a.common != b.common:
            keys = sorted(
                k
                for k in type(a.common).model_fields
                if getattr(a.common, k) != getattr(b.common, k)
            )
            out.restart.append(f"stage {name!r}: {', '.join(keys)} changed")
        elif a.options != b.options:
            out.options[name] = dict(b.options)
    if old.settings != new.settings:
        out.restart.append("[pipeline] settings changed")
    return out
