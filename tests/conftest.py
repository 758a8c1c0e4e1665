"""Shared fixtures: run graphs as real `rkpipe` processes, and fail tests that leak."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TEST_STAGES = ROOT / "tests" / "stages_for_tests"


def _alive(pid: int) -> bool:
    return Path(f"/proc/{pid}").exists()


def _ppid(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("PPid:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def rkpipe_segments() -> set[str]:
    """Segments of runs whose supervisor is gone: left behind, not in use by a live run."""
    out = set()
    for p in Path("/dev/shm").glob("rkpipe-*"):
        run = p.name.split("-")[1].split("x")[0]
        if run.isdigit() and not _alive(int(run)):
            out.add(p.name)
    return out


def rkpipe_children() -> set[int]:
    """PIDs of stage processes whose runner is gone."""
    pids = set()
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            cmd = (d / "cmdline").read_bytes()
        except OSError:
            continue
        if b"pipeline.runtime.child" in cmd and _ppid(int(d.name)) in (0, 1):
            pids.add(int(d.name))  # orphaned: its runner is gone
    return pids


@pytest.fixture
def no_leaks():
    """Fail the test if it leaves shared-memory segments or stage processes behind."""
    before_shm, before_pids = rkpipe_segments(), rkpipe_children()
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        extra_shm = rkpipe_segments() - before_shm
        extra_pids = rkpipe_children() - before_pids
        if not extra_shm and not extra_pids:
            return
        time.sleep(0.1)
    assert not extra_shm, f"shared memory left behind: {sorted(extra_shm)}"
    assert not extra_pids, f"stage processes left behind: {sorted(extra_pids)}"


def write_graph(tmp_path: Path, text: str, name: str = "graph.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def run_rkpipe(
    *args: str, cwd: Path | None = None, timeout: float = 120, env: dict | None = None
) -> subprocess.CompletedProcess:
    """Run the real `rkpipe` CLI in a subprocess (``env``: extra environment variables)."""
    env = {**os.environ, **(env or {}), "PYTHONPATH": f"{ROOT}:{TEST_STAGES}"}
    return subprocess.run(
        [sys.executable, "-m", "pipeline.cli", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


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
