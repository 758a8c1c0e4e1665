"""Random faults over real runs of the whole detection pipeline, and whether the invariant held.

Each run plays two streams (one paced like a file, one live) through letterbox, two simulated
NPU processes, decode, ByteTrack, a counting line and two sinks, while random stage processes
are SIGKILLed or SIGSTOPped (a hang, ended by the heartbeat timeout) at random moments; every
so often the supervisor itself is killed instead. With ``--reloads N`` the graph file is also
edited N times a run and reloaded (SIGHUP) among the faults: a moved line, a new ``conf``, a
new tracker threshold (the tracker restarts), a bad edit (refused). It prints, per run and in
all: faults dealt, reloads by kind, frames produced / delivered / dropped by reason, whether
the run's own check said exact, frames delivered twice or out of order, processes left,
bytes left in /dev/shm.

    python benchmarks/chaos.py --runs 10 --faults 4 --seed 1
    python benchmarks/chaos.py --runs 10 --faults 4 --reloads 6 --seed 1
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pipeline.supervise.runs import stale_runs, sweep_stale  # noqa: E402
from support.faults import (  # noqa: E402
    RELOAD,
    STAGE_KINDS,
    Fault,
    check_invariant,
    detection_graph,
    random_edits,
    random_faults,
    run_with_faults,
)
from support.rkpipe import orphaned_stage_pids, poll_for, read_jsonl  # noqa: E402


def leftover_bytes() -> int:
    """Bytes in /dev/shm and run folders that no live run holds."""
    total = 0
    for paths in stale_runs().values():
        for p in paths:
            if p.is_file():
                total += p.stat().st_size
    return total


LOGS: Path | None = None  # --logs


def one_run(
    folder: Path, rng: random.Random, faults_n: int, kill_supervisor: bool, reloads_n: int = 0
) -> dict:
    graph = detection_graph(folder, frames=300)
    targets = sorted(STAGE_KINDS.values())
    faults = random_faults(rng, targets, faults_n, span_s=5.0)
    faults = sorted(faults + random_edits(rng, reloads_n, span_s=5.0), key=lambda f: f.at_s)
    if kill_supervisor:
        faults.append(Fault(round(rng.uniform(0.5, 5.0), 2), "supervisor"))
    t0 = time.monotonic()
    outcome = run_with_faults(graph, faults, folder / "stats.json")
    wall = time.monotonic() - t0
    kills = Counter(f.target for f in outcome.done if f.target != RELOAD)
    reloads = Counter(f.what for f in outcome.done if f.target == RELOAD)
    sinks: dict[str, Path | None] = {"out": folder / "frames.jsonl", "events": None}
    supervisor_killed = any(f.target == "supervisor" for f in outcome.done)
    problems = [] if supervisor_killed else check_invariant(outcome, sinks, kills)
    if problems and LOGS is not None:  # what the run said, to find out why
        LOGS.mkdir(parents=True, exist_ok=True)
        (LOGS / f"{folder.name}.log").write_text(
            "\n".join(f"{f.at_s} {f.target} {f.what}" for f in outcome.done)
            + "\n\n"
            + outcome.stderr
        )
    rows = read_jsonl(folder / "frames.jsonl") if (folder / "frames.jsonl").exists() else []
    frames = [(r["stream"], r["seq"]) for r in rows if "frame" in r.get("arrays", {})]
    twice = sum(n - 1 for n in Counter(frames).values() if n > 1)
    produced = delivered = 0
    dropped: Counter[str] = Counter()
    for entry in outcome.stats.get("streams", {}).values():
        produced += entry["produced"]
        acc = entry["sinks"].get("out", {})
        delivered += acc.get("delivered", 0)
        for reason, n in acc.get("dropped_by_reason", {}).items():
            dropped[reason.split("@")[0]] += n
    return {
        "faults": sum(kills.values()),
        "reloads": reloads,
        "supervisor_killed": supervisor_killed,
        "exit": outcome.returncode,
        "produced": produced,
        "delivered": delivered,
        "dropped": dropped,
        "exact": bool(outcome.stats.get("exact")) and not problems,
        "problems": problems,
        "twice": twice,
        "orphans": len(orphans_after()) if supervisor_killed else 0,
        "wall_s": wall,
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=10)
    ap.add_argument("--faults", type=int, default=4, help="stage faults per run")
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--supervisor-every", type=int, default=5, help="every Nth run kills it")
    ap.add_argument("--reloads", type=int, default=0, help="graph edits reloaded per run")
    ap.add_argument("--logs", type=Path, help="write the log of each run that breaks here")
    args = ap.parse_args()
    global LOGS
    LOGS = args.logs
    rng = random.Random(args.seed)
    results = []
    print("run faults sup exit produced delivered dropped(by reason)            exact twice")
    with tempfile.TemporaryDirectory(prefix="rkpipe_chaos_") as tmp:
        for i in range(args.runs):
            folder = Path(tmp) / f"run{i}"
            folder.mkdir()
            kill_sup = args.supervisor_every > 0 and (i + 1) % args.supervisor_every == 0
            r = one_run(folder, rng, args.faults, kill_sup, args.reloads)
            results.append(r)
            reasons = ", ".join(f"{k} {v}" for k, v in sorted(r["dropped"].items())) or "-"
            exact = "-" if r["supervisor_killed"] else ("yes" if r["exact"] else "NO")
            print(
                f"{i:>3} {r['faults']:>6} {'yes' if r['supervisor_killed'] else 'no':>3} "
                f"{r['exit']:>4} {r['produced']:>8} {r['delivered']:>9} {reasons:<34} "
                f"{exact:>5} {r['twice']:>5}"
            )
            for p in r["problems"]:
                print(f"      problem: {p}")
    checked = [r for r in results if not r["supervisor_killed"]]
    dropped: Counter[str] = Counter()
    for r in checked:
        dropped.update(r["dropped"])
    print()
    print(f"runs {len(results)} ({len(results) - len(checked)} with the supervisor killed)")
    print(f"faults dealt {sum(r['faults'] for r in results)}")
    reloads: Counter[str] = Counter()
    for r in results:
        reloads.update(r["reloads"])
    if reloads:
        print(
            f"reloads {sum(reloads.values())}: "
            + ", ".join(f"{k} {v}" for k, v in sorted(reloads.items()))
        )
    print(
        f"frames produced {sum(r['produced'] for r in checked)}, "
        f"delivered {sum(r['delivered'] for r in checked)}, dropped "
        + ", ".join(f"{k} {v}" for k, v in sorted(dropped.items()))
    )
    print(f"exact {sum(r['exact'] for r in checked)} of {len(checked)}")
    print(f"frames delivered twice {sum(r['twice'] for r in checked)}")
    print(f"processes left behind {sum(r['orphans'] for r in results)}")
    left = leftover_bytes()
    sweep_stale()  # what the next run does first
    print(
        f"bytes left in /dev/shm by killed supervisors {left}, after the next start's sweep "
        f"{leftover_bytes()}"
    )
    return 0 if all(r["exact"] for r in checked) else 1


def orphans_after() -> list[int]:
    """Stage processes whose supervisor is gone, after giving them 15 s to go."""
    poll_for(lambda: not orphaned_stage_pids(), 15)
    return sorted(orphaned_stage_pids())


if __name__ == "__main__":
    sys.exit(main())
