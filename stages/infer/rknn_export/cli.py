"""``rkpipe export``: stock YOLOv8 ONNX (or .pt) -> a verified RK3588 .rknn.

    rkpipe export --setup                           # once: the rknn-toolkit2 venv
    rkpipe export models/rkpipe-yolov8n.onnx        # -> models/rkpipe-yolov8n.rknn

Steps: cut the head (checked with ONNX Runtime), build with rknn-toolkit2 in its own venv
(INT8 by default), then run the toolkit's simulator and compare with the float model.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pipeline.errors import ModelError, RkpipeError

__all__ = ["main"]

TARGETS = ("rk3588",)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rkpipe export",
        description="Convert a stock Ultralytics YOLOv8/YOLO11 detection model to a verified "
        "RKNN model: cut the head, build with rknn-toolkit2, check in its simulator.",
    )
    p.add_argument("model", type=Path, nargs="?", help="MODEL.onnx (or .pt with ultralytics)")
    p.add_argument("--target", default="rk3588", choices=TARGETS, help="NPU platform")
    p.add_argument("-o", "--output", type=Path, metavar="OUT.rknn", help="default: MODEL.rknn")
    p.add_argument(
        "--calib",
        type=Path,
        metavar="DIR",
        help="calibration images (default: synthetic street scenes)",
    )
    p.add_argument(
        "--calib-count",
        type=int,
        default=20,
        metavar="N",
        help="calibration images used (default 20)",
    )
    p.add_argument(
        "--verify-count",
        type=int,
        default=10,
        metavar="N",
        help="of those, images run in the simulator (default 10; 0 skips)",
    )
    p.add_argument("--no-quantize", action="store_true", help="FP16 instead of INT8")
    p.add_argument(
        "--min-recall",
        type=float,
        default=0.9,
        help="fail below this recall of the float model's boxes (default 0.9)",
    )
    p.add_argument("--conf", type=float, default=0.25, help="score threshold for the check")
    p.add_argument(
        "--split-onnx",
        type=Path,
        metavar="FILE.onnx",
        help="also save the cut float ONNX (runs with rkpipe's onnx backend)",
    )
    p.add_argument("--imgsz", type=int, default=640, help=".pt only: export size")
    p.add_argument(
        "--setup",
        action="store_true",
        help="create the rknn-toolkit2 venv first ($RKPIPE_RKNN_VENV or "
        "~/.cache/rkpipe/rknn-toolkit2)",
    )
    return p


def _onnx_from_pt(path: Path, imgsz: int) -> Path:
    """Export a .pt to ONNX (opset 12) with ultralytics, when it is importable here."""
    try:
        from ultralytics import YOLO
    except ImportError:
        msg = (
            f"{path}: exporting a .pt needs ultralytics, which is not installed here. Export "
            "it to ONNX in a venv that has it (pip install torch==2.14.1 torchvision==0.29.1 "
            f"ultralytics), e.g. `yolo export model={path} format=onnx opset=12 "
            f"imgsz={imgsz}`, then run `rkpipe export {path.with_suffix('.onnx')}`"
        )
        raise ModelError(msg) from None
    if not path.is_file():
        raise ModelError(f"model {path} not found")
    print(f"exporting {path} to ONNX (opset 12, imgsz {imgsz}) with ultralytics ...")
    return Path(YOLO(str(path)).export(format="onnx", opset=12, imgsz=imgsz))


def _check_args(args: argparse.Namespace) -> None:
    problems = []
    if not 0.0 <= args.min_recall <= 1.0:
        problems.append(f"--min-recall must be within 0..1, got {args.min_recall}")
    if not 0.0 < args.conf < 1.0:
        problems.append(f"--conf must be within 0..1, got {args.conf}")
    if args.calib_count < 1 or not 0 <= args.verify_count <= args.calib_count:
        problems.append("need --calib-count >= 1 and 0 <= --verify-count <= --calib-count")
    if args.calib is not None and not args.calib.is_dir():
        problems.append(f"--calib {args.calib}: not a folder of images")
    if args.output is not None and args.output.suffix != ".rknn":
        problems.append(f"-o {args.output}: the output must end in .rknn")
    if problems:
        raise RkpipeError("; ".join(problems))


def export(args: argparse.Namespace) -> int:
    """The whole export; returns the exit status (1 when the check is below --min-recall)."""
    from stages.infer.rknn_export.steps import export_model
    from stages.infer.rknn_export.toolkit_env import setup_toolkit

    _check_args(args)
    if args.setup:
        setup_toolkit()
    if args.model is None:
        if args.setup:
            return 0
        raise RkpipeError("give a MODEL.onnx to export, or --setup to install the toolkit")
    source = args.model
    if source.suffix == ".pt":
        source = _onnx_from_pt(source, args.imgsz)
    out = args.output or args.model.with_suffix(".rknn")
    workdir = Path(tempfile.mkdtemp(prefix="rkpipe-export-"))
    t0 = time.monotonic()
    ok = False
    try:
        passed = export_model(source, out, workdir, args)
        ok = True
    finally:
        if ok or not (workdir / "build.log").exists():
            shutil.rmtree(workdir, ignore_errors=True)
        else:  # the toolkit's log and inputs, for a look at what went wrong
            print(f"rkpipe export: work files kept in {workdir}", file=sys.stderr)
    print(f"done in {time.monotonic() - t0:.1f} s")
    return 0 if passed else 1


def main(argv: list[str] | None = None) -> int:
    """convert a YOLOv8/YOLO11 ONNX to a verified RK3588 .rknn (rknn-toolkit2)"""
    args = _parser().parse_args(sys.argv[1:] if argv is None else argv)
    try:
        return export(args)
    except RkpipeError as exc:
        print(f"rkpipe export: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
