"""Fixture machines for ``--root``: the sysfs, procfs and library files ``rkpipe doctor`` and
the CPU topology read, written as an RK3588 board or an x86 box shows them (values copied
from real boards' files), with knobs for the broken boards people report."""

from __future__ import annotations

from pathlib import Path

__all__ = ["rk3588_board", "x86_box"]

GIB = 1024**3


def _write(root: Path, path: str, text: str | bytes) -> None:
    target = root / path
    target.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(text, bytes):
        target.write_bytes(text)
    else:
        target.write_text(text)


def _cpus(root: Path, capacity: list[int] | None, max_khz: list[int]) -> None:
    for cpu, khz in enumerate(max_khz):
        base = f"sys/devices/system/cpu/cpu{cpu}"
        if capacity is not None:
            _write(root, f"{base}/cpu_capacity", f"{capacity[cpu]}\n")
        _write(root, f"{base}/cpufreq/cpuinfo_max_freq", f"{khz}\n")


def _memory(root: Path, ram_gib: int, shm_size: str | None) -> None:
    _write(root, "proc/meminfo", f"MemTotal:       {ram_gib * GIB // 1024} kB\nMemFree: 1 kB\n")
    size = f",size={shm_size}" if shm_size else ""
    mounts = f"proc /proc proc rw 0 0\ntmpfs /dev/shm tmpfs rw,nosuid,nodev{size},inode64 0 0\n"
    _write(root, "proc/mounts", mounts)


def rk3588_board(
    root: Path,
    *,
    driver: str | None = "0.9.8",
    runtime: str | None = "2.3.0",
    toolkit: str | None = "2.3.0",
    governor: str = "performance",
    temp_c: float = 45.0,
    debugfs: bool = True,
    shm_size: str | None = None,
) -> Path:
    """A Rock 5B: 4 A55 (CPUs 0-3) + 4 A76 (4-7), the RKNPU driver, librknnrt and
    rknn-toolkit-lite2 at the given versions (None: not installed)."""
    _write(root, "proc/device-tree/compatible", b"radxa,rock-5b\0rockchip,rk3588\0")
    _cpus(root, [414] * 4 + [1024] * 4, [1800000] * 4 + [2256000] * 2 + [2352000] * 2)
    for policy, cpus in ((0, "0 1 2 3"), (4, "4 5"), (6, "6 7")):
        base = f"sys/devices/system/cpu/cpufreq/policy{policy}"
        _write(root, f"{base}/scaling_governor", f"{governor}\n")
        _write(root, f"{base}/related_cpus", f"{cpus}\n")
    if driver is not None:  # the NPU's clock is there once its driver is
        _write(root, "sys/class/devfreq/fdab0000.npu/governor", f"{governor}\n")
    for zone, (kind, temp) in enumerate([("soc-thermal", temp_c), ("npu-thermal", temp_c - 2)]):
        _write(root, f"sys/class/thermal/thermal_zone{zone}/type", f"{kind}\n")
        _write(root, f"sys/class/thermal/thermal_zone{zone}/temp", f"{int(temp * 1000)}\n")
    if driver is not None:
        if debugfs:
            _write(root, "sys/kernel/debug/rknpu/version", f"RKNPU driver: v{driver}\n")
            _write(
                root,
                "sys/kernel/debug/rknpu/load",
                "NPU load:  Core0:  0%, Core1:  0%, Core2:  0%,\n",
            )
        else:  # debugfs is root-only: the version is in the kernel log
            line = (
                f"[    5.1] [drm] Initialized rknpu {driver} 20240322 for fdab0000.npu on minor 1\n"
            )
            _write(root, "var/log/kern.log", line)
    if runtime is not None:
        blob = b"\x7fELF\x02\x01\x01" + b"\0" * 64
        blob += f"librknnrt version: {runtime} (c949ad889d@2024-11-07T11:35:33)\0".encode()
        _write(root, "usr/lib/librknnrt.so", blob + b"\0" * 64)
    if toolkit is not None:
        meta = f"Metadata-Version: 2.1\nName: rknn-toolkit-lite2\nVersion: {toolkit}\n"
        _write(
            root,
            f"usr/lib/python3/dist-packages/rknn_toolkit_lite2-{toolkit}.dist-info/METADATA",
            meta,
        )
    _memory(root, 16, shm_size)
    return root


def x86_box(root: Path, cpus: int = 4, shm_size: str | None = "65536k") -> Path:
    """A PC in a container: cores all alike, no device tree, no NPU, Docker's 64 MB shm."""
    _cpus(root, None, [4200000] * cpus)
    _write(root, "sys/class/thermal/thermal_zone0/type", "x86_pkg_temp\n")
    _write(root, "sys/class/thermal/thermal_zone0/temp", "52000\n")
    _memory(root, 32, shm_size)
    return root
