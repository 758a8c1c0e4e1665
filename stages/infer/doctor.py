"""What ``rkpipe doctor GRAPH`` checks of an inference stage: that its model loads here,
and for an ``.rknn`` model, that the board's runtime can read what the toolkit built."""

from __future__ import annotations

import re
from pathlib import Path

from pipeline.doctor import Check, DoctorContext
from pipeline.doctor.npu import version_tuple
from pipeline.errors import RkpipeError
from stages.infer.backend import first_line

__all__ = ["model_checks", "rknn_model_info"]


def rknn_model_info(path: Path) -> dict[str, str]:
    """What an ``.rknn`` file says of itself: the toolkit ``version`` that built it and its
    ``target_platform`` (from the JSON it carries); empty when it is not an RKNN model."""
    data = path.read_bytes()
    if not data.startswith(b"RKNN"):
        return {}
    info = {}
    platforms = re.findall(rb'"target_platform":\[([^\]]*)\]', data)
    if platforms:
        info["target_platform"] = platforms[-1].decode(errors="replace").replace('"', "")
    versions = re.findall(rb'"version":"([^"]+)"', data)
    if versions:
        info["version"] = versions[-1].decode(errors="replace")
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
    built, target = info.get("version", "?"), info.get("target_platform", "?")
    checks = [Check("model", "ok", f"{path.name}: built by rknn-toolkit2 {built} for {target}")]
    soc, runtime = ctx.facts.get("soc", ""), ctx.facts.get("librknnrt")
    if ctx.rk3588 and soc.rstrip("s") not in target:
        fix = f"rkpipe export MODEL.onnx (it builds for rk3588): this board is {soc}"
        checks.append(Check("model platform", "fail", f"built for {target}, not {soc}", fix))
    if runtime and version_tuple(built)[:3] > version_tuple(runtime)[:3]:
        detail = f"built by toolkit {built}, newer than librknnrt {runtime}: it will not load"
        fix = f"update librknnrt (and rknn-toolkit-lite2) to {built}, or rebuild the model"
        checks.append(Check("model runtime", "fail", detail, fix))
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
