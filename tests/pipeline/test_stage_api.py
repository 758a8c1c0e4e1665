"""The API stage authors use: typed config, Context services inline, Detections with data."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline import Context, Detections, InlineRuntime, Message, Stage, StageConfig
from pipeline.keys import DETECTIONS_PREFIX
from pipeline.testing import read_source, run_stage
from stages.synthetic import SyntheticSource


class GainConfig(StageConfig):
    gain: float = 2.0


class Gain(Stage[GainConfig]):
    def process(self, msg: Message) -> Message:
        msg.meta["scaled"] = self.config.gain * msg.seq
        if msg.seq % 2:
            self.ctx.count_drop("odd")
        return msg

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx


def test_a_stage_typed_by_its_config_validates_options_and_runs_inline() -> None:
    assert Gain.Config is GainConfig
    with pytest.raises(ValidationError, match="gain"):
        Gain(gain="loud")
    with pytest.raises(ValidationError, match="extra"):
        Gain(gian=3.0)
    out = run_stage(Gain(gain=3.0), [Message("cam0", i) for i in range(4)])
    assert [m.meta["scaled"] for m in out] == [0.0, 3.0, 6.0, 9.0]


def test_inline_runtime_collects_what_a_stage_counts() -> None:
    runtime = InlineRuntime()
    stage = Gain()
    stage.setup(Context(stage="gain", runtime=runtime))
    for i in range(5):
        stage.process(Message("cam0", i))
    assert runtime.drops == {"odd": 2}
    assert Context(stage="x").alloc((2, 3), np.float32).shape == (2, 3)


def test_read_source_reads_a_source_inline() -> None:
    msgs = read_source(SyntheticSource(width=64, height=48, frames=5), limit=10, stream="cam0")
    assert [m.seq for m in msgs] == [0, 1, 2, 3, 4]
    assert {m.stream for m in msgs} == {"cam0"}
    assert all(m.frame is not None and m.frame.shape == (48, 64, 3) for m in msgs)


def test_detections_data_follows_rows_through_filtering_and_the_message() -> None:
    det = Detections(
        np.array([[0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 2, 2]], np.float32),
        np.array([0.9, 0.4, 0.8]),
        np.array([0, 2, 0]),
        np.array([7, 8, 9]),
        data={"age": np.array([3, 4, 5]), "velocity": np.zeros((3, 2), np.float32)},
    )
    people = det[det.class_id == 0]
    assert people.tracker_id.tolist() == [7, 9] and people.data["age"].tolist() == [3, 5]
    msg = Message("cam0", 0)
    msg.detections = people
    assert msg.arrays[DETECTIONS_PREFIX + "age"].tolist() == [3, 5]
    back = msg.detections
    assert back is not None and back.data["velocity"].shape == (2, 2)
    merged = Detections.merge([people, det[1]])
    assert merged.data["age"].tolist() == [3, 5, 4]
    with pytest.raises(ValueError, match=r"data\['age'\]: expected 3 rows"):
        Detections(det.xyxy, det.confidence, det.class_id, data={"age": np.arange(2)})
