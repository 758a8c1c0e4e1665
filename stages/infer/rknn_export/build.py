"""Host side of the toolkit run: write the job, run ``build_rknn.py`` in the toolkit venv.

The toolkit prints pages of log; it goes to ``build.log`` in the work folder, and only its
tail is shown when the build fails.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path

from stages.infer.rknn_export.calibration import CalibrationSet
from stages.infer.rknn_export.toolkit_env import ToolkitError

__all__ = ["BuildResult", "run_build"]

SCRIPT = Path(__file__).with_name("build_rknn.py")
RESULT_TAG = "RKPIPE_RESULT"


@dataclass(frozen=True)
class BuildResult:
    """What the toolkit run produced: timings, and the simulator outputs (.npz) if asked."""

    build_s: float
    sim_s: float
    sim_out: Path | None
    log: Path


def run_build(
    python: Path,
    onnx_path: Path,
    out: Path,
    calib: CalibrationSet,
    *,
    target: str,
    quantize: bool,
    verify_count: int,
    workdir: Path,
) -> BuildResult:
    """Build ``out`` from the cut ONNX; simulate the first ``verify_count`` calibration
    frames in the same toolkit session (its simulator only runs a model it just built)."""
    sim_out = workdir / "sim.npz" if verify_count else None
    job = {
        "onnx": str(onnx_path.resolve()),
        "out": str(out.resolve()),
        "target": target,
        "quantize": quantize,
        "dataset": str(calib.dataset.resolve()),
        "mean": [0, 0, 0],
        "std": [255, 255, 255],
        "verify_inputs": [str(p.resolve()) for p in calib.arrays[:verify_count]],
        "sim_out": str(sim_out.resolve()) if sim_out else None,
    }
    job_file, log = workdir / "job.json", workdir / "build.log"
    job_file.write_text(json.dumps(job, indent=2))
    cmd = ["nice", "-n", "10", str(python), str(SCRIPT), str(job_file)]
    with log.open("w") as f:
        proc = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, cwd=workdir)
    text = log.read_text(errors="replace")
    result = next((ln for ln in text.splitlines() if ln.startswith(RESULT_TAG)), None)
    if proc.returncode != 0 or result is None:
        tail = "\n".join(_last_words(text))
        msg = f"rknn-toolkit2 build failed (exit {proc.returncode}); log {log}:\n{tail}"
        raise ToolkitError(msg)
    times = json.loads(result[len(RESULT_TAG) :])
    return BuildResult(float(times["build_s"]), float(times["sim_s"]), sim_out, log)


def _last_words(log: str, count: int = 4) -> list[str]:
    """The log's last lines that say something: traceback frames and carets left out."""
    lines = [ln for ln in log.strip().splitlines() if ln.strip()]
    said = [ln for ln in lines if not ln.lstrip().startswith(("File ", "^", "Traceback"))]
    return [ln.strip() for ln in said[-count:]]
