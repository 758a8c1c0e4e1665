"""The shipped default detector finds the synthetic scenes' people and cars.

It runs the way the pipeline runs it (full 640x360 frames letterboxed to 640x640, ONNX Runtime)
on held-out clips of both presets, scored at IoU 0.5. The stated floor is precision and recall
>= 0.85 overall and >= 0.80 per class; models/default_model.json records the full check. The
640x384 variant for 16:9 cameras (``rkpipe export --imgsz 640x384``: the cut ONNX and the
INT8 .rknn with its sidecar) is held to the same floor.
"""

from __future__ import annotations

import argparse
import json
import sys

import pytest

from support.rkpipe import ROOT

MODEL = ROOT / "models" / "rkpipe-yolov8n.onnx"
RECT = ROOT / "models" / "rkpipe-yolov8n-640x384.onnx"
sys.path.insert(0, str(ROOT / "models"))

import check_default  # noqa: E402


def test_default_model_is_the_stock_yolov8n_layout_and_small() -> None:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    assert [i.shape for i in sess.get_inputs()] == [[1, 3, 640, 640]]
    assert [o.shape for o in sess.get_outputs()] == [[1, 84, 8400]]
    assert MODEL.stat().st_size < 15 * 2**20


def test_the_640x384_variant_is_the_cut_head_at_that_size_with_its_rknn() -> None:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(RECT), providers=["CPUExecutionProvider"])
    assert [i.shape for i in sess.get_inputs()] == [[1, 3, 384, 640]]
    want = [[1, c, 384 // s, 640 // s] for s in (8, 16, 32) for c in (64, 80)]
    assert [o.shape for o in sess.get_outputs()] == want
    assert RECT.stat().st_size < 15 * 2**20
    side = json.loads(RECT.with_suffix(".rknn.json").read_text())
    assert side["input"] == {"name": "images", "height": 384, "width": 640, "layout": "nhwc_uint8"}
    assert side["quantization"] == "int8" and side["check"]["passed"]
    assert side["check"]["cut"]["tensors"]["scores"]["max_abs"] == 0.0
    assert side["check"]["simulator"]["boxes"]["recall"] >= 0.95
    assert RECT.with_suffix(".rknn").stat().st_size > 1_000_000


@pytest.mark.slow
@pytest.mark.parametrize("model", [MODEL, RECT], ids=["640x640", "640x384"])
def test_default_model_precision_and_recall_on_held_out_clips(model) -> None:
    args = argparse.Namespace(
        model=model, presets=["easy", "hard"], frames=12, step=9, conf=0.25, min_vis=0.5, threads=2
    )
    res = check_default.run(args)
    print(json.dumps(res, indent=1))
    assert res["objects"] >= 100
    assert res["precision"] >= 0.85 and res["recall"] >= 0.85, res
    for name in ("person", "car"):
        assert res[name]["precision"] >= 0.80 and res[name]["recall"] >= 0.80, (name, res[name])
