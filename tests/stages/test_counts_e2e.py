"""End to end: a real ``rkpipe run`` of synthetic camera -> letterbox -> ONNX detector ->
decode -> bytetrack -> line_crossing -> jsonl counts exactly the crossings the scene's ground
truth says, per line, direction and class.

The clip is the EASY preset, seed 77, 240 frames: 17 crossings of four lines by 9 people and
cars. The truth counts every object's anchor, seen or not, so a clip where a car hides behind
another for its whole crossing, or one already on a line in the clip's first frame, could
never match; the test checks first that every crossing in this clip is by an object at least
80% visible, and seen for a few frames before, which is what makes exact equality fair.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from stages.events import validate_event
from stages.synthetic import Scene
from support.graph import Graph
from support.rkpipe import ROOT, read_jsonl, run_rkpipe

SEED, FRAMES, W, H = 77, 240, 640, 360
MODEL = ROOT / "models" / "rkpipe-yolov8n.onnx"
NAMES = {0: "person", 2: "car"}


def scene_lines() -> dict[str, tuple[tuple[float, float], tuple[float, float]]]:
    """One line along the road (walkers crossing it) and three across the street."""
    return {
        "road": ((0.0, 0.6 * H), (float(W), 0.6 * H)),
        "left": ((0.25 * W, 0.0), (0.25 * W, float(H))),
        "middle": ((0.5 * W, 0.0), (0.5 * W, float(H))),
        "right": ((0.75 * W, 0.0), (0.75 * W, float(H))),
    }


def detection_graph(out: Path) -> Graph:
    lines = [{"name": n, "a": list(a), "b": list(b)} for n, (a, b) in scene_lines().items()]
    return (
        Graph("counts_e2e")
        .source("cam0", uses="synthetic", scene="easy", seed=SEED, frames=FRAMES, live=False)
        .stage("pre", uses="letterbox", inputs=["cam0"])
        .stage("det", uses="infer", inputs=["pre"], model=MODEL)
        .stage("post", uses="yolov8_decode", inputs=["det"])
        .stage("track", uses="bytetrack", inputs=["post"])
        .stage("lines", uses="line_crossing", inputs=["track"], lines={"cam0": lines})
        .sink("out", uses="jsonl", inputs=["lines"], path=out)
    )


def truth_counts(scene: Scene) -> Counter:
    crossings = scene.crossings(scene_lines(), FRAMES)
    return Counter((c.line, c.direction, NAMES[c.class_id]) for c in crossings)


def test_every_crossing_in_the_clip_is_visible() -> None:
    """The precondition of exact counting: nobody crosses while hidden, or before the camera
    has seen them on one side (a tracker confirms a track on its second sighting)."""
    scene = Scene("easy", seed=SEED)
    crossings = scene.crossings(scene_lines(), FRAMES)
    assert len(crossings) >= 15
    for c in crossings:
        assert c.frame >= 5, c
        for frame in (c.frame - 1, c.frame):
            truth = scene.truth(frame)
            vis = dict(zip(truth.track_id.tolist(), truth.visibility.tolist(), strict=True))
            assert vis.get(c.track_id, 0.0) >= 0.8, (c, frame)


@pytest.mark.integration
@pytest.mark.slow
def test_pipeline_counts_equal_ground_truth(tmp_path: Path, no_leaks: None) -> None:
    out = tmp_path / "events.jsonl"
    graph = detection_graph(out).write(tmp_path)
    res = run_rkpipe("run", "--no-live", str(graph), cwd=tmp_path, timeout=240)
    assert res.returncode == 0, res.stderr[-3000:]
    records = read_jsonl(out)
    frames = [r for r in records if "frame" in r["arrays"]]
    assert [r["seq"] for r in frames] == list(range(FRAMES))  # non-live: nothing dropped
    events = [e for r in records for e in r["meta"].get("events", [])]
    for e in events:
        validate_event(e)
    crossings = [e for e in events if e["type"] == "line_crossing"]
    got = Counter((e["line"], e["direction"], e["class_name"]) for e in crossings)
    want = truth_counts(Scene("easy", seed=SEED))
    assert got == want
    # the final snapshot after the last frame says the same, per line/direction/class
    final = [e for e in events if e["type"] == "counts"][-1]
    assert final["seq"] == FRAMES
    snap = Counter(
        {
            (n, d, c): k
            for n, ds in final["lines"].items()
            for d, by in ds.items()
            for c, k in by.items()
        }
    )
    assert snap == want
    assert records[-2]["meta"]["lines"]["middle"]["in"] == sum(
        n for (line, d, _), n in want.items() if (line, d) == ("middle", "in")
    )
