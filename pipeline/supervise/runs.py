"""A run's own places and who owns them: its socket folder, its shared memory, and the lock
that says it is alive.

A run holds an exclusive ``flock`` on ``/dev/shm/rkpipe-<run>-lock`` for its whole life. The
lock, not a PID, is the proof of life: it works across PID namespaces that share /dev/shm
(containers with ``--ipc=host``), where another run's PID means nothing, and the kernel drops
it the moment the supervisor dies, however it dies. At start, a run removes the segments,
socket folders and locks of every run whose lock nobody holds.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import re
import secrets
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from ..transport.framepool import SHM_DIR

__all__ = [
    "RUN_DIR_ROOT",
    "RUN_PREFIX",
    "Run",
    "live_run_ids",
    "new_run",
    "stale_runs",
    "sweep_stale",
]

RUN_DIR_ROOT = Path(tempfile.gettempdir())
RUN_PREFIX = _PREFIX = "rkpipe-"  # a run's folder: RUN_DIR_ROOT / (RUN_PREFIX + run id)
_LOCK = "-lock"


@dataclass
class Run:
    """One run: its id, its socket folder (0700) and the lock it holds while alive."""

    run_id: str
    run_dir: Path
    lock_fd: int = -1
    extra: list[Path] = field(default_factory=list)

    @property
    def lock_path(self) -> Path:
        return SHM_DIR / f"{_PREFIX}{self.run_id}{_LOCK}"

    def segments(self) -> list[Path]:
        """Every shared-memory file of this run (frame pools, ledgers), not the lock."""
        return [
            p for p in SHM_DIR.glob(f"{_PREFIX}{self.run_id}-*") if p.name != self.lock_path.name
        ]

    def release(self) -> None:
        """Remove everything the run made, then let go of the lock (last)."""
        for path in self.segments():
            path.unlink(missing_ok=True)
        shutil.rmtree(self.run_dir, ignore_errors=True)
        self.lock_path.unlink(missing_ok=True)
        if self.lock_fd >= 0:
            os.close(self.lock_fd)
            self.lock_fd = -1


def new_run() -> Run:
    """Make a run: a fresh id, its lock taken, its socket folder created with mode 0700."""
    run_id = f"{os.getpid()}x{secrets.token_hex(4)}"
    run = Run(run_id, RUN_DIR_ROOT / f"{_PREFIX}{run_id}")
    run.lock_fd = _take_lock(run.lock_path)
    run.run_dir.mkdir(mode=0o700)
    os.chmod(run.run_dir, 0o700)  # whatever the umask
    return run


def _take_lock(path: Path) -> int:
    """Create the lock file already locked: it appears under its name only once held, so a
    sweeping run never sees it unlocked and takes it for a dead run's."""
    fd, tmp = tempfile.mkstemp(prefix=".rkpipe-lock-", dir=SHM_DIR)
    try:
        os.fchmod(fd, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        os.rename(tmp, path)
    except BaseException:
        os.close(fd)
        Path(tmp).unlink(missing_ok=True)
        raise
    return fd


_RUN_ID = re.compile(r"\d+x[0-9a-f]{6,16}")


def _run_id(name: str) -> str | None:
    """The run id in a segment, lock or folder name ``rkpipe-<pid>x<hex>-...``; None for any
    other name (another tool's ``rkpipe-export-...`` folder is none of the sweep's business)."""
    if not name.startswith(_PREFIX):
        return None
    run_id = name[len(_PREFIX) :].split("-", 1)[0]
    return run_id if _RUN_ID.fullmatch(run_id) else None


def _held(run_id: str) -> bool | None:
    """True if a live run holds this run's lock, False if nobody does, None if it has no lock
    file (or it cannot be opened: another user's run)."""
    path = SHM_DIR / f"{_PREFIX}{run_id}{_LOCK}"
    try:
        fd = os.open(path, os.O_RDONLY)
    except FileNotFoundError:
        return None
    except OSError:
        return True  # not ours to judge
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


def live_run_ids() -> set[str]:
    """Ids of runs whose lock is held right now."""
    ids = {_run_id(p.name) for p in SHM_DIR.glob(f"{_PREFIX}*{_LOCK}")}
    return {i for i in ids if i and _held(i)}


def stale_runs() -> dict[str, list[Path]]:
    """Shared memory and socket folders of runs no live supervisor holds, by run id."""
    found: dict[str, list[Path]] = {}
    places = [*SHM_DIR.glob(f"{_PREFIX}*"), *RUN_DIR_ROOT.glob(f"{_PREFIX}*")]
    for path in places:
        run_id = _run_id(path.name)
        if run_id is not None:
            found.setdefault(run_id, []).append(path)
    stale: dict[str, list[Path]] = {}
    for run_id, paths in found.items():
        held = _held(run_id)
        if held:
            continue
        if held is None and _pid_alive(run_id):
            continue  # no lock: a run of an rkpipe without run locks, still alive
        stale[run_id] = paths
    return stale


def _pid_alive(run_id: str) -> bool:
    """Whether the process a run id names (``<pid>x<random>``) exists in this namespace."""
    pid = run_id.split("x", 1)[0]
    return pid.isdigit() and Path(f"/proc/{pid}").exists()


def sweep_stale() -> list[str]:
    """Remove what runs that died left behind; returns the names removed."""
    removed = []
    for paths in stale_runs().values():
        for path in sorted(paths, key=lambda p: p.name.endswith(_LOCK)):  # the lock last
            with contextlib.suppress(OSError):
                if path.is_dir():
                    shutil.rmtree(path)
                else:
                    path.unlink()
                removed.append(path.name)
    return removed
