"""How close the real pipeline comes to the simulated NPU's ideal throughput, 1 to 3 cores.

``rkpipe run`` (real processes, shared memory, ZeroMQ) of synthetic 640x360 sources ->
letterbox (nhwc_uint8) -> infer on the ``sim`` backend (``sim_ms`` per call, 20.5 ms as
YOLOv8n on one RK3588 core from Python) -> yolov8_decode (split head) -> bytetrack -> a null
sink, for 1 core / 1 stream, 2 cores / 2 streams and 3 cores / 6 streams. The ideal is
cores / service time (48.8 fps per core); the figure is frames per second at the sink over a
steady window (start-up and drain cut off), as a fraction of it, plus capture-to-sink latency.

The sources are file-like (``live = false``): a source renders a frame only when the pipeline
has room for it, so the offered load always exceeds what the cores can do and the sink rate
is the pipeline's capacity, with no CPU spent on frames that would be dropped. (Live cameras
at 30 fps could not saturate one core with one stream; ``--live-fps`` runs them live anyway,
dropping the oldest frame when behind.) Each case runs with one inference process per core
(``npu_cores = [0, 1, ...]``) and with two per core (``[0, 0, 1, 1, ...]``, what the
RK3588 pools do so a core never waits while its process copies outputs). Every run gets its
own simulated cores (``RKPIPE_SIM_LOCK_DIR``), so nothing else on the machine shares them.

Targets (printed, never asserted): file-like sources, >= 95% of ideal for 1 and 2 cores,
>= 90% for 3 cores; live sources below capacity (``--live-fps``), frames that never queue:
capture-to-sink p50 at most 12 ms beyond the inference itself, at 1, 2 and 6 streams.

``--overload`` instead runs 2, 6 and 12 live streams (``--live-fps``, default 30) into 3
simulated cores, each twice back to back: ``source_demand = false`` (the baseline: every link
out of a source keeps its window of frames queued at the letterbox) and ``true`` (frames wait
at the source, where a live one is replaced by a newer one). Targets (issue #22): over
capacity (6, 12 streams) capture-to-sink p50 <= 2 x infer ms + 12 ms, p99 <= 4 x infer ms,
every stream's fps within 10% of the others', sink >= 90% of ideal at 6 streams (printed at
12); below capacity (2 streams) p50 at most 12 ms beyond infer ms.

    python benchmarks/bench_pipeline_sim.py [--quick] [--json OUT] [--cases 1,2,3]
        [--per-core 1,2] [--duration S] [--sim-ms MS] [--live-fps F] [--overload]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

import _graphs  # noqa: E402

CASES = {1: (1, 0.95), 2: (2, 0.95), 3: (6, 0.90)}  # cores -> (streams, target fraction)
LIVE_OVERHEAD_MS = 12.0  # live sources below capacity: p50 latency beyond inference


@dataclass(frozen=True)
class Case:
    cores: int
    streams: int
    per_core: int  # inference processes per simulated core
    target: float

    @property
    def key(self) -> str:
        return f"{self.cores}c{self.streams}s_x{self.per_core}"

    @property
    def npu_cores(self) -> list[int]:
        return [c for c in range(self.cores) for _ in range(self.per_core)]


def run_case(
    case: Case, folder: Path, args: argparse.Namespace, demand: bool | None = None
) -> dict[str, Any]:
    name = f"sim_{case.key}" + ("" if demand is None else f"_demand{int(demand)}")
    source = {"live": True, "fps": args.live_fps} if args.live_fps else None
    infer = {
        "model": "sim:yolov8n",
        "sim_ms": args.sim_ms,
        "sim_layout": "split",
        "npu_cores": case.npu_cores,
    }
    settings = (
        {"window": args.window}
        if demand is None
        else {"source_demand": demand, "window": args.window}
    )
    arrivals = _graphs.arrivals_path(folder, name)
    text = _graphs.detection_graph(
        name, case.streams, infer, arrivals, source=source, settings=settings
    )
    locks = folder / f"locks_{name}"
    locks.mkdir(exist_ok=True)
    env = {"RKPIPE_SIM_LOCK_DIR": str(locks)}
    run = _graphs.run_graph(text, folder, name, args.duration, args.warmup, env=env)
    fig = _graphs.steady(run)
    ideal = case.cores * 1000 / args.sim_ms
    fig["ideal_fps"] = ideal
    fig["fraction"] = fig["fps"] / ideal
    fig["profile"] = _graphs.stage_profile(run, fig)
    fig["source_drops"] = sum(
        s["drops"] for n, s in run.stats["stages"].items() if n.startswith("cam")
    )
    return fig


def report(rows: list[tuple[Case, dict]], args: argparse.Namespace, elapsed: float) -> None:
    src = f"live at {args.live_fps:g} fps" if args.live_fps else "file-like (wait for room)"
    print(
        f"\nsim NPU {args.sim_ms:g} ms per call ({1000 / args.sim_ms:.1f} fps per core); "
        f"640x360 synthetic sources, {src}; steady window after {args.warmup:g} s"
    )
    print(
        f"{'cores':>5}{'streams':>8}{'per core':>9}{'sink fps':>10}{'ideal':>8}{'of ideal':>10}"
        f"{'target':>8}{'lat p50':>9}{'p99 ms':>8}{'infer ms':>10}{'CPU ms/fr':>11}"
        f"{'CPU share':>11}{'per stream fps':>16}"
    )
    live = bool(args.live_fps)
    for case, f in rows:
        if live:  # below capacity: the target is fresh frames, not throughput
            overhead = f["latency_p50_ms"] - f["infer_ms_mean"]
            met = "ok" if overhead <= LIVE_OVERHEAD_MS else "MISSED"
        else:
            met = "ok" if f["fraction"] >= case.target else "MISSED"
        per_stream = f["stream_fps"].values()
        spread = f"{min(per_stream):.1f}-{max(per_stream):.1f}"
        drops = f"  drops {f['source_drops']}" if f["source_drops"] else ""
        print(
            f"{case.cores:>5}{case.streams:>8}{case.per_core:>9}{f['fps']:>10.1f}"
            f"{f['ideal_fps']:>8.1f}{f['fraction']:>10.1%}{case.target:>7.0%} {met:<6}"
            f"{f['latency_p50_ms']:>6.0f}{f['latency_p99_ms']:>8.0f}{f['infer_ms_mean']:>10.2f}"
            f"{f['cpu_ms_per_frame']:>11.2f}{f['cpu_share']:>11.0%}{spread:>16}{drops}"
        )
    if live:
        print(
            f"target (live): capture-to-sink p50 at most {LIVE_OVERHEAD_MS:g} ms beyond infer ms; "
            + ", ".join(
                f"{c.cores}c{c.streams}s {f['latency_p50_ms'] - f['infer_ms_mean']:.1f} ms"
                for c, f in rows
            )
        )
    print(
        "infer ms: mean time of the backend call per frame, with any wait for a shared core; "
        "CPU: all the run's processes over the steady window, per frame and as a share of "
        "the machine's CPUs"
    )
    for case, f in rows:
        print(f"\n{case.key}: per stage ({f['cpu_ms_per_frame']:.2f} CPU ms per frame in all)")
        _graphs.print_profile(f["profile"])
    print(f"\n{_graphs.load_average()} at the end; total {elapsed:.0f} s")


OVERLOAD_STREAMS = (2, 6, 12)  # live streams into 3 cores: below capacity, 1.2x, 2.5x


def overload_met(case: Case, f: dict[str, Any]) -> list[str]:
    """The issue #22 targets this overload row missed (none: every one met)."""
    inf = f["infer_ms_mean"]
    if case.streams * f["offered_fps"] < f["ideal_fps"]:  # below capacity
        return ["p50"] if f["latency_p50_ms"] - inf > LIVE_OVERHEAD_MS else []
    missed = []
    if f["latency_p50_ms"] > 2 * inf + LIVE_OVERHEAD_MS:
        missed.append("p50")
    if f["latency_p99_ms"] > 4 * inf:
        missed.append("p99")
    per = list(f["stream_fps"].values())
    if len(per) < case.streams or min(per) < 0.9 * max(per):
        missed.append("fair")
    if case.streams == 6 and f["fraction"] < 0.90:
        missed.append("fps")
    return missed


def report_overload(rows: list[tuple[Case, bool, dict]], args: argparse.Namespace) -> None:
    print(
        f"\noverload: {OVERLOAD_STREAMS} live streams at {args.live_fps:g} fps into 3 sim cores "
        f"({args.sim_ms:g} ms per call); steady window after {args.warmup:g} s"
    )
    print(
        f"{'streams':>7}{'demand':>8}{'sink fps':>10}{'of ideal':>10}{'p50 ms':>8}"
        f"{'target':>8}{'p99 ms':>8}{'target':>8}{'per stream fps':>16}{'src drops':>11}  met"
    )
    for case, demand, f in rows:
        inf = f["infer_ms_mean"]
        under = case.streams * args.live_fps < f["ideal_fps"]
        p50_t = inf + LIVE_OVERHEAD_MS if under else 2 * inf + LIVE_OVERHEAD_MS
        p99_t = "-" if under else f"{4 * inf:.0f}"
        per = f["stream_fps"].values()
        missed = overload_met(case, f)
        print(
            f"{case.streams:>7}{'on' if demand else 'off':>8}{f['fps']:>10.1f}"
            f"{f['fraction']:>10.1%}{f['latency_p50_ms']:>8.0f}{p50_t:>8.0f}"
            f"{f['latency_p99_ms']:>8.0f}{p99_t:>8}{f'{min(per):.1f}-{max(per):.1f}':>16}"
            f"{f['source_drops']:>11}  {'ok' if not missed else 'MISSED ' + ','.join(missed)}"
        )
    print("demand off: the baseline (source_demand = false), measured in the same run")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="shorter runs (under a minute in all)")
    ap.add_argument("--json", type=Path, metavar="OUT", help="also write the figures as JSON")
    ap.add_argument("--cases", default="1,2,3", help="simulated core counts (1, 2, 3)")
    ap.add_argument("--per-core", default="1,2", help="inference processes per core, e.g. 1,2")
    ap.add_argument("--duration", type=float, help="seconds per run (after start-up)")
    ap.add_argument("--sim-ms", type=float, default=20.5, help="sim service time per call")
    ap.add_argument("--live-fps", type=float, help="live sources at this rate per stream")
    ap.add_argument("--window", type=int, default=2, help="the pipeline's credit window")
    ap.add_argument(
        "--overload",
        action="store_true",
        help="2, 6, 12 live streams into 3 cores, source_demand off (baseline) and on",
    )
    args = ap.parse_args(argv)
    try:
        cores = [int(c) for c in args.cases.split(",")]
        per_core = [int(n) for n in args.per_core.split(",")]
    except ValueError:
        ap.error("--cases and --per-core take comma-separated integers")
    if any(c not in CASES for c in cores) or any(n < 1 for n in per_core):
        ap.error(f"--cases from {sorted(CASES)}, --per-core >= 1")
    args.duration = args.duration or (5.0 if args.quick else 12.0)
    args.warmup = min(2.0, args.duration / 3)

    print(f"{_graphs.load_average()} at start", file=sys.stderr)
    if args.overload:
        return overload(args)
    cases = [Case(c, CASES[c][0], n, CASES[c][1]) for n in per_core for c in cores]
    rows = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rkpipe-bench-") as tmp:
        for case in cases:
            print(f"  {case.key}: npu_cores = {case.npu_cores}", file=sys.stderr, flush=True)
            rows.append((case, run_case(case, Path(tmp), args)))
    report(rows, args, time.monotonic() - t0)
    if args.json:
        doc = {
            "sim_ms": args.sim_ms,
            "duration_s": args.duration,
            "live_fps": args.live_fps,
            "quick": args.quick,
            "cases": [{**asdict(c), "key": c.key, "npu_cores": c.npu_cores, **f} for c, f in rows],
        }
        args.json.write_text(json.dumps(doc, indent=2))
    return 0


def overload(args: argparse.Namespace) -> int:
    """The overload cases, each with source demand off (baseline) then on, back to back."""
    args.live_fps = args.live_fps or 30.0
    rows = []
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="rkpipe-bench-") as tmp:
        for streams in OVERLOAD_STREAMS:
            case = Case(3, streams, 1, 0.90)
            for demand in (False, True):
                print(f"  {case.key}: source_demand = {demand}", file=sys.stderr, flush=True)
                fig = run_case(case, Path(tmp), args, demand)
                fig["offered_fps"] = args.live_fps
                rows.append((case, demand, fig))
    report_overload(rows, args)
    for case, demand, f in rows:
        print(f"\n{case.key} demand {'on' if demand else 'off'}: per stage")
        _graphs.print_profile(f["profile"])
    print(f"\n{_graphs.load_average()} at the end; total {time.monotonic() - t0:.0f} s")
    if args.json:
        doc = [{**asdict(c), "source_demand": d, **f} for c, d, f in rows]
        args.json.write_text(json.dumps({"overload": doc}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
