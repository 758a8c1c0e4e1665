"""Build an .rknn with rknn-toolkit2 and run its simulator: executed INSIDE the toolkit's venv.

    python build_rknn.py JOB.json

This file is a script for another interpreter: it imports only the standard library, numpy
and ``rknn`` (never rkpipe). JOB.json holds ``onnx``, ``out``, ``target``, ``quantize``,
``dataset`` (a text file of .npy paths, RGB uint8 H x W x 3), ``mean``, ``std``,
``verify_inputs`` (.npy paths) and ``sim_out`` (an .npz written with ``out{i}_{j}``: output
j of input i). It prints one JSON line (``RKPIPE_RESULT {...}``) with timings, or exits
non-zero naming the step that failed.
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

RESULT_TAG = "RKPIPE_RESULT"


def _check(ret: Any, step: str) -> None:
    """The toolkit returns 0 on success; anything else stops the build with the step named."""
    if ret != 0:
        print(f"rknn-toolkit2: {step} failed (code {ret}); see the toolkit log above")
        sys.exit(3)


def build(job: dict[str, Any]) -> dict[str, Any]:
    """config -> load_onnx -> build -> export_rknn; returns timings."""
    from rknn.api import RKNN

    rknn = RKNN(verbose=bool(job.get("verbose", False)))
    t0 = time.monotonic()
    opts: dict[str, Any] = {
        "mean_values": [job["mean"]],
        "std_values": [job["std"]],
        "target_platform": job["target"],
    }
    _check(rknn.config(**opts), "config")
    _check(rknn.load_onnx(model=job["onnx"]), f"load_onnx({job['onnx']})")
    quantize = bool(job["quantize"])
    dataset = job["dataset"] if quantize else None
    _check(rknn.build(do_quantization=quantize, dataset=dataset), "build")
    _check(rknn.export_rknn(job["out"]), f"export_rknn({job['out']})")
    t_build = time.monotonic() - t0
    return {"rknn": rknn, "build_s": round(t_build, 2)}


def simulate(rknn: Any, job: dict[str, Any]) -> float:
    """Run the toolkit's simulator (init_runtime with no target) on each verify input."""
    import numpy as np

    t0 = time.monotonic()
    _check(rknn.init_runtime(), "init_runtime (simulator)")
    results: dict[str, Any] = {}
    for i, path in enumerate(job["verify_inputs"]):
        x = np.load(path)[None]  # (1, H, W, 3) uint8 RGB
        outs = rknn.inference(inputs=[x], data_format="nhwc")
        if outs is None:
            print(f"rknn-toolkit2: simulator inference failed on {path}")
            sys.exit(3)
        for j, out in enumerate(outs):
            results[f"out{i}_{j}"] = np.asarray(out, np.float32)
    np.savez(job["sim_out"], **results)
    return round(time.monotonic() - t0, 2)


def main(argv: list[str]) -> int:
    with open(argv[1]) as f:
        job = json.load(f)
    built = build(job)
    sim_s = simulate(built["rknn"], job) if job.get("verify_inputs") else 0.0
    built["rknn"].release()
    result = {"build_s": built["build_s"], "sim_s": sim_s}
    print(f"{RESULT_TAG} {json.dumps(result)}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
