"""The JSON written beside an exported ``.rknn``: how it was built and how well it agreed.

``rkpipe export`` writes ``MODEL.rknn.json`` (toolkit version, target, quantization, input
size, classes, check figures); the ``rknn`` backend reads it on the board and warns when
librknnrt is older than the toolkit that built the model, the most common cause of models
that load but fail or give garbage.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from pipeline.output_files import Modes, write_replacing

__all__ = [
    "SCHEMA",
    "read_sidecar",
    "runtime_version",
    "sidecar_path",
    "version_warning",
    "write_sidecar",
]

SCHEMA = "rkpipe.rknn/1"
# get_sdk_version(): "DRV: rknnrt: 1.5.3b13 (42cbca6f5@...)"; the runtime's own log says
# "librknnrt version: 2.3.0 (c949ad889d@...)"
_RUNTIME = re.compile(r"(?:rknnrt\s*:|librknnrt version\s*:)\s*(\d+)\.(\d+)\.(\d+)")
_VERSION = re.compile(r"(\d+)\.(\d+)\.(\d+)")


def sidecar_path(model: Path) -> Path:
    return model.with_name(model.name + ".json")


def write_sidecar(model: Path, info: dict[str, Any]) -> Path:
    path = sidecar_path(model)
    text = json.dumps({"schema": SCHEMA, "rknn": model.name, **info}, indent=2) + "\n"
    write_replacing(path, text.encode(), Modes(0o644))  # a model's facts: no secret in them
    return path


def read_sidecar(model: Path) -> dict[str, Any] | None:
    """The sidecar of ``model``, or None when there is none or it is not ours."""
    try:
        data = json.loads(sidecar_path(model).read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("schema") == SCHEMA else None


def _triple(text: str, pattern: re.Pattern[str]) -> tuple[int, int, int] | None:
    m = pattern.search(text)
    return (int(m.group(1)), int(m.group(2)), int(m.group(3))) if m else None


def runtime_version(sdk_text: str) -> tuple[int, int, int] | None:
    """librknnrt's version (major, minor, patch) from ``get_sdk_version()`` text."""
    return _triple(sdk_text, _RUNTIME)


def version_warning(sidecar: dict[str, Any], sdk_text: str) -> str | None:
    """A warning when the board's librknnrt is older than the toolkit that built the model."""
    built = _triple(str(sidecar.get("toolkit_version", "")), _VERSION)
    runtime = runtime_version(sdk_text)
    if built is None or runtime is None or runtime >= built:
        return None
    have, need = ".".join(map(str, runtime)), ".".join(map(str, built))
    return (
        f"{sidecar.get('rknn', 'the model')} was built by rknn-toolkit2 {need} but this "
        f"board's librknnrt is {have}: update librknnrt.so to {need} or newer (from "
        "Rockchip's rknn-toolkit2 release, rknpu2/runtime), or rebuild with a toolkit no "
        "newer than the runtime"
    )
