"""The capacity plan (``rkpipe graph --plan``, a line in ``rkpipe validate``): the model's
input size, NPU time per frame per core (a board report's figure when there is one, else the
reference scaled by pixels), FPS offered, whether it fits, FPS per stream and the share
dropped, and what would make it fit; on fixture board reports.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.graph.load import load_graph
from stages.infer.capacity import capacity_plans, plan_lines
from support.rkpipe import ROOT, run_rkpipe, write_graph

SQUARE = ROOT / "models" / "rkpipe-yolov8n.rknn"
RECT = ROOT / "models" / "rkpipe-yolov8n-640x384.rknn"


def _graph(model: Path | str, streams: int = 6, fps: float = 30, cores: str = "[0, 1, 2, 0, 1, 2]",
           extra_source: str = "") -> str:  # fmt: skip
    cams = [f"cam{i}" for i in range(streams)]
    text = "".join(
        f'[stages.{c}]\nuses = "synthetic"\nscene = "easy"\nlive = true\nfps = {fps}\n\n'
        for c in cams
    )
    if extra_source:
        cams.append("ipcam")
        text += f'[stages.ipcam]\nuses = "capture"\nsource = "{extra_source}"\n\n'
    return (
        text
        + f"""
[stages.pre]
uses = "letterbox"
inputs = {json.dumps(cams)}
layout = "nhwc_uint8"

[stages.npu]
uses = "infer"
inputs = ["pre"]
model = "{model}"
npu_cores = {cores}
"""
    )


def _report(tmp_path: Path, ms: float, sizes: dict[str, float] | None, backend: str = "rknn"):
    doc = {
        "backend": backend,
        "inference": [{"core": c, "fps": 1000 / ms, "ms": ms} for c in range(3)],
    }
    if sizes is not None:
        doc["input_sizes"] = {"core": 0, "ms": sizes, "ratio": 0, "pixel_ratio": 0.6}
    path = tmp_path / "report" / "board_report.json"
    path.parent.mkdir(exist_ok=True)
    path.write_text(json.dumps(doc))
    return path


def _plan(tmp_path: Path, text: str, report: Path | None = None):
    graph = load_graph(write_graph(tmp_path, text), cpus={0, 1})
    (plan,) = capacity_plans(graph, report)
    return plan


def test_six_cameras_fit_at_640x384_on_the_reference_figure(tmp_path):
    plan = _plan(tmp_path, _graph(RECT))
    assert plan.input_wh == (640, 384) and plan.ms_per_frame == pytest.approx(12.3)
    assert "reference 20.5 ms at 640x640 scaled by pixels" in plan.ms_source
    assert plan.capacity_fps == pytest.approx(243.9, abs=0.1) and plan.offered_fps == 180
    assert plan.fits and plan.stream_fps == 30 and plan.dropped == 0 and not plan.fixes


def test_six_cameras_at_640x640_do_not_fit_and_the_plan_says_what_would(tmp_path):
    plan = _plan(tmp_path, _graph(SQUARE))
    assert plan.input_wh == (640, 640) and plan.ms_per_frame == 20.5
    assert not plan.fits and plan.capacity_fps == pytest.approx(146.3, abs=0.1)
    assert plan.stream_fps == pytest.approx(24.39, abs=0.01)
    assert plan.dropped == pytest.approx(1 - 146.34 / 180, abs=1e-3)
    text = "\n".join(plan_lines(plan))
    assert "does NOT fit: expected 24.4 FPS per stream, 19% of the frames dropped" in text
    assert "rkpipe export MODEL.onnx --imgsz 640x384 (about 12.3 ms, 244 FPS: fits)" in text
    assert "cap the cameras at fps = 24 each (144 FPS offered)" in text
    assert "another runtime per core" not in text  # each core is listed twice already


def test_one_runtime_per_core_is_one_of_the_fixes(tmp_path):
    plan = _plan(tmp_path, _graph(SQUARE, cores="[0, 1, 2]"))
    assert plan.runtimes == 3 and any("another runtime per core" in f for f in plan.fixes)


def test_the_boards_measured_figure_at_the_models_size_wins(tmp_path):
    report = _report(tmp_path, 25.0, {"640x640": 25.0, "640x384": 16.0})
    plan = _plan(tmp_path, _graph(RECT), report)
    assert plan.ms_per_frame == 16.0 and plan.ms_source == "measured at 640x384 on the board"
    assert plan.capacity_fps == 187.5 and plan.fits
    plan = _plan(tmp_path, _graph(SQUARE), report)
    assert plan.ms_per_frame == 25.0 and not plan.fits
    assert plan.stream_fps == pytest.approx(120 / 6)


def test_a_report_without_the_size_is_scaled_and_a_sim_report_is_not_used(tmp_path):
    plan = _plan(tmp_path, _graph(RECT), _report(tmp_path, 25.0, None))
    assert plan.ms_per_frame == pytest.approx(15.0)
    assert plan.ms_source == "the board's 640x640 figure scaled by pixels"
    plan = _plan(tmp_path, _graph(RECT), _report(tmp_path, 99.0, None, backend="sim"))
    assert plan.ms_per_frame == pytest.approx(12.3) and "reference" in plan.ms_source


def test_camera_fps_and_cameras_without_one(tmp_path):
    plan = _plan(tmp_path, _graph(SQUARE, streams=4, fps=20, extra_source="rtsp://cam/stream"))
    assert plan.live == 5 and plan.assumed_fps == 1 and plan.offered_fps == 4 * 20 + 30
    assert plan.fits and plan.stream_fps == pytest.approx(22.0)


def test_the_sim_plans_from_its_own_service_time(tmp_path):
    plan = _plan(tmp_path, _graph("sim:yolov8n-640x384", cores="[0, 1, 2]"))
    assert plan.backend == "sim" and plan.ms_per_frame == pytest.approx(12.3)
    assert plan.ms_source == "the sim's sim_ms scaled by pixels" and plan.fits


@pytest.mark.integration
def test_validate_prints_the_plan_line_and_graph_the_plan(tmp_path):
    path = write_graph(tmp_path, _graph(SQUARE))
    report = _report(tmp_path, 20.0, {"640x640": 20.0, "640x384": 12.5})
    r = run_rkpipe("validate", str(path), "--board-report", str(report), timeout=60)
    assert r.returncode == 0, r.stderr
    assert (
        f"{path}: plan npu: 640x640, 20.0 ms per frame per core (measured at 640x640 on the "
        "board), 3 core(s) -> 150 FPS; 180 FPS offered: OVER capacity: 25.0 FPS per stream, "
        "17% dropped"
    ) in r.stdout
    r = run_rkpipe("graph", str(path), "--plan", cwd=report.parent, timeout=60)  # found there
    assert r.returncode == 0, r.stderr
    first = next(line for line in r.stdout.splitlines() if line.startswith("capacity plan"))
    assert first.startswith("capacity plan (board report ") and "board_report.json" in first
    assert "does NOT fit: expected 25.0 FPS per stream, 17% of the frames dropped" in r.stdout
    # the board's own 640x384 figure, not the pixel estimate
    assert "rkpipe export MODEL.onnx --imgsz 640x384 (about 12.5 ms, 240 FPS: fits)" in r.stdout
