"""Two-stream detection on the CPU with ONNX Runtime: rkpipe's pipeline against the loops
people write, on the same cores and thread budget, in one run.

All on ``models/rkpipe-yolov8n.onnx`` (float32 1x3x640x640), two synthetic 640x360 street
scenes (``easy`` and ``hard``), CPU budget ``--threads`` (default: the CPUs this process may
use):

* pipeline: ``rkpipe run`` (real processes, shared memory, ZeroMQ) of two non-live sources ->
  letterbox -> infer onnx -> yolov8_decode -> bytetrack -> a null sink, in several configs of
  the infer stage (one replica with all the intra-op threads; one replica per thread,
  floating, pinned, or with one message in flight per link instead of two); FPS and
  capture-to-sink latency at the sink over a steady window. The ratios use the best config.
* bare: ``session.run`` on one preprocessed tensor in a loop with the budget's intra-op
  threads: nothing but inference, the ceiling. Also ``bare xN``: N such loops in N processes
  with one thread each, side by side (the ceiling for N one-thread replicas).
* naive: one loop, one session: render a frame, letterbox, infer, decode, track, in turn.
* thread pool: the pattern of the popular RK3588 multi-threaded examples: N worker threads
  each with its own session (budget / N threads), frames submitted round-robin and results
  collected in submission order (N + 1 in flight); a worker letterboxes, infers and decodes,
  the main thread renders and tracks. Twice: as the examples are written (cv2 resize + pad,
  and their decode of every anchor before the threshold), the target's baseline; and with
  rkpipe's own letterbox and decode, which isolates the layout (threads vs processes).

Every other loop renders, letterboxes, decodes and tracks the same frames with the same code
the pipeline uses, so the only difference is how the work is laid out. Sessions are set up
as the onnx backend sets them up (one inter-op thread, idle threads do not spin). Each
baseline runs in a fresh process (no idle runtime threads left behind). Beside FPS: CPU
time per frame (all threads and processes), the figure other load on the machine disturbs
least, and the share of the machine's CPUs the loop got. Figures and targets are printed,
never asserted.

    python benchmarks/bench_pipeline_onnx.py [--quick] [--json OUT] [--threads N]
        [--configs 1x2,2x1,2x1pin,2x1w1] [--duration S] [--loop-s S] [--workers N]
        [--rounds N]

``--rect MODEL`` (e.g. ``models/rkpipe-yolov8n-640x384.onnx``) measures instead the same
pipeline configs on that model against the default 640x640 one, the two alternating round by
round in one run (letterbox ``size = "model"`` follows each model), and prints the FPS
ratio against its target (``TARGET_RECT``: a 16:9 frame's 640x384 input has 60% of the
pixels, so at least 1.4x the FPS).

    python benchmarks/bench_pipeline_onnx.py --rect models/rkpipe-yolov8n-640x384.onnx
        [--configs 2x1] [--duration S] [--rounds N]
"""

from __future__ import annotations

import functools
import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads its BLAS: only ONNX Runtime gets threads

import argparse  # noqa: E402
import json  # noqa: E402
import multiprocessing as mp  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from collections import deque  # noqa: E402
from concurrent.futures import Future, ThreadPoolExecutor  # noqa: E402
from dataclasses import dataclass  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks"), str(ROOT / "tests")]

import _graphs  # noqa: E402

TARGET_VS_BARE = 0.90
TARGET_RECT = 1.4  # --rect: the rectangular model's FPS over the 640x640 model's
CLASSES = [0, 2]  # person, car: what the pipeline's decode keeps
STREAMS = 2


# -- what every loop does to a frame -----------------------------------------------------------
def _session(threads: int) -> Any:
    """An ONNX Runtime session set up as rkpipe's onnx backend sets it up."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3
    return ort.InferenceSession(
        str(_graphs.MODEL), sess_options=opts, providers=["CPUExecutionProvider"]
    )


class Frames:
    """The two streams' frames, rendered on demand as the synthetic source renders them."""

    def __init__(self) -> None:
        from stages.letterbox.geometry import letterbox_geometry
        from stages.synthetic import Scene

        self.scenes = [
            Scene(_graphs.SCENES[i % 2], seed=i, width=640, height=360, fps=30)
            for i in range(STREAMS)
        ]
        self.geom = letterbox_geometry((360, 640), (640, 640))

    def render(self, n: int) -> tuple[int, np.ndarray]:
        """Frame ``n`` of the interleaved streams: (stream index, BGR frame)."""
        s = n % STREAMS
        return s, self.scenes[s].render(n // STREAMS)


def _letterbox(frame: np.ndarray, geom: Any, out: np.ndarray | None = None) -> np.ndarray:
    from stages.letterbox.geometry import letterbox_nchw_into

    out = np.empty((1, 3, 640, 640), np.float32) if out is None else out
    return letterbox_nchw_into(frame, out, geom)


def _infer_decode(session: Any, x: np.ndarray, geom: Any) -> Any:
    from stages.yolov8_decode import decode_yolov8

    outputs = session.run(None, {session.get_inputs()[0].name: x})
    return decode_yolov8(outputs, classes=CLASSES, geometry=geom)


def _trackers() -> list[Any]:
    from stages.bytetrack import Tracker

    return [Tracker(min_hits=2) for _ in range(STREAMS)]


def _track(trackers: list[Any], stream: int, det: Any) -> None:
    trackers[stream].update(det.xyxy, det.confidence, det.class_id)


# -- the loops (each in its own process) -------------------------------------------------------
def loop_bare(threads: int, seconds: float, barrier: Any = None) -> dict[str, float]:
    """session.run on one preprocessed tensor, nothing else."""
    frames = Frames()
    x = _letterbox(frames.render(0)[1], frames.geom)
    session = _session(threads)
    feed = {session.get_inputs()[0].name: x}
    for _ in range(3):
        session.run(None, feed)
    if barrier is not None:
        barrier.wait()
    n, t0, cpu0 = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - t0) < seconds:
        session.run(None, feed)
        n += 1
    return _figures(n, elapsed, time.process_time() - cpu0)


def loop_naive(threads: int, seconds: float) -> dict[str, float]:
    """Render, letterbox, infer, decode, track: one frame after the other."""
    frames, trackers = Frames(), _trackers()
    session = _session(threads)
    buf = np.empty((1, 3, 640, 640), np.float32)
    for i in range(3):
        _infer_decode(session, _letterbox(frames.render(i)[1], frames.geom, buf), frames.geom)
    n, t0, cpu0 = 0, time.perf_counter(), time.process_time()
    while (elapsed := time.perf_counter() - t0) < seconds:
        s, frame = frames.render(n)
        det = _infer_decode(session, _letterbox(frame, frames.geom, buf), frames.geom)
        _track(trackers, s, det)
        n += 1
    return _figures(n, elapsed, time.process_time() - cpu0)


@functools.lru_cache
def _geometry(hw: tuple[int, int]) -> Any:
    from stages.letterbox.geometry import letterbox_geometry

    return letterbox_geometry(hw, (640, 640))


def _rkpipe_work(session: Any, frame: np.ndarray) -> tuple:
    """One frame with rkpipe's own letterbox and decode (what the pipeline's stages run)."""
    geom = _geometry(frame.shape[:2])
    det = _infer_decode(session, _letterbox(frame, geom), geom)
    return det.xyxy, det.confidence, det.class_id


def _pool_loop(work: Any, threads: int, seconds: float, workers: int) -> dict[str, float]:
    """``workers`` threads, a session each; frames go round-robin to ``work`` and results
    come back in order (``workers`` + 1 in flight); the main thread renders and tracks."""
    frames, trackers = Frames(), _trackers()
    sessions = [_session(max(1, threads // workers)) for _ in range(workers)]
    for s in sessions:
        work(s, frames.render(0)[1])
    in_flight: deque[tuple[int, Future]] = deque()
    submitted = done = 0
    with ThreadPoolExecutor(max_workers=workers) as pool:
        t0, cpu0 = time.perf_counter(), time.process_time()
        while (elapsed := time.perf_counter() - t0) < seconds:
            while len(in_flight) < workers + 1:
                s, frame = frames.render(submitted)
                fut = pool.submit(work, sessions[submitted % workers], frame)
                in_flight.append((s, fut))
                submitted += 1
            s, fut = in_flight.popleft()
            xyxy, score, cls = fut.result()
            trackers[s].update(xyxy, score.astype(np.float32), cls.astype(np.int32))
            done += 1
        cpu = time.process_time() - cpu0
        for _, fut in in_flight:
            fut.cancel()
    return _figures(done, elapsed, cpu)


def loop_thread_pool(threads: int, seconds: float, workers: int) -> dict[str, float]:
    """The examples' pool built from rkpipe's letterbox and decode: the layout alone."""
    return _pool_loop(_rkpipe_work, threads, seconds, workers)


def _examples_work(session: Any, frame: np.ndarray) -> tuple:
    """One frame the way the popular RK3588 examples' worker does it: resize + pad with
    cv2, BGR->RGB, CHW float / 255, infer, then the stock decode of every anchor before the
    threshold (tests/support/reference_decode.py) and the boxes mapped back to the frame."""
    import cv2

    from support.reference_decode import ref_decode_stock, ref_unletterbox

    h, w = frame.shape[:2]
    r = min(640 / h, 640 / w)
    nw, nh = round(w * r), round(h * r)
    top, left = (640 - nh) // 2, (640 - nw) // 2
    img = cv2.copyMakeBorder(
        cv2.resize(frame, (nw, nh)), top, 640 - nh - top, left, 640 - nw - left,
        cv2.BORDER_CONSTANT, value=(114, 114, 114),
    )  # fmt: skip
    x = cv2.cvtColor(img, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None].astype(np.float32) / 255
    out = session.run(None, {session.get_inputs()[0].name: x})[0]
    xyxy, score, cls = ref_decode_stock(out, classes=CLASSES)
    return ref_unletterbox(xyxy, (h, w), (640, 640)).astype(np.float32), score, cls


def loop_thread_pool_examples(threads: int, seconds: float, workers: int) -> dict[str, float]:
    """The thread pool with the examples' own preprocess and decode, as people run it."""
    return _pool_loop(_examples_work, threads, seconds, workers)


def _figures(frames: int, elapsed: float, cpu_s: float) -> dict[str, float]:
    return {
        "frames": frames,
        "fps": frames / elapsed,
        "cpu_ms_per_frame": 1000 * cpu_s / max(frames, 1),
        "cpu_share": cpu_s / elapsed / len(os.sched_getaffinity(0)),
    }


def _child(fn_name: str, kwargs: dict, results: Any, barrier: Any) -> None:
    try:
        fn = globals()[fn_name]
        extra = {"barrier": barrier} if barrier is not None else {}
        results.put(("ok", fn(**kwargs, **extra)))
    except BaseException as exc:  # the parent reports it
        results.put(("error", f"{type(exc).__name__}: {exc}"))


def in_processes(fn_name: str, kwargs: dict, n: int = 1, timeout_s: float = 300) -> list[dict]:
    """Run ``fn_name(**kwargs)`` in ``n`` fresh (spawned) processes started together."""
    ctx = mp.get_context("spawn")
    results = ctx.Queue()
    barrier = ctx.Barrier(n) if n > 1 else None
    procs = [ctx.Process(target=_child, args=(fn_name, kwargs, results, barrier)) for _ in range(n)]
    for p in procs:
        p.start()
    try:
        out = []
        for _ in range(n):
            status, value = results.get(timeout=timeout_s)
            if status != "ok":
                raise RuntimeError(f"{fn_name}: {value}")
            out.append(value)
        return out
    finally:
        for p in procs:
            p.join(10)
            if p.is_alive():
                p.kill()


# -- the pipeline ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Config:
    """How the pipeline's infer stage uses the thread budget."""

    key: str
    replicas: int
    threads: int  # intra-op threads per replica
    pinned: bool = False
    window: int = 2  # messages in flight per link ([pipeline] window)

    def describe(self) -> str:
        pin = ", each pinned to its own CPU" if self.pinned else ""
        window = f", window {self.window}" if self.window != 2 else ""
        return f"{self.replicas} infer replica(s) x {self.threads} thread(s){pin}{window}"

    def infer_opts(self) -> dict[str, Any]:
        opts: dict[str, Any] = {"replicas": self.replicas, "threads": self.threads}
        if self.pinned:
            cpus = sorted(os.sched_getaffinity(0))
            opts["cpus"] = [[cpus[i % len(cpus)]] for i in range(self.replicas)]
        return opts


def configs(budget: int) -> dict[str, Config]:
    """All intra-op threads in one replica, one replica per thread (floating or pinned), and
    the latter with one message in flight per link instead of two (shorter queues)."""
    return {
        f"1x{budget}": Config(f"1x{budget}", 1, budget),
        f"{budget}x1": Config(f"{budget}x1", budget, 1),
        f"{budget}x1pin": Config(f"{budget}x1pin", budget, 1, pinned=True),
        f"{budget}x1w1": Config(f"{budget}x1w1", budget, 1, window=1),
    }


def run_pipeline(
    cfg: Config, folder: Path, duration_s: float, warmup_s: float, model: Path | None = None
) -> dict:
    name = f"onnx_{cfg.key}"
    text = _graphs.detection_graph(
        name,
        STREAMS,
        {"model": str(model or _graphs.MODEL), **cfg.infer_opts()},
        _graphs.arrivals_path(folder, name),
        layout="nchw_float",
        window=cfg.window,
    )
    run = _graphs.run_graph(text, folder, name, duration_s, warmup_s)
    figures = _graphs.steady(run)
    figures["profile"] = _graphs.stage_profile(run, figures)
    return figures


# -- report ------------------------------------------------------------------------------------
def measure_baselines(budget: int, workers: int, loop_s: float) -> dict[str, dict]:
    """bare (and bare xN), naive and thread pool, one after the other, each in fresh processes."""
    base: dict[str, dict] = {}
    print(f"  bare, {budget} thread(s)", file=sys.stderr, flush=True)
    base["bare"] = in_processes("loop_bare", {"threads": budget, "seconds": loop_s})[0]
    if budget > 1:
        print(f"  bare x{budget}, 1 thread each", file=sys.stderr, flush=True)
        rows = in_processes("loop_bare", {"threads": 1, "seconds": loop_s}, n=budget)
        frames = sum(r["frames"] for r in rows)
        base[f"bare_x{budget}"] = {
            "frames": frames,
            "fps": sum(r["fps"] for r in rows),
            "cpu_ms_per_frame": sum(r["cpu_ms_per_frame"] * r["frames"] for r in rows) / frames,
            "cpu_share": sum(r["cpu_share"] for r in rows),
        }
    print("  naive loop", file=sys.stderr, flush=True)
    base["naive"] = in_processes("loop_naive", {"threads": budget, "seconds": loop_s})[0]
    print(f"  thread pool, {workers} workers", file=sys.stderr, flush=True)
    kwargs = {"threads": budget, "seconds": loop_s, "workers": workers}
    base["thread_pool"] = in_processes("loop_thread_pool", kwargs)[0]
    print(f"  thread pool, {workers} workers, the examples' preprocess and decode", file=sys.stderr)
    base["thread_pool_examples"] = in_processes("loop_thread_pool_examples", kwargs)[0]
    return base


TARGETS = {  # ratio -> (is it met?, the target as printed)
    "pipeline/bare": (lambda r: r >= TARGET_VS_BARE, f">= {TARGET_VS_BARE:.0%}"),
    "pipeline/naive": (lambda r: r > 1, "> 1"),
    "pipeline/thread_pool_examples": (lambda r: r > 1, "> 1"),
}


def _rounds(fig: dict) -> str:
    fps = fig.get("fps_rounds", [])
    return "  rounds " + " ".join(f"{f:.1f}" for f in fps) if len(fps) > 1 else ""


def report(
    base: dict[str, dict],
    pipes: dict[str, dict],
    cfgs: dict[str, Config],
    budget: int,
    workers: int,
) -> tuple[str, dict[str, float]]:
    labels = {
        "bare": f"bare session.run, {budget} thread(s)",
        f"bare_x{budget}": f"bare x{budget} processes, 1 thread each",
        "naive": "naive loop, one session",
        "thread_pool": f"thread pool {workers}x{max(1, budget // workers)}, rkpipe's pre/decode",
        "thread_pool_examples": f"thread pool {workers}x{max(1, budget // workers)}, "
        "examples' pre/decode",
    }
    print(f"\nYOLOv8n 640 float32 on ONNX Runtime (CPU), {STREAMS} streams 640x360, {budget} CPUs")
    head = f"{'':<44}{'fps':>7}{'CPU ms/frame':>14}{'CPU share':>11}{'lat p50':>9}{'p99 ms':>8}"
    print(head)
    for key, fig in base.items():
        print(
            f"{labels[key]:<44}{fig['fps']:>7.2f}{fig['cpu_ms_per_frame']:>14.0f}"
            f"{fig['cpu_share']:>11.0%}{'':>17}{_rounds(fig)}"
        )
    for key, fig in pipes.items():
        label = f"pipeline {key}: {cfgs[key].describe()}"
        print(
            f"{label[:44]:<44}{fig['fps']:>7.2f}{fig['cpu_ms_per_frame']:>14.0f}"
            f"{fig['cpu_share']:>11.0%}{fig['latency_p50_ms']:>9.0f}{fig['latency_p99_ms']:>8.0f}"
            f"{_rounds(fig)}"
        )
    print(
        "CPU share: CPU time used / (wall time x CPUs); below 100% while the loop is busy "
        "means other processes on the machine took the rest"
    )
    best_key = max(pipes, key=lambda k: pipes[k]["fps"])
    r = {f"pipeline/{k}": pipes[best_key]["fps"] / v["fps"] for k, v in base.items()}
    print(f"\nbest pipeline config: {best_key} ({cfgs[best_key].describe()})")
    for name, value in r.items():
        met, text = TARGETS.get(name, (None, ""))
        verdict = "" if met is None else "ok" if met(value) else "MISSED"
        print(f"  {name:<24}{value:>7.2f}   {('target ' + text) if text else '':<16}{verdict}")
    for key, fig in pipes.items():
        print(f"\npipeline {key}, per stage:")
        _graphs.print_profile(fig["profile"])
    return best_key, r


def rect_comparison(
    rect: Path, keys: list[str], cfgs: dict[str, Config], args: argparse.Namespace
) -> dict[str, Any]:
    """``--rect``: each config on the 640x640 model and on ``rect``, alternating, per round;
    the medians and the ratio against ``TARGET_RECT``."""
    from stages.infer.input_size import onnx_input_size

    duration = args.duration or 12.0
    warmup = min(3.0, duration / 3)
    models = {"square": _graphs.MODEL, "rect": rect.resolve()}
    sizes = {k: onnx_input_size(m) for k, m in models.items()}
    runs: dict[str, list[dict[str, dict]]] = {k: [] for k in models}
    with tempfile.TemporaryDirectory(prefix="rkpipe-bench-") as tmp:
        for i in range(args.rounds):
            for kind, model in models.items():
                got = {}
                for key in keys:
                    print(
                        f"  round {i + 1}/{args.rounds} {kind} {model.name} pipeline {key}",
                        file=sys.stderr,
                        flush=True,
                    )
                    got[key] = run_pipeline(cfgs[key], Path(tmp), duration, warmup, model)
                runs[kind].append(got)
    med = {kind: _median_run(r) for kind, r in runs.items()}
    print(f"\nrectangular input: {STREAMS} streams 640x360, ONNX Runtime, {args.threads} CPUs")
    head = f"{'':<52}{'fps':>7}{'CPU ms/frame':>14}{'CPU share':>11}{'lat p50':>9}{'p99 ms':>8}"
    print(head)
    ratios: dict[str, Any] = {}
    for key in keys:
        for kind, model in models.items():
            fig = med[kind][key]
            w, h = sizes[kind] or (0, 0)
            label = f"pipeline {key} {model.name} ({w}x{h})"
            print(
                f"{label[:52]:<52}{fig['fps']:>7.2f}{fig['cpu_ms_per_frame']:>14.0f}"
                f"{fig['cpu_share']:>11.0%}{fig['latency_p50_ms']:>9.0f}"
                f"{fig['latency_p99_ms']:>8.0f}{_rounds(fig)}"
            )
        ratios[key] = med["rect"][key]["fps"] / med["square"][key]["fps"]
        verdict = "ok" if ratios[key] >= TARGET_RECT else "MISSED"
        print(f"  {key}: rect/square FPS {ratios[key]:.2f}   target >= {TARGET_RECT}  {verdict}")
        # each round ran the two back to back: its own ratio sees the least drift in load
        paired = [r[key]["fps"] / q[key]["fps"] for q, r in zip(*runs.values(), strict=True)]
        cpu = med["square"][key]["cpu_ms_per_frame"] / med["rect"][key]["cpu_ms_per_frame"]
        print(
            f"  {key}: per round {' '.join(f'{x:.2f}' for x in paired)}; CPU per frame "
            f"square/rect {cpu:.2f} (the figure other load disturbs least)"
        )
        ratios[f"{key}/rounds"] = paired
        ratios[f"{key}/cpu"] = cpu
    return {"models": {k: str(m) for k, m in models.items()}, "figures": med, "ratios": ratios}


def _median_run(runs: list[dict[str, dict]]) -> dict[str, dict]:
    """Per key, the figures of the round with the median FPS (the middle one, or the lower
    of the two middle ones), so one noisy round on a shared machine does not decide."""
    out = {}
    for key in runs[0]:
        ranked = sorted((r[key] for r in runs), key=lambda f: f["fps"])
        out[key] = {**ranked[(len(ranked) - 1) // 2], "fps_rounds": [f["fps"] for f in ranked]}
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="short runs, one pipeline config")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the figures as JSON")
    ap.add_argument("--threads", type=int, default=len(os.sched_getaffinity(0)))
    ap.add_argument("--configs", help="pipeline configs, comma-separated (default: all)")
    ap.add_argument("--duration", type=float, help="seconds per pipeline run")
    ap.add_argument("--loop-s", type=float, help="seconds per baseline loop")
    ap.add_argument("--workers", type=int, help="thread-pool workers (default: --threads)")
    ap.add_argument("--rounds", type=int, default=1, help="repeat everything, report medians")
    ap.add_argument(
        "--rect",
        type=Path,
        metavar="MODEL",
        help="compare this model's pipeline FPS with the 640x640 model's (no baselines)",
    )
    args = ap.parse_args(argv)
    args.rounds = max(1, args.rounds)

    budget = max(1, args.threads)
    workers = max(1, args.workers or budget)
    cfgs = configs(budget)
    keys = (
        args.configs.split(",") if args.configs else [f"{budget}x1"] if args.quick else list(cfgs)
    )
    unknown = [k for k in keys if k not in cfgs]
    if unknown:
        ap.error(f"unknown config {', '.join(unknown)}; choose from {', '.join(cfgs)}")
    if args.rect is not None:
        print(f"{_graphs.load_average()} at start; {budget} CPUs for the work", file=sys.stderr)
        doc = rect_comparison(args.rect, keys if args.configs else [f"{budget}x1"], cfgs, args)
        print(f"\n{_graphs.load_average()} at the end")
        if args.json:
            args.json.write_text(json.dumps(doc, indent=2))
        return 0
    duration = args.duration or (8.0 if args.quick else 12.0)
    loop_s = args.loop_s or (3.0 if args.quick else 8.0)
    warmup = min(3.0, duration / 3)

    print(f"{_graphs.load_average()} at start; {budget} CPUs for the work", file=sys.stderr)
    t_start = time.monotonic()
    rounds: list[tuple[dict[str, dict], dict[str, dict]]] = []
    with tempfile.TemporaryDirectory(prefix="rkpipe-bench-") as tmp:
        for i in range(args.rounds):
            if args.rounds > 1:
                print(f"round {i + 1} of {args.rounds}", file=sys.stderr, flush=True)
            base = measure_baselines(budget, workers, loop_s)
            pipes: dict[str, dict] = {}
            for key in keys:
                print(f"  pipeline {key}: {cfgs[key].describe()}", file=sys.stderr, flush=True)
                pipes[key] = run_pipeline(cfgs[key], Path(tmp), duration, warmup)
            rounds.append((base, pipes))
    base = _median_run([b for b, _ in rounds])
    pipes = _median_run([p for _, p in rounds])
    best_key, r = report(base, pipes, cfgs, budget, workers)
    print(f"\n{_graphs.load_average()} at the end; total {time.monotonic() - t_start:.0f} s")
    if args.json:
        doc = {
            "threads": budget,
            "workers": workers,
            "quick": args.quick,
            "rounds": args.rounds,
            "baselines": base,
            "pipeline": {k: {**v, "config": vars(cfgs[k])} for k, v in pipes.items()},
            "best_config": best_key,
            "ratios": r,
        }
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
