"""The export, step by step: cut and check the head, build, simulate, compare, summarise.

The cheap steps (load, cut, ONNX Runtime check) run before the toolkit is even looked for,
so a wrong model fails in a second with a message about the model.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import numpy as np

from stages.infer.rknn_export.build import run_build
from stages.infer.rknn_export.calibration import letterbox_rgb, scene_frames, write_calibration
from stages.infer.rknn_export.surgery import HeadCut, cut_heads, load_onnx
from stages.infer.rknn_export.toolkit_env import require_toolkit
from stages.infer.rknn_export.verify import (
    Agreement,
    agreement,
    check_cut,
    onnx_detections,
    sim_detections,
)

__all__ = ["cut_and_check", "export_model"]

CHECK_FRAMES = 2  # synthetic frames for the cut-vs-original check


def cut_and_check(source: Path, split_onnx: Path | None = None) -> tuple[Any, HeadCut, str]:
    """Cut the head and prove with ONNX Runtime that the detections are unchanged."""
    model = load_onnx(source)
    cut, info = cut_heads(model, where=str(source))
    frames = [letterbox_rgb(f, info.input_hw) for f in scene_frames(CHECK_FRAMES)]
    same = check_cut(model, cut, frames)
    if split_onnx is not None:
        split_onnx.parent.mkdir(parents=True, exist_ok=True)
        split_onnx.write_bytes(cut.SerializeToString())
    return cut, info, f"{same.reference} boxes on {same.images} frames identical"


def _verify(cut_path: Path, arrays: list[Path], sim_npz: Path, conf: float) -> Agreement:
    """Simulator detections against the float model's, on the same letterboxed frames."""
    images = [np.load(p) for p in arrays]
    refs = onnx_detections(cut_path, images, conf)
    return agreement(refs, sim_detections(sim_npz, len(images), conf))


def export_model(source: Path, out: Path, workdir: Path, args: argparse.Namespace) -> bool:
    """Run every step and print a summary; False when the check is below --min-recall."""
    t0 = time.monotonic()
    cut, info, same = cut_and_check(source, args.split_onnx)
    h, w = info.input_hw
    print(
        f"cut {source}: input {w}x{h}, {info.num_classes} classes, outputs "
        f"{', '.join(info.outputs)}; ONNX Runtime check: {same} ({time.monotonic() - t0:.1f} s)"
    )
    python = require_toolkit()
    cut_path = workdir / "split.onnx"
    cut_path.write_bytes(cut.SerializeToString())
    calib = write_calibration(workdir / "calib", info.input_hw, args.calib, args.calib_count)
    mode = "FP16" if args.no_quantize else "INT8"
    print(
        f"building {mode} for {args.target} with rknn-toolkit2 (calibration: {calib.source}) ...",
        flush=True,
    )
    out.parent.mkdir(parents=True, exist_ok=True)
    built = run_build(
        python,
        cut_path,
        out,
        calib,
        target=args.target,
        quantize=not args.no_quantize,
        verify_count=args.verify_count,
        workdir=workdir,
    )
    size_mb = out.stat().st_size / 1e6
    print(f"wrote {out} ({size_mb:.1f} MB) in {built.build_s:.1f} s")
    if built.sim_out is None:
        print("simulator check skipped (--verify-count 0)")
        return True
    result = _verify(cut_path, calib.arrays[: args.verify_count], built.sim_out, args.conf)
    print(f"simulator vs float ONNX ({built.sim_s:.1f} s): {result.summary()}")
    if result.reference == 0:
        print(
            f"FAIL: the float model finds nothing at conf {args.conf} on these images; "
            "give --calib images it detects objects in"
        )
        return False
    if result.recall < args.min_recall:
        print(f"FAIL: recall {result.recall:.3f} is below --min-recall {args.min_recall}")
        return False
    print(f"ok: recall {result.recall:.3f} >= {args.min_recall}")
    return True
