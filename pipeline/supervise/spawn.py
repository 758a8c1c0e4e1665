"""Starting stage processes so that none can outlive the supervisor.

Between fork and exec, the child (1) joins the run's process group, so the supervisor can
kill every process of the run at once, and (2) asks the kernel to SIGKILL it when the
supervisor dies, then checks the supervisor is still there: a supervisor killed at any
moment, even while this child is starting, leaves no process behind.
"""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import os
import signal
import subprocess
import sys
from collections.abc import Callable
from typing import IO

__all__ = ["ProcessGroup", "spawn_owned"]

_PR_SET_PDEATHSIG = 1
_LIBC = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True)


def _bind_to(parent: int, pgid: int) -> Callable[[], None]:
    """What the child runs between fork and exec (async-signal-safe calls only)."""

    def preexec() -> None:
        if pgid >= 0:
            try:
                os.setpgid(0, pgid)
            except OSError:  # the group is gone (its last member died): start a new one
                os.setpgid(0, 0)
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() != parent:  # the supervisor died before the line above
            os._exit(1)

    return preexec


def spawn_owned(
    argv: list[str],
    env: dict[str, str],
    pgid: int = -1,
    stdout: int | IO | None = None,
    stderr: int | IO | None = None,
) -> subprocess.Popen:
    """Start ``argv`` bound to this process's life; in process group ``pgid`` (-1: its own
    session, 0: a new group led by the child)."""
    return subprocess.Popen(
        argv,
        env=env,
        preexec_fn=_bind_to(os.getpid(), pgid),
        start_new_session=pgid < 0,
        stdout=stdout,
        stderr=stderr,
    )


class ProcessGroup:
    """The run's process group: the first child leads it; later ones join it."""

    def __init__(self) -> None:
        self.pgid = 0

    def spawn(
        self, argv: list[str], env: dict[str, str], **kw: int | IO | None
    ) -> subprocess.Popen:
        proc = spawn_owned(argv, env, self.pgid, **kw)
        with contextlib.suppress(ProcessLookupError):  # died at once: the next one leads
            self.pgid = os.getpgid(proc.pid)
        return proc

    def kill(self) -> None:
        """SIGKILL every process of the group (those already gone are skipped)."""
        if self.pgid > 0 and self.pgid != os.getpgid(0):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(self.pgid, signal.SIGKILL)


def python_child(module: str, *args: str) -> list[str]:
    """The command line that runs ``python -m module args`` with this interpreter."""
    return [sys.executable, "-m", module, *args]


__all__ += ["python_child"]
