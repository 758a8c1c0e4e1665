"""``rkpipe export``: stock YOLOv8 / YOLO11 ONNX (or .pt) -> a verified RK3588 .rknn.

    rkpipe export --setup                           # once: the rknn-toolkit2 venv
    rkpipe export models/rkpipe-yolov8n.onnx        # -> models/rkpipe-yolov8n.rknn (+ .json)
    rkpipe export models/rkpipe-yolov8n.onnx --imgsz 640x384
        # -> models/rkpipe-yolov8n-640x384.rknn (+ .json) and the cut -640x384.onnx

Steps: cut the head and check the cut against the original (ONNX Runtime), build with
rknn-toolkit2 in its own venv (INT8 by default), run the toolkit's simulator and compare
with the float model, tensors first, boxes second.
"""

from __future__ import annotations

import argparse
import importlib.util
import shutil
import sys
import tempfile
import time
from pathlib import Path

from pipeline.errors import ModelError, RkpipeError

__all__ = ["main"]

TARGETS = ("rk3588",)
QUANT_ALGOS = ("normal", "mmse", "kl_divergence")
EXIT_CODES = """exit status:
  0    written, and every check passed
  1    written, but the simulator check failed (the .rknn and its .json, with "passed": false,
       are kept for a look; the figures and remedies are printed)
  2    bad command line, or --calib images or labels that cannot be read
  3    the model cannot be read or cut, or the cut does not reproduce it
  4    rknn-toolkit2 missing (see --setup) or its build failed (its log is kept)
  130  interrupted"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="rkpipe export",
        description="Convert a stock Ultralytics YOLOv8/YOLO11 detection model to a verified "
        "RKNN model: cut the head, build with rknn-toolkit2, check in its simulator.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("model", type=Path, nargs="?", help="MODEL.onnx (or .pt with ultralytics)")
    p.add_argument("--target", default="rk3588", choices=TARGETS, help="NPU platform")
    p.add_argument("-o", "--output", type=Path, metavar="OUT.rknn", help="default: MODEL.rknn")
    p.add_argument(
        "--calib",
        type=Path,
        metavar="DIR",
        help="calibration and check images, YOLO labels (.txt) beside them optional "
        "(default: synthetic street scenes)",
    )
    p.add_argument(
        "--calib-count", type=int, default=20, metavar="N", help="images used (default 20)"
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
        "--quant-algo",
        default="normal",
        choices=QUANT_ALGOS,
        help="INT8 calibration algorithm (default normal; mmse is slower and often closer)",
    )
    p.add_argument(
        "--hybrid",
        type=int,
        default=0,
        metavar="N",
        help="keep the N layers that lose most in INT8 (the toolkit's accuracy analysis) in FP16",
    )
    p.add_argument(
        "--analyze",
        action="store_true",
        help="always run the toolkit's per-layer accuracy analysis (it runs anyway on a failure)",
    )
    p.add_argument(
        "--min-cosine",
        type=float,
        default=0.98,
        help="fail below this cosine similarity on any output (default 0.98)",
    )
    p.add_argument(
        "--min-recall",
        type=float,
        default=0.9,
        help="fail below this recall of the float model's boxes, where it finds any (default 0.9)",
    )
    p.add_argument("--conf", type=float, default=0.25, help="score threshold of the box checks")
    p.add_argument(
        "--split-onnx",
        type=Path,
        metavar="FILE.onnx",
        help="also save the cut float ONNX (runs with rkpipe's onnx backend)",
    )
    p.add_argument(
        "--imgsz",
        metavar="WxH",
        help="model input, width x height (e.g. 640x384 for 16:9 cameras) or one size "
        "(default: the model's own; .pt: 640). At another size than the model's, the cut ONNX "
        "is written beside the .rknn too (or to --split-onnx)",
    )
    p.add_argument(
        "--setup",
        action="store_true",
        help="create the rknn-toolkit2 venv first ($RKPIPE_RKNN_VENV or "
        "~/.cache/rkpipe/rknn-toolkit2)",
    )
    return p


def _onnx_from_pt(path: Path, hw: tuple[int, int]) -> Path:
    """Export a .pt to ONNX (opset 12) with ultralytics, when it is importable here."""
    try:
        from ultralytics import YOLO
    except ImportError:
        msg = (
            f"{path}: exporting a .pt needs ultralytics, which is not installed here. Export "
            "it to ONNX in a venv that has it (pip install torch==2.14.1 torchvision==0.29.1 "
            f"ultralytics), e.g. `yolo export model={path} format=onnx opset=12 "
            f"imgsz={hw[0]},{hw[1]}`, then run `rkpipe export {path.with_suffix('.onnx')}`"
        )
        raise ModelError(msg) from None
    if not path.is_file():
        raise ModelError(f"model {path} not found")
    print(f"exporting {path} to ONNX (opset 12, {hw[1]}x{hw[0]}) with ultralytics ...")
    return Path(YOLO(str(path)).export(format="onnx", opset=12, imgsz=list(hw)))


def _check_args(args: argparse.Namespace) -> None:
    from stages.infer.rknn_export.calibration import UsageError
    from stages.infer.rknn_export.resize import parse_imgsz

    problems = []
    for name in ("min_recall", "min_cosine"):
        if not 0.0 <= getattr(args, name) <= 1.0:
            problems.append(f"--{name.replace('_', '-')} must be within 0..1")
    if not 0.0 < args.conf < 1.0:
        problems.append(f"--conf must be within 0..1, got {args.conf}")
    if args.calib_count < 1 or not 0 <= args.verify_count <= args.calib_count:
        problems.append("need --calib-count >= 1 and 0 <= --verify-count <= --calib-count")
    if args.calib is not None and not args.calib.is_dir():
        problems.append(f"--calib {args.calib}: not a folder of images")
    if args.output is not None and args.output.suffix != ".rknn":
        problems.append(f"-o {args.output}: the output must end in .rknn")
    if args.hybrid < 0 or (args.hybrid and args.no_quantize):
        problems.append("--hybrid N takes N >= 1 layers of an INT8 build (not --no-quantize)")
    args.input_hw = None
    if args.imgsz is not None:
        try:
            args.input_hw = parse_imgsz(args.imgsz)
        except ValueError as exc:
            problems.append(str(exc))
    split, model = args.split_onnx, args.model
    if split is not None and model is not None and split.resolve() == model.resolve():
        problems.append(f"--split-onnx {args.split_onnx}: that is the model itself")
    if problems:
        raise UsageError("; ".join(problems))


def _setup() -> None:
    """The toolkit venv, and a word if this environment lacks what export needs itself."""
    from stages.infer.rknn_export.toolkit_env import setup_toolkit

    setup_toolkit()
    if importlib.util.find_spec("onnx") is None:
        print("rkpipe export also needs onnx in this environment: pip install -e '.[export]'")


def _default_output(model: Path, hw: tuple[int, int] | None) -> Path:
    """MODEL.rknn, or MODEL-WxH.rknn for another input size than the model's own."""
    if hw is not None and model.suffix == ".onnx":
        from stages.infer.rknn_export.surgery import input_size_of, load_onnx

        _, own = input_size_of(load_onnx(model), str(model))
        if own != hw:
            return model.with_name(f"{model.stem}-{hw[1]}x{hw[0]}.rknn")
    return model.with_suffix(".rknn")


def export(args: argparse.Namespace) -> int:
    """The whole export; returns the exit status (1 when the simulator check fails)."""
    from stages.infer.rknn_export.calibration import UsageError
    from stages.infer.rknn_export.steps import export_model

    _check_args(args)
    if args.setup:
        _setup()
    if args.model is None:
        if args.setup:
            return 0
        raise UsageError("give a MODEL.onnx to export, or --setup to install the toolkit")
    source = args.model
    if source.suffix == ".pt":
        source = _onnx_from_pt(source, args.input_hw or (640, 640))
    out = args.output or _default_output(args.model, args.input_hw)
    # not "rkpipe-...": the runtime sweeps folders named like its runs ("rkpipe-<id>-...")
    workdir = Path(tempfile.mkdtemp(prefix="rkpipe_export_"))
    t0 = time.monotonic()
    ok = False
    try:
        passed = export_model(source, out, workdir, args)
        ok = passed
    finally:
        if ok or not (workdir / "build.log").exists():
            shutil.rmtree(workdir, ignore_errors=True)
        else:  # the toolkit's log, inputs and analysis, for a look at what went wrong
            print(f"rkpipe export: work files kept in {workdir}", file=sys.stderr)
    print(f"done in {time.monotonic() - t0:.1f} s" + ("" if passed else ": the check FAILED"))
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
