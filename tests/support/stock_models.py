"""Stock Ultralytics detectors with random weights, for the export tests and benchmark.

``models/export_stock.py`` makes them inside a throwaway Ultralytics venv that this module
creates once (``$RKPIPE_ULTRALYTICS_VENV`` or ``~/.cache/rkpipe/ultralytics``, about 1.6 GB,
a minute); the ONNX files are cached under ``~/.cache/rkpipe/stock-models/<key>/``, keyed by
the script and the pinned versions, so a fresh machine pays once and later runs nothing.
A file lock keeps concurrent test runs on one machine from building twice. Nothing is
downloaded but packages: the weights are Ultralytics' random initialisation.

torch 2.13.0 is the CPU build rkpipe's machines keep on local disk (the rknn-toolkit2 venv
uses it too); torchvision 0.28.0 is its pair. That torchvision wheel is a CUDA build whose
ops do not load beside a CPU torch, but a detection export never calls them.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.rkpipe import ROOT

__all__ = ["REQUIREMENTS", "StockModels", "ultralytics_python"]

SCRIPT = ROOT / "models" / "export_stock.py"
REQUIREMENTS = [
    "torch==2.13.0",
    "torchvision==0.28.0",
    "ultralytics==8.4.190",
    "onnx==1.23.2",
    "onnxslim==0.1.98",
]
CACHE = Path.home() / ".cache" / "rkpipe"


def _venv() -> Path:
    env = os.environ.get("RKPIPE_ULTRALYTICS_VENV")
    return Path(env).expanduser() if env else CACHE / "ultralytics"


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _run(cmd: list[str], what: str, timeout: float) -> None:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-12:])
        raise RuntimeError(f"{what} failed (exit {proc.returncode}):\n{tail}")


def ultralytics_python() -> Path:
    """The throwaway venv's interpreter, made (under a lock) if it is not there yet."""
    venv = _venv()
    python, ready = venv / "bin" / "python", venv / "rkpipe-requirements.txt"
    wanted = "\n".join(REQUIREMENTS) + "\n"
    with _locked(venv.with_name(venv.name + ".lock")):
        if ready.is_file() and ready.read_text() == wanted and python.exists():
            return python
        _run([sys.executable, "-m", "venv", "--clear", str(venv)], f"venv {venv}", 300)
        pip = [str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check"]
        _run(["nice", "-n", "10", *pip, *REQUIREMENTS], f"pip install in {venv}", 1800)
        ready.write_text(wanted)
    return python


# Ultralytics' own export of the same weights at a rectangular size: export_stock.py's
# export() with imgsz [h, w], the BatchNorm statistics still set from 640x640 noise (so the
# weights are those of the 640 file); run inline so the script, and the cache key, stay as
# they are
_AT_SIZE = (
    "import sys, pathlib; sys.path.insert(0, {models!r}); import export_stock as e; "
    "e._offline(); bn = e._calibrate_bn; e._calibrate_bn = lambda m, _s: bn(m, 640); "
    "e.export({arch!r}, {nc}, [{h}, {w}], 0, pathlib.Path({out!r}), {live})"
)


class StockModels:
    """``get("yolo11n", nc=2)`` -> the cached ONNX, exported on first use."""

    def __init__(self) -> None:
        key = hashlib.sha256(SCRIPT.read_bytes() + "".join(REQUIREMENTS).encode())
        self.dir = CACHE / "stock-models" / key.hexdigest()[:12]

    def get(self, arch: str, nc: int = 80, live: bool = False, imgsz: int = 640) -> Path:
        """``live``: BatchNorm statistics set from noise (``--calibrate-bn``), so the
        outputs depend on the image; else Ultralytics' own untrained model."""
        name = f"{arch}-nc{nc}{'-live' if live else ''}-{imgsz}.onnx"
        out = self.dir / name
        with _locked(self.dir / ".lock"):
            if not out.is_file():
                cmd = [str(ultralytics_python()), str(SCRIPT), arch, "--nc", str(nc)]
                cmd += ["--imgsz", str(imgsz), "-o", str(out)] + (
                    ["--calibrate-bn"] if live else []
                )
                _run(["nice", "-n", "10", *cmd], f"exporting {name}", 600)
        return out

    def get_at(self, arch: str, hw: tuple[int, int], nc: int = 80, live: bool = False) -> Path:
        """The same model as ``get(arch, nc, live)``, exported by Ultralytics at input
        (height, width) ``hw``: the reference a resize to that size must equal."""
        name = f"{arch}-nc{nc}{'-live' if live else ''}-{hw[1]}x{hw[0]}.onnx"
        out = self.dir / name
        with _locked(self.dir / ".lock"):
            if not out.is_file():
                code = _AT_SIZE.format(
                    models=str(SCRIPT.parent), arch=arch, nc=nc, h=hw[0], w=hw[1],
                    out=str(out), live=live,
                )  # fmt: skip
                cmd = ["nice", "-n", "10", str(ultralytics_python()), "-c", code]
                _run(cmd, f"exporting {name}", 600)
        return out
