"""YOLOv8n 640 (80 classes) decode cost per frame, rkpipe's against a straightforward decode.

rkpipe thresholds on class score first and decodes only the survivors; the reference
(``tests/support/reference_decode.py``, the way rknn_model_zoo's example does it) dequantizes and
decodes all 8400 anchors first. Both run in this run on the same synthetic outputs: most
anchors at background scores, 20-50 planted objects with 3-6 anchors each. Layouts: the RKNN
split head (float 6 outputs, float 9 with score sums, int8 9) and the stock (1, 84, 8400).
One core, one library thread. Each layout runs twice: on fresh outputs (many frames, more
than the caches hold, as outputs that arrive from an inference process) and on one cached
frame; scanning the stock tensor's 80 x 8400 float scores is bound by memory bandwidth.

    python benchmarks/bench_decode.py [--frames 400] [--scenes 16] [--cpu N]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads its BLAS

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable, Sequence  # noqa: E402
from pathlib import Path  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from stages.infer.sim_outputs import (  # noqa: E402
    plant_split_head,
    quantize_outputs,
    random_scene,
    split_to_stock,
)
from stages.yolov8_decode import decode_yolov8  # noqa: E402
from support.reference_decode import ref_decode_split, ref_decode_stock  # noqa: E402

Case = tuple[str, list[dict], Callable, Callable]  # name, inputs, rkpipe, reference


def make_cases(scenes: int) -> list[Case]:
    """Per layout, ``scenes`` different frames of outputs with their decode calls."""
    rng = np.random.default_rng(0)
    split, summed, int8, stock = [], [], [], []
    for seed in range(scenes):
        xyxy, cls, score = random_scene(int(rng.integers(20, 51)), seed=seed)
        per = int(rng.integers(3, 7))
        outs = plant_split_head(xyxy, cls, score, with_sum=True, per_object=per, seed=seed)
        q, qp = quantize_outputs(outs)
        summed.append({"outputs": outs})
        split.append({"outputs": [t for i, t in enumerate(outs) if i % 3 != 2]})
        int8.append({"outputs": q, "quant": qp})
        stock.append({"outputs": [split_to_stock(outs)]})
    return [
        ("split float (6)", split, decode_yolov8, lambda outputs: ref_decode_split(outputs)),
        ("split float+sum (9)", summed, decode_yolov8, lambda outputs: ref_decode_split(outputs)),
        ("split int8+sum (9)", int8, decode_yolov8, ref_decode_split),
        ("stock (1,84,8400)", stock, decode_yolov8, lambda outputs: ref_decode_stock(outputs[0])),
    ]


def time_calls(fns: Sequence[Callable], inputs: list[dict], frames: int) -> np.ndarray:
    """Milliseconds per call (frames, len(fns)), calls interleaved frame by frame (so load from
    other processes hits each alike) in an order that rotates, cycling through ``inputs``."""
    for kw in inputs[:3]:
        for fn in fns:
            fn(**kw)
    times = np.empty((frames, len(fns)))
    for i in range(frames):
        kw = inputs[i % len(inputs)]
        for k in range(len(fns)):
            j = (i + k) % len(fns)
            t0 = time.perf_counter_ns()
            fns[j](**kw)
            times[i, j] = (time.perf_counter_ns() - t0) / 1e6
    return times


def time_pair(ours: Callable, ref: Callable, inputs: list[dict], frames: int) -> np.ndarray:
    """(frames, 2) ms of both decoders: interleaved over many frames (fresh data for each
    call, as outputs arriving from another process), or one after the other on one frame."""
    if len(inputs) > 1:
        return time_calls((ours, ref), inputs, frames)
    return np.concatenate([time_calls([fn], inputs, frames) for fn in (ours, ref)], axis=1)


def check_same(case: Case) -> int:
    """Both decoders find the same number of objects on every frame; returns the total."""
    name, inputs, ours, ref = case
    total = 0
    for kw in inputs:
        n_ours, n_ref = len(ours(**kw)), len(ref(**kw)[0])
        if n_ours != n_ref:
            msg = f"{name}: rkpipe found {n_ours} objects, the reference {n_ref}"
            raise SystemExit(msg)
        total += n_ours
    return total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=400, help="timed calls per decoder and row")
    ap.add_argument("--scenes", type=int, default=16, help="distinct frames of outputs")
    ap.add_argument("--cpu", type=int, default=max(os.sched_getaffinity(0)))
    args = ap.parse_args()
    os.sched_setaffinity(0, {args.cpu})
    cv2.setNumThreads(1)
    print(f"cpu {args.cpu}, {args.frames} frames per decoder and row; times in ms per frame")
    print(
        f"{'layout':<22}{'data':<8}{'objects':>8}{'rkpipe p50':>12}{'mean':>8}"
        f"{'reference p50':>15}{'mean':>8}{'speed-up p50':>14}{'mean':>8}"
    )
    for case in make_cases(args.scenes):
        name, inputs, ours, ref = case
        found = check_same(case) / len(inputs)
        for data, frames in (("fresh", inputs), ("cached", inputs[:1])):
            t_ours, t_ref = time_pair(ours, ref, frames, args.frames).T
            p50, p50r = np.median(t_ours), np.median(t_ref)
            print(
                f"{name:<22}{data:<8}{found:>8.1f}{p50:>12.3f}{t_ours.mean():>8.3f}{p50r:>15.3f}"
                f"{t_ref.mean():>8.3f}{p50r / p50:>13.1f}x{t_ref.mean() / t_ours.mean():>7.1f}x"
            )
    print(
        f"fresh: cycling {args.scenes} frames of outputs (more than the caches hold, as outputs"
        " arriving from an inference process); cached: one frame over and over"
    )


if __name__ == "__main__":
    main()
