"""The export's judgement, piece by piece: tensor figures, the simulator check's rules,
labels beside calibration images, and the parsing of the toolkit's accuracy analysis."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from pipeline.detections import Detections
from stages.infer.rknn_export.build_rknn import parse_analysis, worst_layers
from stages.infer.rknn_export.calibration import UsageError, write_calibration
from stages.infer.rknn_export.checks import SimCheck, uncapped_agreement
from stages.infer.rknn_export.labels import read_labels
from stages.infer.rknn_export.tensors import OutputAgreement, compare_outputs, cosine
from stages.infer.rknn_export.verify import agreement


def test_cosine_and_output_figures():
    a = np.array([[1.0, 2.0], [3.0, 4.0]], np.float32)
    assert cosine(a, 2 * a) == pytest.approx(1.0)
    assert cosine(a, -a) == pytest.approx(-1.0)
    assert cosine(np.zeros(3), np.zeros(3)) == 1.0  # nothing on either side agrees
    assert cosine(np.zeros(3), np.ones(3)) == 0.0
    refs = [[a, a[0]], [a + 1, a[1]]]
    cands = [[a, a[0] + 0.5], [a + 1, a[1]]]
    box, cls = compare_outputs(refs, cands, ["box8", "cls8"])
    assert (box.cosine, box.max_abs, box.ref_max) == (pytest.approx(1.0), 0.0, 5.0)
    assert cls.max_abs == 0.5 and cls.cosine < 1.0
    with pytest.raises(Exception, match="shapes differ"):
        compare_outputs([[a]], [[a.T.reshape(1, 4)]], ["box8"])


def _check(box_cos: float, cls_cos: float, cls_max_abs: float, ref: int, matched: int) -> SimCheck:
    outputs = [
        OutputAgreement("box8", box_cos, 1.0, 10.0),
        OutputAgreement("cls8", cls_cos, cls_max_abs, 1.0),
    ]
    boxes = agreement(
        [Detections(np.tile([[0, 0, 10, 10]], (ref, 1)), np.ones(ref), np.zeros(ref))],
        [Detections(np.tile([[0, 0, 10, 10]], (matched, 1)), np.ones(matched), np.zeros(matched))],
    )
    return SimCheck(outputs, boxes, 0.25, None)


def test_sim_check_judges_cosine_score_slack_and_recall():
    assert _check(0.999, 0.999, 0.3, 10, 10).failures(0.98, 0.9) == []
    # class scores near zero everywhere: cosine means nothing, the scores barely move
    assert _check(0.999, 0.0, 0.01, 0, 0).failures(0.98, 0.9) == []
    bad = _check(0.95, 0.5, 0.6, 10, 8).failures(0.98, 0.9)
    assert bad == [
        "box8: cosine 0.9500 < --min-cosine 0.98",
        "cls8: cosine 0.5000 < --min-cosine 0.98",
        "boxes: recall 0.800 < --min-recall 0.9 (8/10 float boxes found)",
    ]
    # no float boxes: recall is not judged; the tensors are
    assert _check(0.999, 0.999, 0.3, 0, 3).failures(0.98, 0.9) == []


def test_images_where_a_model_reaches_max_det_are_left_out_of_box_agreement():
    """300 boxes (the decoder's cap) are the top of many near-equal scores: which ones make
    it is decided by differences far below what matters, so such images are not matched."""
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 600, (300, 2))
    crowd = Detections(np.c_[xy, xy + 30], rng.uniform(0.3, 0.31, 300), np.zeros(300))
    other = Detections(np.c_[xy + 20, xy + 50], rng.uniform(0.3, 0.31, 300), np.zeros(300))
    one = Detections(np.array([[0, 0, 10, 10]]), np.ones(1), np.zeros(1))
    boxes, capped = uncapped_agreement([crowd, one], [other, one])
    assert capped == 1 and (boxes.images, boxes.reference, boxes.recall) == (1, 1, 1.0)


def test_labels_beside_images_and_in_ultralytics_layout(tmp_path):
    flat, nested = tmp_path / "flat", tmp_path / "set" / "images"
    nested.mkdir(parents=True)
    flat.mkdir()
    (tmp_path / "set" / "labels").mkdir()
    frame = np.full((360, 640, 3), 90, np.uint8)
    for folder in (flat, nested):
        cv2.imwrite(str(folder / "a.jpg"), frame)
        cv2.imwrite(str(folder / "b.jpg"), frame)  # no labels: left out
    (flat / "a.txt").write_text("1 0.5 0.5 0.25 0.5\n\n0 0.1 0.2 0.1 0.2\n")
    (tmp_path / "set" / "labels" / "a.txt").write_text("1 0.5 0.5 0.25 0.5\n")
    calib = write_calibration(tmp_path / "work", (640, 640), flat, 10)
    assert [f.name for f in calib.files] == ["a.jpg", "b.jpg"]
    gt = read_labels(calib.files[0], calib.geometries[0], num_classes=2)
    assert gt is not None and gt.class_id.tolist() == [1, 0]
    # a 640x360 frame sits in a 640x640 input 140 px down
    np.testing.assert_allclose(gt.xyxy[0], [240, 230, 400, 410], atol=1e-3)
    assert read_labels(calib.files[1], calib.geometries[1], 2) is None
    nested_set = write_calibration(tmp_path / "work2", (640, 640), nested, 10)
    other = read_labels(nested_set.files[0], nested_set.geometries[0], 2)
    assert other is not None and other.class_id.tolist() == [1]
    (flat / "a.txt").write_text("1 0.5 0.5 0.25 0.5\n7 0.5 0.5 0.1 0.1\n")
    with pytest.raises(UsageError, match=r"a\.txt:2: expected 'class cx cy w h' \(class 0-1"):
        read_labels(calib.files[0], calib.geometries[0], 2)


ANALYSIS = """\
# simulator_error: calculate the output error of each layer of the simulator
layer_name                              simulator_error
                                    entire              single
                                 cos      euc        cos      euc
---------------------------------------------------------------------
[Input] images                     1.00000 | 0.00000   1.00000 | 0.00000
[Conv] /model.0/conv/Conv_output_0 0.99995 | 12.23502  0.99995 | \x1b[1;33m12.23502\x1b[0m
[exSwish] /model.0/act/Mul_output_0 0.99186 | 20.38046  0.97982 | 17.16922
[Conv] cls8_logits
[Sigmoid] cls32_int8  \x1b[1;31m q_zero\x1b[0m | \x1b[1;31m q_zero\x1b[0m   q_zero | q_zero
[exDataConvert] box8               0.99987 | 33.55048  0.99996 | 18.43359
"""


def test_accuracy_analysis_table_is_parsed_and_worst_layers_chosen():
    rows = {r["layer"]: r for r in parse_analysis(ANALYSIS)}
    assert list(rows) == [
        "images",
        "/model.0/conv/Conv_output_0",
        "/model.0/act/Mul_output_0",
        "cls8_logits",
        "cls32_int8",
        "box8",
    ]
    assert rows["/model.0/act/Mul_output_0"] == {
        "op": "exSwish",
        "layer": "/model.0/act/Mul_output_0",
        "entire": 0.99186,
        "single": 0.97982,
    }
    assert rows["/model.0/conv/Conv_output_0"]["single"] == 0.99995  # colour codes stripped
    assert rows["cls8_logits"]["single"] is None and rows["cls32_int8"]["entire"] is None
    allowed = {"/model.0/conv/Conv_output_0", "/model.0/act/Mul_output_0", "cls32_int8"}
    chosen = worst_layers(parse_analysis(ANALYSIS), allowed, 1)
    assert [r["layer"] for r in chosen] == ["/model.0/act/Mul_output_0"]
