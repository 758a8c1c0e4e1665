"""``RKPIPE_PROFILE_DIR``: every stage process leaves a cProfile file whose clock is its own
CPU time, so a stage that mostly waits for frames shows what it burns, not how long it ran."""

from __future__ import annotations

import pstats
import time
from pathlib import Path

from support.graph import Graph
from support.rkpipe import run_rkpipe


def test_each_stage_leaves_a_profile_of_its_cpu_time(tmp_path: Path, no_leaks) -> None:
    graph = (
        Graph()
        .source("cam0", uses="synthetic", scene="easy", live=True, fps=10, frames=30)
        .sink("out", uses="jsonl", inputs=["cam0"], path=tmp_path / "out.jsonl")
        .write(tmp_path)
    )
    folder = tmp_path / "prof"
    folder.mkdir()
    t0 = time.monotonic()
    res = run_rkpipe("run", str(graph), env={"RKPIPE_PROFILE_DIR": str(folder)})
    wall = time.monotonic() - t0
    assert res.returncode == 0, res.stderr
    files = {p.name.split(".")[0]: p for p in folder.glob("*.prof")}
    assert set(files) == {"cam0", "out"}, sorted(folder.iterdir())
    stats = pstats.Stats(str(files["out"]))
    assert any(fn == "loop" for _, _, fn in stats.stats), "the worker loop is in the profile"
    # 30 frames at 10 fps: the sink waits about 3 s of the run; its CPU is a fraction of that
    assert stats.total_tt < wall / 2, (stats.total_tt, wall)
