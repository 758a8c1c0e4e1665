"""``rkpipe reload [RUN]``: ask a running ``rkpipe run`` to read its graph file again
(the same as sending it SIGHUP) and print what it did; non-zero when the file was not valid.

RUN is a run id or the run's graph file; without it, the one run of this user that is alive.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import time
from pathlib import Path

from ..errors import EXIT_INVALID, RkpipeError
from .reload import read_outcome
from .runs import RUN_DIR_ROOT, live_run_ids

__all__ = ["find_run", "request_reload"]


def _run_dir(run_id: str) -> Path:
    return RUN_DIR_ROOT / f"rkpipe-{run_id}"


def _graph_of(run_id: str) -> str:
    outcome = read_outcome(_run_dir(run_id))
    return str(outcome.get("graph", "?")) if outcome else "?"


def find_run(which: str | None) -> str:
    """The id of the live run ``which`` names (a run id or its graph file), or the only one."""
    runs = {r: _graph_of(r) for r in sorted(live_run_ids()) if _run_dir(r).is_dir()}
    if which is not None:
        path = str(Path(which).resolve())
        found = [r for r, graph in runs.items() if which == r or graph == path]
        if len(found) == 1:
            return found[0]
        if not found:
            raise RkpipeError(f"reload: no running rkpipe run is {which!r}{_listing(runs)}")
        raise RkpipeError(f"reload: {len(found)} runs use {which}; name one{_listing(runs)}")
    if len(runs) == 1:
        return next(iter(runs))
    if not runs:
        raise RkpipeError("reload: no rkpipe run is running here")
    raise RkpipeError(f"reload: {len(runs)} runs are running; name one{_listing(runs)}")


def _listing(runs: dict[str, str]) -> str:
    return "; running: " + ", ".join(f"{r} ({graph})" for r, graph in runs.items())


def request_reload(run_id: str, timeout_s: float = 30.0) -> dict:
    """Send the run SIGHUP and wait for its answer (the outcome it leaves in its folder)."""
    folder = _run_dir(run_id)
    before = read_outcome(folder)
    count = int(before.get("reload", 0)) if before else 0
    pid = int(run_id.split("x", 1)[0])
    try:
        os.kill(pid, signal.SIGHUP)
    except ProcessLookupError:
        raise RkpipeError(f"reload: run {run_id} is not in this process namespace") from None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        outcome = read_outcome(folder)
        if outcome is not None and int(outcome.get("reload", 0)) > count:
            return outcome
        if not folder.is_dir():
            raise RkpipeError(f"reload: run {run_id} ended before it answered")
        time.sleep(0.05)
    raise RkpipeError(f"reload: run {run_id} did not answer within {timeout_s:.0f}s")


def main(argv: list[str]) -> int:
    """Ask a running ``rkpipe run`` to read its graph again; print what it applied."""
    import argparse

    p = argparse.ArgumentParser(
        prog="rkpipe reload",
        description="Ask a running rkpipe run to read its graph file again (as SIGHUP does): "
        "a valid edit is applied where it can be, a bad one changes nothing.",
    )
    p.add_argument("run", nargs="?", help="run id or graph file (default: the only run)")
    p.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS")
    args = p.parse_args(argv)
    outcome = request_reload(find_run(args.run), args.timeout)
    out = sys.stdout if outcome.get("ok") else sys.stderr
    for line in outcome.get("lines", []):
        with contextlib.suppress(OSError):
            print(line, file=out)
    return 0 if outcome.get("ok") else EXIT_INVALID
