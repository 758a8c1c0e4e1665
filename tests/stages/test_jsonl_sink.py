"""The jsonl sink: one line per message by default, rotation by size or age with keep-N old
files, and ``events_only`` writing each analytics event as its own line."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.messages import Message
from pipeline.testing import run_stage
from stages.events import line_crossing_event, validate_event, zone_enter_event
from stages.sinks.jsonl import JsonlSink
from support.graph import Graph
from support.rkpipe import read_jsonl, run_rkpipe


def messages(n: int, stream: str = "cam0", pad: int = 200) -> list[Message]:
    """``n`` messages whose JSON lines are a little over ``pad`` bytes each."""
    return [
        Message(stream, i, i - 1, meta={"note": "x" * pad}, arrays={"frame": np.zeros((4, 4, 3))})
        for i in range(n)
    ]


def seqs(path: Path) -> list[int]:
    return [r["seq"] for r in read_jsonl(path)]


def test_default_appends_a_line_per_message_and_never_rotates(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "out" / "{stream}.jsonl"
    run_stage(JsonlSink(path=str(path)), messages(30))
    assert "appending" not in caplog.text  # a new file: nothing to say
    size = (tmp_path / "out" / "cam0.jsonl").stat().st_size
    run_stage(JsonlSink(path=str(path)), messages(5))  # a second run appends, and says so
    said = f"appending to {tmp_path}/out/cam0.jsonl ({size / 1000:.1f} kB already there"
    assert said in caplog.text
    rows = read_jsonl(tmp_path / "out" / "cam0.jsonl")
    assert [r["seq"] for r in rows] == list(range(30)) + list(range(5))
    assert rows[0]["arrays"] == {"frame": [[4, 4, 3], "<f8"]}
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["cam0.jsonl"]


def test_rotate_mb_bounds_every_file_and_keeps_the_newest_n(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    limit_mb = 0.005  # 5242 bytes: about 20 lines of ~250 bytes per file
    run_stage(JsonlSink(path=str(path), rotate_mb=limit_mb, keep=3), messages(300))
    files = [path, *(tmp_path / f"events.jsonl.{k}" for k in (1, 2, 3))]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(p.name for p in files)
    for p in files:
        assert 0 < p.stat().st_size <= limit_mb * 1024 * 1024
    # oldest (.3) to newest (current): one unbroken run of seqs ending at the last message
    kept = [s for p in reversed(files) for s in seqs(p)]
    assert kept == list(range(300 - len(kept), 300))
    assert len(seqs(path.with_name("events.jsonl.1"))) >= 15  # files are filled, not tiny


def test_rotate_every_s_starts_a_new_file_per_period(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    sink = JsonlSink(path=str(path), rotate_every_s=0.3, keep=20)

    def slow():
        for m in messages(12, pad=10):
            yield m
            time.sleep(0.1)

    run_stage(sink, slow())
    files = sorted(tmp_path.iterdir())
    assert len(files) >= 3  # 1.2 s or more of lines in 0.3 s periods
    per_file = [len(seqs(p)) for p in files]
    assert sum(per_file) == 12 and max(per_file) <= 4


def test_keep_zero_keeps_only_the_current_file(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    run_stage(JsonlSink(path=str(path), rotate_mb=0.002, keep=0), messages(100))
    assert [p.name for p in tmp_path.iterdir()] == ["events.jsonl"]
    assert seqs(path)[-1] == 99


def test_events_only_writes_each_event_as_one_line(tmp_path: Path) -> None:
    msgs = messages(6, pad=0)
    ev1 = line_crossing_event(msgs[2], "door", "in", 7, 0, (320.0, 200.0), {"in": 1, "out": 0})
    ev2 = zone_enter_event(msgs[2], "curb", 8, 2)
    ev3 = line_crossing_event(msgs[5], "door", "out", 7, 0, (321.0, 180.0), {"in": 1, "out": 1})
    msgs[2].meta["events"] = [ev1, ev2]
    msgs[5].meta["events"] = [ev3]
    path = tmp_path / "events.jsonl"
    run_stage(JsonlSink(path=str(path), events_only=True), msgs)
    rows = read_jsonl(path)
    assert rows == [ev1, ev2, ev3]
    for row in rows:
        validate_event(row)


@pytest.mark.integration
def test_events_only_file_holds_exactly_the_events_of_a_real_graph(tmp_path: Path) -> None:
    """Tracked objects of the street scene cross a counting line; an events_only sink and a
    per-message sink side by side see the same events, the first one per line."""
    graph = (
        Graph()
        .source("cam0", uses="synthetic", scene="easy", frames=120)
        .stage("truth", uses="rk_test_overlay:Overlay", inputs=["cam0"], overlays=False)
        .stage(
            "lines",
            uses="line_crossing",
            inputs=["truth"],
            lines={"cam0": {"a": [320, 0], "b": [320, 360], "name": "door"}},
        )
        .sink(
            "events",
            uses="jsonl",
            inputs=["lines"],
            path=tmp_path / "events.jsonl",
            events_only=True,
        )
        .sink("all", uses="jsonl", inputs=["lines"], path=tmp_path / "all.jsonl")
        .write(tmp_path)
    )
    res = run_rkpipe("run", str(graph))
    assert res.returncode == 0, res.stderr
    events = read_jsonl(tmp_path / "events.jsonl")
    expected = [e for r in read_jsonl(tmp_path / "all.jsonl") for e in r["meta"].get("events", [])]
    assert events == expected
    assert any(e["type"] == "line_crossing" for e in events)
    for e in events:
        validate_event(e)
