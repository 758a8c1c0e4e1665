"""Detections, letterbox geometry and YOLOv8 decode, checked against a plain reference decode
(``reference_decode.py``) on synthetic outputs with planted objects."""

from __future__ import annotations

import cv2
import msgpack
import numpy as np
import pytest

from pipeline.detections import Detections
from pipeline.errors import ModelError
from stages.classes import COCO_NAMES
from stages.infer.sim_outputs import (
    plant_split_head,
    quantize_outputs,
    random_scene,
    split_to_stock,
)
from stages.letterbox import (
    LetterboxGeometry,
    letterbox_boxes,
    letterbox_geometry,
    letterbox_into,
    letterbox_nchw_into,
    unletterbox_boxes,
)
from stages.yolov8_decode import decode_yolov8
from support.reference_decode import ref_decode_split, ref_decode_stock, ref_unletterbox


def scene(n, seed=0, input_hw=(640, 640), nc=80, with_sum=False, per_object=3):
    """Split-head float outputs with ``n`` random objects planted."""
    xyxy, cls, score = random_scene(n, input_hw, nc, seed)
    return plant_split_head(xyxy, cls, score, input_hw, nc, with_sum, per_object, seed)


def canon(xyxy, score, cls):
    """Rows in a fixed order (class, x1, y1) so two decodes can be compared."""
    xyxy, score, cls = np.asarray(xyxy, np.float64), np.asarray(score), np.asarray(cls)
    order = np.lexsort((xyxy[:, 1].round(2), xyxy[:, 0].round(2), cls))
    return xyxy[order], score[order], cls[order]


def assert_same(det: Detections, ref, atol=2e-3):
    assert len(det) == len(ref[0])
    a, b = canon(det.xyxy, det.confidence, det.class_id), canon(*ref)
    np.testing.assert_array_equal(a[2], b[2])
    np.testing.assert_allclose(a[1], b[1], atol=1e-6)
    np.testing.assert_allclose(a[0], b[0], atol=atol)


def nhwc(outputs):
    return [np.ascontiguousarray(t.transpose(0, 2, 3, 1)) for t in outputs]


# --- Detections ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"xyxy": np.zeros((3, 5))}, r"Detections.xyxy: expected shape \(N, 4\), got \(3, 5\)"),
        ({"confidence": np.zeros(2)}, r"Detections.confidence: .*\(3,\) .* got \(2,\)"),
        ({"class_id": np.zeros((3, 1))}, r"Detections.class_id: .*\(3,\) .* got \(3, 1\)"),
        ({"tracker_id": np.zeros(4)}, r"Detections.tracker_id: .*\(3,\) .* got \(4,\)"),
    ],
)
def test_detections_validation_names_the_array(kwargs, message):
    args = {"xyxy": np.zeros((3, 4)), "confidence": np.zeros(3), "class_id": np.zeros(3)}
    with pytest.raises(ValueError, match=message):
        Detections(**{**args, **kwargs})


def test_detections_dtypes_selection_merge_and_anchors():
    det = Detections([[0, 0, 10, 20], [5, 5, 7, 9]], [0.9, 0.4], [1, 2])
    assert (det.xyxy.dtype, det.confidence.dtype, det.class_id.dtype) == (
        np.float32,
        np.float32,
        np.int32,
    )
    assert det.tracker_id.dtype == np.int64 and det.tracker_id.tolist() == [-1, -1]
    assert Detections(np.zeros((4, 3)).T, np.zeros(3), np.zeros(3)).xyxy.flags.c_contiguous
    assert len(det[det.confidence > 0.5]) == 1 and det[1].class_id.tolist() == [2]
    assert len(Detections.empty()) == 0 and len(Detections([], [], [])) == 0
    both = Detections.merge([det, det[:1], Detections.empty()])
    assert both.class_id.tolist() == [1, 2, 1]
    np.testing.assert_allclose(det.anchors("bottom_center"), [[5, 20], [6, 9]])
    np.testing.assert_allclose(det.anchors("center"), [[5, 10], [6, 7]])


def test_detections_arrays_round_trip():
    det = Detections(np.ones((2, 4)), [0.5, 0.6], [3, 4], tracker_id=[7, -1])
    arrays = {"frame": np.zeros((2, 2, 3), np.uint8), **det.to_arrays()}
    assert set(arrays) >= {"det.xyxy", "det.confidence", "det.class_id", "det.tracker_id"}
    back = Detections.from_arrays(arrays)
    for name in ("xyxy", "confidence", "class_id", "tracker_id"):
        np.testing.assert_array_equal(getattr(back, name), getattr(det, name))
        assert getattr(back, name).dtype == getattr(det, name).dtype
    assert Detections.from_arrays({"frame": arrays["frame"]}) is None
    other = Detections.from_arrays(det.to_arrays(prefix="raw."), prefix="raw.")
    assert other is not None and other.tracker_id.tolist() == [7, -1]
    with pytest.raises(ValueError, match=r"det\.class_id missing"):
        Detections.from_arrays({"det.xyxy": det.xyxy, "det.confidence": det.confidence})


# --- letterbox -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("src_hw", "dst_hw", "scale", "pad"),
    [
        ((720, 1280), (640, 640), 0.5, (0, 140)),
        ((1080, 1920), (384, 640), 1 / 3, (0, 12)),
        ((333, 640), (640, 640), 1.0, (0, 153)),  # odd padding: the extra row goes below
        ((640, 480), (640, 640), 1.0, (80, 0)),
    ],
)
def test_letterbox_geometry(src_hw, dst_hw, scale, pad):
    g = letterbox_geometry(src_hw, dst_hw)
    assert g.scale == pytest.approx(scale) and (g.pad_x, g.pad_y) == pad
    assert LetterboxGeometry.from_dict(msgpack.unpackb(msgpack.packb(g.to_dict()))) == g


def test_letterbox_into_writes_in_place_and_nchw_matches():
    src = np.random.default_rng(0).integers(0, 256, (360, 641, 3), np.uint8)
    g = letterbox_geometry(src.shape[:2], (640, 640))
    slab = np.zeros((2, 640, 640, 3), np.uint8)  # a shared-memory pool of two slots
    out = letterbox_into(src, slab[1], g)
    assert out is slab[1] or np.shares_memory(out, slab)
    assert not slab[0].any()
    inner = slab[1, g.pad_y : g.pad_y + g.new_h, g.pad_x : g.pad_x + g.new_w]
    np.testing.assert_array_equal(inner, cv2.resize(src, (g.new_w, g.new_h)))
    assert (slab[1, : g.pad_y] == 114).all() and (slab[1, g.pad_y + g.new_h :] == 114).all()
    blob = letterbox_nchw_into(src, np.empty((1, 3, 640, 640), np.float32), g)
    expect = slab[1][:, :, ::-1].transpose(2, 0, 1)[None] / np.float32(255)
    np.testing.assert_allclose(blob, expect, atol=1e-6)
    with pytest.raises(ValueError, match="letterbox output must be"):
        letterbox_into(src, np.zeros((640, 640), np.uint8), g)


def test_box_mapping_round_trip_and_clip():
    g = letterbox_geometry((720, 1280), (640, 640))
    boxes = np.array([[0, 0, 1280, 720], [100.5, 200.25, 300, 400]], np.float32)
    np.testing.assert_allclose(unletterbox_boxes(letterbox_boxes(boxes, g), g), boxes, atol=1e-3)
    outside = np.array([[-10, 100, 700, 600]], np.float32)  # beyond the frame, into the pad
    np.testing.assert_allclose(unletterbox_boxes(outside, g), [[0, 0, 1280, 720]])
    with pytest.raises(ValueError, match="missing pad_y"):
        LetterboxGeometry.from_dict({k: v for k, v in g.to_dict().items() if k != "pad_y"})


# --- YOLOv8 decode ---------------------------------------------------------------------------


def test_coco_names():
    assert len(COCO_NAMES) == 80 and COCO_NAMES[0] == "person" and COCO_NAMES[79] == "toothbrush"


def test_no_detections():
    outputs = scene(0)
    assert len(decode_yolov8(outputs)) == 0 == len(ref_decode_split(outputs)[0])
    assert len(decode_yolov8([split_to_stock(outputs)])) == 0
    assert len(decode_yolov8(scene(30, seed=1), conf=0.99)) == 0


@pytest.mark.parametrize("with_sum", [False, True])
@pytest.mark.parametrize("seed", [1, 2])
def test_many_detections_match_reference(with_sum, seed):
    outputs = scene(50, seed, with_sum=with_sum, per_object=5)
    det = decode_yolov8(outputs)
    assert len(det) >= 30
    assert_same(det, ref_decode_split(outputs))
    stock = split_to_stock(outputs)
    assert_same(decode_yolov8([stock]), ref_decode_stock(stock))
    assert_same(decode_yolov8([stock]), (det.xyxy, det.confidence, det.class_id))
    assert_same(decode_yolov8([stock.transpose(0, 2, 1)]), ref_decode_stock(stock))
    assert_same(decode_yolov8(nhwc(outputs)), ref_decode_split(outputs))


def test_planted_boxes_are_found_exactly():
    truth = np.array([[10, 20, 60, 90], [200, 200, 400, 330], [500, 40, 630, 600]], np.float32)
    cls, score = np.array([0, 7, 2]), np.array([0.9, 0.6, 0.8])
    outputs = plant_split_head(truth, cls, score, per_object=1)
    for det in (decode_yolov8(outputs), decode_yolov8([split_to_stock(outputs)])):
        order = np.argsort(det.xyxy[:, 0])
        np.testing.assert_allclose(det.xyxy[order], truth, atol=0.05)
        np.testing.assert_array_equal(det.class_id[order], cls)
        np.testing.assert_allclose(det.confidence[order], score, atol=1e-6)


def test_boxes_at_the_borders_map_and_clip():
    truth = np.array(
        [[0, 140, 90, 300], [560, 380, 640, 500], [250, 140, 420, 200], [300, 100, 400, 180]],
        np.float32,
    )  # the last one reaches into the grey border above the frame
    cls, score = np.array([1, 2, 3, 4]), np.array([0.9, 0.8, 0.7, 0.6])
    outputs = plant_split_head(truth, cls, score, seed=3)
    g = letterbox_geometry((720, 1280), (640, 640))
    det = decode_yolov8(outputs, geometry=g)
    xyxy, score, cls = ref_decode_split(outputs)
    assert_same(det, (ref_unletterbox(xyxy, (720, 1280), (640, 640)), score, cls), atol=5e-3)
    top = det[det.confidence == det.confidence[det.class_id == 4].max()]
    np.testing.assert_allclose(top.xyxy, [[600, 0, 800, 80]], atol=0.1)
    assert det.xyxy[:, 0::2].min() >= 0 and det.xyxy[:, 2].max() <= 1280
    assert det.xyxy[:, 1::2].min() >= 0 and det.xyxy[:, 3].max() <= 720


def test_non_square_input_and_source_round_trip():
    g = letterbox_geometry((1080, 1920), (384, 640))
    src = np.array([[30, 40, 330, 700], [900, 500, 1000, 620], [1500, 10, 1900, 1070]], np.float32)
    outputs = plant_split_head(
        letterbox_boxes(src, g),
        np.array([0, 1, 2]),
        np.full(3, 0.8),
        input_hw=(384, 640),
        per_object=1,
    )
    det = decode_yolov8(outputs, geometry=g)
    np.testing.assert_allclose(det.xyxy[np.argsort(det.class_id)], src, atol=0.3)
    xyxy, score, cls = ref_decode_split(outputs, input_hw=(384, 640))
    assert_same(det, (ref_unletterbox(xyxy, (1080, 1920), (384, 640)), score, cls), atol=5e-3)
    stock = split_to_stock(outputs)
    assert_same(decode_yolov8([stock], geometry=g), (det.xyxy, det.confidence, det.class_id))


@pytest.mark.parametrize("dtype", [np.int8, np.uint8])
@pytest.mark.parametrize("with_sum", [False, True])
def test_quantized_split_head_matches_reference(dtype, with_sum):
    q, qp = quantize_outputs(scene(40, seed=4, with_sum=with_sum, per_object=4), dtype)
    det = decode_yolov8(q, quant=qp)
    assert len(det) >= 20
    assert_same(det, ref_decode_split(q, quant=qp))
    assert_same(decode_yolov8(nhwc(q), quant=qp), ref_decode_split(q, quant=qp))


def test_quantized_stock_output_matches_reference():
    stock = split_to_stock(scene(40, seed=4))  # int16: one scale must cover pixels and scores
    [q], [qp] = quantize_outputs([stock], np.int16)
    det = decode_yolov8([q], quant=[qp])
    assert len(det) >= 20
    assert_same(det, ref_decode_stock((q.astype(np.float32) - qp[0]) * np.float32(qp[1])))


def test_score_sum_prefilter_and_output_order_change_nothing():
    outputs = scene(40, seed=5, with_sum=True)
    q, qp = quantize_outputs(outputs)
    with_sum = decode_yolov8(q, quant=qp, conf=0.3)
    keep = [i for i in range(9) if i % 3 != 2]
    assert_same(
        decode_yolov8([q[i] for i in keep], quant=[qp[i] for i in keep], conf=0.3),
        (with_sum.xyxy, with_sum.confidence, with_sum.class_id),
    )
    shuffled = [8, 0, 4, 2, 7, 3, 1, 6, 5]  # boxes, scores and sums in no particular order
    assert_same(
        decode_yolov8([q[i] for i in shuffled], quant=[qp[i] for i in shuffled], conf=0.3),
        (with_sum.xyxy, with_sum.confidence, with_sum.class_id),
    )


def test_classes_filter_and_max_det():
    outputs = scene(60, seed=6, nc=6, per_object=4)
    det = decode_yolov8(outputs, classes=[0, 3])
    assert set(det.class_id.tolist()) == {0, 3}
    assert_same(det, ref_decode_split(outputs, classes=[0, 3]))
    stock = split_to_stock(outputs)
    assert_same(decode_yolov8([stock], classes=[5]), ref_decode_stock(stock, classes=[5]))
    top = decode_yolov8(outputs, max_det=7)
    assert_same(top, ref_decode_split(outputs, max_det=7))
    assert len(top) == 7 and np.all(np.diff(top.confidence) <= 0)


def test_bad_outputs_say_what_is_wrong():
    outputs = scene(3)
    with pytest.raises(ModelError, match="expected 6 or 9"):
        decode_yolov8(outputs[:5])
    with pytest.raises(ModelError, match="do not form 3 strides"):
        decode_yolov8([outputs[0]] * 6)
    q, _ = quantize_outputs(outputs)
    with pytest.raises(ModelError, match="output 0 is int8 but no"):
        decode_yolov8(q)
    with pytest.raises(ModelError, match="not a YOLOv8 output"):
        decode_yolov8([np.zeros((1, 3, 10), np.float32)])


def test_64_class_nhwc_split_head_is_read_as_nhwc():
    """NHWC tensors of a 64-class head group into three (H, C) "grids" when read as NCHW;
    the grids must halve from stride to stride, so the NHWC reading is the one taken."""
    outputs = scene(25, seed=7, nc=64, per_object=3)
    ref = ref_decode_split(outputs)
    assert len(ref[0]) >= 15
    assert_same(decode_yolov8(nhwc(outputs)), ref)
    q, qp = quantize_outputs(outputs)
    assert_same(decode_yolov8(nhwc(q), quant=qp), ref_decode_split(q, quant=qp))


def test_nms_keeps_overlapping_boxes_of_other_classes_at_negative_coordinates():
    """Boxes past the top-left corner (negative input pixels) of different classes at the
    same place are all kept; OpenCV's batched NMS offsets classes by the largest coordinate
    + 1, which is too little when that coordinate is small, and drops two."""
    truth = np.array([[-60, -60, 4, 4], [-60, -60, 4, 4], [-58, -59, 4, 3]], np.float32)
    xywh = np.c_[truth[:, :2], truth[:, 2:] - truth[:, :2]].astype(np.float64)
    score, cls = np.array([0.9, 0.8, 0.7], np.float32), np.array([0, 1, 2], np.int32)
    assert len(cv2.dnn.NMSBoxesBatched(xywh, score, cls, 0.25, 0.45)) < 3  # the trap
    stock = np.zeros((1, 4 + 3, 16), np.float32)  # 13 more anchors score 0
    stock[0, :4, :3] = np.c_[(truth[:, :2] + truth[:, 2:]) / 2, truth[:, 2:] - truth[:, :2]].T
    stock[0, 4 + cls, np.arange(3)] = score
    det = decode_yolov8([stock])
    assert sorted(det.class_id.tolist()) == [0, 1, 2]
    assert_same(det, ref_decode_stock(stock))
