"""New options, or new inputs, for a running stage process (a reload): the supervisor writes
them to the run folder and sends SIGUSR1; the process takes them between two messages and
says whether its stage could apply the options in place (``Stage.reconfigure``); new inputs
(a source added) it connects to."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path
from typing import Any, TypeGuard

__all__ = [
    "SIGNAL",
    "inputs_path",
    "install",
    "options_path",
    "outputs_path",
    "read_inputs",
    "read_options",
    "read_outputs",
    "requested",
    "write_inputs",
    "write_options",
    "write_outputs",
]

SIGNAL = signal.SIGUSR1
requested: list[int] = []  # set by the signal, cleared by the loop that applies it


def install() -> None:
    """Take the signal from now on (its default would end the process)."""
    signal.signal(SIGNAL, lambda signum, _frame: requested.append(signum))


def options_path(run_dir: str | Path, instance: str) -> Path:
    """Where the supervisor leaves ``instance``'s new options (the run folder is 0700)."""
    return Path(run_dir) / "options" / f"{instance}.json"


def inputs_path(run_dir: str | Path, instance: str) -> Path:
    """Where the supervisor leaves ``instance``'s inputs after a source was added."""
    return Path(run_dir) / "options" / f"{instance}.inputs.json"


def _replace(path: Path, data: Any) -> None:
    """Replace ``path`` in one step: a reader never sees half a file."""
    path.parent.mkdir(mode=0o700, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, default=str))
    os.replace(tmp, path)


def _read(path: Path) -> Any:
    """A file the supervisor left, parsed; None if it left none (ValueError if unreadable)."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise ValueError(str(exc)) from exc


def _strings(value: Any) -> TypeGuard[list[str]]:
    return isinstance(value, list) and all(isinstance(x, str) for x in value)


def write_options(run_dir: str | Path, instance: str, options: dict[str, Any]) -> None:
    """Replace ``instance``'s new options."""
    _replace(options_path(run_dir, instance), options)


def write_inputs(
    run_dir: str | Path,
    instance: str,
    inputs: list[tuple[str, str, str]],
    sources: list[str],
    curve: dict[str, str] | None = None,
    renewed: list[str] | None = None,
) -> None:
    """Replace ``instance``'s inputs: (producer stage, producer instance, endpoint) each,
    which producer stages are sources, the certificates of those with CurveZMQ links, and
    the producers that ended earlier and run again (``renewed``: not ended any more)."""
    data = {
        "inputs": [list(i) for i in inputs],
        "sources": sources,
        "curve": curve or {},
        "renewed": renewed or [],
    }
    _replace(inputs_path(run_dir, instance), data)


def read_inputs(
    run_dir: str | Path, instance: str
) -> tuple[list[tuple[str, str, str]], list[str], dict[str, str], list[str]] | None:
    """The inputs (source stages, certificates) the supervisor left for ``instance``, or None
    if it left none; raises ValueError for a file that is not what ``write_inputs`` writes."""
    data = _read(inputs_path(run_dir, instance))
    if data is None:
        return None
    if not isinstance(data, dict):
        raise ValueError("new inputs are not a table")
    inputs, sources = data.get("inputs"), data.get("sources")
    if not isinstance(inputs, list) or not all(_strings(i) and len(i) == 3 for i in inputs):
        raise ValueError("new inputs are not a list of [stage, instance, endpoint]")
    if not _strings(sources):
        raise ValueError("new inputs name their sources wrongly")
    curve = data.get("curve", {})
    if not isinstance(curve, dict) or not all(isinstance(v, str) for v in curve.values()):
        raise ValueError("new inputs name their certificates wrongly")
    renewed = data.get("renewed", [])
    if not _strings(renewed):
        raise ValueError("new inputs name their renewed producers wrongly")
    curve = {str(k): v for k, v in curve.items()}
    return [(a, b, c) for a, b, c in inputs], sources, curve, renewed


def outputs_path(run_dir: str | Path, instance: str) -> Path:
    """Where the supervisor leaves ``instance``'s consumers after their replicas changed."""
    return Path(run_dir) / "options" / f"{instance}.outputs.json"


def write_outputs(run_dir: str | Path, instance: str, outputs: dict[str, list[str]]) -> None:
    """Replace ``instance``'s consumers: downstream stage -> its instance ids."""
    _replace(outputs_path(run_dir, instance), outputs)


def read_outputs(run_dir: str | Path, instance: str) -> dict[str, list[str]] | None:
    """The consumers the supervisor left for ``instance``, or None if it left none; raises
    ValueError for a file that is not what ``write_outputs`` writes."""
    data = _read(outputs_path(run_dir, instance))
    if data is None:
        return None
    if not isinstance(data, dict) or not all(_strings(v) for v in data.values()):
        raise ValueError("new consumers are not a table of instance lists")
    return {str(k): list(v) for k, v in data.items()}


def read_options(run_dir: str | Path, instance: str) -> dict[str, Any]:
    """The latest options the supervisor left for ``instance``; raises OSError / ValueError."""
    data = json.loads(options_path(run_dir, instance).read_text())
    if not isinstance(data, dict):
        raise ValueError("new options are not a table")
    return data
