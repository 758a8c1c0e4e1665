"""Shipped graphs are exact: every graph in graphs/ (its simulated twin where it needs the
board), with live sources and ``--duration``, ends with the run's own check "exact", and a
clean stop blames no crash. A longer repeat is benchmarks/shipped_exact.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.shipped_graphs import not_exact, run_shipped, runnable_graphs

pytestmark = [pytest.mark.integration, pytest.mark.slow]
RUNS = 2


@pytest.mark.parametrize("graph", runnable_graphs(), ids=lambda p: p.stem)
def test_a_shipped_graph_run_for_a_duration_is_exact(graph: Path, tmp_path: Path, no_leaks) -> None:
    for i in range(RUNS):
        stats, err = run_shipped(graph, tmp_path / f"run{i}", duration=3)
        assert stats["exact"], "\n".join(not_exact(stats)) + err[-2000:]
        assert "crashed" not in err, err[-2000:]  # nothing crashed: a clean stop says so
        assert all(entry["produced"] > 0 for entry in stats["streams"].values())
