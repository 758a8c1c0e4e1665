"""Expand a validated graph into the processes to start: one per stage replica, each with its
CPUs, its outlet endpoint, the producers it reads from and the stages it feeds."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from ..cpus import CpuPlacer
from .load import Graph, StageDef

__all__ = ["InstanceSpec", "Plan", "make_plan"]

MAX_POOL_SLOTS = 512


@dataclass
class InstanceSpec:
    """Everything a stage process needs to start; plain data, sent to the child as JSON."""

    stage: str
    replica: int
    replicas: int
    uses: str
    options: dict[str, Any]
    cpus: list[int]
    endpoint: str
    inputs: list[tuple[str, str, str]]  # (producer stage, producer instance, endpoint)
    outputs: dict[str, list[str]]  # downstream stage -> its instance ids
    partition: list[str]  # downstream stages that want streams pinned to one replica
    is_source: bool
    pinned: bool  # this stage's streams are pinned to replicas: each sees whole streams
    on_failure: str  # restart | disable | stop (see supervise.restart)
    window: int
    pool_slots: int
    graph_dir: str
    run_id: str
    settings: dict[str, Any] = field(default_factory=dict)
    curve_key_file: str | None = None  # this instance's tcp link is CurveZMQ with these keys
    input_curve: dict[str, str] = field(default_factory=dict)  # producer stage -> its keys
    best_effort: list[str] = field(default_factory=list)  # downstream stages that may lag
    source_inputs: list[str] = field(default_factory=list)  # producer stages that are sources
    released: list[str] = field(default_factory=list)  # consumers a reload let go: sent EOS

    @property
    def instance(self) -> str:
        return instance_id(self.stage, self.replica, self.replicas)

    @property
    def sees_whole_streams(self) -> bool:
        """Every message of a stream passes through this instance (one instance, or streams
        pinned to replicas), so it can check each stream's frame chain."""
        return self.replicas == 1 or self.pinned

    def replicated_inputs(self) -> set[str]:
        """Producer stages with several instances: their streams must be re-joined in order."""
        seen: dict[str, int] = {}
        for stage, _, _ in self.inputs:
            seen[stage] = seen.get(stage, 0) + 1
        return {s for s, n in seen.items() if n > 1}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> InstanceSpec:
        return cls(**{**data, "inputs": [tuple(x) for x in data["inputs"]]})

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def instance_id(stage: str, replica: int, replicas: int) -> str:
    return stage if replicas == 1 else f"{stage}.{replica}"


@dataclass
class Plan:
    graph: Graph
    run_id: str
    ipc_dir: str
    instances: list[InstanceSpec]

    def by_stage(self, stage: str) -> list[InstanceSpec]:
        return [i for i in self.instances if i.stage == stage]

    def upstream(self, stage: str) -> set[str]:
        """Every stage whose messages can reach ``stage`` (its inputs, theirs, and so on)."""
        seen: set[str] = set()
        todo = list(self.graph.stages[stage].common.inputs)
        while todo:
            name = todo.pop()
            if name not in seen:
                seen.add(name)
                todo.extend(self.graph.stages[name].common.inputs)
        return seen

    def order(self) -> list[str]:
        """Stage names from sources to sinks."""
        done: list[str] = []
        stages = self.graph.stages
        while len(done) < len(stages):
            for name, sdef in stages.items():
                if name not in done and all(i in done for i in sdef.common.inputs):
                    done.append(name)
        return done


def make_plan(graph: Graph, run_id: str, ipc_dir: str) -> Plan:
    """The process layout of ``graph`` for one run."""
    stages = graph.stages
    per_replica = {n: _replica_options(s) for n, s in stages.items()}
    counts = {n: len(v) for n, v in per_replica.items()}
    consumers: dict[str, list[str]] = {n: [] for n in stages}
    for name, sdef in stages.items():
        for inp in sdef.common.inputs:
            consumers[inp].append(name)
    slots = {n: _pool_slots(n, stages, consumers, counts, graph.settings.window) for n in stages}
    placer = CpuPlacer(graph.topology)
    instances = []
    for name, sdef in stages.items():
        n = counts[name]
        inputs = [
            (p, instance_id(p, r, counts[p]), _endpoint(stages[p], p, r, counts[p], ipc_dir))
            for p in sdef.common.inputs
            for r in range(counts[p])
        ]
        outputs = {
            c: [instance_id(c, r, counts[c]) for r in range(counts[c])] for c in consumers[name]
        }
        partition = [c for c in consumers[name] if stages[c].common.partition == "stream"]
        best_effort = [c for c in consumers[name] if _best_effort(stages[c])]
        for r in range(n):
            options = {**sdef.options, **per_replica[name][r]}
            instances.append(
                InstanceSpec(
                    stage=name,
                    replica=r,
                    replicas=n,
                    uses=sdef.common.uses,
                    options=options,
                    cpus=placer.place(sdef.common.cpus, r),
                    endpoint=_endpoint(sdef, name, r, n, ipc_dir),
                    inputs=inputs,
                    outputs=outputs,
                    partition=partition,
                    is_source=sdef.is_source,
                    pinned=sdef.common.partition == "stream",
                    on_failure=sdef.common.on_failure
                    or ("disable" if not consumers[name] else "restart"),
                    curve_key_file=_key_file(sdef, graph),
                    input_curve={
                        p: key
                        for p in sdef.common.inputs
                        if (key := _key_file(stages[p], graph)) is not None
                    },
                    window=graph.settings.window,
                    best_effort=best_effort,
                    source_inputs=[p for p in sdef.common.inputs if stages[p].is_source],
                    pool_slots=sdef.common.pool_slots or slots[name],
                    graph_dir=str(graph.graph_dir.resolve()),
                    run_id=run_id,
                    settings=graph.settings.model_dump(),
                )
            )
    return Plan(graph, run_id, ipc_dir, instances)


def _best_effort(sdef: StageDef) -> bool:
    """Whether a stage's producers may leave it behind (see ``Stage.best_effort``)."""
    chosen = sdef.common.best_effort
    return sdef.cls.best_effort if chosen is None else chosen


def _key_file(sdef: StageDef, graph: Graph) -> str | None:
    """The stage's CurveZMQ certificate, resolved against the graph file's folder."""
    key = sdef.common.curve_key_file
    return str((graph.graph_dir / key).resolve()) if key else None


def _replica_options(sdef: StageDef) -> list[dict[str, Any]]:
    per = sdef.cls.replica_options(sdef.config)
    return per if per else [{} for _ in range(sdef.common.replicas)]


def _endpoint(sdef: StageDef, name: str, replica: int, n: int, ipc_dir: str) -> str:
    if sdef.common.endpoint:
        if n == 1:
            return sdef.common.endpoint
        host, _, port = sdef.common.endpoint.rpartition(":")
        return f"{host}:{int(port) + replica}"
    return f"ipc://{ipc_dir}/{instance_id(name, replica, n)}.sock"


def _pool_slots(
    name: str,
    stages: dict[str, StageDef],
    consumers: dict[str, list[str]],
    counts: dict[str, int],
    window: int,
) -> int:
    """Slots enough for every message that can be in flight downstream of ``name``: each
    downstream instance holds at most ``window`` per producer instance, plus one in hand."""
    seen: set[str] = set()
    todo = list(consumers[name])
    total = 0
    while todo:
        c = todo.pop()
        if c in seen:
            continue
        seen.add(c)
        producers = sum(counts[p] for p in stages[c].common.inputs)
        total += counts[c] * (window * producers + 2)
        todo.extend(consumers[c])
    return min(MAX_POOL_SLOTS, total + 4)
