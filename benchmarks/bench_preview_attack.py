"""What a stranger's attack on the preview costs the rest of a run: a live camera (20 fps,
240 frames) feeds the preview and a jsonl sink; 40 slowloris sockets and a 60 kB request line
every half second (or the line alone) hit the preview while a legitimate client polls it
twice a second.

Writes, per run: the frames the camera dropped (``live_overflow``: lost by every sink), the
frames the jsonl sink delivered, and the legitimate requests answered of those tried.
``--tree DIR`` runs the rkpipe of another checkout (e.g. the code before a change) with the
same attack, so both are measured the same way on the same machine.

    python benchmarks/bench_preview_attack.py [--runs 2] [--tree DIR] [--out FILE.json]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from support.http_attack import Attack, Poller  # noqa: E402
from support.rkpipe import poll_for  # noqa: E402

GRAPH = """[pipeline]
stats_interval_s = 1
[stages.cam0]
uses = "synthetic"
live = true
fps = 20
frames = 240
width = 160
height = 120
pool_slots = 64
[stages.view]
uses = "preview"
inputs = ["cam0"]
port = 0
[stages.out]
uses = "jsonl"
inputs = ["cam0"]
path = "{dir}/out.jsonl"
"""


MODES = {"none": None, "slowloris+line": 40, "line only": 0}  # slowloris sockets


def one_run(tree: Path, mode: str) -> dict:
    """One run of the graph under attack ``mode`` (see MODES); its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        (d / "g.toml").write_text(GRAPH.format(dir=d))
        cmd = [sys.executable, "-m", "pipeline.cli", "run", str(d / "g.toml"), "--no-live"]
        run = subprocess.Popen(
            [*cmd, "--stats-out", str(d / "s.json")], cwd=tree, stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE, text=True, env={"PYTHONPATH": str(tree), "PATH": "/usr/bin"},
        )  # fmt: skip
        lines: list[str] = []
        threading.Thread(target=lambda: lines.extend(run.stderr or ()), daemon=True).start()
        poll_for(lambda: any("preview at http" in x for x in lines), 60)
        port = int(next(x for x in lines if "preview at http" in x).split(":")[-1].split("/")[0])
        sockets = MODES[mode]
        hits = Attack(port, sockets=sockets).start() if sockets is not None else None
        client = Poller(port).start()
        out = d / "out.jsonl"
        poll_for(lambda: out.exists() and len(out.read_bytes().splitlines()) >= 200, 120)
        client.end()
        run.wait(timeout=180)
        if hits is not None:
            hits.end()
        cam = json.loads((d / "s.json").read_text())["streams"]["cam0"]
        return {
            "attack": mode,
            "live_overflow": cam["dropped_at_source"].get("live_overflow", 0),
            "jsonl_delivered": cam["sinks"]["out"]["delivered"],
            "legit_answered": client.answered,
            "legit_tries": client.tries,
        }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--tree", type=Path, default=ROOT, help="the rkpipe checkout to run")
    ap.add_argument("--out", type=Path, help="write the figures here as JSON")
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    args = ap.parse_args()
    rows = [one_run(args.tree.resolve(), m) for _ in range(args.runs) for m in args.modes]
    for row in rows:
        print(json.dumps(row))
    if args.out:
        args.out.write_text(json.dumps({"tree": str(args.tree), "runs": rows}, indent=1))


if __name__ == "__main__":
    main()
