"""The invariant under faults, on real runs of the whole detection pipeline: every frame a
source produced reaches each sink exactly once, in order, or is counted exactly once as
dropped, whatever is killed, stopped or interrupted, and when; and nothing of a run is left
behind. Faults come at random moments, from fixed seeds, so a failure can be replayed."""

from __future__ import annotations

import json
import os
import random
import signal
import time
from collections import Counter
from pathlib import Path

import pytest

from pipeline.transport.framepool import SHM_DIR
from support.faults import (
    RELOAD,
    STAGE_KINDS,
    Fault,
    check_invariant,
    detection_graph,
    instance_pid,
    random_edits,
    random_faults,
    run_pids,
    run_with_faults,
)
from support.graph import Graph
from support.rkpipe import poll_for, read_jsonl, run_rkpipe, start_rkpipe

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def _sinks(folder: Path) -> dict[str, Path | None]:
    """The graph's sinks, with the file that holds a line per frame (the events sink's
    file holds events, checked by its account only)."""
    return {"out": folder / "frames.jsonl", "events": None}


def _restarting(supervisor: int, instance: str, killed: int | None) -> bool:
    """The supervisor has started a new process for ``instance`` in place of ``killed``."""
    return instance_pid(supervisor, instance) not in (None, killed)


def _wait_for_frames_through(sink_file: Path, timeout: float = 30) -> None:
    """Wait until the sink's file grows: frames flow through the whole graph again."""
    size = sink_file.stat().st_size
    assert poll_for(lambda: sink_file.stat().st_size > size, timeout), "no frame came through"


@pytest.mark.parametrize("kind", sorted(STAGE_KINDS))
def test_each_kind_of_stage_killed_at_a_random_moment_keeps_the_invariant(
    tmp_path: Path, no_leaks, kind: str
) -> None:
    target = STAGE_KINDS[kind]
    rng = random.Random(f"kind:{kind}")
    faults = random_faults(rng, [target], n=2, span_s=3.0)
    outcome = run_with_faults(detection_graph(tmp_path), faults, tmp_path / "stats.json")
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert outcome.done, f"no fault found {target} running"
    kills = Counter(f.target for f in outcome.done)
    assert check_invariant(outcome, _sinks(tmp_path), kills) == [], outcome.stderr[-3000:]


@pytest.mark.parametrize("seed", range(4))
def test_random_faults_anywhere_keep_the_invariant(tmp_path: Path, no_leaks, seed: int) -> None:
    rng = random.Random(seed)
    faults = random_faults(rng, sorted(STAGE_KINDS.values()), n=3, span_s=3.5)
    outcome = run_with_faults(detection_graph(tmp_path), faults, tmp_path / "stats.json")
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    kills = Counter(f.target for f in outcome.done)
    problems = check_invariant(outcome, _sinks(tmp_path), kills)
    assert problems == [], (faults, outcome.stderr[-3000:])


def test_reloads_among_kills_keep_the_invariant(tmp_path: Path, no_leaks) -> None:
    """Graph edits reloaded while stages are killed (a moved line and a new conf taken in
    place, a tracker restarted with a new threshold, a bad edit refused) lose nothing and
    send nothing twice. The long version is ``benchmarks/chaos.py --reloads``."""
    rng = random.Random("reloads")
    kills = random_faults(rng, sorted(STAGE_KINDS.values()), n=2, span_s=3.5)
    edits = random_edits(rng, 4, span_s=3.5)
    faults = sorted(kills + edits, key=lambda f: f.at_s)
    outcome = run_with_faults(detection_graph(tmp_path), faults, tmp_path / "stats.json")
    assert outcome.returncode == 0, outcome.stderr[-3000:]
    assert sum(f.target == RELOAD for f in outcome.done) == 4
    killed = Counter(f.target for f in outcome.done if f.target != RELOAD)
    problems = check_invariant(outcome, _sinks(tmp_path), killed)
    assert problems == [], (faults, outcome.stderr[-3000:])


@pytest.mark.parametrize(
    "fault",
    [
        Fault(0.05, "supervisor", before_ready=True),  # while the stages start
        Fault(0.6, "supervisor", before_ready=True),
        Fault(1.0, "supervisor"),  # mid-run
    ],
    ids=["at-start", "starting", "mid-run"],
)
def test_a_killed_supervisor_leaves_no_process(tmp_path: Path, fault: Fault) -> None:
    run = start_rkpipe("run", str(detection_graph(tmp_path)), "--no-live")
    try:
        if not fault.before_ready:
            assert poll_for(lambda: len(run_pids(run.pid)) >= 10, 60)
        time.sleep(fault.at_s)
        run.kill()
        run.wait(10)
        assert poll_for(lambda: not run_pids(run.pid), 15), run_pids(run.pid)
    finally:
        run.kill()


def test_a_supervisor_killed_mid_restart_leaves_no_process(tmp_path: Path) -> None:
    run = start_rkpipe("run", str(detection_graph(tmp_path)), "--no-live")
    try:
        assert poll_for(lambda: instance_pid(run.pid, "post") is not None, 60)
        killed = instance_pid(run.pid, "post")
        os.kill(killed, signal.SIGKILL)  # type: ignore[arg-type]
        assert poll_for(lambda: _restarting(run.pid, "post", killed), 30)
        run.kill()
        run.wait(10)
        assert poll_for(lambda: not run_pids(run.pid), 15), run_pids(run.pid)
    finally:
        run.kill()


@pytest.mark.parametrize(("sig", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_two_signals_stop_now_yet_write_the_stats_and_leave_nothing(
    tmp_path: Path, no_leaks, sig: int, status: int
) -> None:
    stats = tmp_path / "stats.json"
    graph = detection_graph(tmp_path, frames=100_000)
    run = start_rkpipe("run", str(graph), "--no-live", "--stats-out", str(stats))
    try:
        assert poll_for(lambda: (tmp_path / "frames.jsonl").exists(), 60)
        run.send_signal(sig)
        time.sleep(0.1)
        run.send_signal(sig)
        time.sleep(0.1)
        run.send_signal(sig)  # more change nothing
        _, err = run.communicate(timeout=60)
    finally:
        run.kill()
    assert run.returncode == status, err
    assert "Traceback" not in err and "stopping now" in err
    doc = json.loads(stats.read_text())
    assert doc["schema"] == "rkpipe.stats/2" and doc["streams"]
    assert "delivery" in err  # the summary
    assert not run_pids(run.pid)


def test_restarts_reuse_the_frame_pool(tmp_path: Path, no_leaks) -> None:
    """Five restarts of a stage that owns a frame pool: shared memory stays one pool."""
    graph = detection_graph(tmp_path, frames=100_000)
    run = start_rkpipe("run", str(graph), "--no-live")

    def pools() -> list[str]:
        return sorted(p.name for p in SHM_DIR.glob(f"rkpipe-{run.pid}x*-pool-pre-*"))

    try:
        assert poll_for(lambda: (tmp_path / "frames.jsonl").exists() and bool(pools()), 60)
        before = pools()
        for _ in range(5):
            assert poll_for(lambda: instance_pid(run.pid, "pre") is not None, 30)
            killed = instance_pid(run.pid, "pre")
            os.kill(killed, signal.SIGKILL)  # type: ignore[arg-type]
            assert poll_for(lambda k=killed: _restarting(run.pid, "pre", k), 30)
            _wait_for_frames_through(tmp_path / "frames.jsonl")  # the new one is at work
        assert poll_for(lambda: instance_pid(run.pid, "pre") is not None, 30)
        assert pools() == before
        run.send_signal(signal.SIGINT)
        run.communicate(timeout=60)
    finally:
        run.kill()


def test_a_sink_on_a_full_disk_loses_its_frames_counted_and_stalls_nothing(
    tmp_path: Path, no_leaks
) -> None:
    """One sink writes to a full disk (/dev/full: every write fails with ENOSPC), another to a
    good one: the good one gets every frame, the full one counts each as sink_error, and the
    run goes on to its end."""
    graph = (
        Graph()
        .source("cam0", uses="synthetic", width=64, height=48, frames=150)
        .sink("full", uses="jsonl", inputs=["cam0"], path="/dev/full")
        .sink("good", uses="jsonl", inputs=["cam0"], path=tmp_path / "good.jsonl")
        .write(tmp_path)
    )
    res = run_rkpipe("run", str(graph), "--stats-out", str(tmp_path / "stats.json"))
    assert res.returncode == 0, res.stderr
    assert len(read_jsonl(tmp_path / "good.jsonl")) == 150
    doc = json.loads((tmp_path / "stats.json").read_text())
    sinks = doc["streams"]["cam0"]["sinks"]
    assert sinks["good"]["delivered"] == 150 and sinks["good"]["exact"]
    assert sinks["full"]["dropped_by_reason"] == {"sink_error@full": 150}
    assert doc["exact"]
    assert res.stderr.count("cannot deliver") == 1  # said once, not 150 times
