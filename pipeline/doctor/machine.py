"""The machine: which SoC, which cores are big and little, how they are clocked, how hot it
runs, and how much shared memory frames can use."""

from __future__ import annotations

import re

from ..cpus import format_cpus, read_topology
from .check import Check, DoctorContext

__all__ = ["machine_checks", "shm_bytes"]

MB = 1024 * 1024
HOT_C = 80.0  # the RK3588 starts throttling at 85 °C
SHM_LOW = 256 * MB  # below this a few 1080p pools do not fit
PERFORMANCE_FIX = (
    "echo performance | sudo tee /sys/devices/system/cpu/cpufreq/policy*/scaling_governor"
)


def machine_checks(ctx: DoctorContext) -> list[Check]:
    return [_soc(ctx), _cpus(ctx), *_governors(ctx), _temperature(ctx), _shm(ctx)]


def _soc(ctx: DoctorContext) -> Check:
    raw = ctx.read("proc/device-tree/compatible") or ctx.read(
        "sys/firmware/devicetree/base/compatible"
    )
    if raw is None:
        ctx.facts["soc"] = "none"
        return Check("SoC", "info", "no device tree: not an Arm board; onnx and sim run here")
    names = [n for n in raw.split("\0") if n]
    board = names[0] if names else "?"
    chip = next((n.split(",", 1)[1] for n in names if n.startswith("rockchip,rk")), "")
    ctx.facts["soc"] = chip or "other"
    if chip.startswith("rk3588"):
        return Check("SoC", "ok", f"Rockchip {chip.upper()} ({board})")
    if chip:
        return Check("SoC", "warn", f"Rockchip {chip.upper()}: rkpipe's NPU graphs are for RK3588")
    return Check("SoC", "info", f"{board}: not a Rockchip SoC; onnx and sim run here")


def _cpus(ctx: DoctorContext) -> Check:
    topo = read_topology(ctx.root)
    if ctx.rk3588 and not topo.mixed:
        detail = f"{topo.describe()}: an RK3588 has 4 big (A76) and 4 little (A55) cores"
        return Check("CPU topology", "warn", detail, "check that every core is online")
    return Check("CPU topology", "ok" if topo.cpus else "warn", topo.describe())


def _governors(ctx: DoctorContext) -> list[Check]:
    """cpufreq policies and the NPU's devfreq: anything but ``performance`` lets clocks
    drop between frames, which costs latency."""
    slow = []
    for policy in sorted(ctx.path("sys/devices/system/cpu/cpufreq").glob("policy*")):
        governor = (ctx.read(str(policy.relative_to(ctx.root) / "scaling_governor")) or "").strip()
        cpus = (ctx.read(str(policy.relative_to(ctx.root) / "related_cpus")) or "").split()
        if governor and governor != "performance":
            where = f"CPUs {format_cpus(int(c) for c in cpus)}" if cpus else policy.name
            slow.append(f"{where} {governor}")
    out = []
    if slow:
        detail = "; ".join(slow) + " (clocks drop between frames)"
        out.append(Check("CPU governor", "warn", detail, PERFORMANCE_FIX))
    elif any(ctx.path("sys/devices/system/cpu/cpufreq").glob("policy*")):
        out.append(Check("CPU governor", "ok", "performance"))
    for npu in sorted(ctx.path("sys/class/devfreq").glob("*npu*")):
        governor = (ctx.read(str(npu.relative_to(ctx.root) / "governor")) or "").strip()
        fix = f"echo performance | sudo tee /sys/class/devfreq/{npu.name}/governor"
        if governor == "performance":
            fix = ""
        out.append(Check("NPU governor", "warn" if fix else "ok", governor or "unreadable", fix))
    return out


def _temperature(ctx: DoctorContext) -> Check:
    temps = []
    for zone in sorted(ctx.path("sys/class/thermal").glob("thermal_zone*")):
        rel = zone.relative_to(ctx.root)
        raw, kind = ctx.read(str(rel / "temp")), ctx.read(str(rel / "type"))
        if raw and raw.strip().lstrip("-").isdigit():
            temps.append((int(raw) / 1000, (kind or zone.name).strip()))
    if not temps:
        return Check("temperature", "info", "no thermal zones")
    hottest, where = max(temps)
    detail = f"{hottest:.1f} °C ({where})"
    if hottest >= HOT_C:
        return Check("temperature", "warn", detail + ": near throttling", "add a heatsink and fan")
    return Check("temperature", "ok", detail)


def shm_bytes(ctx: DoctorContext) -> int:
    """The size of /dev/shm: its mount's ``size=``, else tmpfs's default, half the RAM."""
    for line in (ctx.read("proc/mounts") or "").splitlines():
        fields = line.split()
        if len(fields) >= 4 and fields[1] == "/dev/shm":
            found = re.search(r"(?:^|,)size=(\d+)([kKmMgG]?)", fields[3])
            if found:
                scale = {"": 1, "k": 1024, "m": MB, "g": 1024 * MB}[found.group(2).lower()]
                return int(found.group(1)) * scale
    found = re.search(r"MemTotal:\s+(\d+) kB", ctx.read("proc/meminfo") or "")
    return int(found.group(1)) * 1024 // 2 if found else 0


def _shm(ctx: DoctorContext) -> Check:
    size = shm_bytes(ctx)
    ctx.facts["shm_bytes"] = str(size)
    detail = f"{size / MB:.0f} MB"
    if size < SHM_LOW:
        fix = "docker run --shm-size=1g, or: sudo mount -o remount,size=1G /dev/shm"
        return Check("/dev/shm", "warn", detail + ": small for camera frames", fix)
    return Check("/dev/shm", "ok", detail)
