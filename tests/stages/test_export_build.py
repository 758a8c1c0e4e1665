"""rkpipe export end to end with rknn-toolkit2: the default model in INT8 and in FP16 from a
labelled folder; stock random-weight YOLOv8n / YOLO11n of 1, 64 and 80 classes in FP16 and
INT8; and an INT8 collapse made visible (figures, the toolkit's per-layer analysis, the
remedies, a hybrid build) and fixed by FP16.

These need the rknn-toolkit2 venv that ``rkpipe export --setup`` makes (CI runs it before
the tests): without it they fail with that command, never skip. Each build runs the
toolkit's CPU simulator on a few images, so the sets are small.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest

from stages.infer.rknn_export.toolkit_env import SETUP_COMMAND, toolkit_python, venv_dir
from stages.synthetic.scene import Scene
from support.rkpipe import ROOT, run_rkpipe
from support.stock_models import StockModels

# the first use on a machine builds the Ultralytics venv (minutes on a loaded machine)
pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(1800)]

DEFAULT_MODEL = ROOT / "models" / "rkpipe-yolov8n.onnx"
OUTPUTS = ("box8", "cls8", "box16", "cls16", "box32", "cls32")


@pytest.fixture(scope="module", autouse=True)
def _toolkit() -> None:
    if toolkit_python() is None:
        pytest.fail(f"rknn-toolkit2 venv missing at {venv_dir()}: run `{SETUP_COMMAND}` first")


@pytest.fixture(scope="module")
def stock() -> StockModels:
    return StockModels()


def _calib_folder(root: Path, count: int, labels: bool = False) -> Path:
    """``count`` JPEG scene frames (640x360: letterboxed with grey bands) and, with
    ``labels``, YOLO label files from the scenes' ground truth (objects half visible)."""
    folder = root / "calib"
    folder.mkdir()
    for k in range(count):
        scene = Scene("hard" if k % 2 else "easy", seed=4000 + k)
        i = 20 + 9 * k
        cv2.imwrite(str(folder / f"f{k:02d}.jpg"), scene.render(i))
        if labels:
            truth = scene.truth(i)
            keep = truth.visibility >= 0.5
            xyxy, cls = truth.xyxy[keep] / [640, 360, 640, 360], truth.class_id[keep]
            rows = [
                f"{c} {(x1 + x2) / 2:.6f} {(y1 + y2) / 2:.6f} {x2 - x1:.6f} {y2 - y1:.6f}"
                for c, (x1, y1, x2, y2) in zip(cls, xyxy, strict=True)
            ]
            (folder / f"f{k:02d}.txt").write_text("\n".join(rows) + "\n")
    return folder


def _export(
    model: Path, out: Path, *opts: str, cwd: Path | None = None
) -> subprocess.CompletedProcess:
    return run_rkpipe("export", str(model), "-o", str(out), *opts, cwd=cwd, timeout=600)


def _sidecar(out: Path) -> dict[str, Any]:
    return json.loads(out.with_name(out.name + ".json").read_text())


def _table_shown(stdout: str) -> None:
    """The per-output table of the simulator check is printed."""
    assert "output      cosine  max abs error" in stdout
    for name in OUTPUTS:
        assert f"      {name} " in stdout, name


def test_default_model_int8_agrees_in_the_simulator(tmp_path):
    opts = ["--calib-count", "8", "--verify-count", "4"]
    r = _export(DEFAULT_MODEL, Path("m.rknn"), *opts, cwd=tmp_path)  # -o relative to the cwd
    assert r.returncode == 0, r.stdout + r.stderr
    assert "[3/5] build INT8, normal for rk3588" in r.stdout and "[5/5] compare INT8" in r.stdout
    _table_shown(r.stdout)
    out = tmp_path / "m.rknn"
    assert out.stat().st_size > 1_000_000 and f'model = "{out}"' in r.stdout
    side = _sidecar(out)
    assert side["toolkit_version"] == "2.5.0" and side["quantization"] == "int8"
    assert side["classes"][:3] == ["person", "bicycle", "car"] and side["num_classes"] == 80
    assert side["input"] == {"name": "images", "height": 640, "width": 640, "layout": "nhwc_uint8"}
    sim = side["check"]["simulator"]
    assert side["check"]["passed"] and sim["images"] == 4
    assert all(o["cosine"] > 0.99 for k, o in sim["outputs"].items() if k != "cls32"), sim
    boxes = sim["boxes"]
    assert boxes["reference_boxes"] >= 10 and boxes["recall"] >= 0.9 and boxes["mean_iou"] >= 0.9
    assert "already set up" in run_rkpipe("export", "--setup", timeout=60).stdout


def test_default_model_fp16_from_a_labelled_folder(tmp_path):
    calib = _calib_folder(tmp_path, 6, labels=True)
    out = tmp_path / "fp16.rknn"
    opts = ["--calib", str(calib), "--no-quantize", "--verify-count", "3", "--min-recall", "0.95"]
    r = _export(DEFAULT_MODEL, out, *opts)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "build FP16 for rk3588" in r.stdout and f"6 images from {calib}" in r.stdout
    assert "recall of the labels per class" in r.stdout
    assert "  person " in r.stdout and "  car " in r.stdout
    sim = _sidecar(out)["check"]["simulator"]
    assert all(o["cosine"] > 0.9999 for k, o in sim["outputs"].items() if k != "cls32"), sim
    assert sim["boxes"]["recall"] >= 0.95
    recall = sim["label_recall"]
    assert set(recall["float"]) == {"0", "2"}  # people and cars were labelled
    for cls, (found, total) in recall["float"].items():
        assert total >= 3 and found / total >= 0.7, (cls, found, total)
        assert abs(recall["converted"][cls][0] - found) <= 1  # FP16 finds what float finds


@pytest.mark.parametrize(
    ("arch", "nc", "mode"),
    [("yolov8n", 80, "fp16"), ("yolo11n", 1, "int8"), ("yolov8n", 64, "fp16")],
)
def test_stock_models_export_and_print_their_tensor_agreement(stock, tmp_path, arch, nc, mode):
    calib = _calib_folder(tmp_path, 6)
    out = tmp_path / f"{arch}.rknn"
    opts = ["--calib", str(calib), "--calib-count", "6", "--verify-count", "3"]
    r = _export(stock.get(arch, nc), out, *opts, *(["--no-quantize"] if mode == "fp16" else []))
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{nc} classes" in r.stdout and "scores  max abs error 0," in r.stdout
    _table_shown(r.stdout)
    # untrained: no box at 0.25 from either model, which is agreement, said so
    assert "no boxes on either side (3 images): they agree" in r.stdout
    side = _sidecar(out)
    assert side["num_classes"] == nc and side["quantization"] == mode and side["check"]["passed"]
    outputs = side["check"]["simulator"]["outputs"]
    assert all(outputs[k]["cosine"] > 0.999 for k in ("box8", "box16", "box32")), outputs
    assert all(outputs[k]["max_abs"] < 0.02 for k in ("cls8", "cls16", "cls32")), outputs


def test_int8_collapse_is_shown_with_its_layers_and_remedies_and_fp16_fixes_it(stock, tmp_path):
    """A YOLO11n whose activations reach the head (BatchNorm set from noise) loses its class
    scores in plain INT8: the export says where and what to try, and FP16 passes."""
    model = stock.get("yolo11n", 2, live=True)
    calib = _calib_folder(tmp_path, 6)
    opts = ["--calib", str(calib), "--calib-count", "6", "--verify-count", "3"]
    out = tmp_path / "int8.rknn"
    r = _export(model, out, *opts)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "FAIL cls" in r.stdout and "the check FAILED" in r.stdout
    assert "accuracy analysis (1 image), layers that lose most on their own:" in r.stdout
    assert "accumulated cosine at the outputs: box8 " in r.stdout
    for remedy in ("--calib DIR", "--quant-algo mmse", "--hybrid 4", "--no-quantize"):
        assert remedy in r.stdout, remedy
    assert out.is_file() and not _sidecar(out)["check"]["passed"]

    hybrid = tmp_path / "hybrid.rknn"
    lax = ["--min-cosine", "0", "--min-recall", "0"]  # its figures, not a second analysis
    r = _export(model, hybrid, *opts, "--hybrid", "2", *lax)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "kept in FP16 (2 layers; their INT8 single-layer cosine):" in r.stdout
    side = _sidecar(hybrid)
    assert side["quantization"] == "hybrid" and len(side["fp16_layers"]) == 2

    fp16 = tmp_path / "fp16.rknn"
    r = _export(model, fp16, *opts, "--no-quantize")
    assert r.returncode == 0, r.stdout + r.stderr
    boxes = _sidecar(fp16)["check"]["simulator"]["boxes"]
    assert boxes["reference_boxes"] >= 20 and boxes["recall"] >= 0.95, boxes
    assert np.isclose(boxes["recall"], 1.0, atol=0.05)


@pytest.mark.parametrize(
    ("arch", "nc", "live", "mode"),
    [("yolov8n", 80, False, "fp16"), ("yolo11n", 1, False, "int8"), ("yolo11n", 2, True, "fp16")],
)
def test_stock_models_export_at_640x384(stock, tmp_path, arch, nc, live, mode):
    """A rectangular input for 16:9 cameras from a stock 640x640 export: the cut is held to
    the original resized to 640x384 (element by element), the build to the cut; the sidecar
    and the cut ONNX beside the .rknn take 640x384."""
    calib = _calib_folder(tmp_path, 6)
    out = tmp_path / f"{arch}.rknn"
    opts = ["--calib", str(calib), "--calib-count", "6", "--verify-count", "3"]
    opts += ["--imgsz", "640x384", *(["--no-quantize"] if mode == "fp16" else [])]
    r = _export(stock.get(arch, nc, live=live), out, *opts)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "input 640x384 (resized from 640x640)" in r.stdout
    assert "scores  max abs error 0," in r.stdout
    _table_shown(r.stdout)
    side = _sidecar(out)
    assert side["input"] == {"name": "images", "height": 384, "width": 640, "layout": "nhwc_uint8"}
    assert side["quantization"] == mode and side["check"]["passed"]
    cut = side["check"]["cut"]
    assert cut["tensors"]["scores"]["max_abs"] == 0.0 and cut["tensors"]["boxes"]["max_abs"] < 1e-2
    outputs = side["check"]["simulator"]["outputs"]
    assert all(outputs[k]["cosine"] > 0.999 for k in ("box8", "box16", "box32")), outputs
    import onnx

    split = onnx.load(str(out.with_suffix(".onnx")))
    dims = [[d.dim_value for d in o.type.tensor_type.shape.dim] for o in split.graph.output]
    assert dims == [[1, c, 384 // s, 640 // s] for s in (8, 16, 32) for c in (64, nc)]
    if live:  # activations reach the head: boxes on both sides, and the same ones
        boxes = side["check"]["simulator"]["boxes"]
        assert boxes["reference_boxes"] >= 10 and boxes["recall"] >= 0.95, boxes
        assert cut["boxes"]["recall"] == 1.0 and cut["boxes"]["reference_boxes"] >= 10
