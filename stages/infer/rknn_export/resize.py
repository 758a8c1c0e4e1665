"""Give a stock YOLOv8 / YOLO11 detect ONNX another input size, e.g. 640x384 for 16:9 cameras.

The network is fully convolutional up to its head convolutions, and its upsampling Resize
nodes take scales, so only the input shape and a few constants depend on the size: the stock
tail's anchor grid and per-anchor strides (float tensors over the N anchors), and the target
shapes of reshapes that name a grid: N, one stride's h*w (YOLO11's attention flattens the
stride-32 map) or its (h, w) as the last two dims (and unflattens it). Those are recomputed
for the new grid; any other float constant over N, or a Resize to fixed sizes, is refused
rather than guessed at. The result is the model
Ultralytics would export at that ``imgsz`` with the same weights, so the cut check can hold
the cut to it element by element.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from pipeline.errors import ModelError
from stages.infer.rknn_export.surgery import STRIDES, input_size_of

__all__ = ["anchor_count", "parse_imgsz", "resize_input"]


def parse_imgsz(text: str) -> tuple[int, int]:
    """``"640x384"`` (width x height) or ``"640"`` (square) -> (height, width); ValueError
    for anything else, or a side that is not a positive multiple of 32."""
    parts = text.lower().split("x")
    if len(parts) not in (1, 2) or not all(p.strip().isdigit() for p in parts):
        raise ValueError(f"--imgsz {text!r}: expected WIDTHxHEIGHT (e.g. 640x384) or one size")
    w = int(parts[0])
    h = int(parts[-1])
    if min(w, h) <= 0 or w % 32 or h % 32:
        raise ValueError(f"--imgsz {text}: both sides must be positive multiples of 32")
    return h, w


def anchor_count(hw: tuple[int, int]) -> int:
    """Anchors of a stride-8/16/32 head at input (height, width)."""
    return sum((hw[0] // s) * (hw[1] // s) for s in STRIDES)


def _rows(hw: tuple[int, int]) -> dict[str, np.ndarray]:
    """The per-anchor rows a stock tail may hold as constants, by kind: anchor centres in
    grid units (x, y), strides, and centres in pixels."""
    xs, ys, ss = [], [], []
    for s in STRIDES:
        gx, gy = np.meshgrid(np.arange(hw[1] // s) + 0.5, np.arange(hw[0] // s) + 0.5)
        xs.append(gx.ravel())
        ys.append(gy.ravel())
        ss.append(np.full(gx.size, float(s)))
    x, y, st = np.concatenate(xs), np.concatenate(ys), np.concatenate(ss)
    return {"x": x, "y": y, "stride": st, "x_px": x * st, "y_px": y * st}


def _regrid(
    values: np.ndarray, old: dict[str, np.ndarray], new: dict[str, np.ndarray], n_old: int
) -> np.ndarray | None:
    """``values`` (last axis over the anchors) with every row recomputed for the new grid,
    or None when a row is not one of the known per-anchor rows."""
    flat = values.reshape(-1, n_old).astype(np.float64)
    out = []
    for row in flat:
        kind = next((k for k, r in old.items() if np.allclose(row, r, atol=1e-4)), None)
        if kind is None:
            return None
        out.append(new[kind])
    n_new = len(next(iter(new.values())))
    return np.stack(out).reshape(*values.shape[:-1], n_new).astype(values.dtype)


def _reshape_target(values: np.ndarray, old: tuple[int, int], new: tuple[int, int]) -> np.ndarray:
    """A reshape's target shape for the new input: the anchor count, a stride's flattened
    grid h*w, and a trailing (h, w) grid, each redone for that stride at the new size."""
    out = values.copy()
    grids = [((old[0] // s, old[1] // s), (new[0] // s, new[1] // s)) for s in STRIDES]
    if len(out) >= 3:
        for (oh, ow), (nh, nw) in grids:
            if (out[-2], out[-1]) == (oh, ow):
                out[-2:] = (nh, nw)
                return out
    flat = {oh * ow: nh * nw for (oh, ow), (nh, nw) in grids}
    flat[anchor_count(old)] = anchor_count(new)
    return np.array([flat.get(int(v), int(v)) if v > 1 else v for v in out], values.dtype)


def _tensors(model: Any) -> list[tuple[str, Any, Callable[[Any], None]]]:
    """Every constant tensor (initializers and Constant nodes' values): the name the graph
    reads it by, the tensor, and a setter."""
    found: list[tuple[str, Any, Callable[[Any], None]]] = []
    for init in model.graph.initializer:
        found.append((init.name, init, init.CopyFrom))
    for node in model.graph.node:
        if node.op_type != "Constant":
            continue
        for attr in node.attribute:
            if attr.name == "value":
                found.append((node.output[0], attr.t, attr.t.CopyFrom))
    return found


def resize_input(model: Any, hw: tuple[int, int], where: str = "model") -> Any:
    """A copy of ``model`` taking (1, 3, hw[0], hw[1]); the model itself when it already does."""
    import onnx
    from onnx import numpy_helper

    input_name, old_hw = input_size_of(model, where)
    if hw == old_hw:
        return model
    for node in model.graph.node:
        if node.op_type == "Resize" and len(node.input) > 3 and node.input[3]:
            msg = (
                f"{where}: Resize node {node.name or node.output[0]!r} scales to fixed sizes, "
                f"so the model cannot take {hw[1]}x{hw[0]}: export it at that size instead "
                f"(`yolo export ... imgsz={hw[0]},{hw[1]}`)"
            )
            raise ModelError(msg)
    n_old, n_new = anchor_count(old_hw), anchor_count(hw)
    old_rows, new_rows = _rows(old_hw), _rows(hw)
    out = onnx.ModelProto()
    out.CopyFrom(model)
    shapes = {n.input[1] for n in out.graph.node if n.op_type == "Reshape"}
    for name, tensor, replace in _tensors(out):
        if n_old not in tensor.dims and name not in shapes:
            continue
        values = numpy_helper.to_array(tensor)
        if name in shapes and values.dtype == np.int64 and values.ndim == 1:
            replace(numpy_helper.from_array(_reshape_target(values, old_hw, hw), tensor.name))
            continue
        if values.ndim == 0 or values.shape[-1] != n_old:
            continue
        regridded = _regrid(values, old_rows, new_rows, n_old) if values.dtype.kind == "f" else None
        if regridded is None:
            msg = (
                f"{where}: constant {name!r} {list(values.shape)} runs over the "
                f"{n_old} anchors but is not the anchor grid or the strides, so it cannot be "
                f"redone for {hw[1]}x{hw[0]}: export the model at that size instead"
            )
            raise ModelError(msg)
        replace(numpy_helper.from_array(regridded, tensor.name))
    graph = out.graph
    image = next(i for i in graph.input if i.name == input_name)
    dims = image.type.tensor_type.shape.dim
    dims[2].dim_value, dims[3].dim_value = hw
    for output in graph.output:
        for d in output.type.tensor_type.shape.dim:
            if d.HasField("dim_value") and d.dim_value == n_old:
                d.dim_value = n_new
    del graph.value_info[:]
    try:
        out = onnx.shape_inference.infer_shapes(out, strict_mode=True)
        onnx.checker.check_model(out)
    except Exception as exc:
        msg = f"{where}: the model does not take {hw[1]}x{hw[0]} ({type(exc).__name__}: {exc})"
        raise ModelError(msg) from None
    return out
