"""The pipeline benchmarks run end to end at their smallest settings and write their JSON.

Only that they run is checked: the figures depend on the machine and are never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from support.rkpipe import ROOT

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def run_bench(script: str, *args: str, timeout: float = 90) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / script), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_sim_pipeline_benchmark_runs(tmp_path: Path, no_leaks: None) -> None:
    out = tmp_path / "sim.json"
    args = ["--quick", "--cases", "1", "--per-core", "2", "--duration", "3", "--json", str(out)]
    proc = run_bench("bench_pipeline_sim.py", *args)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "of ideal" in proc.stdout
    (case,) = json.loads(out.read_text())["cases"]
    assert case["npu_cores"] == [0, 0]
    assert {"fps", "fraction", "latency_p50_ms", "latency_p99_ms", "profile"} <= set(case)


def test_capture_benchmark_runs(tmp_path: Path, no_leaks: None) -> None:
    out = tmp_path / "capture.json"
    proc = run_bench("bench_capture.py", "--quick", "--json", str(out), timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "vs OpenCV" in proc.stdout
    cases = json.loads(out.read_text())["cases"]
    assert {"opencv/1080p", "ffmpeg/1080p", "opencv/640x360", "ffmpeg/640x360"} <= set(cases)
    assert all(c["cpu_ms_per_frame"] > 0 and c["fps"] > 0 for c in cases.values())


def test_board_check_runs_on_the_sim_and_writes_its_reports(tmp_path: Path, no_leaks: None) -> None:
    args = ["--quick", "--backend", "sim", "--out", str(tmp_path)]
    proc = run_bench("board_check.py", *args, timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads((tmp_path / "board_report.json").read_text())
    assert report["backend"] == "sim" and [r["core"] for r in report["inference"]] == [0, 1, 2]
    assert {c["name"] for c in report["doctor"]} >= {"SoC", "CPU topology", "/dev/shm"}
    rows = {r["measurement"]: r for r in report["comparison"]}
    assert rows["NPU inference only, core 0"]["reference"] == 48.5
    assert "2 live 640x360 streams at 30 FPS, slowest stream" in rows
    table = (tmp_path / "board_report.md").read_text()
    assert "| measurement | this machine | reference | ratio |" in table
    sizes = report["input_sizes"]  # the sim: its service time scaled by pixels
    assert set(sizes["ms"]) == {"640x640", "640x384"} and sizes["pixel_ratio"] == 0.6
    assert 0 < sizes["ratio"] < 1 and "640x384" in table and "the sim's estimate" in table


def test_onnx_pipeline_benchmark_runs(tmp_path: Path, no_leaks: None) -> None:
    out = tmp_path / "onnx.json"
    args = ["--quick", "--configs", "2x1", "--threads", "2", "--duration", "4"]
    proc = run_bench("bench_pipeline_onnx.py", *args, "--loop-s", "0.5", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert set(doc["baselines"]) == {
        "bare",
        "bare_x2",
        "naive",
        "thread_pool",
        "thread_pool_examples",
    }
    assert set(doc["pipeline"]) == {"2x1"}
    assert {"pipeline/bare", "pipeline/naive", "pipeline/thread_pool"} <= set(doc["ratios"])


def test_onnx_pipeline_benchmark_compares_the_rectangular_model(tmp_path: Path, no_leaks) -> None:
    out = tmp_path / "rect.json"
    args = ["--rect", str(ROOT / "models" / "rkpipe-yolov8n-640x384.onnx"), "--configs", "2x1"]
    proc = run_bench("bench_pipeline_onnx.py", *args, "--duration", "4", "--json", str(out))
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(out.read_text())
    assert {"2x1", "2x1/rounds", "2x1/cpu"} == set(doc["ratios"]) and doc["ratios"]["2x1"] > 0
    assert "rect/square FPS" in proc.stdout and "(640x384)" in proc.stdout


def test_mqtt_benchmark_runs(no_leaks: None) -> None:
    proc = run_bench("bench_mqtt.py", "--events", "500", "--frames", "40", timeout=240)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "x bare paho" in proc.stdout and "counted unsent" in proc.stdout


@pytest.mark.timeout(1800)  # a fresh machine builds the Ultralytics venv first
def test_export_benchmark_runs(tmp_path: Path) -> None:
    """One stock model, FP16 only, a few images (the rknn-toolkit2 venv, as the export tests)."""
    out = tmp_path / "export.json"
    args = ["--archs", "yolov8n", "--modes", "fp16", "--inits", "stock"]
    args += ["--calib-count", "3", "--verify-count", "2", "--json", str(out)]
    proc = run_bench("bench_export.py", *args, timeout=1500)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "yolov8n-stock" in proc.stdout and "pass" in proc.stdout
    doc = json.loads(out.read_text())
    assert set(doc) == {"yolov8n-stock/fp16"} and doc["yolov8n-stock/fp16"]["passed"]


def test_reload_benchmark_runs(tmp_path: Path, no_leaks: None) -> None:
    out = tmp_path / "reload.json"
    proc = run_bench("reload_times.py", "--quick", "--json", str(out), timeout=240)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    assert "a restart stops frames for" in proc.stdout
    res = json.loads(out.read_text())
    assert [r["change"] for r in res["reloads"]] == [
        "camera cam2 added",
        "line moved",
        "camera cam2 removed",
    ]
    assert res["exact"] and res["restarts"] == 0
