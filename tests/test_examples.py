"""The README's custom-stage example, and every graph shipped in graphs/, work as shown."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline.cpus import PRESETS
from pipeline.graph.load import load_graph
from stages.events import validate_event
from stages.synthetic import Scene, parse_scene_uri
from support.rkpipe import ROOT, read_jsonl, run_rkpipe

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
    assert "rkpipe: out wrote out/brightness.jsonl (path)" in res.stderr  # where, said at the end
    rows = read_jsonl(tmp_path / "out" / "brightness.jsonl")
    assert len(rows) == 100
    assert all(isinstance(r["meta"]["brightness"], float) for r in rows)
    assert {r["meta"]["dark"] for r in rows} <= {True, False}


def test_readme_custom_stage_example_type_checks(tmp_path: Path) -> None:
    """A stage typed by its config gives ``self.config`` that type: a typo is a type error."""
    code = _block("python", "## Write your own stage")
    (tmp_path / "brightness.py").write_text(code)
    (tmp_path / "typo.py").write_text(code.replace("self.config.dark_below", "self.config.dark"))
    mypy = [sys.executable, "-m", "mypy", "--no-incremental", "--ignore-missing-imports"]
    env = {**os.environ, "MYPYPATH": str(ROOT)}  # the package as a user's checker sees it
    run = {"cwd": tmp_path, "capture_output": True, "text": True, "env": env}
    ok = subprocess.run([*mypy, "brightness.py"], **run)  # type: ignore[call-overload]
    assert ok.returncode == 0, ok.stdout
    bad = subprocess.run([*mypy, "typo.py"], **run)  # type: ignore[call-overload]
    assert bad.returncode == 1 and '"BrightnessConfig" has no attribute "dark"' in bad.stdout


@pytest.mark.parametrize("graph", sorted((ROOT / "graphs").glob("**/*.toml")), ids=lambda p: p.name)
def test_every_shipped_graph_validates(graph: Path) -> None:
    load_graph(graph, cpus=PRESETS["rk3588"])  # CPUs 0-7: big 4-7, little 0-3


def _scene_for(graph: Path, stage: str) -> Scene:
    """The built-in scene a graph's capture stage plays (its default source)."""
    source = load_graph(graph).stages[stage].config.source
    return Scene(**parse_scene_uri(source))


def _match(found: list[dict], truth, min_vis: float = 0.5) -> tuple[int, int, int]:
    """(true positives, false positives, objects to find) at IoU 0.5, same class; objects
    less than ``min_vis`` visible may be found but need not be."""
    boxes = np.array([d["box"] for d in found]).reshape(-1, 4)
    cls = np.array([d["class_id"] for d in found])
    care = truth.visibility >= min_vis
    used = np.zeros(len(truth.xyxy), bool)
    tp = fp = 0
    for k in np.argsort([-d["score"] for d in found]):
        g = truth.xyxy.astype(float)
        lt = np.maximum(boxes[k, :2], g[:, :2])
        rb = np.minimum(boxes[k, 2:], g[:, 2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        area = lambda b: (b[..., 2] - b[..., 0]) * (b[..., 3] - b[..., 1])  # noqa: E731
        iou = inter / (area(boxes[k]) + area(g) - inter + 1e-9)
        iou[(truth.class_id != cls[k])] = 0
        cand = np.where(~used, iou, 0)
        j = int(cand.argmax()) if len(g) else -1
        if j >= 0 and cand[j] >= 0.5:
            used[j] = True
            tp += care[j]
        elif not (len(g) and (iou >= 0.5).any()):
            fp += 1
    return tp, fp, int(care.sum())


@pytest.mark.integration
@pytest.mark.slow
def test_headline_graph_finds_the_objects_in_the_demo_scenes(tmp_path: Path, no_leaks) -> None:
    """two_streams.toml as shipped (default model, built-in scenes): every delivered frame's
    detections match the scene's ground truth, both streams, and events are valid."""
    graph = ROOT / "graphs" / "two_streams.toml"
    res = run_rkpipe(
        "run",
        str(graph),
        "--frames",
        "40",
        "--stats-out",
        str(tmp_path / "stats.json"),
        cwd=tmp_path,
        env={"RKPIPE_PREVIEW_PORT": "0"},
    )
    assert res.returncode == 0, res.stderr
    rows = [r for r in read_jsonl(tmp_path / "out" / "two_streams.detections.jsonl")]
    framed = [r for r in rows if "frame" in r["arrays"]]
    for stream in ("cam0", "cam1"):
        scene = _scene_for(graph, stream)
        mine = [r for r in framed if r["stream"] == stream]
        assert len(mine) == 40  # --frames counts delivered frames; camera drops are counted
        assert [r["seq"] for r in mine] == sorted(r["seq"] for r in mine)
        tp = fp = n = 0
        for r in mine:
            a, b, c = _match(r["detections"], scene.truth(r["seq"]))
            tp, fp, n = tp + a, fp + b, n + c
        assert n > 40, (stream, n)
        assert tp / (tp + fp) >= 0.85 and tp / n >= 0.85, (stream, tp, fp, n)
        tracked = [(r["seq"], d) for r in mine for d in r["detections"] if "track_id" in d]
        assert tracked  # ByteTrack ran and confirmed tracks, each with its age and velocity
        assert all(d["age"] >= 0 and len(d["velocity"]) == 2 for _, d in tracked)
        ages: dict[int, list[int]] = {}
        for _, d in sorted(tracked, key=lambda t: t[0]):
            ages.setdefault(d["track_id"], []).append(d["age"])
        assert all(a == sorted(a) for a in ages.values())  # a track only grows older
    events = read_jsonl(tmp_path / "out" / "two_streams.events.jsonl")
    for ev in events:
        validate_event(ev)
    assert {e["stream"] for e in events if e["type"] == "counts"} == {"cam0", "cam1"}


@pytest.mark.integration
def test_three_npu_core_twin_runs_the_whole_detection_chain(tmp_path: Path, no_leaks) -> None:
    """6 streams -> letterbox -> 3 simulated NPU cores -> decode -> track -> JSONL."""
    graph = ROOT / "graphs" / "three_npu_cores_sim.toml"
    res = run_rkpipe("run", str(graph), "--frames", "20", "--stats-out", "stats.json", cwd=tmp_path)
    assert res.returncode == 0, res.stderr
    rows = read_jsonl(tmp_path / "out" / "three_npu_cores_sim.jsonl")
    assert {r["stream"] for r in rows} == {f"cam{i}" for i in range(6)}
    framed = [r for r in rows if "frame" in r["arrays"]]
    assert all("detections" in r and "tensor" not in r["arrays"] for r in framed)
    for stream in {r["stream"] for r in rows}:
        seqs = [r["seq"] for r in rows if r["stream"] == stream]
        assert seqs == sorted(seqs)  # re-joined in order after three inference processes


@pytest.mark.integration
@pytest.mark.slow
def test_one_stream_graph_writes_events_and_an_annotated_video(tmp_path: Path, no_leaks) -> None:
    import cv2

    res = run_rkpipe(
        "run", str(ROOT / "graphs" / "one_stream.toml"), "--frames", "30", cwd=tmp_path
    )
    assert res.returncode == 0, res.stderr
    video = cv2.VideoCapture(str(tmp_path / "out" / "one_stream.mp4"))
    assert int(video.get(cv2.CAP_PROP_FRAME_COUNT)) == 30  # a file-like source loses nothing
    events = read_jsonl(tmp_path / "out" / "one_stream.events.jsonl")
    for ev in events:
        validate_event(ev)
    assert events[-1]["type"] == "counts"
