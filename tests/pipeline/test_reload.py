"""Changing a running pipeline by editing its graph file: on SIGHUP or ``rkpipe reload`` the
run reads the file again; a moved line keeps its totals and counts from the next frame, a
changed ``conf`` reaches the decoder in place, a stage that cannot take its new options is
restarted alone, and a bad edit changes nothing and says why in one line. Every run ends
exact."""

from __future__ import annotations

import contextlib
import json
import signal
from pathlib import Path

import pytest

from pipeline.supervise.runs import RUN_DIR_ROOT, RUN_PREFIX, live_run_ids
from support.background_run import running
from support.graph import Graph
from support.rkpipe import poll_for, run_rkpipe

pytestmark = pytest.mark.integration

DOOR = {"cam0": {"name": "door", "a": [320, 0], "b": [320, 360]}}
MOVED = {"cam0": {"name": "door", "a": [200, 0], "b": [200, 360]}}


def street(
    folder: Path, lines: dict = DOOR, cams: tuple[str, ...] = ("cam0",), **line_options: object
) -> Graph:
    """An endless street scene at 30 fps per camera, its true objects as tracks, one
    counting line."""
    g = Graph("reloaded", stats_interval_s=0.5)
    for cam in cams:
        g = g.source(cam, uses="synthetic", scene="easy", realtime=True, fps=30)
    return (
        g.stage("truth", uses="rk_test_overlay:Overlay", inputs=list(cams), overlays=False)
        .stage("lines", uses="line_crossing", inputs=["truth"], lines=lines, **line_options)
        .sink("out", uses="jsonl", inputs=["lines"], path=folder / "out.jsonl")
    )


def events(rows: list[dict]) -> list[dict]:
    return [e for r in rows for e in r["meta"].get("events", []) if e["type"] == "line_crossing"]


def test_a_moved_line_keeps_its_totals_and_counts_from_the_next_frame(tmp_path: Path) -> None:
    graph = street(tmp_path).write(tmp_path)
    with running(graph) as run:
        assert poll_for(lambda: events(run.rows()), timeout=90), "\n".join(run.log())
        street(tmp_path, MOVED).write(tmp_path)
        run.proc.send_signal(signal.SIGHUP)
        run.wait_for_log("lines took its new options in place")
        moved_at = len(run.rows())
        assert poll_for(lambda: len(events(run.rows()[moved_at:])) >= 2, timeout=90)
        stats = run.finish()
    assert stats["exact"], stats["streams"]
    assert run.reload_lines() == [
        "rkpipe: reload: lines: new lines; sent to its processes",
        "rkpipe: reload: lines took its new options in place",
    ]
    rows = run.rows()
    where = [r["meta"]["lines"]["door"]["a"] for r in rows]
    first = where.index([200.0, 0.0])  # from this frame on, the line is where it was moved
    assert set(map(tuple, where[:first])) == {(320.0, 0.0)}
    assert set(map(tuple, where[first:])) == {(200.0, 0.0)}
    crossed = events(rows)
    assert [e["totals"]["in"] + e["totals"]["out"] for e in crossed] == list(
        range(1, len(crossed) + 1)
    )  # every crossing counts on from the totals before the move
    assert any(e["point"][0] == 200.0 for e in crossed)
    assert stats["stages"]["lines"]["restarts"] == 0


def test_a_bad_edit_changes_nothing_and_says_why_once(tmp_path: Path) -> None:
    graph = street(tmp_path).write(tmp_path)
    good = graph.read_text()
    bad_edits = {
        "syntax error": (good.replace("[stages.lines]", "[stages.lines"), ":"),
        "unknown key": (good.replace('uses = "line_crossing"', 'uses = "line_crossing"\nlnes = 1'),
                        "stages.lines.lnes"),
        "missing input": (good.replace('inputs = ["truth"]', 'inputs = ["nope"]'),
                          "stages.lines.inputs"),
    }  # fmt: skip
    with running(graph) as run:
        run.wait_for_rows(10)
        for n, (text, names) in enumerate(bad_edits.values(), 1):
            graph.write_text(text)
            res = run_rkpipe("reload", str(graph))
            assert res.returncode == 2, res.stdout + res.stderr
            assert res.stderr.startswith(f"rkpipe: reload: {graph}")
            assert names in res.stderr and len(res.stderr.splitlines()) == 1
            run.wait_for_log("nothing changed; the run goes on as it was", n)
            run.wait_for_rows(5)  # the run goes on
        graph.write_text(good)
        res = run_rkpipe("reload")  # the only run here: no need to name it
        assert res.returncode == 0, res.stderr
        assert res.stdout == f"rkpipe: reload: {graph}: nothing changed\n"
        stats = run.finish()
    assert stats["exact"], stats["streams"]
    said = run.reload_lines()
    assert len(said) == 4 and all(f"{graph}" in line for line in said)
    assert "TOML syntax error" in said[0]
    assert f"{graph}:" in said[1] and "stages.lines.lnes" in said[1]
    assert 'unknown stage "nope"' in said[2]
    assert {r["meta"]["lines"]["door"]["a"][0] for r in run.rows()} == {320.0}
    assert all(s["restarts"] == 0 for s in stats["stages"].values())


def test_a_stage_that_cannot_take_its_options_alone_restarts_with_them(tmp_path: Path) -> None:
    graph = street(tmp_path).write(tmp_path)
    with running(graph) as run:
        run.wait_for_rows(10)
        street(tmp_path, names=["walker", "bicycle", "car"]).write(tmp_path)
        res = run_rkpipe("reload", str(graph))
        assert res.returncode == 0, res.stderr
        assert res.stdout == "rkpipe: reload: lines: new names; sent to its processes\n"
        run.wait_for_log("lines cannot take its new options in place; restarting it")
        assert poll_for(lambda: any(e["class_name"] == "walker" for e in events(run.rows())), 90)
        stats = run.finish()
    assert stats["exact"], stats["streams"]
    assert stats["stages"]["lines"]["restarts"] == 1
    assert {s: v["restarts"] for s, v in stats["stages"].items() if s != "lines"} == {
        "cam0": 0,
        "truth": 0,
        "out": 0,
    }


def test_a_changed_conf_and_classes_reach_the_decoder_in_place(tmp_path: Path) -> None:
    def detector(**decode: object) -> Path:
        return (
            Graph("decoded", stats_interval_s=0.5)
            .source("cam0", uses="synthetic", width=160, height=120, fps=30, realtime=True)
            .stage("pre", uses="letterbox", inputs=["cam0"], size=[160, 160])
            .stage("npu", uses="infer", inputs=["pre"], model="sim:yolov8n", sim_ms=16)
            .stage("post", uses="yolov8_decode", inputs=["npu"], **decode)
            .sink("out", uses="jsonl", inputs=["post"], path=tmp_path / "out.jsonl")
            .write(tmp_path)
        )

    graph = detector(conf=0.25)
    with running(graph) as run:
        assert poll_for(lambda: any(r["detections"] for r in run.rows()), timeout=90)
        detector(conf=0.6, classes=["person"])
        run.proc.send_signal(signal.SIGHUP)
        run.wait_for_log("post took its new options in place")
        changed_at = len(run.rows())
        run.wait_for_rows(20)
        stats = run.finish()
    assert stats["exact"], stats["streams"]
    assert run.reload_lines()[0] == "rkpipe: reload: post: new classes, conf; sent to its processes"
    before, after = run.rows()[:changed_at], run.rows()[changed_at + 5 :]
    assert any(d["score"] < 0.6 for r in before for d in r["detections"])
    seen = [d for r in after for d in r["detections"]]
    assert all(d["score"] >= 0.6 and d["class_name"] == "person" for d in seen)
    assert all(s["restarts"] == 0 for s in stats["stages"].values())


def test_a_camera_added_and_one_removed_while_it_runs(tmp_path: Path) -> None:
    """A source added starts and its stream joins the stages behind; a source removed ends
    its stream as a stream ends (END in order, its tally exact); nothing else restarts."""
    graph = street(tmp_path).write(tmp_path)

    def seqs(cam: str) -> list[int]:  # frames (a stream's final counts row has none)
        return [r["seq"] for r in run.rows() if r["stream"] == cam and "frame" in r["arrays"]]

    with running(graph) as run:
        run.wait_for_rows(10)
        street(tmp_path, cams=("cam0", "cam1")).write(tmp_path)
        res = run_rkpipe("reload", str(graph))
        assert res.returncode == 0, res.stderr
        assert res.stdout == (
            "rkpipe: reload: source 'cam1' added; starting it\n"
            "rkpipe: reload: truth: now reads cam0, cam1\n"
        )
        run.wait_for_log("truth connected to cam1")
        assert poll_for(lambda: len(seqs("cam1")) >= 10, timeout=90), "\n".join(run.log())
        street(tmp_path, cams=("cam1",)).write(tmp_path)
        run.proc.send_signal(signal.SIGHUP)
        run.wait_for_log("source 'cam0' removed; its stream ends")
        run.wait_for_log("cam0 stopped; its stream ended")
        ended_at = len(seqs("cam0"))
        n = len(seqs("cam1"))
        assert poll_for(lambda: len(seqs("cam1")) >= n + 10, timeout=90)
        assert len(seqs("cam0")) == ended_at  # nothing of cam0 after its end
        stats = run.finish()
    assert stats["exact"], stats["streams"]
    assert sorted(stats["streams"]) == ["cam0", "cam1"]
    final = [r for r in run.rows() if r["stream"] == "cam0" and not r["arrays"]]
    assert [e["type"] for e in final[0]["meta"]["events"]] == ["counts"]  # its end, in order
    for cam in ("cam0", "cam1"):
        got = seqs(cam)
        assert got == list(range(len(got))), cam  # every frame once, in order, from 0
        assert stats["streams"][cam]["sinks"]["out"]["delivered"] == len(got)
    assert all(s["restarts"] == 0 for s in stats["stages"].values())


def test_npu_cores_added_and_let_go_while_it_runs(tmp_path: Path) -> None:
    """One more inference process is started and fed; let go again, it finishes what it was
    sent and ends; no frame is lost or sent twice, and the others never restart."""

    def detector(cores: list[int]) -> Path:
        return (
            Graph("cores", stats_interval_s=0.5)
            .source("cam0", uses="synthetic", width=160, height=120, fps=30, realtime=True)
            .stage("pre", uses="letterbox", inputs=["cam0"], size=[160, 160])
            .stage("npu", uses="infer", inputs=["pre"], model="sim:yolov8n", sim_ms=1600,
                   npu_cores=cores)  # 100 ms a call at 160x160: 30 fps needs 3 processes
            .stage("post", uses="yolov8_decode", inputs=["npu"])
            .sink("out", uses="jsonl", inputs=["post"], path=tmp_path / "out.jsonl")
            .write(tmp_path)
        )  # fmt: skip

    def took(instance: str) -> int:  # frames in, from this run's live figures
        for run_id in live_run_ids():
            folder = RUN_DIR_ROOT / f"{RUN_PREFIX}{run_id}"
            with contextlib.suppress(OSError, ValueError):
                if json.loads((folder / "reload.json").read_text())["graph"] != str(graph):
                    continue  # another run on this machine
                rows = json.loads((folder / "live.json").read_text())["stages"]
                return sum(r["frames_in"] for r in rows if r["instance"] == instance)
        return 0

    graph = detector([0, 1])
    with running(graph) as run:
        run.wait_for_rows(10)
        detector([0, 1, 2])
        res = run_rkpipe("reload", str(graph))
        assert res.returncode == 0, res.stderr
        assert res.stdout == "rkpipe: reload: npu: 3 processes (was 2); starting 1\n"
        run.wait_for_log("post connected to npu.2")
        assert poll_for(lambda: took("npu.2") > 0, timeout=60), "npu.2 was never fed"
        detector([0, 1])
        run.proc.send_signal(signal.SIGHUP)
        run.wait_for_log("npu: 2 processes (was 3); letting go of 1")
        run.wait_for_log("pre let go of npu.2")
        run.wait_for_log("npu.2 finished what it held and ended")
        fed = took("npu.2")
        detector([0, 1, 2])  # and back again: the same place, its counts going on
        run.proc.send_signal(signal.SIGHUP)
        run.wait_for_log("post connected to npu.2", 1)
        assert poll_for(lambda: took("npu.2") > fed, timeout=60), "npu.2 was not fed again"
        stats = run.finish()
    assert stats["exact"], stats["streams"]
    got = [r["seq"] for r in run.rows() if "frame" in r["arrays"]]
    assert got == list(range(len(got)))  # every frame once, in order
    assert stats["streams"]["cam0"]["sinks"]["out"]["delivered"] == len(got)
    assert all(s["restarts"] == 0 for s in stats["stages"].values())
    assert stats["stages"]["npu"]["instances"] == ["npu.0", "npu.1", "npu.2"]


def test_a_change_that_needs_a_restart_is_named_and_not_applied(tmp_path: Path) -> None:
    graph = street(tmp_path).write(tmp_path)
    with running(graph) as run:
        run.wait_for_rows(10)
        edited = street(tmp_path).sink("more", uses="jsonl", inputs=["lines"], path="more.jsonl")
        edited.write(tmp_path)
        res = run_rkpipe("reload", str(graph))
        assert res.returncode == 0, res.stderr
        assert res.stdout == (
            "rkpipe: reload: stage 'more' added needs a restart for now (not applied)\n"
        )
        run.wait_for_rows(10)
        stats = run.finish()
    assert stats["exact"] and list(stats["streams"]) == ["cam0"]
    assert not (tmp_path / "more.jsonl").exists()


def test_with_watch_a_saved_file_is_reloaded_and_a_bad_save_is_said_once(tmp_path: Path) -> None:
    graph = street(tmp_path).write(tmp_path)
    good = graph.read_text()
    with running(graph, "--watch") as run:
        run.wait_for_rows(10)
        graph.touch()  # the same text: nothing to reload
        graph.write_text(good.replace('inputs = ["truth"]', 'inputs = ["nope"]'))
        run.wait_for_log("nothing changed; the run goes on as it was")
        street(tmp_path, MOVED).write(tmp_path)  # saved again, now valid: no signal needed
        run.wait_for_log("lines took its new options in place")
        run.wait_for_rows(5)
        stats = run.finish()
    assert stats["exact"], stats["streams"]
    said = run.reload_lines()
    assert len(said) == 3, said  # the bad save once (not each time it is looked at), then the move
    assert "stages.lines.inputs" in said[0]
    assert said[1:] == [
        "rkpipe: reload: lines: new lines; sent to its processes",
        "rkpipe: reload: lines took its new options in place",
    ]
