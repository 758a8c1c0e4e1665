"""letterbox ``size = "model"`` (the default): the infer stage's model decides the input size
(ONNX input shape, .rknn sidecar, ``sim:NAME-WxH``), so a graph and its model cannot disagree;
an explicit size that does not match is refused at ``rkpipe validate`` with both sizes and
the fix. End to end, the 640x384 model runs behind a letterbox that names no size.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from pipeline.errors import GraphError
from pipeline.graph.load import load_graph
from pipeline.graph.plan import make_plan
from stages.letterbox.stage import LetterboxConfig
from support.rkpipe import ROOT, read_jsonl, run_rkpipe, write_graph

MODELS = ROOT / "models"
SQUARE_ONNX = MODELS / "rkpipe-yolov8n.onnx"
RECT_ONNX = MODELS / "rkpipe-yolov8n-640x384.onnx"
RECT_RKNN = MODELS / "rkpipe-yolov8n-640x384.rknn"


def _graph(model: str, size: str = "", layout: str = "", extra: str = "") -> str:
    return f"""
[stages.cam]
uses = "synthetic"
frames = 3
live = false

[stages.pre]
uses = "letterbox"
inputs = ["cam"]
{size}
{layout}

[stages.det]
uses = "infer"
inputs = ["pre"]
model = "{model}"
{extra}
"""


def _size_of(tmp_path: Path, text: str) -> tuple[int, int]:
    graph = load_graph(write_graph(tmp_path, text), cpus={0, 1})
    config = graph.stages["pre"].config
    assert isinstance(config, LetterboxConfig)
    return config.wh


@pytest.mark.parametrize(("model", "wh"), [(RECT_ONNX, (640, 384)), (SQUARE_ONNX, (640, 640))])
def test_the_onnx_models_input_shape_sets_the_size(tmp_path, model, wh):
    graph = load_graph(write_graph(tmp_path, _graph(str(model))), cpus={0, 1})
    config = graph.stages["pre"].config
    assert isinstance(config, LetterboxConfig) and config.size == wh
    # the processes start with it: the letterbox's own options carry the size
    (spec,) = make_plan(graph, "t", str(tmp_path)).by_stage("pre")
    assert tuple(spec.options["size"]) == wh
    assert LetterboxConfig(**spec.options).wh == wh


def test_the_rknn_sidecar_sets_the_size(tmp_path):
    """Off the board the .rknn cannot be opened: its sidecar says what it takes."""
    assert _size_of(tmp_path, _graph(str(RECT_RKNN), layout='layout = "nhwc_uint8"')) == (
        640,
        384,
    )
    bare = tmp_path / "other.rknn"
    shutil.copy(RECT_RKNN, bare)
    side = json.loads((MODELS / "rkpipe-yolov8n-640x384.rknn.json").read_text())
    side["input"].update(width=512, height=288)
    (tmp_path / "other.rknn.json").write_text(json.dumps(side))
    assert _size_of(tmp_path, _graph(str(bare))) == (512, 288)
    (tmp_path / "other.rknn.json").unlink()  # no sidecar: the model does not say; 640x640
    assert _size_of(tmp_path, _graph(str(bare))) == (640, 640)


def test_sim_models_name_their_size_or_take_any(tmp_path):
    assert _size_of(tmp_path, _graph("sim:yolov8n-640x384")) == (640, 384)
    assert _size_of(tmp_path, _graph("sim:yolov8n")) == (640, 640)
    assert _size_of(tmp_path, _graph("sim:yolov8n", "size = [160, 160]")) == (160, 160)


def test_a_matching_explicit_size_is_kept(tmp_path):
    assert _size_of(tmp_path, _graph(str(RECT_ONNX), "size = [640, 384]")) == (640, 384)


@pytest.mark.parametrize(
    ("model", "size", "want"),
    [
        (RECT_ONNX, "[640, 640]", "640x384"),
        (SQUARE_ONNX, "[640, 384]", "640x640"),
        (RECT_RKNN, "[640, 640]", "640x384"),
        ("sim:yolov8n-640x384", "[320, 320]", "640x384"),
    ],
)
def test_a_mismatching_size_is_refused_at_validate_with_both_sizes_and_the_fix(
    tmp_path, model, size, want
):
    path = write_graph(tmp_path, _graph(str(model), f"size = {size}"))
    r = run_rkpipe("validate", str(path), timeout=60)
    assert r.returncode == 2, r.stdout + r.stderr
    w, h = want.split("x")
    given = size.strip("[]").replace(", ", "x")
    assert f"{path}:10 stages.pre.size: size = {size} ({given}) does not match" in r.stderr
    assert f'the model of stage "det", {want}' in r.stderr
    assert f'remove size (the default, "model", takes the model\'s) or set size = [{w}, {h}]' in (
        r.stderr
    )
    assert "Traceback" not in r.stderr


def test_one_letterbox_feeding_models_of_two_sizes_is_refused(tmp_path):
    text = (
        _graph(str(RECT_ONNX))
        + f"""
[stages.det2]
uses = "infer"
inputs = ["pre"]
model = "{SQUARE_ONNX}"
"""
    )
    with pytest.raises(GraphError, match=r'"det" 640x384, "det2" 640x640\): use one letterbox'):
        load_graph(write_graph(tmp_path, text), cpus={0, 1})


@pytest.mark.integration
def test_the_640x384_model_runs_behind_a_letterbox_that_names_no_size(tmp_path):
    out = tmp_path / "frames.jsonl"
    text = (
        _graph(str(RECT_ONNX), extra="threads = 1")
        + f"""
[stages.post]
uses = "yolov8_decode"
inputs = ["det"]

[stages.out]
uses = "jsonl"
inputs = ["post"]
path = "{out}"
"""
    )
    r = run_rkpipe("run", "--no-live", str(write_graph(tmp_path, text)), cwd=tmp_path, timeout=180)
    assert r.returncode == 0, r.stderr[-3000:]
    records = read_jsonl(out)
    assert len(records) == 3
    assert all(rec["meta"]["letterbox"]["dst_h"] == 384 for rec in records), records[0]["meta"]


def test_a_mismatch_is_reported_with_the_graphs_other_problems(tmp_path):
    text = _graph(str(RECT_ONNX), "size = [640, 640]").replace("frames = 3", "frames = 3\nfps = -1")
    with pytest.raises(GraphError) as err:
        load_graph(write_graph(tmp_path, text), cpus={0, 1})
    problems = err.value.problems
    assert any("stages.cam.fps" in p for p in problems), problems
    assert any("stages.pre.size: size = [640, 640]" in p for p in problems), problems
