"""A stand-in NPU for scaling experiments and benchmarks: a set service time per call and
valid-shaped YOLOv8 outputs, never a detector to test detection with.

Instances that share a simulated core take turns on it, as on the real NPU, across
processes. The core's lock file (``$RKPIPE_SIM_LOCK_DIR`` or the temp folder,
``rkpipe-sim-npu-<core>.lock``) holds the monotonic time the core is busy until; a call
books the next ``service_ms`` on that timeline under an exclusive ``flock`` (held for
microseconds), then sleeps until its booked end. So more instances than cores cannot fake
extra throughput, a waiting or sleeping instance costs no CPU, and, as with the NPU driver's
job queue, a job already waiting starts the moment the previous one ends, not when its
process next gets a CPU. The outputs are made once and reused read-only.

The service time is set for a 640x640 input and scales with the input's pixels
(``service_ms * W*H / (640*640)``: 640x384 takes 0.6 of it). That is an estimate: the NPU's
real ratio is not quite linear, and ``benchmarks/board_check.py`` measures it on a board.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from pipeline.errors import ModelError
from stages.infer.sim_outputs import plant_split_head, random_scene, split_to_stock

__all__ = [
    "LOCK_DIR_ENV",
    "REFERENCE_PIXELS",
    "SimBackend",
    "lock_path",
    "service_ns",
    "sim_outputs",
]

LOCK_DIR_ENV = "RKPIPE_SIM_LOCK_DIR"
REFERENCE_PIXELS = 640 * 640  # the input the service time is given for


def service_ns(service_ms: float, input_hw: tuple[int, int]) -> int:
    """The simulated time of one call on an input of (height, width): scaled by pixels."""
    return round(service_ms * 1e6 * input_hw[0] * input_hw[1] / REFERENCE_PIXELS)


def lock_path(core: int) -> Path:
    """The lock file every simulated instance on ``core`` takes turns on."""
    folder = os.environ.get(LOCK_DIR_ENV) or tempfile.gettempdir()
    return Path(folder) / f"rkpipe-sim-npu-{core}.lock"


def sim_outputs(layout: str, input_hw: tuple[int, int] = (640, 640)) -> list[np.ndarray]:
    """Float32 YOLOv8 outputs with a few planted objects, read-only: ``stock`` is one
    (1, 84, N) tensor, ``split`` the six head outputs [box (1,64,h,w), cls (1,80,h,w)] per
    stride 8, 16, 32."""
    xyxy, class_id, score = random_scene(5, input_hw, seed=0)
    outputs = plant_split_head(xyxy, class_id, score, input_hw)
    if layout == "stock":
        outputs = [split_to_stock(outputs)]
    for a in outputs:
        a.setflags(write=False)
    return outputs


def _input_hw(x: np.ndarray) -> tuple[int, int]:
    """The image size of an NCHW/NHWC (or unbatched) tensor."""
    shape = x.shape[1:] if x.ndim == 4 else x.shape
    if len(shape) != 3:
        raise ModelError(f"sim backend takes an image tensor, got shape {list(x.shape)}")
    hw = shape[1:] if shape[0] in (1, 3) else shape[:2]
    if hw[0] % 32 or hw[1] % 32:
        raise ModelError(f"sim backend needs an input size divisible by 32, got {list(x.shape)}")
    return int(hw[0]), int(hw[1])


def _sleep_until(t_ns: int) -> None:
    while (left := t_ns - time.monotonic_ns()) > 0:
        time.sleep(left / 1e9)


class SimBackend:
    """A simulated NPU core: ``service_ms`` per call, one call at a time per core."""

    def __init__(self, service_ms: float, core: int, layout: str) -> None:
        self.service_ms = service_ms
        self.service_ns = service_ns(service_ms, (640, 640))  # of the latest call's input
        self.layout = layout
        path = lock_path(core)
        self.booking = True  # write bookings to the core's timeline (else only read it)
        try:
            self.fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o666)
        except PermissionError:  # made by another user: reading is enough to flock it
            self.fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
            self.booking = False
        self.outputs = {(640, 640): sim_outputs(layout)}

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        hw = _input_hw(x)
        if hw not in self.outputs:
            self.outputs[hw] = sim_outputs(self.layout, hw)
        self.service_ns = service_ns(self.service_ms, hw)
        fcntl.flock(self.fd, fcntl.LOCK_EX)
        try:
            end = self._book()
            if not self.booking:  # cannot write the timeline: keep the core until done
                _sleep_until(end)
        finally:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
        _sleep_until(end)
        return list(self.outputs[hw])

    def _book(self) -> int:
        """Under the lock: take the core from when it is free (or now) for one service time;
        returns the monotonic ns the job ends. A time further ahead than any queue could
        be (a file from before a reboot) counts as free."""
        now = time.monotonic_ns()
        raw = os.pread(self.fd, 8, 0)
        free_at = int.from_bytes(raw, "little") if len(raw) == 8 else 0
        if free_at - now > max(10 * 10**9, 100 * self.service_ns):
            free_at = 0
        end = max(now, free_at) + self.service_ns
        if self.booking:
            os.pwrite(self.fd, end.to_bytes(8, "little"), 0)
        return end

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1
