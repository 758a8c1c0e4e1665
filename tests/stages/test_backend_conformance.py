"""One conformance suite for every inference backend this machine has.

Each backend runs the same chain the graphs use (letterbox -> infer -> yolov8_decode) on
built-in scene frames and must: take the letterbox layout it is meant for, drop the input
tensor, attach outputs the decoder reads (stock or split head), time its calls, give the
same outputs for the same input, and reject a wrong tensor with a clear error. Real
detectors (onnx, rknn) must also find the scene's people and cars. The rknn backend needs an
RK3588 (rknn-toolkit-lite2 and librknnrt): off the board it is skipped with that reason, and
on a board ``pytest -m board`` runs it.
"""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest

from pipeline.errors import RkpipeError
from pipeline.messages import Message
from pipeline.stage import Context
from stages.infer import Infer
from stages.letterbox.stage import Letterbox
from stages.synthetic import Scene
from stages.yolov8_decode.stage import YoloV8Decode
from support.rkpipe import ROOT


def _rknn_missing() -> str | None:
    if importlib.util.find_spec("rknnlite") is None:
        return "needs an RK3588 board with rknn-toolkit-lite2 and librknnrt (pytest -m board)"
    return None


BACKENDS = [
    pytest.param("onnx", "models/rkpipe-yolov8n.onnx", "nchw_float", True, id="onnx"),
    pytest.param("sim", "sim:yolov8n", "nhwc_uint8", False, id="sim-split"),
    pytest.param(
        "rknn",
        "models/rkpipe-yolov8n.rknn",
        "nhwc_uint8",
        True,
        id="rknn",
        marks=[
            pytest.mark.board,
            pytest.mark.skipif(_rknn_missing() is not None, reason=str(_rknn_missing())),
        ],
    ),
]


def _chain(backend: str, model: str, layout: str) -> tuple[Letterbox, Infer, YoloV8Decode]:
    ctx = Context(stage="conformance", graph_dir=ROOT)
    extra = {"sim_ms": 1, "sim_layout": "split"} if backend == "sim" else {}
    stages = (
        Letterbox(layout=layout),
        Infer(model=model, backend=backend, **extra),
        YoloV8Decode(conf=0.3, classes=["person", "car"]),
    )
    for s in stages:
        s.setup(ctx)
    return stages


def _frame_msg(scene: Scene, i: int) -> Message:
    return Message("cam0", i, i - 1, arrays={"frame": scene.render(i)})


@pytest.mark.parametrize(("backend", "model", "layout", "detector"), BACKENDS)
def test_backend_conformance(backend: str, model: str, layout: str, detector: bool) -> None:
    pre, infer, post = _chain(backend, model, layout)
    scene = Scene("easy", seed=0)  # 8 or more objects in view on each frame used
    try:
        found = wanted = 0
        for i in (0, 40, 80):
            msg = pre.process(_frame_msg(scene, i))
            assert msg is not None
            tensor = msg.arrays["tensor"].copy()
            msg = infer.process(msg)
            assert "tensor" not in msg.arrays, "the input is not shipped on"
            outs = sorted(k for k in msg.arrays if k.startswith("out."))
            assert outs and msg.meta["infer_ms"] > 0
            assert all(msg.arrays[k].dtype in (np.float32, np.int8) for k in outs)
            first = [msg.arrays[k].copy() for k in outs]
            again = infer.process(Message("cam0", i, i - 1, arrays={"tensor": tensor}))
            for a, b in zip(first, [again.arrays[k] for k in outs], strict=True):
                np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)  # same input, same out
            msg = post.process(msg)
            det = msg.detections
            assert det is not None and det.xyxy.dtype == np.float32
            assert det.xyxy.shape == (len(det), 4) and not any(k in msg.arrays for k in outs)
            assert set(det.class_id.tolist()) <= {0, 2}
            if detector:
                truth = scene.truth(i)
                seen = truth.visibility >= 0.6
                wanted += int(seen.sum())
                found += _matched(det.xyxy, det.class_id, truth.xyxy[seen], truth.class_id[seen])
        if detector:
            assert wanted > 5 and found / wanted >= 0.8, (found, wanted)
        wrong = np.zeros((1, 3, 32, 32), np.float32) if layout == "nchw_float" else None
        if wrong is not None:
            with pytest.raises(RkpipeError, match="check the preprocess stage"):
                infer.process(Message("cam0", 99, 98, arrays={"tensor": wrong}))
    finally:
        for s in (pre, infer, post):
            s.close()


def _matched(boxes: np.ndarray, cls: np.ndarray, gt: np.ndarray, gt_cls: np.ndarray) -> int:
    """Ground-truth boxes matched by a same-class detection at IoU >= 0.5 (greedy)."""
    used = np.zeros(len(boxes), bool)
    hits = 0
    for g, c in zip(gt.astype(np.float32), gt_cls, strict=True):
        lt = np.maximum(boxes[:, :2], g[:2])
        rb = np.minimum(boxes[:, 2:], g[2:])
        inter = np.prod(np.clip(rb - lt, 0, None), axis=1)
        union = np.prod(boxes[:, 2:] - boxes[:, :2], axis=1) + np.prod(g[2:] - g[:2]) - inter
        iou = np.where((cls == c) & ~used, inter / np.maximum(union, 1e-9), 0)
        if len(iou) and iou.max() >= 0.5:
            used[int(iou.argmax())] = True
            hits += 1
    return hits
