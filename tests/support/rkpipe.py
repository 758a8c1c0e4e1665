"""Run the real ``rkpipe`` CLI as a user would, write graphs, read outputs, wait with deadlines,
and find a run's processes and shared memory."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
TEST_STAGES = ROOT / "tests" / "support" / "stages"
CHILD_MODULE = b"pipeline.runtime.child"

__all__ = [
    "ROOT",
    "TEST_STAGES",
    "child_pid",
    "orphaned_stage_pids",
    "poll_for",
    "read_jsonl",
    "rkpipe_env",
    "run_rkpipe",
    "stage_pids",
    "stale_segments",
    "start_rkpipe",
    "write_graph",
]


def rkpipe_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a test runs rkpipe in: the repo, the test helpers (``support``) and
    the test stages importable."""
    path = f"{ROOT}:{ROOT / 'tests'}:{TEST_STAGES}"
    return {**os.environ, **(extra or {}), "PYTHONPATH": path}


def run_rkpipe(
    *args: str, cwd: Path | None = None, timeout: float = 120, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run ``rkpipe ARGS`` to the end and capture its output (``env``: extra variables)."""
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=cwd,
        env=rkpipe_env(env),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def start_rkpipe(
    *args: str, cwd: Path | None = None, env: dict | None = None, **popen: Any
) -> subprocess.Popen:
    """Start ``rkpipe ARGS`` in the background; output is piped as text unless ``popen``
    says otherwise (e.g. a terminal's file descriptors)."""
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    popen.setdefault("text", True)
    return subprocess.Popen(
        [sys.executable, "-m", "pipeline.cli", *args], cwd=cwd, env=rkpipe_env(env), **popen
    )


def write_graph(tmp_path: Path, text: str, name: str = "graph.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def poll_for(predicate: Callable[[], bool], timeout: float = 30, interval: float = 0.05) -> bool:
    """Wait until ``predicate()`` is true, or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval)
    return False


def _ppid(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def _cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def stage_pids() -> set[int]:
    """PIDs of every rkpipe stage process on the machine."""
    return {
        int(d.name)
        for d in Path("/proc").iterdir()
        if d.name.isdigit() and CHILD_MODULE in b" ".join(_cmdline(int(d.name)))
    }


def orphaned_stage_pids() -> set[int]:
    """Stage processes whose supervisor is gone."""
    return {pid for pid in stage_pids() if _ppid(pid) in (0, 1)}


def child_pid(run: subprocess.Popen, instance: str) -> int | None:
    """The PID of stage ``instance`` of the run started as ``run``, if it is running."""
    for pid in stage_pids():
        if _ppid(pid) == run.pid and instance.encode() in _cmdline(pid):
            return pid
    return None


def stale_segments() -> set[str]:
    """rkpipe shared memory and run folders that no live run holds (left behind)."""
    from pipeline.supervise.runs import stale_runs

    return {p.name for paths in stale_runs().values() for p in paths}
