"""What one graph needs of this machine: that it validates here (its CPUs exist), that its
frame pools fit in /dev/shm, and each stage's own checks (a model loads, a camera or a
broker answers), through ``Stage.doctor``."""

from __future__ import annotations

import os
import tempfile
from dataclasses import replace
from pathlib import Path

from ..cpus import read_topology
from ..errors import GraphError, ShmError
from ..graph.load import Graph, load_graph
from ..graph.plan import Plan, make_plan
from ..runtime.ledger import Ledger
from ..transport.framepool import SHM_DIR, SHM_FIX, segment_bytes
from .check import Check, DoctorContext
from .machine import MB, shm_bytes

__all__ = ["check_shm_room", "graph_checks", "ledger_bytes", "shm_need", "shm_pools"]


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


def shm_pools(plan: Plan) -> dict[str, tuple[int, int]]:
    """Each process's frame pool: (slots, bytes in /dev/shm), from what its stage writes per
    message (``Stage.frame_bytes``) in the segment layout; processes that write none are left
    out."""
    stages = plan.graph.stages
    pools = {}
    for i in plan.instances:
        per = stages[i.stage].cls.frame_bytes(stages[i.stage].config)
        if per > 0:
            pools[i.instance] = (i.pool_slots, segment_bytes(i.pool_slots, per))
    return pools


def shm_need(plan: Plan) -> int:
    """About how much /dev/shm the run's frame pools take."""
    return sum(size for _, size in shm_pools(plan).values())


def check_shm_room(graph: Graph, folder: Path = SHM_DIR) -> None:
    """Raise ShmError, with the numbers and the fix, when the graph's frame pools would not fit
    in what ``folder`` (/dev/shm) has free now: ``rkpipe run`` checks before any stage starts,
    rather than meeting a SIGBUS (signal 7) at a pool's first write past the free space."""
    plan = make_plan(graph, "check", "/tmp/rkpipe-check")
    pools = shm_pools(plan)
    ledgers = (len(plan.instances) + 1) * ledger_bytes()  # one per process, and the run's
    need = sum(size for _, size in pools.values()) + ledgers
    st = os.statvfs(folder)
    free, total = st.f_bavail * st.f_frsize, st.f_blocks * st.f_frsize
    if need <= free:
        return
    biggest = sorted(pools.items(), key=lambda kv: -kv[1][1])[:3]
    parts = ", ".join(f"{name} {n} slots {size / MB:.1f} MB" for name, (n, size) in biggest)
    msg = (
        f"{graph.path}: the frame pools and ledgers need about {need / MB:.0f} MB of {folder}, "
        f"which has {free / MB:.0f} MB free of {total / MB:.0f} MB (biggest: {parts or 'none'}); "
        f"{SHM_FIX}"
    )
    if biggest:
        top = next(i.stage for i in plan.instances if i.instance == biggest[0][0])
        msg += f" (the biggest: pool_slots in [stages.{top}], now {biggest[0][1][0]})"
    raise ShmError(msg)


def ledger_bytes() -> int:
    """The size of one ledger segment, as the supervisor makes them (measured on a scratch
    file, so it follows the ledger's layout)."""
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "ledger"
        Ledger.create(path).close()
        return path.stat().st_size


def _shm(plan: Plan, ctx: DoctorContext) -> Check:
    need, have = shm_need(plan), shm_bytes(ctx)
    detail = f"the graph's frame pools need about {need / MB:.0f} MB of {have / MB:.0f} MB"
    fix = SHM_FIX
    if need > have:
        return Check("/dev/shm for the graph", "fail", detail, fix)
    if need > 0.8 * have:
        return Check("/dev/shm for the graph", "warn", detail + " (little to spare)", fix)
    return Check("/dev/shm for the graph", "ok", detail)
