"""New options for a running stage process (a reload): the supervisor writes them to the
run folder and sends SIGUSR1; the process takes them between two messages and says whether
its stage could apply them in place (``Stage.reconfigure``)."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any

__all__ = ["SIGNAL", "install", "options_path", "read_options", "requested", "write_options"]

SIGNAL = signal.SIGUSR1
requested: list[int] = []  # set by the signal, cleared by the loop that applies it


def install() -> None:
    """Take the signal from now on (its default would end the process)."""
    signal.signal(SIGNAL, lambda signum, _frame: requested.append(signum))


def options_path(run_dir: str | Path, instance: str) -> Path:
    """Where the supervisor leaves ``instance``'s new options (the run folder is 0700)."""
    return Path(run_dir) / "options" / f"{instance}.json"


def write_options(run_dir: str | Path, instance: str, options: dict[str, Any]) -> None:
    """Replace ``instance``'s new options in one step: a reader never sees half a file."""
    path = options_path(run_dir, instance)
    path.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(options, default=str))
    os.replace(tmp, path)


def read_options(run_dir: str | Path, instance: str) -> dict[str, Any]:
    """The latest options the supervisor left for ``instance``; raises OSError / ValueError."""
    data = json.loads(options_path(run_dir, instance).read_text())
    if not isinstance(data, dict):
        raise ValueError("new options are not a table")
    return data
