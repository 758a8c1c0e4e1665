"""Stock Ultralytics YOLOv8 and YOLO11 exports with random weights, standing in for a user's
own model of any class count: the six head convolutions are found by structure, the cut
reproduces the original's outputs element by element, and a cut with one head weight
changed is refused. ONNX Runtime only; the builds are in test_export_build.py.

The models come from ``models/export_stock.py`` in a throwaway Ultralytics venv
(``support.stock_models``: made once per machine and cached, a few minutes the first time).
"""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from pipeline.errors import ModelError
from stages.infer.rknn_export.calibration import letterbox_rgb, scene_frames
from stages.infer.rknn_export.checks import check_cut
from stages.infer.rknn_export.resize import resize_input
from stages.infer.rknn_export.surgery import cut_heads, load_onnx
from stages.infer.rknn_export.verify import onnx_outputs
from support.stock_models import StockModels

# the first use on a machine builds the Ultralytics venv (minutes on a loaded machine)
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

SPLIT_NAMES = ("box8", "cls8", "box16", "cls16", "box32", "cls32")


@pytest.fixture(scope="module")
def stock() -> StockModels:
    return StockModels()


@pytest.fixture(scope="module")
def frames() -> list[np.ndarray]:
    return [letterbox_rgb(f, (640, 640)) for f in scene_frames(2)]


@pytest.mark.parametrize("nc", [1, 2, 64, 80])
@pytest.mark.parametrize("arch", ["yolov8n", "yolo11n"])
def test_stock_heads_are_found_by_structure_and_cut_exactly(stock, frames, arch, nc):
    model = load_onnx(stock.get(arch, nc))
    for node in model.graph.node:
        node.name = ""  # node names play no part
    cut, info = cut_heads(model)
    assert info.num_classes == nc and info.outputs == SPLIT_NAMES
    dims = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in cut.graph.output]
    assert dims == [[1, c, g, g] for g in (80, 40, 20) for c in (64, nc)]
    check = check_cut(model, cut, frames, conf=0.25)
    # with nc = 64 both head convolutions have 64 channels: a swap would decode 2.0 box
    # logits as scores and fail here
    assert check.exact and all(t.cosine > 0.999999 for t in check.tensors)
    # Ultralytics' untrained model outputs its head biases: no box on either side
    assert check.boxes.empty and check.passed


def _perturbed(cut: onnx.ModelProto, output: str, delta: float, bias: bool) -> onnx.ModelProto:
    """A copy of ``cut`` with one weight (or bias) of the convolution making ``output``
    changed by ``delta``."""
    broken = onnx.ModelProto()
    broken.CopyFrom(cut)
    conv = next(n for n in broken.graph.node if n.op_type == "Conv" and n.output[0] == output)
    init = next(t for t in broken.graph.initializer if t.name == conv.input[2 if bias else 1])
    values = numpy_helper.to_array(init).copy()
    values.flat[0] += delta
    init.CopyFrom(numpy_helper.from_array(values, init.name))
    return broken


@pytest.mark.parametrize("output", ["cls16_logits", "box16"])
def test_a_cut_with_one_head_weight_changed_is_refused(stock, frames, output):
    model = load_onnx(stock.get("yolo11n", 2, live=True))
    cut, _ = cut_heads(model)
    good = check_cut(model, cut, frames, conf=0.25)
    assert good.boxes.reference >= 20 and good.boxes.recall == 1.0  # it does see things
    broken = _perturbed(cut, output, 0.05, bias=False)
    with pytest.raises(ModelError, match="does not reproduce the original's outputs") as err:
        check_cut(model, broken, frames, conf=0.25)
    assert "boxes max abs error" in str(err.value) and "scores max abs error" in str(err.value)


def test_a_changed_head_bias_is_refused_even_when_the_model_sees_nothing(stock, frames):
    """Untrained, the head's inputs are ~0, so only a bias moves its outputs; the tensor
    check still catches it though no box exists on either side."""
    model = load_onnx(stock.get("yolov8n", 80))
    cut, _ = cut_heads(model)
    broken = _perturbed(cut, "cls32_logits", 0.01, bias=True)
    with pytest.raises(ModelError, match="no boxes on either side"):
        check_cut(model, broken, frames, conf=0.25)


@pytest.mark.parametrize(("arch", "nc"), [("yolo11n", 2), ("yolov8n", 80)])
def test_a_resize_to_640x384_equals_ultralytics_own_export_at_that_size(stock, arch, nc):
    """The resized backbone too: YOLO11's attention reshapes its stride-32 map, which a cut
    check (both sides share the backbone) cannot see; Ultralytics' own export of the same
    weights at imgsz (384, 640) is the reference. BatchNorm set from noise, so every layer
    moves the outputs."""
    hw = (384, 640)
    resized = resize_input(load_onnx(stock.get(arch, nc, live=True)), hw)
    theirs = load_onnx(stock.get_at(arch, hw, nc, live=True))
    images = [letterbox_rgb(f, hw) for f in scene_frames(3)]
    for a, b in zip(onnx_outputs(resized, images), onnx_outputs(theirs, images), strict=True):
        assert a[0].shape == b[0].shape == (1, 4 + nc, 5040)
        np.testing.assert_allclose(a[0][:, 4:], b[0][:, 4:], atol=1e-4)  # scores
        np.testing.assert_allclose(a[0][:, :4], b[0][:, :4], atol=1e-2)  # boxes, pixels
    cut, info = cut_heads(resized)
    assert info.input_hw == hw
    check = check_cut(theirs, cut, images, conf=0.25)  # the cut of ours against theirs
    assert check.passed and (arch != "yolo11n" or check.boxes.reference >= 20)
