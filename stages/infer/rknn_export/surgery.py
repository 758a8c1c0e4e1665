"""Cut a stock Ultralytics YOLOv8 / YOLO11 detect ONNX at its head convolutions.

rknn-toolkit2 cannot build the stock tail (distribution-focal decode, concat, sigmoid), and the
NPU gains nothing from it, so the model ends at the per-stride head convolutions: a 64-channel
box distribution and the class logits (a Sigmoid added), strides 8, 16, 32. Heads are found by
structure, not by node name: the last convolution of each branch whose output is a stride-8,
16 or 32 grid and that feeds no further grid convolution.
"""

from __future__ import annotations

import ast
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pipeline.errors import ModelError

__all__ = [
    "BOX_CHANNELS",
    "HeadCut",
    "class_names",
    "cut_heads",
    "input_size_of",
    "load_onnx",
    "require_onnx",
]

BOX_CHANNELS = 64  # 4 sides x 16 distribution bins
STRIDES = (8, 16, 32)
ONNX_HINT = "pip install 'onnx>=1.14' (or: pip install 'rkpipe[export]')"


def require_onnx() -> Any:
    """The ``onnx`` module, or a ModelError that says how to install it."""
    try:
        import onnx
    except ImportError:
        msg = f"rkpipe export needs the onnx package: {ONNX_HINT}"
        raise ModelError(msg) from None
    return onnx


def load_onnx(path: Path) -> Any:
    """Load an ONNX model, with one clear error for a missing or unreadable file."""
    onnx = require_onnx()
    if not path.is_file():
        what = "is not a file" if path.exists() else "not found"
        raise ModelError(f"model {path} {what}")
    try:
        return onnx.load(str(path))
    except Exception as exc:  # protobuf DecodeError and friends
        msg = f"{path} is not a readable ONNX model ({type(exc).__name__}: {exc})"
        raise ModelError(msg) from None


@dataclass(frozen=True)
class HeadCut:
    """What the cut found: input size, classes, and the output names per stride (box, cls)."""

    input_name: str
    input_hw: tuple[int, int]
    num_classes: int
    outputs: tuple[str, ...]  # box8, cls8, box16, cls16, box32, cls32
    names: tuple[str, ...]  # class names from the model's metadata, else "0", "1", ...


def input_size_of(model: Any, where: str = "model") -> tuple[str, tuple[int, int]]:
    """The single image input's name and static (height, width)."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        names = [i.name for i in inputs]
        msg = f"{where}: expected one image input, found {len(inputs)} {names}"
        raise ModelError(msg)
    dims = inputs[0].type.tensor_type.shape.dim
    shape = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    if len(shape) != 4 or shape[1] != 3 or shape[2] is None or shape[3] is None:
        msg = (
            f"{where}: input {inputs[0].name!r} has shape {shape}; expected a static "
            "(1, 3, H, W) image input (export with a fixed imgsz)"
        )
        raise ModelError(msg)
    return inputs[0].name, (int(shape[2]), int(shape[3]))


def class_names(model: Any, num_classes: int) -> tuple[str, ...]:
    """Class names from the ``names`` metadata Ultralytics writes ({0: 'person', ...}), when
    it is there and lists every class; else the class ids as text."""
    meta = {p.key: p.value for p in model.metadata_props}
    try:
        names = ast.literal_eval(meta.get("names", ""))
    except (ValueError, SyntaxError):
        names = None
    if isinstance(names, dict) and set(names) == set(range(num_classes)):
        return tuple(str(names[i]) for i in range(num_classes))
    return tuple(str(i) for i in range(num_classes))


def _shapes(model: Any) -> dict[str, list[int | None]]:
    """Every tensor's inferred shape (dims as ints, None where unknown)."""
    import onnx

    try:
        inferred = onnx.shape_inference.infer_shapes(model)
    except Exception as exc:
        raise ModelError(f"ONNX shape inference failed on this model: {exc}") from None
    out: dict[str, list[int | None]] = {}
    g = inferred.graph
    for vi in [*g.value_info, *g.output, *g.input]:
        dims = vi.type.tensor_type.shape.dim
        out[vi.name] = [d.dim_value if d.HasField("dim_value") else None for d in dims]
    return out


def _grid_convs(model: Any, hw: tuple[int, int]) -> dict[str, int]:
    """Conv nodes (by output name) whose output is a (1, C, H/s, W/s) grid -> that stride."""
    shapes = _shapes(model)
    grids = {(hw[0] // s, hw[1] // s): s for s in STRIDES}
    found = {}
    for node in model.graph.node:
        if node.op_type != "Conv":
            continue
        shape = shapes.get(node.output[0], [])
        hw_s = (shape[2], shape[3]) if len(shape) == 4 else None
        if hw_s in grids:
            found[node.output[0]] = grids[hw_s]
    return found


def _consumers(nodes: Iterable[Any]) -> dict[str, list[Any]]:
    """Tensor name -> the nodes that read it."""
    users: dict[str, list[Any]] = {}
    for node in nodes:
        for name in node.input:
            users.setdefault(name, []).append(node)
    return users


def _reaches(model: Any, targets: set[str], stop: set[str] | None = None) -> dict[str, bool]:
    """For each tensor: does some path downstream reach a node producing one of ``targets``?
    Paths end at nodes whose op type is in ``stop``."""
    stop = stop or set()
    users = _consumers(model.graph.node)
    memo: dict[str, bool] = {}
    for node in reversed(model.graph.node):  # nodes are stored in topological order
        for out in node.output:
            memo[out] = any(
                u.output[0] in targets or (u.op_type not in stop and memo.get(u.output[0], False))
                for u in users.get(out, [])
            )
    return memo


def _find_heads(model: Any, hw: tuple[int, int], where: str) -> list[tuple[str, str, int]]:
    """(box conv output, class conv output, stride) for strides 8, 16, 32."""
    grid = _grid_convs(model, hw)
    feeds_grid = _reaches(model, set(grid))
    heads = [name for name in grid if not feeds_grid.get(name, False)]
    by_stride: dict[int, list[str]] = {s: [] for s in STRIDES}
    for name in heads:
        by_stride[grid[name]].append(name)
    channels = _channels(model)
    to_softmax = _reaches(model, _outputs_of(model, "Softmax"), stop={"Sigmoid"})
    out = []
    for stride, names in by_stride.items():
        if len(names) != 2:
            found = ", ".join(f"{n} ({channels.get(n)} ch)" for n in names) or "none"
            msg = (
                f"{where}: not a YOLOv8 detection head: expected 2 final convolutions at "
                f"stride {stride} (box distribution + class scores), found {found}"
            )
            raise ModelError(msg)
        out.append((*_box_first(names, channels, to_softmax, stride, where), stride))
    return out


def _outputs_of(model: Any, op_type: str) -> set[str]:
    return {n.output[0] for n in model.graph.node if n.op_type == op_type}


def _channels(model: Any) -> dict[str, int]:
    """Conv output name -> output channels, read from the weight initializer."""
    weights = {t.name: list(t.dims) for t in model.graph.initializer}
    return {
        n.output[0]: weights[n.input[1]][0]
        for n in model.graph.node
        if n.op_type == "Conv" and n.input[1] in weights
    }


def _box_first(
    names: list[str], channels: dict[str, int], to_softmax: dict[str, bool], stride: int, where: str
) -> tuple[str, str]:
    """Order a stride's two head convs as (box, cls): the box one has 64 channels; if both
    do (64 classes), the one that reaches the distribution Softmax; else the first."""
    a, b = names
    ca, cb = channels.get(a), channels.get(b)
    if BOX_CHANNELS not in (ca, cb):
        msg = (
            f"{where}: not a YOLOv8 detection head: no {BOX_CHANNELS}-channel box "
            f"distribution at stride {stride} (convolutions of {ca} and {cb} channels)"
        )
        raise ModelError(msg)
    if ca != cb:
        return (a, b) if ca == BOX_CHANNELS else (b, a)
    if to_softmax.get(b) and not to_softmax.get(a):
        return b, a
    return a, b


def _prune(graph: Any, outputs: Sequence[str]) -> None:
    """Drop the nodes, initializers and value infos that ``outputs`` do not need."""
    producer = {out: node for node in graph.node for out in node.output}
    needed, stack = set(), list(outputs)
    while stack:
        name = stack.pop()
        node = producer.get(name)
        if node is None or id(node) in needed:
            continue
        needed.add(id(node))
        stack.extend(i for i in node.input if i)
    keep = [n for n in graph.node if id(n) in needed]
    used = {i for n in keep for i in n.input}
    inits = [t for t in graph.initializer if t.name in used]
    del graph.node[:]
    graph.node.extend(keep)
    del graph.initializer[:]
    graph.initializer.extend(inits)
    del graph.value_info[:]


def cut_heads(model: Any, where: str = "model") -> tuple[Any, HeadCut]:
    """A copy of ``model`` ending at the six head outputs (box, sigmoid cls per stride)."""
    import onnx
    from onnx import TensorProto, helper

    input_name, hw = input_size_of(model, where)
    if hw[0] % 32 or hw[1] % 32:
        msg = f"{where}: input size {hw[1]}x{hw[0]} is not a multiple of 32"
        raise ModelError(msg)
    heads = _find_heads(model, hw, where)
    channels = _channels(model)
    ncs = {channels[cls] for _, cls, _ in heads}
    if len(ncs) != 1:
        msg = f"{where}: class-score convolutions disagree on the number of classes: {ncs}"
        raise ModelError(msg)
    nc = ncs.pop()
    cut = onnx.ModelProto()
    cut.CopyFrom(model)
    g = cut.graph
    producer = {n.output[0]: n for n in g.node}
    names, outputs = [], []
    for box, cls, s in heads:
        producer[box].output[0] = f"box{s}"
        producer[cls].output[0] = f"cls{s}_logits"
        g.node.append(helper.make_node("Sigmoid", [f"cls{s}_logits"], [f"cls{s}"], f"cls{s}_sig"))
        h, w = hw[0] // s, hw[1] // s
        for name, c in ((f"box{s}", BOX_CHANNELS), (f"cls{s}", nc)):
            names.append(name)
            outputs.append(helper.make_tensor_value_info(name, TensorProto.FLOAT, [1, c, h, w]))
    del g.output[:]
    g.output.extend(outputs)
    _prune(g, names)
    onnx.checker.check_model(cut)
    return cut, HeadCut(input_name, hw, nc, tuple(names), class_names(model, nc))
