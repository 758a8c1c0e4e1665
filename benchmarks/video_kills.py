"""The video sink SIGKILLed at random moments over real runs: frames counted delivered to it
against frames that play in the files it left (ffprobe, every part).

Each run plays a live-paced synthetic camera (60 fps) into a ``video`` sink and a ``jsonl``
sink and kills the video sink's process ``--kills`` times at random moments. It prints, per
run and in all: kills that found the sink, frames counted delivered, frames playable, the
parts and their frames, and whether the run's own check said exact. Playable must never be
below delivered; it may be above by at most one frame a kill (a frame in the file when the
process died, before the runtime counted it, is counted lost).

    python benchmarks/video_kills.py --runs 8 --kills 2 --seed 1
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.video_kills import kill_run  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--runs", type=int, default=8)
    ap.add_argument("--kills", type=int, default=2, help="SIGKILLs of the video sink a run")
    ap.add_argument("--frames", type=int, default=240, help="frames a run (60 fps)")
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    totals = {"kills": 0, "delivered": 0, "playable": 0, "short": 0, "not_exact": 0}
    with tempfile.TemporaryDirectory(prefix="rkpipe-video-kills-") as tmp:
        for i in range(args.runs):
            run = kill_run(Path(tmp) / f"run{i}", rng, args.kills, args.frames)
            short = run.playable < run.delivered
            parts = " ".join(f"{name}:{frames}" for name, _, frames in run.parts)
            print(
                f"run {i}: kills {run.kills}  delivered {run.delivered}  playable {run.playable}"
                f"  {'SHORT ' if short else ''}exact {run.exact and run.adds_up}"
                f"  exit {run.returncode}  parts {parts}",
                flush=True,
            )
            totals["kills"] += run.kills
            totals["delivered"] += run.delivered
            totals["playable"] += run.playable
            totals["short"] += short
            totals["not_exact"] += not (run.exact and run.adds_up and run.returncode == 0)
    print(
        f"all {args.runs} runs: kills {totals['kills']}  delivered {totals['delivered']}  "
        f"playable {totals['playable']}  runs with fewer playable than delivered "
        f"{totals['short']}  runs not exact {totals['not_exact']}"
    )
    return 1 if totals["short"] or totals["not_exact"] else 0


if __name__ == "__main__":
    sys.exit(main())
