"""Find or create the separate venv that holds rknn-toolkit2 (x86_64 model builder).

The toolkit pins old numpy, protobuf and onnx and wants torch at import, so it never shares
rkpipe's environment: ``rkpipe export --setup`` makes its own venv at $RKPIPE_RKNN_VENV or
``~/.cache/rkpipe/rknn-toolkit2``. Its ``torch<=2.4`` pin is too strict (torch 2.13 CPU
works), so torch and the other requirements go in first and the toolkit with ``--no-deps``.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pipeline.errors import RkpipeError

__all__ = [
    "ENV_VAR",
    "SETUP_COMMAND",
    "TOOLKIT_VERSION",
    "ToolkitError",
    "require_toolkit",
    "setup_toolkit",
    "toolkit_python",
    "venv_dir",
]

ENV_VAR = "RKPIPE_RKNN_VENV"
TOOLKIT_VERSION = "2.5.0"
SETUP_COMMAND = "rkpipe export --setup"
# torch 2.13.0 CPU for Python 3.11 lies on local disk on rkpipe's machines; a bare `torch`
# would pull a CUDA build of several GB.
REQUIREMENTS = [
    "torch==2.13.0",
    "numpy<=1.26.4",
    "setuptools<81",
    "protobuf>=4.21.6,<=4.25.4",
    "psutil>=5.9.0",
    "ruamel.yaml>=0.17.21",
    "scipy>=1.9.3",
    "tqdm>=4.64.1",
    "opencv-python-headless>=4.5.5.64",
    "fast-histogram>=0.11",
    "onnx>=1.16.1,<=1.18.0",
    "onnxruntime>=1.17.0",
]


class ToolkitError(RkpipeError):
    """rknn-toolkit2 is missing, could not be installed, or failed to build or simulate."""

    exit_code = 4


def venv_dir() -> Path:
    """Where the toolkit venv lives: $RKPIPE_RKNN_VENV, else ~/.cache/rkpipe/rknn-toolkit2."""
    env = os.environ.get(ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache/rkpipe/rknn-toolkit2"


def toolkit_python(venv: Path | None = None) -> Path | None:
    """The venv's interpreter if the toolkit package is installed there, else None."""
    venv = venv or venv_dir()
    python = venv / "bin" / "python"
    if python.exists() and any(venv.glob("lib/python3*/site-packages/rknn/api/rknn.py")):
        return python
    return None


def require_toolkit() -> Path:
    """The toolkit venv's interpreter, or a ToolkitError naming the command that makes it."""
    python = toolkit_python()
    if python is None:
        msg = (
            f"rknn-toolkit2 {TOOLKIT_VERSION} not found in {venv_dir()}: set it up once with "
            f"`{SETUP_COMMAND}` (about 1.5 GB; set {ENV_VAR} to put it elsewhere)"
        )
        raise ToolkitError(msg)
    return python


def _pip(python: Path, args: list[str], log: Callable[[str], None]) -> None:
    """Run pip in the toolkit venv at low priority; on failure, show pip's last lines."""
    cmd = ["nice", "-n", "10", str(python), "-m", "pip", "install", "-q", *args]
    log(f"  $ {' '.join(cmd[3:])}")
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-8:])
        raise ToolkitError(f"pip failed (exit {proc.returncode}) in the toolkit venv:\n{tail}")


def setup_toolkit(
    venv: Path | None = None, base_python: str = sys.executable, log: Callable[[str], None] = print
) -> Path:
    """Create the toolkit venv and install rknn-toolkit2 into it; a no-op when present."""
    venv = venv or venv_dir()
    found = toolkit_python(venv)
    if found is not None:
        log(f"rknn-toolkit2 venv already set up: {venv}")
        return found
    t0 = time.monotonic()
    log(f"creating the rknn-toolkit2 venv in {venv} (about 1.5 GB) ...")
    venv.parent.mkdir(parents=True, exist_ok=True)
    made = subprocess.run([base_python, "-m", "venv", str(venv)], capture_output=True, text=True)
    if made.returncode != 0:
        raise ToolkitError(f"could not create a venv at {venv}: {made.stderr.strip()}")
    python = venv / "bin" / "python"
    _pip(python, REQUIREMENTS, log)
    _pip(python, ["--no-deps", f"rknn-toolkit2=={TOOLKIT_VERSION}"], log)
    check = subprocess.run(
        [str(python), "-c", "from rknn.api import RKNN"], capture_output=True, text=True
    )
    if check.returncode != 0:
        last = (check.stderr.strip().splitlines() or ["?"])[-1]
        raise ToolkitError(f"rknn-toolkit2 installed in {venv} but does not import: {last}")
    log(f"rknn-toolkit2 {TOOLKIT_VERSION} ready in {venv} ({time.monotonic() - t0:.0f} s)")
    return python
