"""The RK3588 NPU's software: the kernel driver (rknpu), the runtime library (librknnrt.so)
and the Python binding (rknn-toolkit-lite2), and whether their versions go together, which
is the most common reason an RKNN model will not load on a board ("Invalid RKNN model
version", "failed to submit")."""

from __future__ import annotations

import re
import subprocess
from importlib import metadata

from .check import Check, DoctorContext

__all__ = ["MIN_DRIVER", "npu_checks", "required_driver", "version_tuple"]

# librknnrt release -> the rknpu driver it was released with, per Rockchip's RKNN SDK notes
# (check with `dmesg | grep rknpu`); a runtime between two rows needs at least the lower
# row's driver. Model format 6 (toolkit 2.3) needs driver 0.9.8.
MIN_DRIVER = [
    ("1.5.2", "0.9.2"),
    ("1.6.0", "0.9.3"),
    ("2.0.0", "0.9.6"),
    ("2.3.0", "0.9.8"),
]
RUNTIME_DIRS = ("usr/lib", "usr/lib64", "usr/lib/aarch64-linux-gnu", "usr/local/lib")
RUNTIME_FIX = (
    "install the librknnrt.so of the same release as rknn-toolkit-lite2: from rknn-toolkit2's "
    "rknpu2/runtime/Linux/librknn_api/aarch64/ to /usr/lib"
)
DRIVER_FIX = (
    "run a vendor kernel with a newer rknpu driver (Rockchip BSP 6.1, e.g. Armbian vendor or "
    "Ubuntu Rockchip images), or use librknnrt and rknn-toolkit-lite2 of an older release"
)


def version_tuple(text: str) -> tuple[int, ...]:
    """``"2.0.0b0+9bab5682"`` -> (2, 0, 0): the release, without pre-release tags."""
    found = re.match(r"v?(\d+(?:\.\d+)*)", text.strip())
    return tuple(int(p) for p in found.group(1).split(".")) if found else ()


def required_driver(runtime: str) -> str | None:
    """The oldest rknpu driver that Rockchip released ``runtime`` with (None: unknown)."""
    need = None
    for release, driver in MIN_DRIVER:
        if version_tuple(runtime) >= version_tuple(release):
            need = driver
    return need


def npu_checks(ctx: DoctorContext) -> list[Check]:
    if not ctx.rk3588:
        return [Check("NPU", "info", "no RK3588 NPU here: skipped (the sim backend runs anywhere)")]
    checks = [_driver(ctx), _runtime(ctx), _toolkit(ctx)]
    checks += _compatible(ctx)
    checks.append(_load(ctx))
    return checks


def _driver(ctx: DoctorContext) -> Check:
    text = ctx.read("sys/kernel/debug/rknpu/version") or ctx.read("sys/module/rknpu/version")
    found = re.search(r"v?(\d+\.\d+\.\d+)", text or "")
    if found is None:
        found = re.search(r"Initialized rknpu (\d+\.\d+\.\d+)", _kernel_log(ctx))
    if found is not None:
        ctx.facts["npu_driver"] = found.group(1)
        return Check("NPU driver", "ok", f"rknpu {found.group(1)}")
    if (
        ctx.path("sys/class/devfreq/fdab0000.npu").exists()
        or ctx.path("dev/dri/renderD129").exists()
    ):
        return Check(
            "NPU driver", "warn", "the NPU is there but its driver version is unreadable",
            "run as root (sudo rkpipe doctor): the version is in /sys/kernel/debug/rknpu",
        )  # fmt: skip
    return Check("NPU driver", "fail", "no rknpu driver found", DRIVER_FIX)


def _kernel_log(ctx: DoctorContext) -> str:
    """The kernel's messages: ``dmesg`` on this machine, else the log files under root."""
    if ctx.real:
        try:
            out = subprocess.run(["dmesg"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.SubprocessError):
            out = ""
        if out:
            return out
    return "".join(ctx.read(p) or "" for p in ("var/log/kern.log", "var/log/dmesg"))


def _runtime(ctx: DoctorContext) -> Check:
    for folder in RUNTIME_DIRS:
        path = ctx.path(folder) / "librknnrt.so"
        try:
            data = path.read_bytes()
        except OSError:
            continue
        found = re.search(rb"librknnrt version: (\S+)", data)
        version = found.group(1).decode(errors="replace") if found else "unknown"
        ctx.facts["librknnrt"] = version
        return Check("librknnrt", "ok", f"{version} (/{folder}/librknnrt.so)")
    return Check("librknnrt", "fail", "librknnrt.so not found", RUNTIME_FIX)


def _toolkit(ctx: DoctorContext) -> Check:
    """rknn-toolkit-lite2 in this Python (or, under a fixture root, its site folders)."""
    paths = None
    if not ctx.real:
        paths = [str(p) for p in ctx.root.glob("usr/lib/python3*/*-packages")]
        paths += [str(p) for p in ctx.root.glob("usr/local/lib/python3*/*-packages")]
    dists = metadata.distributions(path=paths) if paths is not None else metadata.distributions()
    for dist in dists:
        if (dist.metadata["Name"] or "").lower().replace("_", "-") == "rknn-toolkit-lite2":
            ctx.facts["toolkit"] = dist.version
            return Check("rknn-toolkit-lite2", "ok", dist.version)
    fix = "pip install rknn-toolkit-lite2 (librknnrt's release), or pip install -e '.[rknn]'"
    return Check("rknn-toolkit-lite2", "fail", "not installed in this Python", fix)


def _compatible(ctx: DoctorContext) -> list[Check]:
    runtime, toolkit = ctx.facts.get("librknnrt"), ctx.facts.get("toolkit")
    driver = ctx.facts.get("npu_driver")
    out = []
    if runtime and toolkit:
        if version_tuple(runtime)[:3] == version_tuple(toolkit)[:3]:
            out.append(
                Check("runtime pair", "ok", f"librknnrt {runtime} = toolkit-lite2 {toolkit}")
            )
        else:
            detail = f"rknn-toolkit-lite2 {toolkit} with librknnrt {runtime}: "
            detail += "Rockchip ships them as a pair"
            out.append(Check("runtime pair", "fail", detail, RUNTIME_FIX))
    need = required_driver(runtime) if runtime else None
    if need and driver:
        if version_tuple(driver) >= version_tuple(need):
            out.append(Check("driver for runtime", "ok", f"rknpu {driver} >= {need}"))
        else:
            detail = f"librknnrt {runtime} needs rknpu >= {need}; the kernel has {driver}"
            out.append(Check("driver for runtime", "fail", detail, DRIVER_FIX))
    return out


def _load(ctx: DoctorContext) -> Check:
    text = ctx.read("sys/kernel/debug/rknpu/load")
    if text is None:
        fix = "run as root: /sys/kernel/debug/rknpu/load is root-only (debugfs)"
        return Check("NPU load", "warn", "not readable: per-core NPU use cannot be shown", fix)
    return Check("NPU load", "ok", " ".join(text.split()))
