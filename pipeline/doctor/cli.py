"""``rkpipe doctor [GRAPH]``: print the checklist with fixes; exit status 1 when something
required fails."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..output_files import write_replacing
from .check import Check, DoctorContext
from .graph import graph_checks
from .machine import machine_checks
from .npu import npu_checks
from .video import video_checks

__all__ = ["main", "run_checks"]

MARK = {"ok": "ok  ", "warn": "WARN", "fail": "FAIL", "info": "  - "}


def run_checks(root: Path = Path("/"), graph: Path | None = None) -> list[Check]:
    """Every check, machine first (its facts inform the rest), then the graph's."""
    ctx = DoctorContext(root=root)
    checks = machine_checks(ctx) + npu_checks(ctx) + video_checks(ctx)
    if graph is not None:
        checks += graph_checks(graph, ctx)
    return checks


def _print(checks: list[Check], root: Path) -> None:
    where = "this machine" if root == Path("/") else f"the machine under {root}"
    print(f"rkpipe doctor: {where}")
    width = max(len(c.name) for c in checks)
    for c in checks:
        print(f"  {MARK[c.status]}  {c.name:<{width}}  {c.detail}")
        if c.fix and c.status in ("warn", "fail"):
            print(f"  {'':4}  {'':<{width}}  fix: {c.fix}")
    failed = sum(c.status == "fail" for c in checks)
    warned = sum(c.status == "warn" for c in checks)
    verdict = f"{failed} required check(s) failed" if failed else "nothing required is missing"
    print(f"{verdict}; {warned} warning(s)")


def main(argv: list[str] | None = None) -> int:
    """check this machine (and a graph's needs) and say how to fix what is wrong"""
    p = argparse.ArgumentParser(prog="rkpipe doctor", description=__doc__)
    p.add_argument("graph", type=Path, nargs="?", help="also check what this graph needs")
    p.add_argument("--root", type=Path, default=Path("/"), help="read /sys, /proc, /usr from here")
    p.add_argument("--json", type=Path, metavar="FILE", help="also write the checks as JSON")
    args = p.parse_args(argv)
    checks = run_checks(args.root, args.graph)
    _print(checks, args.root)
    if args.json:
        data = json.dumps([c.to_json() for c in checks], indent=2).encode()
        write_replacing(args.json, data)  # in one step, never through a link at its name
    return 1 if any(c.status == "fail" for c in checks) else 0


if __name__ == "__main__":
    sys.exit(main())
