"""The run side of the accounting, kept by the supervisor: deaths, stream ends, the ENDs a
crash may have taken along, instances gone for good, and the delivery report. A plain
object over the run's ledgers (no process, no socket), so it can be driven directly.

- A death is written to the run ledger (its time and a count) where every stage reads it: a
  frame made before the last death may be lost, so a consumer behind replicas may give it
  up (``books.died_since``), never before.
- A stream's end, where a source ended it (its END seq and source drops) and which stages
  passed END on: a stage restarted after a crash that did not pass END on is told to end
  the stream itself (``lost_ends``).
- An instance that ended for good without finishing is marked in the run's ``gone/``
  folder, so none waits on it for credits or its EOS.
- The report: the ledgers of every instance, settled (half-done commits of killed
  processes undone), compared per stream and sink (``accounting.delivery``).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..graph.plan import InstanceSpec, Plan
from ..runtime.ledger import Ledger
from ..transport.links import stream_owner
from .books import settle
from .delivery import delivery_report
from .keys import DEATHS, LAST_DEATH

__all__ = ["RunBook"]


class RunBook:
    """A run's accounting across its processes."""

    def __init__(self, plan: Plan, run_ledger: Ledger, ledgers: dict[str, Ledger], gone: Path):
        self.plan = plan
        self.run_ledger = run_ledger
        self.ledgers = ledgers  # instance -> its ledger
        self.gone_dir = gone
        self.stage_ends: dict[str, set[str]] = {}  # stage -> streams it passed END on for
        self.source_ends: dict[str, list[int]] = {}  # stream -> [END seq, source drops]
        self.retired: list[InstanceSpec] = []  # instances of sources a reload removed
        self.reached: dict[str, set[str]] = {}  # stage -> stages that reached it in any plan

    def adopt(self, plan: Plan) -> None:
        """A reload changed what runs: account by ``plan`` from now on, keeping what earlier
        plans had (a removed source's stream is still reported, and still reached the
        stages it went through)."""
        for stage in self.plan.graph.stages:
            self.reached.setdefault(stage, set()).update(self.plan.upstream(stage))
        now = {i.instance for i in plan.instances}
        self.retired = [i for i in self.retired if i.instance not in now]  # back again
        self.retired += [i for i in self.plan.instances if i.instance not in now]
        self.plan = plan

    def upstream(self, stage: str) -> set[str]:
        """Every stage whose messages reached ``stage``, in this plan or an earlier one."""
        now = self.plan.upstream(stage) if stage in self.plan.graph.stages else set()
        return now | self.reached.get(stage, set())

    def died(self, now_ns: int | None = None) -> None:
        """A process of the run died: frames made before now may be lost."""
        self.run_ledger.set(LAST_DEATH, time.monotonic_ns() if now_ns is None else now_ns)
        self.run_ledger.add(DEATHS)

    def stream_ended(
        self, spec: InstanceSpec, stream: str, end: int = -1, source_drops: int = 0
    ) -> None:
        """``spec``'s stage passed END of ``stream`` on; a source says where it ended."""
        self.stage_ends.setdefault(spec.stage, set()).add(stream)
        if spec.is_source:
            self.source_ends[stream] = [end, source_drops]

    def lost_ends(self, spec: InstanceSpec) -> dict[str, list[int]]:
        """Streams that ended upstream of a restarted instance, whose END its stage has not
        passed on: it may have died in the crash. Where streams are pinned to replicas, only
        the stream's own replica is told. Each as [END seq, source drops]."""
        upstream = self.upstream(spec.stage)
        return {
            stream: end
            for stream, end in self.source_ends.items()
            if stream in upstream
            and stream not in self.stage_ends.get(spec.stage, set())
            and not (spec.pinned and stream_owner(stream, spec.replicas) != spec.replica)
        }

    def mark_gone(self, instance: str) -> None:
        """Tell the other stages (by a file they look for while waiting) that ``instance``
        ended for good without finishing."""
        self.gone_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        (self.gone_dir / instance).touch(mode=0o600)

    def report(
        self, disabled: set[str] | frozenset[str] = frozenset(), stopped: bool = False
    ) -> dict[str, Any]:
        """The delivery check of the run, once every process is gone: ``exact`` and, per
        stream, what its source produced and each sink's account."""
        for ledger in self.ledgers.values():
            settle(ledger)  # what a killed process left half-committed is undone
        instances = [*self.plan.instances, *self.retired]
        sources = {i.stage: self.ledgers[i.instance] for i in instances if i.is_source}
        sinks = {i.instance: self.ledgers[i.instance] for i in instances if not i.outputs}
        reaches = {
            i.instance: {s for s in self.upstream(i.stage) if s in sources}
            for i in instances
            if not i.outputs
        }
        return delivery_report(sources, sinks, reaches, disabled, stopped)
