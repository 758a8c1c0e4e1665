"""Event snapshots read by the mqtt sink: how many events name a snapshot the sink cannot read
(``mqtt_snapshot_unreadable``), how many name a file that is not there at the end, and what
writing them costs the line_crossing stage (its service time per message).

Each run is ``rkpipe run`` of the synthetic "easy" street (unpaced, as fast as it goes) with its
true boxes as tracks, through line_crossing with 19 lines and ``snapshot`` on, into the mqtt
sink (a real mosquitto) and a jsonl sink of the events; ``--no-snapshots`` gives the stage's
service time without snapshots, for comparison.

    python benchmarks/bench_snapshots.py [--runs 3] [--frames 300]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.mosquitto import Broker  # noqa: E402
from support.rkpipe import read_jsonl, start_rkpipe, write_graph  # noqa: E402

LINES = [(f"h{y}", [0, y], [640, y]) for y in range(40, 360, 40)] + [
    (f"v{x}", [x, 0], [x, 360]) for x in range(40, 640, 60)
]


def graph(b: Broker, frames: int, snapshots: bool) -> str:
    lines = ", ".join(f'{{ name = "{n}", a = {a}, b = {bb} }}' for n, a, bb in LINES)
    snap = 'snapshot = { dir = "snaps", keep = 5000 }' if snapshots else ""
    return f"""
[pipeline]
name = "bench_snapshots"
[stages.cam0]
uses = "synthetic"
scene = "easy"
frames = {frames}
[stages.truth]
uses = "rk_test_overlay:Overlay"
inputs = ["cam0"]
overlays = false
[stages.lines]
uses = "line_crossing"
inputs = ["truth"]
snapshot_every_s = 0
{snap}
lines."*" = [{lines}]
[stages.mqtt]
uses = "mqtt"
inputs = ["lines"]
host = "{b.host}"
port = {b.port}
snapshot_root = "snaps"
[stages.out]
uses = "jsonl"
inputs = ["lines"]
path = "events.jsonl"
events_only = true
"""


def one_run(b: Broker, folder: Path, frames: int, snapshots: bool) -> dict:
    folder.mkdir(parents=True)
    path = write_graph(folder, graph(b, frames, snapshots))
    stats = folder / "stats.json"
    proc = start_rkpipe("run", str(path), "--stats-out", str(stats), cwd=folder)
    _, err = proc.communicate(timeout=300)
    if proc.returncode != 0:
        raise SystemExit(f"run failed:\n{err[-3000:]}")
    full = json.loads(stats.read_text())
    doc = full["stages"]
    crossings = [e for e in read_jsonl(folder / "events.jsonl") if e.get("type") != "counts"]
    named = [e for e in crossings if "snapshot" in e]
    dangling = [e for e in named if not (folder / "snaps" / e["snapshot"]).is_file()]
    service = doc["lines"]["service_ms"]
    return {
        "events": len(crossings),
        "named": len(named),
        "unreadable": doc["mqtt"]["drops_by_reason"].get("mqtt_snapshot_unreadable", 0),
        "dangling": len(dangling),
        "counts": doc["lines"]["events"],
        "p50": service["p50"],
        "p99": service["p99"],
        "active_s": full["active_s"],
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=3)
    p.add_argument("--frames", type=int, default=300)
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, Broker(Path(tmp) / "broker") as b:
        print(f"{args.runs} runs of {args.frames} frames, line_crossing with snapshots -> mqtt")
        print("run  events  named  unreadable  dangling  service p50/p99 ms  run s  stage counts")
        total = {"events": 0, "named": 0, "unreadable": 0, "dangling": 0}
        for i in range(args.runs):
            r = one_run(b, Path(tmp) / f"run{i}", args.frames, True)
            for k in total:
                total[k] += r[k]
            print(
                f"{i:3d}  {r['events']:6d}  {r['named']:5d}  {r['unreadable']:10d}  "
                f"{r['dangling']:8d}  {r['p50']:8.2f} / {r['p99']:6.2f}  {r['active_s']:5.1f}  "
                f"{r['counts']}",
                flush=True,
            )
        r = one_run(b, Path(tmp) / "bare", args.frames, False)
        print(
            f"no snapshots: service p50/p99 {r['p50']:.2f} / {r['p99']:.2f} ms, "
            f"run {r['active_s']:.1f} s"
        )
        print(f"all: {total}")


if __name__ == "__main__":
    main()
