"""Who owns a run's shared memory: the run that holds its lock, whatever its PID says."""

from __future__ import annotations

import fcntl
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.supervise.runs import new_run, stale_runs, sweep_stale
from pipeline.transport.framepool import SHM_DIR

_DEAD_PID = 2**22 + 12345  # no such process here (above the default pid_max)


def _fake_run(run_id: str) -> list[Path]:
    paths = [SHM_DIR / f"rkpipe-{run_id}-pool-cam0-4096", SHM_DIR / f"rkpipe-{run_id}-ledger-x"]
    for p in paths:
        p.write_bytes(b"\0" * 64)
    return paths


def test_a_run_whose_lock_is_held_is_never_swept_even_if_its_pid_means_nothing() -> None:
    """In another PID namespace sharing /dev/shm (a container with --ipc=host) a live run's
    PID names nothing here: its lock, held by a live process, keeps its memory safe."""
    run_id = f"{_DEAD_PID}xabcdef01"
    segments = _fake_run(run_id)
    lock = SHM_DIR / f"rkpipe-{run_id}-lock"
    lock.write_bytes(b"")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl,sys,time;f=open(sys.argv[1]);"
         "fcntl.flock(f,fcntl.LOCK_EX);print('held',flush=True);time.sleep(60)", str(lock)],
        stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout is not None and holder.stdout.readline() == "held\n"
        sweep_stale()
        assert all(p.exists() for p in [*segments, lock])
    finally:
        holder.kill()
        holder.wait()
    sweep_stale()  # the holder is gone: now it is a dead run's
    assert not any(p.exists() for p in [*segments, lock])


def test_a_dead_run_without_a_lock_is_swept_and_a_foreign_name_is_not() -> None:
    segments = _fake_run(f"{_DEAD_PID}x0011aa22")
    other = SHM_DIR / "rkpipe-export-scratch"  # another tool's name: not a run
    other.write_bytes(b"")
    try:
        swept = sweep_stale()
        assert {p.name for p in segments} <= set(swept)
        assert other.exists()
    finally:
        other.unlink(missing_ok=True)


def test_a_new_run_holds_its_lock_and_owns_a_private_folder() -> None:
    old = os.umask(0)  # whatever the umask
    try:
        run = new_run()
    finally:
        os.umask(old)
    try:
        assert stat.S_IMODE(run.run_dir.stat().st_mode) == 0o700
        assert stat.S_IMODE(run.lock_path.stat().st_mode) == 0o600
        with run.lock_path.open() as f, pytest.raises(BlockingIOError):
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)  # held by this run
        assert run.run_id not in stale_runs()
    finally:
        run.release()
    assert not run.run_dir.exists() and not run.lock_path.exists()
