"""Export stock Ultralytics detectors with random weights to ONNX: stand-ins for users' models.

    python models/export_stock.py yolov8n --nc 2 -o yolov8n-nc2.onnx [--imgsz 640] [--seed 0]
                                  [--calibrate-bn]

Runs INSIDE a throwaway Ultralytics venv (``tests/support/stock_models.py`` makes it), never in
rkpipe's. ``YOLO("yolov8n.yaml")`` builds the architecture with freshly initialised weights,
so nothing is downloaded; ``--nc`` sets the class count, as a user's licence-plate (1), PPE
(a few) or COCO (80) model has. The export is Ultralytics' own default ONNX export (onnxslim
on, static 1 x 3 x imgsz x imgsz), i.e. what a user gets from ``model.export(format="onnx")``.
Sockets are closed off before Ultralytics loads, so no settings sync, font or asset fetch can
reach the network.

Ultralytics' own initialisation shrinks activations layer by layer, so an untrained export
outputs its head biases whatever the image: fine for the surgery and build, useless for
telling a good conversion from a bad one. ``--calibrate-bn`` sets every BatchNorm's
statistics from a few forward passes over noise images, so activations reach the head and
the outputs depend on the input, as a trained model's do; the weights stay random.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import sys
import tempfile
from pathlib import Path
from typing import Any


def _no_network(*_args: object, **_kwargs: object) -> None:
    raise OSError("network access is disabled while exporting stock models")


def _offline() -> None:
    """No network for anything Ultralytics might try (settings sync, fonts, assets)."""
    os.environ["YOLO_OFFLINE"] = "1"
    os.environ.setdefault("YOLO_CONFIG_DIR", tempfile.mkdtemp(prefix="ultralytics-cfg-"))
    socket.socket.connect = _no_network  # type: ignore[method-assign]
    socket.socket.connect_ex = _no_network  # type: ignore[method-assign]
    socket.create_connection = _no_network  # type: ignore[assignment]
    socket.getaddrinfo = _no_network  # type: ignore[assignment]


def _calibrate_bn(model: Any, imgsz: int) -> None:
    """BatchNorm statistics from noise images (cumulative average over 4 batches of 2)."""
    import torch

    for m in model.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None
    model.train()
    with torch.no_grad():
        for _ in range(4):
            model(torch.rand(2, 3, imgsz, imgsz))
    model.eval()


def export(arch: str, nc: int, imgsz: int, seed: int, out: Path, calibrate_bn: bool) -> Path:
    """Build ``arch`` (e.g. yolov8n, yolo11s) with ``nc`` classes from seed ``seed`` and export."""
    import torch
    from ultralytics import YOLO
    from ultralytics.cfg import DEFAULT_CFG_DICT
    from ultralytics.nn.tasks import DetectionModel, yaml_model_load

    torch.manual_seed(seed)
    cfg = yaml_model_load(f"{arch}.yaml")
    cfg["nc"] = nc
    yolo = YOLO(f"{arch}.yaml", task="detect")
    yolo.model = DetectionModel(cfg, nc=nc, verbose=False)
    if calibrate_bn:
        _calibrate_bn(yolo.model, imgsz)
    yolo.model.args = {**DEFAULT_CFG_DICT, **yolo.overrides}
    yolo.model.task = "detect"
    with tempfile.TemporaryDirectory(prefix="stock-export-") as work:
        os.chdir(work)  # Ultralytics writes next to the model name
        made = Path(yolo.export(format="onnx", imgsz=imgsz, device="cpu"))
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".part")
        shutil.move(str(made), tmp)
        tmp.replace(out)  # atomic: a reader never sees half a file
    return out


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("arch", help="yolov8n, yolov8s, yolo11n, yolo11s, ... (an Ultralytics yaml)")
    p.add_argument("--nc", type=int, default=80, help="number of classes (default 80)")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--seed", type=int, default=0, help="torch seed for the random weights")
    p.add_argument(
        "--calibrate-bn",
        action="store_true",
        help="set BatchNorm statistics from noise images so outputs depend on the input",
    )
    p.add_argument("-o", "--output", type=Path, required=True, metavar="OUT.onnx")
    args = p.parse_args(argv)
    _offline()
    out = export(
        args.arch, args.nc, args.imgsz, args.seed, args.output.resolve(), args.calibrate_bn
    )
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
