"""The letterbox, yolov8_decode and bytetrack stages, run inline on known inputs."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.detections import Detections
from pipeline.errors import ModelError
from pipeline.messages import Message
from pipeline.testing import run_stage
from stages.bytetrack.stage import ByteTrack
from stages.infer.sim_outputs import plant_split_head, split_to_stock
from stages.letterbox.geometry import letterbox_boxes, letterbox_geometry
from stages.letterbox.stage import Letterbox
from stages.yolov8_decode.stage import YoloV8Decode


def test_letterbox_writes_model_input_and_geometry() -> None:
    frame = np.full((360, 640, 3), (10, 20, 30), np.uint8)
    [out] = run_stage(Letterbox(), [Message("cam0", 0, arrays={"frame": frame})])
    t = out.arrays["tensor"]
    assert t.shape == (1, 3, 640, 640) and t.dtype == np.float32
    assert out.meta["letterbox"]["pad_y"] == 140 and out.meta["letterbox"]["scale"] == 1.0
    np.testing.assert_allclose(t[0, :, 320, 320], np.array([30, 20, 10]) / 255, atol=1e-6)  # RGB
    np.testing.assert_allclose(t[0, :, 0, 0], 114 / 255, atol=1e-6)  # grey border


def test_letterbox_nhwc_for_rknn_is_rgb_uint8() -> None:
    frame = np.full((360, 640, 3), (10, 20, 30), np.uint8)
    [out] = run_stage(Letterbox(layout="nhwc_uint8"), [Message("cam0", 0, arrays={"frame": frame})])
    t = out.arrays["tensor"]
    assert t.shape == (1, 640, 640, 3) and t.dtype == np.uint8
    assert tuple(t[0, 320, 320]) == (30, 20, 10)


def _outputs_for(
    frame_boxes: np.ndarray, cls: np.ndarray, layout: str
) -> tuple[list[np.ndarray], dict]:
    geom = letterbox_geometry((360, 640), (640, 640))
    boxes = letterbox_boxes(frame_boxes, geom)
    split = plant_split_head(boxes, cls, np.full(len(cls), 0.9, np.float32))
    return (split if layout == "split" else [split_to_stock(split)]), geom.to_dict()


@pytest.mark.parametrize("layout", ["stock", "split"])
def test_decode_stage_maps_boxes_back_to_the_frame(layout: str) -> None:
    truth = np.array([[100, 50, 160, 200], [400, 220, 600, 330]], np.float32)
    outputs, geom = _outputs_for(truth, np.array([0, 2]), layout)
    msg = Message(
        "cam0", 0, meta={"letterbox": geom}, arrays={f"out.{i}": o for i, o in enumerate(outputs)}
    )
    [out] = run_stage(YoloV8Decode(classes=["person", "car"]), [msg])
    det = out.detections
    assert not any(k.startswith("out.") for k in out.arrays)  # raw outputs dropped
    order = np.argsort(det.class_id)
    np.testing.assert_allclose(det.xyxy[order], truth, atol=1.0)
    assert det.class_id[order].tolist() == [0, 2]


def test_decode_stage_class_filter_by_name() -> None:
    truth = np.array([[100, 50, 160, 200], [400, 220, 600, 330]], np.float32)
    outputs, geom = _outputs_for(truth, np.array([0, 2]), "stock")
    msg = Message("cam0", 0, meta={"letterbox": geom}, arrays={"out.0": outputs[0]})
    [out] = run_stage(YoloV8Decode(classes=["car"]), [msg])
    assert out.detections.class_id.tolist() == [2]


def test_decode_stage_rejects_unknown_class_name_at_config_time() -> None:
    with pytest.raises(ValueError, match="unknown class name 'persn'"):
        YoloV8Decode(classes=["persn"])


def test_decode_stage_without_outputs_says_what_is_missing() -> None:
    with pytest.raises(ModelError, match="add infer first"):
        run_stage(YoloV8Decode(), [Message("cam0", 0)])


def _moving(seq: int, prev: int, stream: str = "cam0") -> Message:
    x = 10.0 + 5 * seq
    det = Detections(
        np.array([[x, 100, x + 40, 200], [500 - x, 50, 560 - x, 90]], np.float32),
        np.array([0.9, 0.8], np.float32),
        np.array([0, 2], np.int32),
    )
    msg = Message(stream, seq, prev)
    msg.detections = det
    return msg


def test_bytetrack_stage_keeps_ids_per_stream_across_a_drop() -> None:
    seqs = [0, 1, 2, 3, 4, 8, 9, 10]  # frames 5-7 dropped upstream; prev links say so
    msgs = [_moving(s, p) for p, s in zip([-1, *seqs[:-1]], seqs, strict=True)]
    msgs += [_moving(s, s - 1, "cam1") for s in range(5)]
    out = run_stage(ByteTrack(), msgs)
    cam0 = [m.detections.tracker_id.tolist() for m in out if m.stream == "cam0"]
    assert cam0[-1] == cam0[2] and -1 not in cam0[-1]  # same two IDs after the gap
    cam1 = [m.detections.tracker_id.tolist() for m in out if m.stream == "cam1"]
    assert set(cam1[-1]) == {1, 2}  # each stream numbers its own tracks
