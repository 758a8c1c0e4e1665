"""Graphs for the mqtt sink's tests: two synthetic cameras -> known events -> mqtt, and the
event ids such a run gives, so a test knows exactly what must arrive."""

from __future__ import annotations

import subprocess
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from support.graph import Graph
from support.mosquitto import Broker
from support.rkpipe import start_rkpipe

__all__ = ["NODE", "all_ids", "graph_text", "start_run"]

NODE = "board1"  # the node id of the test graphs, in their topics


def graph_text(
    b: Broker | SimpleNamespace,
    frames: int,
    every: int = 2,
    fps: float = 0,
    pipeline: dict[str, Any] | None = None,
    **mqtt_opts: Any,
) -> str:
    """cam0 and cam1 -> rk_test_events:EmitEvents -> mqtt; ``fps`` > 0 paces the (non-live)
    sources; ``pipeline`` adds ``[pipeline]`` settings (node ``NODE`` unless it says)."""
    pace = {"realtime": True, "fps": fps} if fps else {}
    opts = {"host": b.host, "port": b.port, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5}
    opts.update(mqtt_opts)
    graph = Graph("mqtt_test", **{"node": NODE, **(pipeline or {})})
    for cam in ("cam0", "cam1"):
        graph.source(cam, uses="synthetic", width=64, height=48, frames=frames, **pace)
    types = ["line_crossing", "zone_enter", "counts"]
    graph.stage(
        "ev", uses="rk_test_events:EmitEvents", inputs=["cam0", "cam1"], every=every, types=types
    )
    return graph.sink("mqtt", uses="mqtt", inputs=["ev"], **opts).text()


def all_ids(frames: int, every: int) -> set[str]:
    """The event ids rk_test_events:EmitEvents gives ``frames`` frames of cam0 and cam1."""
    return {
        f"{cam}:{seq}:{key}"
        for cam in ("cam0", "cam1")
        for seq in range(0, frames, every)
        for key in (f"door:{seq // every}", f"lobby:{seq // every}:enter", "counts")
    }


def start_run(path: Path, *args: str) -> subprocess.Popen:
    """``rkpipe run`` of the graph at ``path``, in its folder (outputs, spool and totals go
    there)."""
    return start_rkpipe("run", str(path), *args, cwd=path.parent)
