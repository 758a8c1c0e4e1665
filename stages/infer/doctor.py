"""What ``rkpipe doctor GRAPH`` checks of an inference stage: that its model loads here,
and for an ``.rknn`` model, that the board's runtime can read what the toolkit built."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.doctor import Check, DoctorContext
from pipeline.errors import RkpipeError
from stages.infer.backend import first_line
from stages.infer.rknn_sidecar import read_sidecar, version_warning

__all__ = ["model_checks", "rknn_model_info"]


def rknn_model_info(path: Path) -> dict[str, str]:
    """How an ``.rknn`` was built: ``toolkit_version`` and ``target``, from the sidecar
    ``rkpipe export`` writes, else from the JSON the model carries; empty when the file is
    not an RKNN model."""
    sidecar = read_sidecar(path)
    if sidecar is not None:
        return {k: str(sidecar.get(k, "?")) for k in ("toolkit_version", "target")}
    data = path.read_bytes()
    if not data.startswith(b"RKNN"):
        return {}
    info = {}
    platforms = re.findall(rb'"target_platform":\[([^\]]*)\]', data)
    if platforms:
        info["target"] = platforms[-1].decode(errors="replace").replace('"', "")
    versions = re.findall(rb'"version":"([^"]+)"', data)
    if versions:
        info["toolkit_version"] = versions[-1].decode(errors="replace")
    return info


def model_checks(model: str, backend: str, path: Path, ctx: DoctorContext) -> list[Check]:
    if backend == "sim":
        return [Check("model", "info", f"{model}: the simulated NPU (for benchmarks)")]
    if backend == "onnx":
        return [_onnx(path)]
    return _rknn(path, ctx)


def _onnx(path: Path) -> Check:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        return Check("model", "fail", f"{path.name} does not load: {first_line(exc)}")
    shape = session.get_inputs()[0].shape
    return Check("model", "ok", f"{path.name} loads in ONNX Runtime (input {shape})")


def _rknn(path: Path, ctx: DoctorContext) -> list[Check]:
    info = rknn_model_info(path)
    if not info:
        return [Check("model", "fail", f"{path.name} is not an RKNN model (no RKNN header)")]
    built, target = info.get("toolkit_version", "?"), info.get("target", "?")
    checks = [Check("model", "ok", f"{path.name}: built by rknn-toolkit2 {built} for {target}")]
    soc, runtime = ctx.facts.get("soc", ""), ctx.facts.get("librknnrt")
    if ctx.rk3588 and soc.rstrip("s") not in target:
        fix = f"rkpipe export MODEL.onnx (it builds for rk3588): this board is {soc}"
        checks.append(Check("model platform", "fail", f"built for {target}, not {soc}", fix))
    newer = runtime and version_warning(
        {"rknn": path.name, **info}, f"librknnrt version: {runtime}"
    )
    if newer:
        checks.append(Check("model runtime", "fail", newer))
    if ctx.rk3588 and ctx.real:
        checks.append(_load_on_npu(path))
    return checks


def _load_on_npu(path: Path) -> Check:
    """Load the model on NPU core 0 with rknnlite, as the stage would."""
    from stages.infer.rknn import RknnBackend

    try:
        RknnBackend(path, 0, "doctor").close()
    except RkpipeError as exc:
        return Check("model on the NPU", "fail", str(exc))
    return Check("model on the NPU", "ok", f"{path.name} loads on NPU core 0")
