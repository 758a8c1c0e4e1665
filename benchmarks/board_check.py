"""The one-command board check: ``rkpipe doctor``, then a fixed set of measured runs, written
to ``board_report.json`` and ``board_report.md`` (a table against the reference figures),
which is what a user sends back from a board.

Runs: NPU inference only, per core (the backend called in a loop on a 640x640 input); the
real pipeline (640x360 sources -> letterbox -> infer -> yolov8_decode -> bytetrack) on 1, 2
and 3 NPU cores with two inference processes per core and sources that wait for room (its
capacity); and 2 and 6 live 640x360 streams at 30 FPS through the same pipeline on 3 cores
(what a user's cameras get). On an RK3588 with a working NPU it uses rknn and
``models/rkpipe-yolov8n.rknn``; elsewhere the simulated NPU (20.5 ms per call per core), so
it runs anywhere and CI checks it.

Input sizes: inference only on core 0 at 640x640 and at 640x384 (``rkpipe-yolov8n-640x384.rknn``,
what 16:9 cameras need), and the ratio of the two times. The sim scales its service time by
pixels (0.6), an estimate; on a board this is the measured ratio that replaces it.

    python benchmarks/board_check.py [--backend auto|rknn|sim] [--out DIR] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import _graphs  # noqa: E402

from pipeline.doctor.check import Check  # noqa: E402
from pipeline.doctor.cli import run_checks  # noqa: E402

RKNN_MODEL = ROOT / "models" / "rkpipe-yolov8n.rknn"
RKNN_MODEL_RECT = ROOT / "models" / "rkpipe-yolov8n-640x384.rknn"
SIZES = {"640x640": ((640, 640), RKNN_MODEL), "640x384": ((384, 640), RKNN_MODEL_RECT)}
SIM_MS = 20.5
REF_CORE_FPS = 48.5  # YOLOv8n INT8 640, one RK3588 core, from Python (seed write-up: 48-49)
REF_STREAM_FPS = 30.0  # 2 x 640x360 streams at 30 FPS with post-processing (seed write-up)
PIPELINE_CASES = [(1, 1), (2, 2), (3, 6)]  # (NPU cores, streams)
LIVE_STREAMS = [2, 6]


def choose_backend(wanted: str, checks: list[Check]) -> tuple[str, str]:
    """rknn on a board whose NPU checks pass, else sim; and why."""
    if wanted != "auto":
        return wanted, "as asked"
    names = {c.name: c for c in checks}
    if names.get("SoC", Check("", "info", "")).status != "ok":
        return "sim", "not an RK3588: the simulated NPU"
    npu_fail = [c.name for c in checks if c.status == "fail" and c.name not in ("/dev/shm",)]
    if npu_fail:
        return "sim", f"the doctor failed ({', '.join(npu_fail)}): the simulated NPU"
    return "rknn", "an RK3588 whose NPU checks pass"


def infer_options(backend: str, cores: list[int]) -> dict[str, Any]:
    if backend == "rknn":
        return {"model": str(RKNN_MODEL), "npu_cores": cores}
    return {"model": "sim:yolov8n", "sim_ms": SIM_MS, "sim_layout": "split", "npu_cores": cores}


def inference_only(backend: str, core: int, calls: int, size: str = "640x640") -> dict[str, float]:
    """The backend alone on one core: ``calls`` inferences back to back, after 5 to warm,
    on an input of ``size`` (a key of ``SIZES``)."""
    hw, model = SIZES[size]
    if backend == "rknn":
        from stages.infer.rknn import RknnBackend

        runner: Any = RknnBackend(model, core, "board_check")
    else:
        from stages.infer.sim import SimBackend

        runner = SimBackend(SIM_MS, core, "split")
    x = np.random.default_rng(0).integers(0, 255, (1, *hw, 3), np.uint8)
    try:
        for _ in range(5):
            runner.run(x)
        t0 = time.perf_counter()
        for _ in range(calls):
            runner.run(x)
        took = time.perf_counter() - t0
    finally:
        runner.close()
    return {"core": core, "fps": calls / took, "ms": 1000 * took / calls}


def input_sizes(backend: str, calls: int) -> dict[str, Any]:
    """Core 0 at each of ``SIZES``, and the time ratio against the pixel ratio (the sim's
    estimate)."""
    ms = {size: inference_only(backend, 0, calls, size)["ms"] for size in SIZES}
    return {
        "core": 0,
        "ms": ms,
        "ratio": ms["640x384"] / ms["640x640"],
        "pixel_ratio": (640 * 384) / (640 * 640),
        "measured_on": "the NPU" if backend == "rknn" else "the sim (scaled by pixels)",
    }


def pipeline_run(
    backend: str, cores: int, streams: int, live: bool, folder: Path, duration: float
) -> dict[str, Any]:
    """The real pipeline for ``duration`` s; figures over its steady window."""
    name = f"{'live' if live else 'cap'}_{cores}c{streams}s"
    npu = infer_options(backend, [c for c in range(cores) for _ in range(2)])
    source = {"live": True, "fps": REF_STREAM_FPS} if live else None
    arrivals = _graphs.arrivals_path(folder, name)
    text = _graphs.detection_graph(name, streams, npu, arrivals, source=source)
    locks = folder / f"locks_{name}"
    locks.mkdir(exist_ok=True)
    env = {"RKPIPE_SIM_LOCK_DIR": str(locks)}
    run = _graphs.run_graph(text, folder, name, duration, min(2.0, duration / 3), env=env)
    fig = _graphs.steady(run)
    drops = sum(s["drops"] for n, s in run.stats["stages"].items() if n.startswith("cam"))
    per_stream = list(fig["stream_fps"].values())
    return {
        "cores": cores,
        "streams": streams,
        "live": live,
        "fps": fig["fps"],
        "stream_fps_min": min(per_stream),
        "stream_fps_mean": sum(per_stream) / len(per_stream),
        "latency_p50_ms": fig["latency_p50_ms"],
        "latency_p99_ms": fig["latency_p99_ms"],
        "cpu_share": fig["cpu_share"],
        "source_drops": drops,
    }


def comparison(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Rows of the table: each measurement against its reference figure."""
    rows = []
    for r in report["inference"]:
        rows.append((f"NPU inference only, core {r['core']}", r["fps"], REF_CORE_FPS, "FPS"))
    for r in report["pipeline"]:
        what = f"pipeline, {r['cores']} core(s), {r['streams']} stream(s), capacity"
        rows.append((what, r["fps"], REF_CORE_FPS * r["cores"], "FPS"))
    for r in report["live"]:
        ref = min(REF_STREAM_FPS, REF_CORE_FPS * r["cores"] / r["streams"])
        what = f"{r['streams']} live 640x360 streams at 30 FPS, slowest stream"
        rows.append((what, r["stream_fps_min"], ref, "FPS"))
    return [
        {"measurement": m, "value": v, "reference": ref, "ratio": v / ref, "unit": unit}
        for m, v, ref, unit in rows
    ]


def markdown(report: dict[str, Any]) -> str:
    lines = [
        f"# rkpipe board check: {report['machine']}",
        "",
        f"backend **{report['backend']}** ({report['backend_why']}); {report['load']}",
        "",
        "| measurement | this machine | reference | ratio |",
        "| --- | --- | --- | --- |",
    ]
    for row in report["comparison"]:
        lines.append(
            f"| {row['measurement']} | {row['value']:.1f} {row['unit']} | "
            f"{row['reference']:.1f} {row['unit']} | {row['ratio']:.2f} |"
        )
    lines += [
        "",
        "| live run | p50 latency | p99 latency | source drops |",
        "| --- | --- | --- | --- |",
    ]
    for r in report["live"]:
        lines.append(
            f"| {r['streams']} streams | {r['latency_p50_ms']:.0f} ms | "
            f"{r['latency_p99_ms']:.0f} ms | {r['source_drops']} |"
        )
    sizes = report.get("input_sizes")
    if sizes:
        lines += [
            "",
            f"NPU time per call, core 0, on {sizes['measured_on']}: 640x640 "
            f"{sizes['ms']['640x640']:.1f} ms, 640x384 {sizes['ms']['640x384']:.1f} ms; ratio "
            f"{sizes['ratio']:.3f} (pixels: {sizes['pixel_ratio']:.3f}, the sim's estimate)",
        ]
    problems = [c for c in report["doctor"] if c["status"] in ("fail", "warn")]
    lines += ["", f"doctor: {len(problems)} problem(s)"]
    lines += [f"- {c['status']}: {c['name']}: {c['detail']}" for c in problems]
    return "\n".join(lines) + "\n"


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--backend", choices=["auto", "rknn", "sim"], default="auto")
    p.add_argument("--out", type=Path, default=Path("."), help="where the reports go")
    p.add_argument("--quick", action="store_true", help="one short run of each kind (for CI)")
    args = p.parse_args()
    checks = run_checks()
    failed = [c for c in checks if c.status == "fail"]
    print(f"doctor: {len(failed)} required check(s) failed", file=sys.stderr)
    for c in failed:
        print(f"  FAIL {c.name}: {c.detail}", file=sys.stderr)
    backend, why = choose_backend(args.backend, checks)
    print(f"backend: {backend} ({why})", file=sys.stderr)
    calls, duration = (20, 4.0) if args.quick else (200, 12.0)
    cases = PIPELINE_CASES[:1] if args.quick else PIPELINE_CASES
    live = LIVE_STREAMS[:1] if args.quick else LIVE_STREAMS
    soc = next((c.detail for c in checks if c.name == "SoC"), "?")
    machine = f"{platform.machine()}, {os.cpu_count()} CPUs; {soc}"
    report: dict[str, Any] = {"machine": machine, "backend": backend, "backend_why": why}
    with tempfile.TemporaryDirectory(prefix="rkpipe-board-") as tmp:
        os.environ["RKPIPE_SIM_LOCK_DIR"] = tmp  # this run's own simulated cores
        report["inference"] = [inference_only(backend, core, calls) for core in range(3)]
        report["input_sizes"] = input_sizes(backend, calls)
        report["pipeline"] = [
            pipeline_run(backend, c, s, False, Path(tmp), duration) for c, s in cases
        ]
        report["live"] = [pipeline_run(backend, 3, s, True, Path(tmp), duration) for s in live]
    report["load"] = _graphs.load_average()
    report["doctor"] = [c.to_json() for c in checks]
    report["comparison"] = comparison(report)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "board_report.json").write_text(json.dumps(report, indent=2))
    text = markdown(report)
    (args.out / "board_report.md").write_text(text)
    print(text)
    print(f"wrote {args.out / 'board_report.json'} and {args.out / 'board_report.md'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
