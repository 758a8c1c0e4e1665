"""Host side of the toolkit run: write the job, run ``build_rknn.py`` in the toolkit venv,
follow its steps, answer its one question, collect its result.

The toolkit prints pages of log; they go to ``build.log`` in the work folder, and only its
tail is shown when the build fails. The script's tagged lines (see ``build_rknn``) become
progress for the user; once the simulator's outputs are written, ``analyze`` (the host's
check) says whether the toolkit should run its accuracy analysis before it exits.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from stages.infer.rknn_export.build_rknn import ASK, RESULT, STEP
from stages.infer.rknn_export.calibration import CalibrationSet
from stages.infer.rknn_export.toolkit_env import ToolkitError

__all__ = ["BuildJob", "BuildResult", "LayerFigure", "run_build"]

SCRIPT = Path(__file__).with_name("build_rknn.py")


@dataclass(frozen=True)
class BuildJob:
    """What to build: the cut ONNX, where to, and how (fp16, int8 or hybrid)."""

    onnx: Path
    out: Path
    calib: CalibrationSet
    target: str
    mode: str
    quant_algo: str
    hybrid_layers: int
    verify_count: int


@dataclass(frozen=True)
class LayerFigure:
    """One row of the toolkit's accuracy analysis: the layer's output cosine against the
    float model, accumulated from the input (``entire``) and for the layer alone (``single``)."""

    op: str
    layer: str
    entire: float | None
    single: float | None

    @classmethod
    def from_dict(cls, row: dict[str, Any]) -> LayerFigure:
        return cls(row["op"], row["layer"], row["entire"], row["single"])


@dataclass(frozen=True)
class BuildResult:
    """What the toolkit run produced: timings, its version, the simulator outputs (.npz) if
    asked, the accuracy analysis if it ran, and the layers a hybrid build kept in FP16."""

    build_s: float
    sim_s: float
    analysis_s: float
    sim_out: Path | None
    log: Path
    toolkit_version: str
    analysis: list[LayerFigure]
    hybrid: list[LayerFigure]


def _write_job(job: BuildJob, workdir: Path, sim_out: Path | None) -> Path:
    verify = job.calib.arrays[: job.verify_count]
    spec = {
        "onnx": str(job.onnx.resolve()),
        "out": str(job.out.resolve()),
        "target": job.target,
        "mode": job.mode,
        "quant_algo": job.quant_algo,
        "hybrid_layers": job.hybrid_layers,
        "dataset": str(job.calib.dataset.resolve()),
        "mean": [0, 0, 0],
        "std": [255, 255, 255],
        "verify_inputs": [str(p.resolve()) for p in verify],
        "sim_out": str(sim_out.resolve()) if sim_out else None,
        "analysis_input": str(job.calib.pngs[0].resolve()),
    }
    path = workdir / "job.json"
    path.write_text(json.dumps(spec, indent=2))
    return path


def _follow(
    proc: subprocess.Popen[str],
    log: Path,
    on_step: Callable[[dict[str, Any]], None],
    analyze: Callable[[], bool],
) -> dict[str, Any] | None:
    """Copy the script's output to ``log``, acting on its tagged lines; its result, if any."""
    assert proc.stdout is not None and proc.stdin is not None
    result = None
    with log.open("w") as f:
        for line in proc.stdout:
            f.write(line)
            tag, _, body = line.rstrip("\n").partition(" ")
            if tag == STEP:
                on_step(json.loads(body))
            elif tag == ASK:
                f.flush()
                answer = json.dumps({"analyze": bool(analyze())})
                try:
                    proc.stdin.write(answer + "\n")
                    proc.stdin.flush()
                except BrokenPipeError:
                    pass  # it died meanwhile; its exit status says so below
            elif tag == RESULT:
                result = json.loads(body)
    return result


def run_build(
    python: Path,
    job: BuildJob,
    workdir: Path,
    on_step: Callable[[dict[str, Any]], None],
    analyze: Callable[[], bool],
) -> BuildResult:
    """Build ``job.out`` from the cut ONNX; simulate the first ``job.verify_count``
    calibration frames in the same toolkit session (its simulator only runs a model it
    just built), then ask ``analyze`` whether to run the accuracy analysis too."""
    sim_out = workdir / "sim.npz" if job.verify_count else None
    job_file, log = _write_job(job, workdir, sim_out), workdir / "build.log"
    cmd = ["nice", "-n", "10", str(python), str(SCRIPT), str(job_file)]
    proc = subprocess.Popen(
        cmd,
        cwd=workdir,
        text=True,
        bufsize=1,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        result = _follow(proc, log, on_step, analyze)
        code = proc.wait()
    finally:
        if proc.poll() is None:  # the host's side failed: do not leave the toolkit running
            proc.kill()
            proc.wait()
    if code != 0 or result is None:
        try:
            tail = "\n".join(_last_words(log.read_text(errors="replace")))
        except OSError as exc:  # the work folder went away under the build
            tail = f"(its log is gone: {exc})"
        msg = f"rknn-toolkit2 build failed (exit {code}); log {log}:\n{tail}"
        raise ToolkitError(msg)
    return BuildResult(
        build_s=float(result["build_s"]),
        sim_s=float(result["sim_s"]),
        analysis_s=float(result["analysis_s"]),
        sim_out=sim_out,
        log=log,
        toolkit_version=str(result["toolkit_version"]),
        analysis=[LayerFigure.from_dict(r) for r in result["analysis"]],
        hybrid=[LayerFigure.from_dict(r) for r in result["hybrid"]],
    )


def _last_words(log: str, count: int = 4) -> list[str]:
    """The log's last lines that say something: traceback frames and carets left out."""
    lines = [ln for ln in log.strip().splitlines() if ln.strip()]
    said = [ln for ln in lines if not ln.lstrip().startswith(("File ", "^", "Traceback"))]
    return [ln.strip() for ln in said[-count:]]
