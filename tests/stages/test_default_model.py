"""The shipped default detector finds the synthetic scenes' people and cars.

It runs the way the pipeline runs it (full 640x360 frames letterboxed to 640x640, ONNX Runtime)
on held-out clips of both presets, scored at IoU 0.5. The stated floor is precision and recall
>= 0.85 overall and >= 0.80 per class; models/default_model.json records the full check.
"""

from __future__ import annotations

import argparse
import json
import sys

import pytest

from support.rkpipe import ROOT

MODEL = ROOT / "models" / "rkpipe-yolov8n.onnx"
sys.path.insert(0, str(ROOT / "models"))

import check_default  # noqa: E402


def test_default_model_is_the_stock_yolov8n_layout_and_small() -> None:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(MODEL), providers=["CPUExecutionProvider"])
    assert [i.shape for i in sess.get_inputs()] == [[1, 3, 640, 640]]
    assert [o.shape for o in sess.get_outputs()] == [[1, 84, 8400]]
    assert MODEL.stat().st_size < 15 * 2**20


@pytest.mark.slow
def test_default_model_precision_and_recall_on_held_out_clips() -> None:
    args = argparse.Namespace(
        model=MODEL, presets=["easy", "hard"], frames=12, step=9, conf=0.25, min_vis=0.5, threads=2
    )
    res = check_default.run(args)
    print(json.dumps(res, indent=1))
    assert res["objects"] >= 100
    assert res["precision"] >= 0.85 and res["recall"] >= 0.85, res
    for name in ("person", "car"):
        assert res[name]["precision"] >= 0.80 and res[name]["recall"] >= 0.80, (name, res[name])
