"""Build an .rknn with rknn-toolkit2, run its simulator and, on request, its accuracy
analysis: executed INSIDE the toolkit's venv.

    python build_rknn.py JOB.json

A script for another interpreter: it imports only the standard library, numpy, ruamel.yaml
(a toolkit requirement) and ``rknn``, never rkpipe. JOB.json holds ``onnx``, ``out``,
``target``, ``mode`` (fp16, int8 or hybrid), ``quant_algo``, ``hybrid_layers``, ``dataset`` (a
text file of image paths), ``mean``, ``std``, ``verify_inputs`` (RGB uint8 H x W x 3 .npy
paths), ``sim_out`` (an .npz written with ``out{i}_{j}``: output j of input i) and
``analysis_input`` (an image for the accuracy analysis). It runs in the work folder and
speaks in tagged JSON lines on stdout, the toolkit's log in between:

    RKPIPE_STEP {"step": "quantize", ...}     a step begins (simulate: once per image)
    RKPIPE_ASK {"build_s": ..., "sim_s": ...} the simulator outputs are written; it then reads
                                              one JSON line on stdin: {"analyze": true|false}
    RKPIPE_RESULT {...}                       timings, toolkit version, analysis figures

and exits non-zero naming the step that failed.

Hybrid: build INT8, run the accuracy analysis, then keep the ``hybrid_layers`` layers with the
lowest single-layer cosine in FP16 (``hybrid_quantization_step1``, their names under
``custom_quantize_layers`` in the quantization config, ``hybrid_quantization_step2``).
"""

from __future__ import annotations

import json
import re
import shutil
import sys
import time
from pathlib import Path
from typing import Any

STEP, ASK, RESULT = "RKPIPE_STEP", "RKPIPE_ASK", "RKPIPE_RESULT"
# 2.5.0's fusion of attention into one SDPA op fails on YOLO11's C2PSA block (IndexError);
# unfused, the block builds and runs (the toolkit's own advice for that error)
DISABLED_RULES = ["fuse_exmatmul_add_mul_exsoftmax13_exmatmul_to_sdpa"]
_ANSI = re.compile(r"\x1b\[[0-9;]*m")
_ROW = re.compile(r"^\[(\w+)\]\s+(\S+)\s*(.*)$")
_FIGURE = re.compile(r"q_zero|-?\d+\.\d+(?:e[-+]?\d+)?|-?\d+")


def emit(tag: str, data: dict[str, Any]) -> None:
    print(f"{tag} {json.dumps(data)}", flush=True)


def _call(step: str, fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call a toolkit method: it returns 0 on success, an error code or raises (with its
    traceback in the log) otherwise; either stops the build with the step named."""
    try:
        ret = fn(*args, **kwargs)
    except Exception as exc:
        last = (str(exc).strip().splitlines() or [type(exc).__name__])[-1]
        print(f"rknn-toolkit2: {step} failed: {last}", flush=True)
        sys.exit(3)
    if ret != 0:
        print(f"rknn-toolkit2: {step} failed (code {ret}); see the toolkit log above", flush=True)
        sys.exit(3)
    return ret


def parse_analysis(text: str) -> list[dict[str, Any]]:
    """Rows of the toolkit's error_analysis.txt: op, layer (output tensor name), and the
    cosine of the layer's output against the float model, ``entire`` (errors accumulated
    from the input) and ``single`` (this layer alone, fed float inputs); None where the
    toolkit gives no figure (a fused layer, or an output quantized to all zeros)."""
    rows = []
    for line in _ANSI.sub("", text).splitlines():
        m = _ROW.match(line.strip())
        if not m:
            continue
        figures = _FIGURE.findall(m.group(3))
        cos = [None if f == "q_zero" else float(f) for f in figures[0:4:2]]
        entire, single = cos if len(figures) >= 4 else (None, None)
        rows.append({"op": m.group(1), "layer": m.group(2), "entire": entire, "single": single})
    return rows


def _new(job: dict[str, Any]) -> Any:
    """An RKNN object configured and loaded with the job's ONNX."""
    from rknn.api import RKNN

    rknn = RKNN(verbose=False)
    opts = {
        "mean_values": [job["mean"]],
        "std_values": [job["std"]],
        "target_platform": job["target"],
        "quantized_algorithm": job["quant_algo"],
        "disable_rules": DISABLED_RULES,
    }
    _call("config", rknn.config, **opts)
    _call(f"load_onnx({job['onnx']})", rknn.load_onnx, model=job["onnx"])
    return rknn


def build(job: dict[str, Any], quantize: bool) -> Any:
    emit(STEP, {"step": "quantize" if quantize else "build", "algo": job["quant_algo"]})
    rknn = _new(job)
    dataset = job["dataset"] if quantize else None
    _call("build", rknn.build, do_quantization=quantize, dataset=dataset)
    return rknn


def analyse(rknn: Any, job: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    """The toolkit's accuracy analysis on one image; its per-layer dumps (GBs) are deleted,
    its table kept as accuracy_<tag>.txt."""
    emit(STEP, {"step": "analyse", "of": tag})
    snap = Path(f"analysis_{tag}")
    _call("accuracy analysis", rknn.accuracy_analysis, [job["analysis_input"]], str(snap))
    table = Path(f"accuracy_{tag}.txt")
    shutil.copy(snap / "error_analysis.txt", table)
    shutil.rmtree(snap, ignore_errors=True)
    return parse_analysis(table.read_text(errors="replace"))


def worst_layers(rows: list[dict[str, Any]], allowed: set[str], count: int) -> list[dict[str, Any]]:
    """The ``count`` layers in ``allowed`` with the lowest single-layer cosine."""
    scored = [r for r in rows if r["layer"] in allowed and r["single"] is not None]
    return sorted(scored, key=lambda r: r["single"])[:count]


def build_hybrid(job: dict[str, Any]) -> tuple[Any, list[dict[str, Any]]]:
    """INT8 with the worst layers (by the analysis of a plain INT8 build) kept in FP16."""
    from rknn.api import RKNN
    from ruamel.yaml import YAML  # type: ignore[import-not-found]  # the toolkit venv's

    first = build(job, quantize=True)
    rows = analyse(first, job, "int8")
    first.release()
    emit(STEP, {"step": "hybrid", "layers": job["hybrid_layers"]})
    rknn = _new(job)
    _call("hybrid step 1", rknn.hybrid_quantization_step1, dataset=job["dataset"])
    rknn.release()
    stem = Path(job["onnx"]).stem
    cfg_path = Path(f"{stem}.quantization.cfg")
    text = cfg_path.read_text()
    params = YAML(typ="safe").load(text)["quantize_parameters"]
    quantized = {k for k, v in params.items() if v.get("dtype") == "int8"}
    chosen = worst_layers(rows, quantized, int(job["hybrid_layers"]))
    # edited as text: a YAML round trip rewrites the floats, and step 2 refuses a config
    # whose recorded ranges changed
    layers = "".join(f"    '{r['layer'].replace(chr(39), chr(39) * 2)}': float16\n" for r in chosen)
    empty = "custom_quantize_layers: {}\n"
    if empty not in text:
        print(f"rknn-toolkit2: hybrid: no '{empty.strip()}' in {cfg_path}", flush=True)
        sys.exit(3)
    cfg_path.write_text(text.replace(empty, f"custom_quantize_layers:\n{layers}", 1))
    rknn = RKNN(verbose=False)
    files = (f"{stem}.model", f"{stem}.data", str(cfg_path))
    _call("hybrid step 2", rknn.hybrid_quantization_step2, *files)
    return rknn, chosen


def simulate(rknn: Any, job: dict[str, Any]) -> None:
    """Run the toolkit's simulator (init_runtime with no target) on each verify input."""
    import numpy as np

    _call("init_runtime (simulator)", rknn.init_runtime)
    results: dict[str, Any] = {}
    paths = job["verify_inputs"]
    for i, path in enumerate(paths):
        emit(STEP, {"step": "simulate", "done": i, "total": len(paths)})
        x = np.load(path)[None]  # (1, H, W, 3) uint8 RGB
        outs = rknn.inference(inputs=[x], data_format="nhwc")
        if outs is None:
            print(f"rknn-toolkit2: simulator inference failed on {path}", flush=True)
            sys.exit(3)
        for j, out in enumerate(outs):
            results[f"out{i}_{j}"] = np.asarray(out, np.float32)
    np.savez(job["sim_out"], **results)


def _toolkit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("rknn-toolkit2")
    except PackageNotFoundError:
        return "unknown"


def main(argv: list[str]) -> int:
    job = json.loads(Path(argv[1]).read_text())
    result: dict[str, Any] = {"toolkit_version": _toolkit_version(), "hybrid": []}
    t0 = time.monotonic()
    if job["mode"] == "hybrid":
        rknn, result["hybrid"] = build_hybrid(job)
    else:
        rknn = build(job, quantize=job["mode"] == "int8")
    emit(STEP, {"step": "export"})
    _call(f"export_rknn({job['out']})", rknn.export_rknn, job["out"])
    result["build_s"] = round(time.monotonic() - t0, 2)
    t1 = time.monotonic()
    if job["verify_inputs"]:
        simulate(rknn, job)
    result["sim_s"] = round(time.monotonic() - t1, 2)
    emit(ASK, {"build_s": result["build_s"], "sim_s": result["sim_s"]})
    answer = json.loads(sys.stdin.readline() or "{}")
    t2 = time.monotonic()
    result["analysis"] = analyse(rknn, job, job["mode"]) if answer.get("analyze") else []
    result["analysis_s"] = round(time.monotonic() - t2, 2)
    rknn.release()
    emit(RESULT, result)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
