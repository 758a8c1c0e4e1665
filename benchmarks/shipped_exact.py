"""Every shipped graph, run repeatedly with live sources and a ``--duration``: how often the
run's own check said "exact", and what was dropped, by kind (faults, policy, stop).

    python benchmarks/shipped_exact.py --runs 5 --duration 20
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from support.shipped_graphs import not_exact, run_shipped, runnable_graphs  # noqa: E402


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", type=int, default=4, help="runs of each graph")
    p.add_argument("--duration", type=float, default=10.0, help="seconds each run")
    args = p.parse_args()
    failed = 0
    for graph in runnable_graphs():
        exact, kinds = 0, Counter[str]()
        for i in range(args.runs):
            with tempfile.TemporaryDirectory(prefix="rkpipe-shipped-") as tmp:
                stats, _err = run_shipped(graph, Path(tmp), args.duration)
            exact += bool(stats["exact"])
            for line in not_exact(stats):
                print(f"  {graph.stem} run {i}: NOT exact: {line}")
            for entry in stats["streams"].values():
                for account in entry["sinks"].values():
                    kinds.update(account["dropped_by_kind"])
        failed += args.runs - exact
        shown = ", ".join(f"{k} {n}" for k, n in sorted(kinds.items()))
        print(f"{graph.stem}: exact {exact}/{args.runs} (dropped: {shown})")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
