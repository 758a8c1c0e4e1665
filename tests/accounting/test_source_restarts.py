"""A file source killed again and again always comes back: at least 20 SIGKILLs of a file
source under load, each followed by frames from its restarted self, and the books exact at
the end (nothing sent twice, nothing skipped uncounted)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

import pytest

from support.faults import instance_pid
from support.rkpipe import poll_for, read_jsonl, start_rkpipe, write_graph

pytestmark = [pytest.mark.integration, pytest.mark.slow]
KILLS = 20


def _lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def test_a_file_source_killed_20_times_always_comes_back(tmp_path: Path, no_leaks) -> None:
    out = tmp_path / "out.jsonl"
    graph = write_graph(
        tmp_path,
        f"""
[pipeline]
name = "restarts"
restart_limit = 1000
restart_window_s = 1
[stages.cam]
uses = "synthetic"
realtime = true
fps = 60
[stages.busy]
uses = "rk_test_stages:RandomDelay"
inputs = ["cam"]
max_ms = 10
replicas = 2
[stages.out]
uses = "jsonl"
inputs = ["busy"]
path = "{out}"
""",
    )
    run = start_rkpipe("run", str(graph), "--stats-out", str(tmp_path / "s.json"))
    try:
        for kill in range(KILLS):
            seen = _lines(out)
            # the source (its restarted self after the first kill) delivers again
            assert poll_for(lambda n=seen: _lines(out) >= n + 10, timeout=60), (
                f"after kill {kill} the source did not come back: {_lines(out)} lines"
            )
            pid = instance_pid(run.pid, "cam")
            assert pid is not None
            os.kill(pid, signal.SIGKILL)
            assert poll_for(lambda p=pid: instance_pid(run.pid, "cam") not in (None, p), 60), (
                f"kill {kill + 1}: no restarted source"
            )
        seen = _lines(out)
        assert poll_for(lambda: _lines(out) >= seen + 10, timeout=60), "not back after the last"
    finally:
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=120)
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["exact"], err[-3000:]
    seqs = [r["seq"] for r in read_jsonl(out)]
    assert seqs == sorted(set(seqs))  # in order, none twice
    assert stats["stages"]["cam"]["restarts"] >= KILLS
