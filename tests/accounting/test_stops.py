"""A stop says what happened: frames in flight at a clean stop are counted as left at the
stop (``stopped@<stream>``), never ``crashed``; one stop request delivered twice is one; a
second request from a person stops at once, and the books still add up."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from pipeline.errors import EXIT_INTERRUPTED
from support.rkpipe import poll_for, read_jsonl, start_rkpipe, write_graph

pytestmark = pytest.mark.integration


def _live_graph(tmp_path: Path, delay_ms: float = 30) -> Path:
    """Two live cameras faster than the stage behind them: their queues are full at a stop."""
    return write_graph(
        tmp_path,
        f"""
[pipeline]
name = "stops"
[stages.cam0]
uses = "synthetic"
live = true
fps = 60
[stages.cam1]
uses = "synthetic"
live = true
fps = 60
seed = 1
[stages.slow]
uses = "rk_test_stages:RandomDelay"
inputs = ["cam0", "cam1"]
max_ms = {delay_ms}
[stages.out]
uses = "jsonl"
inputs = ["slow"]
path = "{tmp_path}/out.jsonl"
""",
    )


def _delivering(out: Path, n: int = 10) -> bool:
    return out.exists() and len(out.read_text().splitlines()) >= n


def _reasons(stats: dict) -> set[str]:
    return {
        reason
        for entry in stats["streams"].values()
        for account in entry["sinks"].values()
        for reason in account["dropped_by_reason"]
    }


def _check_books(stats: dict, out: Path) -> None:
    assert stats["exact"], json.dumps(stats["streams"], indent=1)
    rows = read_jsonl(out)
    for stream, entry in stats["streams"].items():
        account = entry["sinks"]["out"]
        seqs = [r["seq"] for r in rows if r["stream"] == stream]
        assert seqs == sorted(set(seqs)), stream  # in order, none twice
        assert account["delivered"] == len(seqs)
        assert account["delivered"] + account["dropped"] == entry["produced"]


def test_duration_ends_with_what_was_queued_left_at_stop_never_crashed(
    tmp_path: Path, no_leaks
) -> None:
    graph = _live_graph(tmp_path)
    run = start_rkpipe(
        "run", str(graph), "--duration", "4", "--stats-out", str(tmp_path / "s.json")
    )
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    stats = json.loads((tmp_path / "s.json").read_text())
    _check_books(stats, tmp_path / "out.jsonl")
    reasons = _reasons(stats)
    assert not [r for r in reasons if r.startswith("crashed")], err
    assert reasons <= {"live_overflow@cam0", "live_overflow@cam1", "stopped@cam0", "stopped@cam1"}
    assert "crashed" not in err
    for stream in ("cam0", "cam1"):
        kinds = stats["streams"][stream]["sinks"]["out"]["dropped_by_kind"]
        assert kinds["faults"] == 0
    assert "left at stop" in err or "dropped by policy" in err


def test_one_signal_delivered_twice_at_once_is_one_request_and_drains(
    tmp_path: Path, no_leaks
) -> None:
    """GNU timeout signals the process and then its group: the same SIGINT twice."""
    graph = _live_graph(tmp_path)
    run = start_rkpipe("run", str(graph), "--stats-out", str(tmp_path / "s.json"))
    assert poll_for(lambda: _delivering(tmp_path / "out.jsonl"), timeout=90)
    os.kill(run.pid, signal.SIGINT)
    os.kill(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == EXIT_INTERRUPTED, err
    assert "draining" in err and "stopping now" not in err
    stats = json.loads((tmp_path / "s.json").read_text())
    _check_books(stats, tmp_path / "out.jsonl")
    assert not [r for r in _reasons(stats) if r.startswith("crashed")]


def test_a_second_request_stops_at_once_and_the_books_stay_exact(tmp_path: Path, no_leaks) -> None:
    graph = _live_graph(tmp_path, delay_ms=200)  # slow enough that a drain is still going
    run = start_rkpipe("run", str(graph), "--stats-out", str(tmp_path / "s.json"))
    assert poll_for(lambda: _delivering(tmp_path / "out.jsonl", 3), timeout=90)
    os.kill(run.pid, signal.SIGINT)
    time.sleep(0.3)  # a person pressing Ctrl-C again, not one signal delivered twice
    os.kill(run.pid, signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == EXIT_INTERRUPTED, err
    assert "stopping now" in err
    stats = json.loads((tmp_path / "s.json").read_text())
    _check_books(stats, tmp_path / "out.jsonl")
