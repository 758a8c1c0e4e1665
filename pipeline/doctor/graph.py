"""What one graph needs of this machine: that it validates here (its CPUs exist), that its
frame pools fit in /dev/shm, and each stage's own checks (a model loads, a camera or a
broker answers), through ``Stage.doctor``."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from ..cpus import read_topology
from ..errors import GraphError
from ..graph.load import load_graph
from ..graph.plan import Plan, make_plan
from .check import Check, DoctorContext
from .machine import MB, shm_bytes

__all__ = ["graph_checks", "shm_need"]


def graph_checks(path: Path, ctx: DoctorContext) -> list[Check]:
    topology = read_topology(ctx.root)
    try:
        graph = load_graph(path, cpus=topology)
    except GraphError as exc:
        problems = exc.problems or [str(exc)]
        return [Check("graph", "fail", p, f"rkpipe validate {path}") for p in problems]
    plan = make_plan(graph, "doctor", "/tmp/rkpipe-doctor")
    ctx.graph_dir = graph.graph_dir
    detail = f"{path}: {len(graph.stages)} stages, {len(plan.instances)} processes"
    checks = [Check("graph", "ok", detail), _shm(plan, ctx)]
    for name, sdef in graph.stages.items():
        checks += [replace(c, name=f"{name}: {c.name}") for c in sdef.cls.doctor(sdef.config, ctx)]
    return checks


def shm_need(plan: Plan) -> int:
    """About how much /dev/shm the run's frame pools take: each process's slots times what
    its stage writes per message (``Stage.frame_bytes``)."""
    stages = plan.graph.stages
    return sum(
        i.pool_slots * stages[i.stage].cls.frame_bytes(stages[i.stage].config)
        for i in plan.instances
    )


def _shm(plan: Plan, ctx: DoctorContext) -> Check:
    need, have = shm_need(plan), shm_bytes(ctx)
    detail = f"the graph's frame pools need about {need / MB:.0f} MB of {have / MB:.0f} MB"
    fix = "docker run --shm-size=2g, or: sudo mount -o remount,size=2G /dev/shm; or resize frames"
    if need > have:
        return Check("/dev/shm for the graph", "fail", detail, fix)
    if need > 0.8 * have:
        return Check("/dev/shm for the graph", "warn", detail + " (little to spare)", fix)
    return Check("/dev/shm for the graph", "ok", detail)
