"""Running the graphs shipped in graphs/ as a user would, with live sources and a
``--duration``, and reading the run's own verdict ("exact"); shared by the test and the
longer benchmark (benchmarks/shipped_exact.py)."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from support.rkpipe import ROOT, run_rkpipe

GRAPHS = ROOT / "graphs"


def runnable_graphs() -> list[Path]:
    """Every graph in graphs/, the simulated twin in place of one that needs the board."""
    graphs = sorted(GRAPHS.glob("*.toml"))
    twins = {g.name.removesuffix("_sim.toml") for g in graphs if g.name.endswith("_sim.toml")}
    return [g for g in graphs if g.stem not in twins]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_shipped(graph: Path, folder: Path, duration: float) -> tuple[dict[str, Any], str]:
    """One run of ``graph`` from ``folder`` (its outputs land there); its stats and stderr."""
    folder.mkdir(parents=True, exist_ok=True)
    stats = folder / "stats.json"
    env = {"RKPIPE_PREVIEW_PORT": str(_free_port())}
    args = ("run", str(graph), "--duration", str(duration), "--stats-out", str(stats))
    res = run_rkpipe(*args, cwd=folder, env=env, timeout=300)
    assert res.returncode == 0, res.stderr[-3000:]
    return json.loads(stats.read_text()), res.stderr


def not_exact(stats: dict[str, Any]) -> list[str]:
    """The stream and sink accounts that are not exact, as lines."""
    return [
        f"{stream} -> {sink}: {account}"
        for stream, entry in stats["streams"].items()
        for sink, account in entry["sinks"].items()
        if not account["exact"]
    ]
