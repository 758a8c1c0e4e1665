"""``rkpipe doctor``: a checklist of what a board needs (SoC, NPU driver and runtime, CPU
topology and governors, temperature, /dev/shm, decoders) and, given a graph, what that
graph needs (its CPUs, its shared memory, each stage's own checks)."""

from __future__ import annotations

from .check import Check, DoctorContext

__all__ = ["Check", "DoctorContext"]
