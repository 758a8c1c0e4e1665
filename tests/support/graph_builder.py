"""Graph files for tests from plain dicts: ``[pipeline]`` settings and ``[stages.NAME]`` tables
in order, so a test states the graph it means instead of pasting TOML."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tomlkit

__all__ = ["graph_file"]


def graph_file(
    folder: Path,
    stages: dict[str, dict[str, Any]],
    pipeline: dict[str, Any] | None = None,
    name: str = "graph.toml",
) -> Path:
    """Write the graph of ``stages`` (and ``pipeline`` settings) to ``folder/name``."""
    doc = tomlkit.document()
    if pipeline:
        doc["pipeline"] = pipeline
    doc["stages"] = stages
    path = folder / name
    path.write_text(tomlkit.dumps(doc))
    return path
