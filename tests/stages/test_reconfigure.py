"""Stages take changed options in place (a reload): a moved line keeps its totals and counts
from the next frame; a changed ``conf`` reaches the decoder; what cannot change says so."""

from __future__ import annotations

from pathlib import Path

from test_analytics_stages import DOOR, crossings, frame, lines_stage

from pipeline.context import Context
from stages.line_crossing.stage import LineCrossing, LineCrossingConfig
from stages.yolov8_decode.stage import YoloV8Decode, YoloV8DecodeConfig


def _set_up(stage: LineCrossing) -> LineCrossing:
    stage.setup(Context(stage="lines", graph_dir=Path.cwd()))
    return stage


def test_a_moved_line_keeps_its_totals_and_counts_from_the_next_frame() -> None:
    stage = _set_up(lines_stage())
    before = [stage.process(frame(i, [(1, 0, 320.0, y)])) for i, y in enumerate([280, 320])]
    assert crossings(before) == [("in", 1, "person")]
    moved = {"cam0": [{"name": "door", "a": [0, 400], "b": [640, 400]}]}
    config = LineCrossingConfig(lines=moved, snapshot_every_s=0)
    assert stage.reconfigure(config)
    after = [stage.process(frame(i, [(2, 0, 320.0, y)])) for i, y in enumerate([380, 420], 2)]
    assert crossings(after) == [("in", 2, "person")]
    totals = [e["totals"] for m in after for e in m.meta.get("events", [])]
    assert totals == [{"in": 2, "out": 0}]  # the first crossing is kept
    assert after[-1].meta["lines"]["door"]["a"] == [0, 400]


def test_a_renamed_line_starts_from_zero() -> None:
    stage = _set_up(lines_stage())
    [stage.process(frame(i, [(1, 0, 320.0, y)])) for i, y in enumerate([280, 320])]
    gate = {"cam0": [{"name": "gate", "a": [0, 300], "b": [640, 300]}]}
    assert stage.reconfigure(LineCrossingConfig(lines=gate, snapshot_every_s=0))
    out = [stage.process(frame(i, [(2, 0, 320.0, y)])) for i, y in enumerate([280, 320], 2)]
    assert [e["totals"] for m in out for e in m.meta.get("events", [])] == [{"in": 1, "out": 0}]


def test_snapshot_pictures_need_a_restart() -> None:
    stage = _set_up(lines_stage())
    assert not stage.reconfigure(LineCrossingConfig(lines=DOOR, snapshot=True))


def test_a_changed_conf_and_classes_reach_the_decoder() -> None:
    stage = YoloV8Decode()
    stage.setup(Context(stage="decode", graph_dir=Path.cwd()))
    assert stage.reconfigure(YoloV8DecodeConfig(conf=0.6, classes=["car"]))
    assert stage.config.conf == 0.6
    assert stage.keep == [2]
