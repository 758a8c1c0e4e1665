"""What a QoS 1 subscriber receives when the mqtt sink is SIGKILLed again and again, the broker
up and the spool on: the events it gets twice (a restarted sink resending what the broker had
acknowledged) and the events that never come.

Each run is ``rkpipe run`` of two paced cameras (3 events a frame, each with its stable ``id``)
into the mqtt sink with ``spool_dir``; the sink is SIGKILLed ``--kills`` times at random
moments (each after the last restart), against a real mosquitto; a persistent QoS 1
subscriber counts the ids. ``--no-witness`` turns the sink's witness session off, leaving the
spool's PUBACK record alone (QoS 1's window between the broker's taking a message and that
record stays). Missing events are whole frames the sink had not taken (its input
queue at a kill), which the runtime counts as lost; duplicates are ids received more than once.

    python benchmarks/bench_mqtt_kills.py [--runs 20] [--kills 4] [--frames 240] [--seed 1]
"""

from __future__ import annotations

import argparse
import collections
import json
import random
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.mosquitto import Broker, Subscriber  # noqa: E402
from support.mqtt_graph import all_ids, graph_text, start_run  # noqa: E402
from support.rkpipe import child_pid, poll_for, write_graph  # noqa: E402

FPS = 40.0


@dataclass
class Run:
    """One run's tally at the subscriber."""

    kills: int
    events: int
    received: int
    duplicates: int
    missing: int
    lost_counted: int
    resent_lines: int
    witnessed: int
    ok: bool


def kill_run(
    b: Broker, folder: Path, frames: int, kills: int, rng: random.Random, witness: bool = True
) -> Run:
    """One run with ``kills`` SIGKILLs of the sink at random moments."""
    folder.mkdir(parents=True)
    sub = Subscriber(b, ["rkpipe/+/+/events/#"], client_id=f"kills-{folder.name}", persistent=True)
    pipeline = {"restart_limit": kills + 2, "stats_interval_s": 1}
    opts = {"spool_dir": "spool", **({} if witness else {"witness": False})}
    text = graph_text(b, frames, 1, fps=FPS, pipeline=pipeline, **opts)
    stats = folder / "stats.json"
    proc = start_run(write_graph(folder, text), "--stats-out", str(stats))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    done = 0
    try:
        poll_for(lambda: len(sub.ids()) >= 6, timeout=60)  # the sink is up and delivering
        span = frames / FPS
        t0 = time.monotonic()
        moments = sorted(rng.uniform(0.05, 0.8) * span for _ in range(kills))
        for at in moments:
            pid = child_pid(proc, "mqtt")
            if pid is None or proc.poll() is not None:
                break
            time.sleep(max(0.0, at - (time.monotonic() - t0)))
            subprocess.run(["kill", "-KILL", str(pid)], check=False)
            done += 1
            poll_for(lambda p=pid: child_pid(proc, "mqtt") not in (None, p), timeout=30)
        proc.wait(180)
        reader.join(10)
    finally:
        proc.kill()
    want = all_ids(frames, 1)
    poll_for(lambda: set(sub.ids()) >= want, timeout=5)
    time.sleep(1.0)  # a late duplicate would come now (nothing to poll for: it may not come)
    ids = sub.ids()
    sub.close()
    err = "".join(lines)
    counts = collections.Counter(ids)
    resent = sum(
        int(line.split("mqtt: ")[1].split()[0])
        for line in err.splitlines()
        if "left unsent by an earlier run" in line
    )
    witnessed = sum(
        int(line.split("mqtt: ")[1].split()[0])
        for line in err.splitlines()
        if "had reached the broker" in line
    )
    lost, exact = 0, False
    if stats.exists():  # frames the runtime counts lost on their way into the sink, 3 events each
        doc = json.loads(stats.read_text())
        lost = 3 * sum(s["sinks"]["mqtt"]["dropped"] for s in doc["streams"].values())
        exact = bool(doc.get("exact"))
    return Run(
        kills=done,
        events=len(want),
        received=len(ids),
        duplicates=sum(n - 1 for n in counts.values() if n > 1),
        missing=len(want - set(ids)),
        lost_counted=lost,
        resent_lines=resent,
        witnessed=witnessed,
        ok=proc.returncode == 0 and exact and set(ids) <= want,
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=20)
    p.add_argument("--kills", type=int, default=4, help="SIGKILLs of the sink per run")
    p.add_argument("--frames", type=int, default=240, help="frames per camera (40 fps)")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--no-witness", action="store_true", help="the sink without its witness")
    args = p.parse_args()
    rng = random.Random(args.seed)
    runs: list[Run] = []
    with tempfile.TemporaryDirectory() as tmp, Broker(Path(tmp) / "broker") as b:
        how = "without" if args.no_witness else "with"
        print(
            f"{args.runs} runs, {args.kills} SIGKILLs of the mqtt sink each, spool on, QoS 1, "
            f"{how} the witness"
        )
        print(
            "run  kills  events  received  duplicates  missing  lost(counted)  resent  "
            "witnessed  ok"
        )
        for i in range(args.runs):
            r = kill_run(
                b, Path(tmp) / f"run{i}", args.frames, args.kills, rng, not args.no_witness
            )
            runs.append(r)
            print(
                f"{i:3d}  {r.kills:5d}  {r.events:6d}  {r.received:8d}  {r.duplicates:10d}  "
                f"{r.missing:7d}  {r.lost_counted:13d}  {r.resent_lines:6d}  "
                f"{r.witnessed:9d}  {r.ok}",
                flush=True,
            )
    dup = sum(r.duplicates for r in runs)
    print(
        f"all: {sum(r.kills for r in runs)} kills, {sum(r.events for r in runs)} events, "
        f"{dup} duplicates ({sum(r.duplicates > 0 for r in runs)} runs with any), "
        f"{sum(r.missing for r in runs)} missing ({sum(r.lost_counted for r in runs)} counted "
        f"lost by the runtime), {sum(r.resent_lines for r in runs)} resent after a restart, "
        f"{sum(r.witnessed for r in runs)} left out as seen by the witness, "
        f"{sum(not r.ok for r in runs)} runs not ok"
    )


if __name__ == "__main__":
    main()
