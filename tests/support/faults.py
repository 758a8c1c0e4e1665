"""Fault injection on real runs: kill or stop stage processes (or the supervisor) at chosen
moments, or edit the graph file and reload it, then check the run's one invariant from its
stats and its sinks' JSONL files.

Shared by the fault tests (tests/faults) and the chaos benchmark (benchmarks/chaos.py).
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from pipeline.graph.edit import add_stage, patch_stage, remove_stage
from support.graph import Graph
from support.rkpipe import TEST_STAGES, poll_for, read_jsonl, start_rkpipe

__all__ = [
    "RELOAD",
    "STAGE_KINDS",
    "Fault",
    "Outcome",
    "check_invariant",
    "detection_graph",
    "instance_pid",
    "random_edits",
    "random_faults",
    "run_pids",
    "run_with_faults",
]

#: One instance per kind of stage in the detection graph below.
STAGE_KINDS = {
    "source": "cam0",
    "live source": "cam1",
    "letterbox": "pre",
    "infer replica": "npu.1",
    "decode": "post",
    "track": "track",
    "analytics": "lines",
    "sink": "out",
}


def detection_graph(folder: Path, frames: int = 240, fps: int = 60) -> Path:
    """The whole detection pipeline on two streams (a file-like and a live source), light
    enough for a loaded 2-core machine: letterbox, two simulated NPU processes (the NPU is the
    one thing that cannot exist here), decode, ByteTrack, a counting line, two JSONL sinks."""
    cam = {"uses": "synthetic", "width": 160, "height": 120, "fps": fps, "frames": frames}
    return (
        Graph(
            "faults",
            heartbeat_timeout_s=3,
            restart_limit=20,
            restart_window_s=60,
            shutdown_grace_s=30,
            stats_interval_s=0.5,
        )
        .source("cam0", **cam, realtime=True, seed=1)
        .source("cam1", **cam, live=True, seed=2)
        .stage("pre", uses="letterbox", inputs=["cam0", "cam1"], size=[160, 160])
        .stage(  # sim_ms at 640x640: 4 ms at this 160x160 input (scaled by pixels)
            "npu", uses="infer", inputs=["pre"], model="sim:yolov8n", sim_ms=64, npu_cores=[0, 1]
        )
        .stage("post", uses="yolov8_decode", inputs=["npu"])
        .stage("track", uses="bytetrack", inputs=["post"])
        .stage(
            "lines",
            uses="line_crossing",
            inputs=["track"],
            lines={"*": {"name": "mid", "a": [0, 60], "b": [160, 60]}},
        )
        .sink("out", uses="jsonl", inputs=["lines"], path=folder / "frames.jsonl")
        .sink(
            "events", uses="jsonl", inputs=["lines"], path=folder / "events.jsonl", events_only=True
        )
        .write(folder, "faults.toml")
    )


RELOAD = "reload"  #: a fault's target: edit the graph file, then SIGHUP the supervisor


@dataclass
class Fault:
    """At ``at_s`` after the run is ready (or after start, ``before_ready``), send ``sig``
    to ``target`` (a stage instance, or "supervisor"); for ``RELOAD``, rewrite the graph
    file with ``edit`` and send the supervisor SIGHUP."""

    at_s: float
    target: str
    sig: int = signal.SIGKILL
    before_ready: bool = False
    edit: Callable[[str], str] | None = None
    what: str = ""  # what the edit does, for the tally


def random_edits(rng: random.Random, n: int, span_s: float) -> list[Fault]:
    """``n`` reloads of the detection graph at random moments: a moved counting line and a
    new ``conf`` (taken in place), a new tracker threshold (the tracker restarts with it), a
    camera added (read by ``pre``) or the latest added one removed, inference processes
    started or let go (``npu_cores``), and a bad edit (an input that does not exist: nothing
    changes)."""
    edits: list[Fault] = []
    for i in range(n):
        kind = rng.choice(["line", "conf", "track", "add", "remove", "cores", "bad"])
        edit: Callable[[str], str]
        if kind == "add":
            cam = {"uses": "synthetic", "width": 160, "height": 120, "fps": 30, "live": True}
            table = {**cam, "frames": rng.randint(30, 150), "seed": 10 + i}
            edit = (lambda nm, tb: lambda text: add_stage(text, nm, tb, readers=["pre"]))(
                f"cam{2 + i}", table
            )
        elif kind == "remove":
            edit = _remove_an_added_camera
        else:
            if kind == "line":
                y = rng.randint(20, 100)
                patch = {"lines": {"*": {"name": "mid", "a": [0, y], "b": [160, y]}}}
                stage = "lines"
            elif kind == "conf":
                patch, stage = {"conf": round(rng.uniform(0.15, 0.5), 2)}, "post"
            elif kind == "track":
                patch, stage = {"track_thresh": round(rng.uniform(0.3, 0.7), 2)}, "track"
            elif kind == "cores":  # inference processes started or let go
                patch, stage = {"npu_cores": rng.choice([[0, 1], [0, 1, 2], [0, 1, 0, 1]])}, "npu"
            else:
                patch, stage = {"inputs": ["nowhere"]}, "lines"
            edit = (lambda st, pa: lambda text: patch_stage(text, st, pa))(stage, patch)
        edits.append(Fault(round(rng.uniform(0.2, span_s), 2), RELOAD, edit=edit, what=kind))
    return edits


def _remove_an_added_camera(text: str) -> str:
    """The graph without the camera added last (unchanged when none was added)."""
    added = [int(m) for m in re.findall(r"^\[stages\.cam(\d+)\]", text, re.M) if int(m) >= 2]
    return remove_stage(text, f"cam{max(added)}") if added else text


def random_faults(rng: random.Random, targets: list[str], n: int, span_s: float) -> list[Fault]:
    """``n`` faults at random moments in the first ``span_s`` seconds, mostly SIGKILL,
    sometimes SIGSTOP (a hang, ended by the heartbeat timeout)."""
    faults = [
        Fault(
            round(rng.uniform(0.2, span_s), 2),
            rng.choice(targets),
            signal.SIGSTOP if rng.random() < 0.2 else signal.SIGKILL,
        )
        for _ in range(n)
    ]
    return sorted(faults, key=lambda f: f.at_s)


@dataclass
class Outcome:
    returncode: int
    stderr: str
    stats: dict
    done: list[Fault] = field(default_factory=list)  # faults that found their target


def run_pids(supervisor: int) -> list[int]:
    """Every process started by the run of ``supervisor`` (its environment says so)."""
    mark = f"RKPIPE_SUPERVISOR_PID={supervisor}".encode()
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if mark in (d / "environ").read_bytes().split(b"\0"):
                found.append(int(d.name))
        except OSError:
            continue
    return found


def instance_pid(supervisor: int, instance: str) -> int | None:
    """The PID of stage ``instance`` of the run of ``supervisor``, if it is running."""
    for pid in run_pids(supervisor):
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if instance.encode() in cmd:
            return pid
    return None


def run_with_faults(
    graph: Path,
    faults: list[Fault],
    stats_out: Path,
    timeout_s: float = 180,
    extra_args: tuple[str, ...] = (),
) -> Outcome:
    """Run ``graph`` to its end, delivering ``faults``; the run's result and stats."""
    run = start_rkpipe(
        "run", str(graph), "--no-live", "--stats-out", str(stats_out), *extra_args,
        env={"PYTHONPATH": str(TEST_STAGES)},
    )  # fmt: skip
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(run.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    ready_at = None
    done: list[Fault] = []
    t0 = time.monotonic()
    pending = list(faults)
    try:
        while run.poll() is None and time.monotonic() - t0 < timeout_s:
            if ready_at is None and any(" processes running" in line for line in lines):
                ready_at = time.monotonic()
            now = time.monotonic()
            for fault in list(pending):
                base = t0 if fault.before_ready else ready_at
                if base is None or now - base < fault.at_s:
                    continue
                pending.remove(fault)
                if fault.target == RELOAD:
                    assert fault.edit is not None
                    good, refused = graph.read_text(), _refused(lines)
                    graph.write_text(fault.edit(good))
                    os.kill(run.pid, signal.SIGHUP)
                    done.append(fault)
                    if fault.what == "bad":  # put the good file back once it was refused
                        poll_for(lambda: _refused(lines) > refused, 10)  # noqa: B023
                        graph.write_text(good)
                    continue
                pid = (
                    run.pid if fault.target == "supervisor" else instance_pid(run.pid, fault.target)
                )
                if pid is not None:
                    try:
                        os.kill(pid, fault.sig)
                        done.append(fault)
                    except ProcessLookupError:
                        pass
            time.sleep(0.02)
    finally:
        if run.poll() is None:
            run.kill()
        run.wait(30)
        reader.join(timeout=10)
    stats = json.loads(stats_out.read_text()) if stats_out.exists() else {}
    return Outcome(run.returncode, "".join(lines), stats, done)


def _refused(lines: list[str]) -> int:
    """Reloads the run refused (a bad edit: it says so in one line)."""
    return sum("the run goes on as it was" in line for line in lines)


def check_invariant(outcome: Outcome, sinks: dict[str, Path | None], kills: Counter) -> list[str]:
    """What breaks the invariant, per stream and sink (empty when it held): the run's own
    check must say exact, each sink's account must add up to what was produced, and its
    JSONL file must hold each frame at most once, in order, and (but for the one frame a
    sink killed mid-commit may have written) exactly the frames counted delivered."""
    problems = []
    stats = outcome.stats
    if not stats.get("exact"):
        problems.append("the run says it was not exact")
    for stream, entry in stats.get("streams", {}).items():
        for sink, path in sinks.items():
            acc = entry["sinks"].get(sink)
            if acc is None:
                problems.append(f"{stream} -> {sink}: no account")
                continue
            if acc["delivered"] + acc["dropped"] != entry["produced"]:
                problems.append(f"{stream} -> {sink}: {acc} does not add up to {entry['produced']}")
            if path is None or not path.exists():  # a sink whose file is not one line a frame
                continue
            rows = read_jsonl(path)
            frames = [r["seq"] for r in rows if r["stream"] == stream and "frame" in r["arrays"]]
            if frames != sorted(set(frames)):
                dup = [s for s, n in Counter(frames).items() if n > 1]
                problems.append(f"{stream} -> {sink}: out of order or twice (twice: {dup[:5]})")
            slack = kills.get(sink, 0)
            if not acc["delivered"] <= len(set(frames)) <= acc["delivered"] + slack:
                problems.append(
                    f"{stream} -> {sink}: {len(set(frames))} frames in the file, "
                    f"{acc['delivered']} counted delivered"
                )
    return problems
