"""Over capacity, live frames wait at their sources, where a newer frame replaces an older
one, and every stream gets its share of the bottleneck: real processes, the sim backend."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from support.graph import Graph
from support.rkpipe import read_jsonl, run_rkpipe

pytestmark = pytest.mark.integration

STREAMS, FRAMES = 4, 90  # 4 x 30 fps offered to one simulated core of 50 fps


def test_overloaded_core_serves_every_live_stream_alike_and_counts_every_drop(
    tmp_path: Path, no_leaks
) -> None:
    graph = Graph("overload", source_demand=True)
    cams = [f"cam{i}" for i in range(STREAMS)]
    for i, cam in enumerate(cams):
        graph.source(
            cam, uses="synthetic", live=True, fps=30, frames=FRAMES, width=160, height=90, seed=i
        )
    graph.stage("pre", uses="letterbox", inputs=cams, size=[160, 160], layout="nhwc_uint8")
    graph.stage(
        "npu",
        uses="infer",
        inputs=["pre"],
        model="sim:yolov8n-160x160",
        sim_ms=320.0,  # 20 ms per call at 160x160 (it scales by pixels from 640x640)
        sim_layout="split",
        npu_cores=[0],
    )
    graph.stage("post", uses="yolov8_decode", inputs=["npu"], classes=["person", "car"])
    graph.sink("out", uses="jsonl", inputs=["post"], path=tmp_path / "out.jsonl")
    path = graph.write(tmp_path)
    locks = tmp_path / "locks"  # a simulated core of its own, shared with no other run
    locks.mkdir()
    stats_out = tmp_path / "stats.json"
    res = run_rkpipe(
        "run", str(path), "--stats-out", str(stats_out), env={"RKPIPE_SIM_LOCK_DIR": str(locks)}
    )
    assert res.returncode == 0, res.stderr
    stats = json.loads(stats_out.read_text())
    assert stats["exact"]
    rows = read_jsonl(tmp_path / "out.jsonl")
    delivered = {cam: sum(r["stream"] == cam for r in rows) for cam in cams}
    # over capacity: frames were replaced at the sources, and no stream starved
    assert sum(delivered.values()) < STREAMS * FRAMES
    assert min(delivered.values()) >= 0.9 * max(delivered.values()), delivered
    for cam in cams:
        account = stats["streams"][cam]["sinks"]["out"]
        assert account["delivered"] == delivered[cam]
        assert account["delivered"] + account["dropped"] == FRAMES
        # they were dropped where they waited, at the source, as the oldest of its frames
        assert set(account["dropped_by_reason"]) <= {f"live_overflow@{cam}"}, account
