"""``rkpipe export`` over stock random-weight YOLOv8n/s and YOLO11n/s, in FP16 and INT8, from
a folder of calibration images: what each export prints as its agreement, and what it costs.

Each architecture comes two ways (``support.stock_models``, exported in a throwaway
Ultralytics venv): ``stock``, Ultralytics' untrained model, whose outputs are its head
biases whatever the image; and ``live``, BatchNorm statistics set from noise so the outputs
depend on the image and boxes appear, as with a trained model. Per export: the cut check's
largest errors (decoded boxes in pixels, scores), the simulator's cosine per output (the
lowest, and which), box recall / mean IoU at conf 0.25, whether the check passed, and the
wall time; FP16 is the baseline each INT8 export's time is set against.

    python benchmarks/bench_export.py [--archs yolov8n,yolov8s,yolo11n,yolo11s]
        [--modes fp16,int8] [--inits stock,live] [--calib-count 20] [--verify-count 10]
        [--json OUT.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from stages.infer.rknn_export.calibration import scene_frames  # noqa: E402
from support.stock_models import StockModels  # noqa: E402


def calib_folder(root: Path, count: int) -> Path:
    """``count`` JPEG street-scene frames, as a user's folder of images would be."""
    folder = root / "calib"
    folder.mkdir()
    for k, frame in enumerate(scene_frames(count)):
        cv2.imwrite(str(folder / f"f{k:03d}.jpg"), frame)
    return folder


def export(model: Path, out: Path, calib: Path, mode: str, args: argparse.Namespace) -> dict:
    """One ``rkpipe export`` run; its sidecar's figures, exit status and wall time."""
    cmd = [sys.executable, "-m", "pipeline.cli", "export", str(model), "-o", str(out)]
    cmd += ["--calib", str(calib), "--calib-count", str(args.calib_count)]
    cmd += ["--verify-count", str(args.verify_count)] + (
        ["--no-quantize"] if mode == "fp16" else []
    )
    t0 = time.monotonic()
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
    wall = time.monotonic() - t0
    sidecar = out.with_name(out.name + ".json")
    if not sidecar.is_file():
        return {"exit": proc.returncode, "wall_s": wall, "error": proc.stderr.strip()[-300:]}
    check = json.loads(sidecar.read_text())["check"]
    return {"exit": proc.returncode, "wall_s": wall, **check}


def row(name: str, mode: str, r: dict, base_s: float | None) -> str:
    if "error" in r:
        return f"{name:<18} {mode:<5} exit {r['exit']}: {r['error']}"
    cut = r["cut"]["tensors"]
    sim = r["simulator"]["outputs"]
    worst = min(sim, key=lambda k: sim[k]["cosine"])
    cosines = " ".join(f"{sim[k]['cosine']:.4f}" for k in sim)
    boxes = r["simulator"]["boxes"]
    found = (
        f"{boxes['recall']:.3f}/{boxes['mean_iou']:.3f} of {boxes['reference_boxes']}"
        if boxes["reference_boxes"]
        else "no boxes either side"
    )
    ratio = f"{r['wall_s'] / base_s:4.1f}x" if base_s else "  -  "
    verdict = "pass" if r["passed"] else "FAIL"
    return (
        f"{name:<18} {mode:<5} {cut['boxes']['max_abs']:9.2g} {cut['scores']['max_abs']:8.2g}  "
        f"{cosines}  {worst:<5} {found:<24} {verdict}  {r['wall_s']:6.1f} s {ratio}"
    )


HEADER = (
    f"{'model':<18} {'mode':<5} {'cut px':>9} {'cut sc':>8}  "
    f"{'cosine box8 cls8 box16 cls16 box32 cls32':<41}  {'worst':<5} "
    f"{'recall/IoU at 0.25':<24} check  {'time':>8} vs fp16"
)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--archs", default="yolov8n,yolov8s,yolo11n,yolo11s")
    p.add_argument("--modes", default="fp16,int8")
    p.add_argument("--inits", default="stock,live")
    p.add_argument("--calib-count", type=int, default=20)
    p.add_argument("--verify-count", type=int, default=10)
    p.add_argument("--json", type=Path, help="write every run's figures here")
    args = p.parse_args()
    stock = StockModels()
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="bench-export-") as tmp:
        calib = calib_folder(Path(tmp), args.calib_count)
        print(HEADER, flush=True)
        for arch in args.archs.split(","):
            for init in args.inits.split(","):
                model = stock.get(arch, 80, live=init == "live")
                name = f"{arch}-{init}"
                base = None
                for mode in args.modes.split(","):
                    r = export(model, Path(tmp) / f"{name}-{mode}.rknn", calib, mode, args)
                    results[f"{name}/{mode}"] = r
                    print(row(name, mode, r, base if mode != "fp16" else None), flush=True)
                    base = r["wall_s"] if mode == "fp16" else base
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
