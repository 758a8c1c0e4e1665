"""What the pipeline benchmarks share: detection graphs written into a temp folder, the real
``rkpipe run`` in a subprocess, and a sink that records when each frame arrived.

The sink (``ArrivalSink``) is loaded by the stage process from this file, so this module
imports only what a stage needs; the steady-state figures come from its records, not from
the run's totals, which include start-up and the drain at the end.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np
from pydantic import Field

from pipeline.messages import Message
from pipeline.stage import Context, Stage, StageConfig

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "rkpipe-yolov8n.onnx"
SINK_USES = f"{Path(__file__).resolve()}:ArrivalSink"
SCENES = ("easy", "hard")
READY_LINE = " processes running"  # the supervisor's line once every stage is set up


# -- the sink ----------------------------------------------------------------------------------
class ArrivalSink(Stage):
    """A null sink that appends ``stream seq arrival_ns latency_ns infer_ms`` per message to
    ``path`` (monotonic clock; latency from capture; the time the backend call took, with any
    wait for a shared core), so a benchmark can cut a steady-state window."""

    replicable = False

    class Config(StageConfig):
        path: str = Field(description="file to append the records to")
        flush_every: int = Field(64, ge=1)

    def setup(self, ctx: Context) -> None:
        self.file: IO[str] = Path(self.config.path).open("a")  # noqa: SIM115 (closed in close)
        self.pending = 0

    def process(self, msg: Message) -> Message:
        now = time.monotonic_ns()
        infer_ms = msg.meta.get("infer_ms", 0.0)
        self.file.write(f"{msg.stream} {msg.seq} {now} {now - msg.t_mono_ns} {infer_ms}\n")
        self.pending += 1
        if self.pending >= self.config.flush_every:
            self.file.flush()
            self.pending = 0
        return msg

    def close(self) -> None:
        self.file.close()


# -- graph files -------------------------------------------------------------------------------
def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)  # a JSON string is a valid TOML basic string
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_value(x) for x in v) + "]"
    raise TypeError(f"cannot write {v!r} to TOML")


def to_toml(pipeline: dict[str, Any], stages: dict[str, dict[str, Any]]) -> str:
    """A graph file from plain dicts (flat keys only, which is all these graphs need)."""
    lines = ["[pipeline]", *(f"{k} = {_value(v)}" for k, v in pipeline.items())]
    for name, opts in stages.items():
        lines += ["", f"[stages.{name}]", *(f"{k} = {_value(v)}" for k, v in opts.items())]
    return "\n".join(lines) + "\n"


def detection_graph(
    name: str,
    streams: int,
    infer: dict[str, Any],
    arrivals: Path,
    layout: str = "nhwc_uint8",
    source: dict[str, Any] | None = None,
    stage_opts: dict[str, dict[str, Any]] | None = None,
    window: int = 2,
    settings: dict[str, Any] | None = None,
) -> str:
    """``streams`` synthetic 640x360 sources -> letterbox -> infer -> yolov8_decode ->
    bytetrack -> ArrivalSink. Sources are file-like (non-live) unless ``source`` says
    otherwise; ``stage_opts`` adds keys (cpus, replicas, ...) to the named stages, ``settings``
    to the pipeline's settings."""
    stages: dict[str, dict[str, Any]] = {}
    cams = [f"cam{i}" for i in range(streams)]
    for i, cam in enumerate(cams):
        stages[cam] = {
            "uses": "synthetic",
            "scene": SCENES[i % 2],
            "seed": i,
            "width": 640,
            "height": 360,
            "live": False,
            **(source or {}),
        }
    stages["pre"] = {"uses": "letterbox", "inputs": cams, "layout": layout}
    stages["npu"] = {"uses": "infer", "inputs": ["pre"], **infer}
    stages["post"] = {"uses": "yolov8_decode", "inputs": ["npu"], "classes": ["person", "car"]}
    stages["track"] = {"uses": "bytetrack", "inputs": ["post"]}
    stages["sink"] = {"uses": SINK_USES, "inputs": ["track"], "path": str(arrivals)}
    for stage, extra in (stage_opts or {}).items():
        stages[stage].update(extra)
    top = {"name": name, "window": window, "stats_interval_s": 1.0, **(settings or {})}
    return to_toml(top, stages)


# -- running -----------------------------------------------------------------------------------
def arrivals_path(folder: Path, name: str) -> Path:
    """Where the sink of run ``name`` records its arrivals."""
    return folder / f"{name}.arrivals"


@dataclass
class RunResult:
    """One ``rkpipe run``: its stats document, the sink's arrival records, and the steady
    window the CPU time of the run's processes was sampled over (monotonic ns)."""

    stats: dict[str, Any]
    streams: np.ndarray  # stream name per arrival
    seq: np.ndarray
    arrival_ns: np.ndarray
    latency_ms: np.ndarray
    infer_ms: np.ndarray
    window_ns: tuple[int, int]
    cpu_s: dict[str, float]  # CPU seconds per stage (and supervisor) within the window
    wall_s: float


def _cpu_by_process(root: int) -> dict[str, float]:
    """User + system CPU seconds (all threads) of ``root`` and each of its descendants, from
    /proc, keyed by stage (``rk:npu.1`` -> ``npu``; ``root`` itself is ``supervisor``)."""
    parent: dict[int, int] = {}
    ticks: dict[int, int] = {}
    names: dict[int, str] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        pid = int(d.name)
        fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "
        parent[pid], names[pid] = int(fields[1]), stat[stat.index("(") + 1 : stat.rindex(")")]
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime, stime
    family, frontier = {root}, {root}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier and p not in family}
        family |= frontier
    out: dict[str, float] = {}
    for pid in family:
        name = "supervisor" if pid == root else names.get(pid, "?")
        name = name.removeprefix("rk:").split(".")[0]
        out[name] = out.get(name, 0.0) + ticks.get(pid, 0) / os.sysconf("SC_CLK_TCK")
    return out


def _wait_ready(proc: subprocess.Popen, log: Path, timeout_s: float) -> bool:
    """Until the supervisor says every stage is set up (its ``--duration`` counts from
    then); False if the run ended or the time ran out first."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and proc.poll() is None:
        if READY_LINE in log.read_text(errors="replace"):
            return True
        time.sleep(0.02)
    return False


def _sleep_until(t: float) -> None:
    while (left := t - time.monotonic()) > 0:
        time.sleep(left)


def run_graph(
    text: str,
    folder: Path,
    name: str,
    duration_s: float,
    warmup_s: float,
    env: dict[str, str] | None = None,
    timeout_s: float = 180.0,
) -> RunResult:
    """Write ``text`` (whose sink appends to ``arrivals_path(folder, name)``) and run it for
    ``duration_s`` seconds with ``rkpipe run --duration --stats-out``. The steady window
    runs from ``warmup_s`` after every stage is ready to 0.5 s before the drain begins; the
    CPU time of the run's processes is sampled at both ends."""
    if duration_s - warmup_s < 1.5:
        raise ValueError(f"a {duration_s:g} s run leaves no steady window after {warmup_s:g} s")
    graph = folder / f"{name}.toml"
    stats_path = folder / f"{name}.stats.json"
    arrivals = arrivals_path(folder, name)
    log = folder / f"{name}.log"
    graph.write_text(text)
    arrivals.unlink(missing_ok=True)
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    cmd = [sys.executable, "-m", "pipeline.cli", "run", str(graph)]
    cmd += ["--duration", str(duration_s), "--stats-out", str(stats_path)]
    t0 = time.monotonic()
    with log.open("w") as err:
        proc = subprocess.Popen(
            cmd, cwd=folder, env=full_env, stdout=subprocess.DEVNULL, stderr=err
        )
        try:
            window, cpu = (0, 0), {}
            if _wait_ready(proc, log, timeout_s):
                ready = time.monotonic()
                _sleep_until(ready + warmup_s)
                a, cpu_a = time.monotonic_ns(), _cpu_by_process(proc.pid)
                _sleep_until(ready + duration_s - 0.5)
                b, cpu_b = time.monotonic_ns(), _cpu_by_process(proc.pid)
                window = (a, b)
                cpu = {k: v - cpu_a.get(k, 0.0) for k, v in cpu_b.items()}
            code = proc.wait(timeout=max(1.0, timeout_s - (time.monotonic() - t0)))
        finally:
            if proc.poll() is None:
                proc.terminate()  # the supervisor drains and stops its stages
                proc.wait(30)
    wall = time.monotonic() - t0
    if code != 0 or not stats_path.exists() or window == (0, 0):
        tail = "\n".join(log.read_text().strip().splitlines()[-15:])
        raise RuntimeError(f"rkpipe run {graph.name} exited {code}:\n{tail}")
    rows = [ln.split() for ln in arrivals.read_text().splitlines() if ln.strip()]
    cols = list(zip(*rows, strict=True))
    return RunResult(
        stats=json.loads(stats_path.read_text()),
        streams=np.array(cols[0]),
        seq=np.array(cols[1], np.int64),
        arrival_ns=np.array(cols[2], np.int64),
        latency_ms=np.array(cols[3], np.int64) / 1e6,
        infer_ms=np.array(cols[4], float),
        window_ns=window,
        cpu_s=cpu,
        wall_s=wall,
    )


def steady(run: RunResult) -> dict[str, Any]:
    """Over the steady window: FPS at the sink (all streams and each), capture-to-sink
    latency, the backend call's mean time, and the run's CPU time per frame."""
    a, b = run.window_ns
    sel = (run.arrival_ns >= a) & (run.arrival_ns < b)
    n = int(sel.sum())
    if n < 2:
        raise RuntimeError(f"only {n} frames reached the sink in the steady window: run longer")
    span = (b - a) / 1e9
    lat, infer = run.latency_ms[sel], run.infer_ms[sel]
    per_stream = {str(s): int(np.sum(run.streams[sel] == s)) for s in np.unique(run.streams)}
    cpu = sum(run.cpu_s.values())
    return {
        "window_s": round(span, 2),
        "frames": n,
        "fps": n / span,
        "latency_p50_ms": float(np.percentile(lat, 50)),
        "latency_p99_ms": float(np.percentile(lat, 99)),
        "infer_ms_mean": float(infer.mean()),
        "stream_fps": {s: k / span for s, k in per_stream.items()},
        "cpu_ms_per_frame": 1000 * cpu / n,
        "cpu_share": cpu / span / len(os.sched_getaffinity(0)),
        "stage_cpu_ms_per_frame": {k: 1000 * v / n for k, v in run.cpu_s.items()},
    }


def stage_profile(run: RunResult, figures: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """Per stage: fps, time in process() p50 and busy share (whole run, from the stats), and
    CPU ms per frame at the sink over the steady window (all the stage's processes)."""
    cpu = figures["stage_cpu_ms_per_frame"]
    out = {}
    for name, s in run.stats["stages"].items():
        out[name] = {
            "instances": len(s["instances"]),
            "fps": s["fps"],
            "service_p50_ms": s["service_ms"]["p50"],
            "busy": s["busy"],
            "cpu_ms_per_frame": cpu.get(name),
            "drops": s["drops"],
        }
    if "supervisor" in cpu:
        out["(runner)"] = {
            "instances": 1,
            "fps": None,
            "service_p50_ms": None,
            "busy": None,
            "cpu_ms_per_frame": cpu["supervisor"],
            "drops": 0,
        }
    return out


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def print_profile(profile: dict[str, dict[str, Any]], indent: str = "    ") -> None:
    """The stage table: where the time goes."""
    print(
        f"{indent}{'stage':<11}{'inst':>5}{'fps':>8}{'svc p50 ms':>12}{'busy':>7}"
        f"{'CPU ms/frame':>14}"
    )
    for name, p in profile.items():
        print(
            f"{indent}{name:<11}{p['instances']:>5}{_num(p['fps'], '.1f'):>8}"
            f"{_num(p['service_p50_ms'], '.2f'):>12}{_num(p['busy'], '.0%'):>7}"
            f"{_num(p['cpu_ms_per_frame'], '.2f'):>14}"
            + (f"  drops {p['drops']}" if p["drops"] else "")
        )


def load_average() -> str:
    """The 1-minute load average and CPU count, to say how busy the machine was."""
    return f"load {os.getloadavg()[0]:.2f} on {os.cpu_count()} CPUs"
