"""Train rkpipe's default detector and export it to ``models/rkpipe-yolov8n.onnx``.

A YOLOv8n from scratch (``yolov8n.yaml``, no pretrained weights, nothing downloaded) on the
synthetic street tiles of ``make_dataset.py``, at imgsz 320 on 320x320 crops of full-size
frames; exported at imgsz 640 (the network is fully convolutional), so the ONNX has the stock
``images`` (1, 3, 640, 640) -> ``output0`` (1, 84, 8400) layout. Runs in the training venv
(torch never enters rkpipe's runtime):

    PYTHONPATH=. nohup nice -n 10 models/.venv-train/bin/python models/train_default.py \\
        > models/runs/train.log 2>&1 &
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
os.environ.setdefault("YOLO_OFFLINE", "1")
os.environ.setdefault("YOLO_CONFIG_DIR", str(ROOT / "models" / "runs" / "ultralytics"))
os.environ.setdefault("OMP_NUM_THREADS", "2")


def train(args: argparse.Namespace) -> tuple[Path, float]:
    """Train; returns the best weights and the wall time in seconds."""
    import torch
    from ultralytics import YOLO

    torch.set_num_threads(args.threads)
    model = YOLO("yolov8n.yaml")  # architecture only: trained from scratch
    t0 = time.monotonic()
    model.train(
        data=str(args.data),
        epochs=args.epochs,
        imgsz=320,
        batch=16,
        workers=2,
        cache="ram",
        device="cpu",
        plots=False,
        pretrained=False,
        amp=False,
        seed=args.seed,
        deterministic=True,
        close_mosaic=3,
        scale=0.3,
        fraction=args.fraction,
        optimizer="AdamW",
        lr0=args.lr0,
        project=str(args.runs),
        name="train",
        exist_ok=True,
        verbose=True,
    )
    return args.runs / "train" / "weights" / "best.pt", time.monotonic() - t0


def evaluate(weights: Path, data: Path) -> dict[str, float]:
    """mAP of the best weights on the held-out validation tiles."""
    from ultralytics import YOLO

    m = YOLO(str(weights)).val(data=str(data), imgsz=320, batch=16, device="cpu", plots=False)
    per_class = {m.names[c]: float(m.box.ap50[i]) for i, c in enumerate(m.box.ap_class_index)}
    return {
        "map50": float(m.box.map50),
        "map50_95": float(m.box.map),
        **{f"ap50_{k}": v for k, v in per_class.items()},
    }


def export(weights: Path, out: Path) -> Path:
    """ONNX at 640x640, opset 12, static batch 1; simplified when onnxslim is there."""
    from ultralytics import YOLO

    try:
        import onnxslim  # noqa: F401

        simplify = True
    except ImportError:
        simplify = False
    path = YOLO(str(weights)).export(
        format="onnx", imgsz=640, opset=12, simplify=simplify, dynamic=False, batch=1
    )
    shutil.copyfile(path, out)
    return out


def _rel(path: Path) -> str:
    """``path`` relative to the repo when inside it (records stay machine-independent)."""
    path = path.resolve()
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT / "models" / "data" / "street.yaml")
    p.add_argument("--runs", type=Path, default=ROOT / "models" / "runs")
    p.add_argument("--out", type=Path, default=ROOT / "models" / "rkpipe-yolov8n.onnx")
    p.add_argument("--epochs", type=int, default=12)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    # optimizer=auto would pick AdamW at 0.002 * 5 / (4 + nc): 0.00012 for the 80 COCO
    # classes, too slow from scratch in 12 epochs; 0.002 is its choice for a 1-class set.
    p.add_argument("--lr0", type=float, default=0.002)
    p.add_argument("--fraction", type=float, default=1.0, help="share of train tiles (smoke)")
    args = p.parse_args(argv)
    if not args.data.exists():
        raise SystemExit(f"no dataset at {args.data}: run models/make_dataset.py first")
    weights, wall = train(args)
    metrics = evaluate(weights, args.data)
    onnx = export(weights, args.out)
    summary = {
        "epochs": args.epochs,
        "seed": args.seed,
        "imgsz_train": 320,
        "imgsz_export": 640,
        "train_wall_s": round(wall, 1),
        "weights": _rel(weights),
        "onnx": _rel(onnx),
        "onnx_bytes": onnx.stat().st_size,
        "machine": f"{platform.machine()}, {os.cpu_count()} CPU cores, {platform.platform()}",
        "val": metrics,
    }
    (args.runs / "train_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
