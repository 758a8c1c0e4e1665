"""Placement of a stage process: CPU pinning, library thread caps, a readable process name.

Unbounded library threads spilling onto other cores cost more than they give on a board, so
every process caps OpenMP/BLAS/OpenCV threads to its own CPU set, and a stage with no CPUs set
gets one: processes are the unit of parallelism (on 2 cores, OpenCV's second thread added
0.55 ms of CPU to every 0.3 ms letterbox). Inference sets its own thread budget.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import signal

__all__ = [
    "THREAD_ENV_VARS",
    "cap_opencv_threads",
    "die_with_parent",
    "pin_to_cpus",
    "set_process_name",
    "thread_env",
]

THREAD_ENV_VARS = (
    "OMP_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "MKL_NUM_THREADS",
    "NUMEXPR_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
)
_PR_SET_NAME = 15
_PR_SET_PDEATHSIG = 1


def thread_env(cpus: list[int]) -> dict[str, str]:
    """Environment variables that cap library thread pools to the process's CPU count."""
    return dict.fromkeys(THREAD_ENV_VARS, str(max(1, len(cpus))))


def pin_to_cpus(cpus: list[int]) -> None:
    """Pin this process (and threads it starts later) to ``cpus``; no-op for an empty list."""
    if cpus:
        os.sched_setaffinity(0, set(cpus))


def cap_opencv_threads(cpus: list[int]) -> None:
    try:
        import cv2
    except ImportError:  # pragma: no cover - cv2 is a dependency, but stay importable without it
        return
    cv2.setNumThreads(max(1, len(cpus)))


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    return ctypes.CDLL(name, use_errno=True) if name else None


def set_process_name(name: str) -> None:
    """Show ``name`` (15 chars max) in top/ps -o comm, so stages are easy to tell apart."""
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_NAME, ctypes.c_char_p(name.encode()[:15]), 0, 0, 0)


def die_with_parent() -> None:
    """Ask the kernel to SIGTERM this process if the supervisor dies, so no orphan is left."""
    libc = _libc()
    if libc is not None:
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)
