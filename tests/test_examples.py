"""The README's custom-stage example, and every graph shipped in graphs/, work as shown."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from conftest import ROOT, read_jsonl, run_rkpipe
from pipeline.graph.load import load_graph

README = (ROOT / "README.md").read_text()


def _block(lang: str, after: str) -> str:
    start = README.index(after)
    m = re.compile(rf"```{lang}\n(.*?)```", re.S).search(README, start)
    assert m, f"no {lang} block after {after!r} in README.md"
    return m.group(1)


@pytest.mark.integration
def test_readme_custom_stage_example_runs_as_written(tmp_path: Path, no_leaks) -> None:
    (tmp_path / "brightness.py").write_text(_block("python", "## Write your own stage"))
    (tmp_path / "brightness.toml").write_text(_block("toml", "wire it into a graph"))
    res = run_rkpipe("run", "brightness.toml", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = read_jsonl(tmp_path / "out" / "brightness.jsonl")
    assert len(rows) == 100
    assert all(isinstance(r["meta"]["brightness"], float) for r in rows)
    assert {r["meta"]["dark"] for r in rows} <= {True, False}


@pytest.mark.parametrize("graph", sorted((ROOT / "graphs").glob("**/*.toml")), ids=lambda p: p.name)
def test_every_shipped_graph_validates(graph: Path) -> None:
    load_graph(graph, cpus=set(range(8)))  # the RK3588 has CPUs 0-7


@pytest.mark.integration
def test_headline_graph_runs(tmp_path: Path, no_leaks) -> None:
    res = run_rkpipe(
        "run",
        str(ROOT / "graphs" / "two_streams.toml"),
        "--frames",
        "60",
        "--stats-out",
        str(tmp_path / "stats.json"),
        cwd=tmp_path,
    )
    assert res.returncode == 0, res.stderr
    rows = read_jsonl(tmp_path / "out" / "two_streams.jsonl")
    assert {r["stream"] for r in rows} == {"cam0", "cam1"}


@pytest.mark.integration
def test_three_npu_core_twin_runs_the_whole_detection_chain(tmp_path: Path, no_leaks) -> None:
    """6 streams -> letterbox -> 3 simulated NPU cores -> decode -> track -> JSONL."""
    graph = ROOT / "graphs" / "three_npu_cores_sim.toml"
    res = run_rkpipe("run", str(graph), "--frames", "20", "--stats-out", "stats.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = read_jsonl(tmp_path / "out" / "three_npu_cores_sim.jsonl")
    assert {r["stream"] for r in rows} == {f"cam{i}" for i in range(6)}
    assert all("det.tracker_id" in r["arrays"] and "tensor" not in r["arrays"] for r in rows)
    for stream in {r["stream"] for r in rows}:
        seqs = [r["seq"] for r in rows if r["stream"] == stream]
        assert seqs == sorted(seqs)  # re-joined in order after three inference processes
