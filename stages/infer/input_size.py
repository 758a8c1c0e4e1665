"""A model's input size, read without loading it for inference: what letterbox's
``size = "model"`` takes, so a graph and its model cannot disagree.

ONNX: the image input's static shape, NCHW or NHWC (ONNX Runtime opens the file with every
optimisation off: a tenth of a second). RKNN: the sidecar ``rkpipe export`` writes beside the
.rknn (the model file itself is only readable on the board). Sim: ``sim:NAME-WxH`` (e.g.
``sim:yolov8n-640x384``); a plain ``sim:NAME`` takes any size.
"""

from __future__ import annotations

import re
from functools import lru_cache
from pathlib import Path

from stages.infer.rknn_sidecar import read_sidecar

__all__ = ["SIM_SIZE", "model_input_size", "onnx_input_size", "sim_input_size"]

SIM_SIZE = re.compile(r"-(\d+)x(\d+)$")


def sim_input_size(model: str) -> tuple[int, int] | None:
    """(width, height) from a ``sim:NAME-WxH`` name, else None."""
    m = SIM_SIZE.search(model)
    return (int(m.group(1)), int(m.group(2))) if m else None


def _image_wh(shape: list) -> tuple[int, int] | None:
    """(width, height) of a static (1, 3, H, W) or (1, H, W, 3) input shape."""
    if len(shape) != 4 or not all(isinstance(d, int) for d in shape):
        return None
    if shape[1] == 3:
        return shape[3], shape[2]
    if shape[3] == 3:
        return shape[2], shape[1]
    return None


@lru_cache(maxsize=32)
def _onnx_size(path: str, mtime_ns: int) -> tuple[int, int] | None:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    opts.log_severity_level = 3
    try:
        session = ort.InferenceSession(path, sess_options=opts, providers=["CPUExecutionProvider"])
    except Exception:  # not a readable model: the infer stage's setup says so, clearly
        return None
    inputs = session.get_inputs()
    return _image_wh(list(inputs[0].shape)) if len(inputs) == 1 else None


def onnx_input_size(path: Path) -> tuple[int, int] | None:
    """(width, height) of the ONNX model's single static image input, else None."""
    try:
        mtime = path.stat().st_mtime_ns
    except OSError:
        return None
    return _onnx_size(str(path), mtime)


def model_input_size(model: str, backend: str, path: Path) -> tuple[int, int] | None:
    """(width, height) the model takes, for ``backend`` ("onnx", "rknn", "sim"); None
    when the model does not fix one or cannot be read here."""
    if backend == "sim":
        return sim_input_size(model)
    if backend == "onnx":
        return onnx_input_size(path)
    side = read_sidecar(path)
    image = side.get("input") if side else None
    if isinstance(image, dict):
        w, h = image.get("width"), image.get("height")
        if isinstance(w, int) and isinstance(h, int):
            return w, h
    return None
