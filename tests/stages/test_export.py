"""rkpipe export: head surgery and the cut check (fast, ONNX Runtime only), on a tiny
YOLOv8-shaped model built here and on the default model; the command line's errors.
The builds with rknn-toolkit2 are in test_export_build.py, stock Ultralytics models in
test_export_stock.py.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from pipeline.detections import Detections
from pipeline.errors import ModelError
from stages.infer.rknn_export.calibration import letterbox_rgb, scene_frames
from stages.infer.rknn_export.checks import check_cut
from stages.infer.rknn_export.resize import (
    _reshape_target,
    anchor_count,
    parse_imgsz,
    resize_input,
)
from stages.infer.rknn_export.surgery import cut_heads, input_size_of, load_onnx
from stages.infer.rknn_export.toolkit_env import SETUP_COMMAND
from stages.infer.rknn_export.verify import agreement, decode_all, onnx_outputs
from stages.letterbox.geometry import letterbox_geometry, unletterbox_boxes
from stages.yolov8_decode.heads import split_heads
from support.rkpipe import ROOT, run_rkpipe

DEFAULT_MODEL = ROOT / "models" / "rkpipe-yolov8n.onnx"
SPLIT_NAMES = ("box8", "cls8", "box16", "cls16", "box32", "cls32")


class TinyYolo:
    """A YOLOv8-shaped detection ONNX small enough to build in milliseconds: three strided
    convs down to strides 8/16/32, per stride a box branch (64 ch) and a class branch (nc ch),
    and the stock tail (DFL softmax, dist2bbox, sigmoid, concat) -> (1, 4 + nc, N)."""

    def __init__(
        self, size: int | tuple[int, int] = 96, nc: int = 3, layout: str = "split", seed: int = 0
    ):
        self.hw = size if isinstance(size, tuple) else (size, size)  # (height, width)
        self.nc, self.layout = nc, layout
        self.rng = np.random.default_rng(seed)
        self.nodes: list = []
        self.inits: list = []
        self.n = 0

    def _name(self, what: str) -> str:
        self.n += 1
        return f"/model.{self.n}/{what}"

    def const(self, value: np.ndarray) -> str:
        name = self._name("const")
        self.inits.append(numpy_helper.from_array(np.asarray(value), name))
        return name

    def op(self, op_type: str, inputs: list[str], **attrs) -> str:
        out = self._name(op_type)
        self.nodes.append(helper.make_node(op_type, inputs, [out], out + "_node", **attrs))
        return out

    def conv(
        self,
        x: str,
        cin: int,
        cout: int,
        k: int = 3,
        s: int = 1,
        act: bool = True,
        bias: float = 0.0,
    ) -> str:
        w = self.const(
            (self.rng.normal(0, 0.6 / np.sqrt(cin * k * k), (cout, cin, k, k))).astype(np.float32)
        )
        b = self.const(
            np.full(cout, bias, np.float32) + self.rng.normal(0, 0.5, cout).astype(np.float32)
        )
        y = self.op("Conv", [x, w, b], kernel_shape=[k, k], strides=[s, s], pads=[k // 2] * 4)
        return self.op("Mul", [y, self.op("Sigmoid", [y])]) if act else y

    def build(self, extra_branch: bool = False) -> onnx.ModelProto:
        x, c = "images", 3
        feats = []
        for i, cout in enumerate((8, 16, 16, 24, 32)):
            x = self.conv(x, c, cout, s=2)
            c = cout
            if i >= 2:
                feats.append((x, c))
        boxes, clss, cats = [], [], []
        for f, cin in feats:
            box = self.conv(self.conv(f, cin, 16), 16, 64, k=1, act=False)
            cls = self.conv(self.conv(f, cin, 16), 16, self.nc, k=1, act=False, bias=-1.0)
            if extra_branch:  # a third final conv per stride, as segmentation heads have
                cats.append(self.conv(self.conv(f, cin, 16), 16, 32, k=1, act=False))
            boxes.append(box)
            clss.append(cls)
        out = self._tail(boxes, clss)
        if extra_branch:
            flat = [self.op("Reshape", [m, self.const(np.array([1, 32, -1]))]) for m in cats]
            out2 = self.op("Concat", flat, axis=2)
            outputs = [out, out2]
        else:
            outputs = [out]
        return self._model(outputs)

    def _tail(self, boxes: list[str], clss: list[str]) -> str:
        nc = self.nc
        if self.layout == "split":  # newer Ultralytics: box and class tensors kept apart
            box = self.op(
                "Concat",
                [self.op("Reshape", [b, self.const(np.array([1, 64, -1]))]) for b in boxes],
                axis=2,
            )
            cls = self.op(
                "Concat",
                [self.op("Reshape", [k, self.const(np.array([1, nc, -1]))]) for k in clss],
                axis=2,
            )
        else:  # older Ultralytics: per-stride concat, reshape, concat, split
            per = [
                self.op(
                    "Reshape",
                    [self.op("Concat", [b, k], axis=1), self.const(np.array([1, 64 + nc, -1]))],
                )
                for b, k in zip(boxes, clss, strict=True)
            ]
            both = self.op("Concat", per, axis=2)
            outs = [self._name("split0"), self._name("split1")]
            sizes = self.const(np.array([64, nc]))
            self.nodes.append(helper.make_node("Split", [both, sizes], outs, "split", axis=1))
            box, cls = outs
        dist = self._dfl(box)
        anchors, strides = self._anchors()
        lt, rb = self._slice(dist, 0, 2), self._slice(dist, 2, 4)
        x1y1 = self.op("Sub", [anchors, lt])
        x2y2 = self.op("Add", [anchors, rb])
        cxy = self.op("Div", [self.op("Add", [x1y1, x2y2]), self.const(np.float32(2))])
        wh = self.op("Sub", [x2y2, x1y1])
        xywh = self.op("Mul", [self.op("Concat", [cxy, wh], axis=1), strides])
        return self.op("Concat", [xywh, self.op("Sigmoid", [cls])], axis=1)

    def _slice(self, x: str, start: int, end: int) -> str:
        """Channels ``start:end`` of a (1, C, N) tensor."""
        bounds = [self.const(np.array([v])) for v in (start, end, 1)]
        return self.op("Slice", [x, *bounds])

    def _dfl(self, box: str) -> str:
        x = self.op("Reshape", [box, self.const(np.array([1, 4, 16, -1]))])
        x = self.op("Softmax", [self.op("Transpose", [x], perm=[0, 2, 1, 3])], axis=1)
        w = self.const(np.arange(16, dtype=np.float32).reshape(1, 16, 1, 1))
        x = self.op("Conv", [x, w], kernel_shape=[1, 1])
        return self.op("Reshape", [x, self.const(np.array([1, 4, -1]))])

    def _anchors(self) -> tuple[str, str]:
        pts, strides = [], []
        for s in (8, 16, 32):
            gh, gw = self.hw[0] // s, self.hw[1] // s
            yy, xx = np.mgrid[0:gh, 0:gw]
            pts.append(np.stack([xx.ravel(), yy.ravel()]) + 0.5)
            strides.append(np.full(gh * gw, s))
        anchors = np.concatenate(pts, 1)[None].astype(np.float32)
        return self.const(anchors), self.const(
            np.concatenate(strides)[None, None].astype(np.float32)
        )

    def _model(self, outputs: list[str]) -> onnx.ModelProto:
        inp = helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, *self.hw])
        anchors = sum((self.hw[0] // s) * (self.hw[1] // s) for s in (8, 16, 32))
        outs = [
            helper.make_tensor_value_info(o, TensorProto.FLOAT, [1, c, anchors])
            for o, c in zip(outputs, (4 + self.nc, 32), strict=False)
        ]
        graph = helper.make_graph(self.nodes, "tiny_yolo", [inp], outs, self.inits)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        onnx.checker.check_model(model)
        return model


def _frames(size: int, n: int = 2) -> list[np.ndarray]:
    return [letterbox_rgb(f, (size, size)) for f in scene_frames(n)]


def _save(model: onnx.ModelProto, path: Path) -> Path:
    onnx.save(model, str(path))
    return path


# --- surgery --------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["split", "concat"])
def test_tiny_model_is_cut_into_six_outputs_by_stride(layout):
    model = TinyYolo(layout=layout).build()
    cut, info = cut_heads(model)
    assert info.outputs == SPLIT_NAMES
    assert info.num_classes == 3 and info.input_hw == (96, 96)
    shapes = {o.name: [d.dim_value for d in o.type.tensor_type.shape.dim] for o in cut.graph.output}
    assert shapes == {
        "box8": [1, 64, 12, 12], "cls8": [1, 3, 12, 12],
        "box16": [1, 64, 6, 6], "cls16": [1, 3, 6, 6],
        "box32": [1, 64, 3, 3], "cls32": [1, 3, 3, 3],
    }  # fmt: skip
    assert not {"Softmax", "Split"} & {n.op_type for n in cut.graph.node}  # the tail is gone


@pytest.mark.parametrize("layout", ["split", "concat"])
def test_tiny_cut_decodes_to_the_same_detections_as_the_stock_output(layout):
    model = TinyYolo(layout=layout).build()
    cut, _ = cut_heads(model)
    frames = _frames(96, 3)
    ref = decode_all(onnx_outputs(model, frames), conf=0.25)
    assert sum(len(d) for d in ref) >= 9, "the tiny model should detect something"
    for a, b in zip(ref, decode_all(onnx_outputs(cut, frames), conf=0.25), strict=True):
        order_a, order_b = np.lexsort(a.xyxy.T), np.lexsort(b.xyxy.T)
        np.testing.assert_allclose(a.xyxy[order_a], b.xyxy[order_b], atol=1e-3)
        np.testing.assert_allclose(a.confidence[order_a], b.confidence[order_b], atol=1e-5)
        np.testing.assert_array_equal(a.class_id[order_a], b.class_id[order_b])
    same = check_cut(model, cut, frames, conf=0.25)
    assert same.boxes.recall == 1.0 and same.boxes.reference >= 9
    assert [t.name for t in same.tensors] == ["boxes", "scores"]
    assert all(t.cosine > 0.999999 for t in same.tensors)


def test_class_scores_get_a_sigmoid_and_node_names_do_not_matter():
    model = TinyYolo().build()
    for i, node in enumerate(model.graph.node):  # anonymise every node
        node.name = f"n{i}"
    cut, _ = cut_heads(model)
    sig = [n for n in cut.graph.node if n.op_type == "Sigmoid" and n.output[0] == "cls8"]
    assert len(sig) == 1
    # an already-cut model cuts to itself (no second sigmoid)
    again, info = cut_heads(cut)
    assert info.outputs == SPLIT_NAMES
    assert len(again.graph.node) == len(cut.graph.node)


def test_default_model_cuts_into_the_rknn_split_head():
    cut, info = cut_heads(load_onnx(DEFAULT_MODEL))
    assert info.input_name == "images" and info.input_hw == (640, 640)
    assert info.num_classes == 80 and info.outputs == SPLIT_NAMES
    frames = _frames(640, 2)
    same = check_cut(load_onnx(DEFAULT_MODEL), cut, frames, conf=0.25)
    assert same.boxes.reference >= 10 and same.boxes.mean_iou > 0.999  # people and cars
    assert info.names[:3] == ("person", "bicycle", "car")  # from the model's metadata
    outs = [
        np.zeros([d.dim_value for d in o.type.tensor_type.shape.dim], np.float32)
        for o in cut.graph.output
    ]
    heads = split_heads(outs, None)  # rkpipe's split-head reader takes them in this order
    assert [(h.stride, h.width, h.cls.shape[0]) for h in heads] == [
        (8, 80, 80),
        (16, 40, 80),
        (32, 20, 80),
    ]


# --- another input size ---------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["split", "concat"])
@pytest.mark.parametrize("hw", [(64, 128), (128, 96), (96, 96), (32, 160)])
def test_a_resized_model_is_the_model_built_at_that_size(layout, hw):
    """Same weights (the seed), another input: the resize redoes the anchor grid, the strides
    and the reshapes over the anchors exactly as a model made at that size has them."""
    resized = resize_input(TinyYolo(96, layout=layout).build(), hw)
    made = TinyYolo(hw, layout=layout).build()
    assert input_size_of(resized) == ("images", hw)
    frames = [letterbox_rgb(f, hw) for f in scene_frames(2)]
    for a, b in zip(onnx_outputs(resized, frames), onnx_outputs(made, frames), strict=True):
        assert a[0].shape == b[0].shape == (1, 7, anchor_count(hw))
        np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-4)
    cut, info = cut_heads(resized)
    assert info.input_hw == hw
    assert check_cut(resized, cut, frames, conf=0.25).passed


@pytest.mark.parametrize(("text", "hw"), [("640x384", (384, 640)), ("320", (320, 320))])
def test_imgsz_is_width_by_height(text, hw):
    assert parse_imgsz(text) == hw


@pytest.mark.parametrize("text", ["640x380", "640x", "x384", "0x64", "640x384x3", "big"])
def test_a_bad_imgsz_is_refused(text):
    with pytest.raises(ValueError, match="--imgsz"):
        parse_imgsz(text)


@pytest.mark.parametrize(
    ("shape", "want"),
    [
        ([1, 4, 16, 8400], [1, 4, 16, 5040]),  # the DFL over every anchor
        ([1, 2, 128, 400], [1, 2, 128, 240]),  # YOLO11's attention flattens stride 32
        ([1, 128, 20, 20], [1, 128, 12, 20]),  # ... and unflattens it, (h, w) last
        ([1, 64, 80, 80], [1, 64, 48, 80]),
        ([1, 80, -1], [1, 80, -1]),  # 80 classes, not the stride-8 grid
        ([1, 64, -1], [1, 64, -1]),
    ],
)
def test_reshape_targets_are_redone_for_the_new_grid(shape, want):
    got = _reshape_target(np.array(shape, np.int64), (640, 640), (384, 640))
    assert got.tolist() == want


def test_what_a_resize_cannot_redo_is_refused():
    model = TinyYolo(96).build()
    n = anchor_count((96, 96))
    odd = next(t for t in model.graph.initializer if list(t.dims) == [1, 2, n])
    odd.CopyFrom(numpy_helper.from_array(np.ones((1, 2, n), np.float32), odd.name))
    with pytest.raises(ModelError, match="is not the anchor grid or the strides"):
        resize_input(model, (64, 128))
    fixed = TinyYolo(96).build()
    x = fixed.graph.node[0].input[0]
    sizes = numpy_helper.from_array(np.array([1, 3, 96, 96], np.int64), "fixed_sizes")
    fixed.graph.initializer.append(sizes)
    fixed.graph.node.insert(0, helper.make_node("Resize", [x, "", "", "fixed_sizes"], ["r"]))
    fixed.graph.node[1].input[0] = "r"
    with pytest.raises(ModelError, match="scales to fixed sizes"):
        resize_input(fixed, (64, 128))


def test_default_model_at_640x384_finds_the_boxes_it_finds_at_640x640():
    """The same pixels at the same scale: a 640x360 frame sees the same objects whether its
    letterbox pads to 640x384 or to 640x640 (mapped back to the frame)."""
    model = load_onnx(DEFAULT_MODEL)
    rect = resize_input(model, (384, 640))
    frames = scene_frames(3)
    found = []
    for m, hw in ((model, (640, 640)), (rect, (384, 640))):
        geom = letterbox_geometry((360, 640), hw)
        dets = decode_all(onnx_outputs(m, [letterbox_rgb(f, hw) for f in frames]), 0.25)
        found.append(
            [Detections(unletterbox_boxes(d.xyxy, geom), d.confidence, d.class_id) for d in dets]
        )
    same = agreement(found[0], found[1])
    assert same.reference >= 20 and same.recall >= 0.95 and same.mean_iou >= 0.95, same
    assert same.extra <= 1


@pytest.mark.integration
def test_export_at_another_size_writes_the_cut_onnx_beside_the_rknn(tmp_path, monkeypatch):
    monkeypatch.setenv("RKPIPE_RKNN_VENV", str(tmp_path / "no-venv"))
    path = _save(TinyYolo().build(), tmp_path / "tiny.onnx")
    r = run_rkpipe("export", str(path), "--imgsz", "128x64", timeout=60)
    assert r.returncode == 4, r.stderr  # no toolkit: the cut and its check ran before
    assert "input 128x64 (resized from 96x96)" in r.stdout
    assert "scores  max abs error 0," in r.stdout
    cut = load_onnx(tmp_path / "tiny-128x64.onnx")
    assert input_size_of(cut) == ("images", (64, 128))
    assert [o.name for o in cut.graph.output] == list(SPLIT_NAMES)
    r = run_rkpipe("export", str(path), "--imgsz", "128x60", timeout=60)
    assert r.returncode == 2 and "multiples of 32" in r.stderr, r.stderr


@pytest.mark.integration
def test_a_model_that_is_not_a_yolov8_detector_is_refused(tmp_path):
    seg_like = TinyYolo().build(extra_branch=True)
    with pytest.raises(ModelError, match="expected 2 final convolutions at stride 8"):
        cut_heads(seg_like)
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 1, 1])
    w = numpy_helper.from_array(np.ones((4, 3, 3, 3), np.float32), "w")
    net = helper.make_graph(
        [helper.make_node("Conv", ["x", "w"], ["c"], kernel_shape=[3, 3], strides=[2, 2]),
         helper.make_node("GlobalAveragePool", ["c"], ["y"])], "classifier", [x], [y], [w],
    )  # fmt: skip
    path = _save(
        helper.make_model(net, opset_imports=[helper.make_opsetid("", 13)]),
        tmp_path / "classifier.onnx",
    )
    r = run_rkpipe("export", str(path), timeout=60)
    assert r.returncode == 3, r.stderr
    assert "not a YOLOv8 detection head" in r.stderr and str(path) in r.stderr
    assert "Traceback" not in r.stderr


@pytest.mark.integration
def test_dynamic_input_and_bad_files_get_one_clear_message(tmp_path):
    model = TinyYolo().build()
    model.graph.input[0].type.tensor_type.shape.dim[2].dim_param = "height"
    with pytest.raises(ModelError, match="static"):
        cut_heads(model)
    junk = tmp_path / "junk.onnx"
    junk.write_bytes(b"not a protobuf at all")
    cases = [(tmp_path / "missing.onnx", "not found"), (junk, "not a readable ONNX model")]
    for path, words in cases:
        r = run_rkpipe("export", str(path), timeout=60)
        assert r.returncode == 3, r.stderr
        assert words in r.stderr and str(path) in r.stderr and "Traceback" not in r.stderr


@pytest.mark.integration
def test_bad_options_are_refused_before_any_work(tmp_path):
    r = run_rkpipe("export", str(DEFAULT_MODEL), "--calib", str(tmp_path / "nope"), "-o", "x.bin")
    assert r.returncode == 2
    assert (
        f"--calib {tmp_path / 'nope'}: not a folder" in r.stderr and "must end in .rknn" in r.stderr
    )
    r = run_rkpipe("export", str(DEFAULT_MODEL), "--hybrid", "2", "--no-quantize")
    assert r.returncode == 2 and "--hybrid N takes N >= 1 layers of an INT8 build" in r.stderr
    r = run_rkpipe("export", "--quant-algo", "best")
    assert r.returncode == 2 and "invalid choice: 'best'" in r.stderr


@pytest.mark.integration
def test_without_the_onnx_package_export_says_how_to_install_it(tmp_path):
    code = (
        "import sys; sys.modules['onnx'] = None; from stages.infer.rknn_export.cli import main; "
        f"sys.exit(main([{str(DEFAULT_MODEL)!r}]))"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 3
    assert "needs the onnx package" in r.stderr and "rkpipe[export]" in r.stderr


@pytest.mark.integration
def test_a_pt_without_ultralytics_says_how_to_export_it(tmp_path):
    r = run_rkpipe("export", str(tmp_path / "yolov8n.pt"), timeout=60)
    assert r.returncode == 3
    assert "needs ultralytics" in r.stderr and "format=onnx opset=12" in r.stderr


@pytest.mark.integration
def test_missing_toolkit_names_the_setup_command(tmp_path, monkeypatch):
    monkeypatch.setenv("RKPIPE_RKNN_VENV", str(tmp_path / "no-venv"))
    path = _save(TinyYolo().build(), tmp_path / "tiny.onnx")
    r = run_rkpipe("export", str(path), "--split-onnx", str(tmp_path / "cut.onnx"), timeout=60)
    assert r.returncode == 4, r.stderr
    assert SETUP_COMMAND in r.stderr and str(tmp_path / "no-venv") in r.stderr
    assert "[1/5] cut " in r.stdout and "[2/5] check the cut" in r.stdout  # ran and checked
    assert "scores  max abs error 0," in r.stdout
    assert [o.name for o in onnx.load(str(tmp_path / "cut.onnx")).graph.output] == list(SPLIT_NAMES)


def test_agreement_counts_matches_by_class_and_iou():
    ref = Detections(
        np.array([[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]], np.float32),
        np.array([0.9, 0.8, 0.7], np.float32),
        np.array([0, 0, 2], np.int32),
    )
    cand = Detections(
        np.array([[0, 0, 10, 11], [20, 20, 30, 30], [50, 50, 60, 60], [80, 80, 90, 90]],
                 np.float32),
        np.array([0.9, 0.8, 0.7, 0.6], np.float32),
        np.array([0, 0, 0, 2], np.int32),  # the third box has the wrong class
    )  # fmt: skip
    got = agreement([ref], [cand])
    assert (got.reference, got.matched, got.extra) == (3, 2, 2)
    assert got.recall == pytest.approx(2 / 3)
    assert got.mean_iou == pytest.approx((100 / 110 + 1.0) / 2)
    assert got.per_class == {0: (2, 2), 2: (0, 1)}
    none = agreement([Detections.empty()], [Detections.empty()])
    assert none.empty and none.recall == 1.0 and "no boxes on either side" in none.summary()
