"""Graph files built in code, so a test says which stages it runs and how they connect,
not how TOML is spelled:

    graph = (
        Graph("two")
        .source("cam0", uses="synthetic", frames=150)
        .stage("work", uses="passthrough", inputs=["cam0"], replicas=2)
        .sink("out", uses="jsonl", inputs=["work"], path=tmp_path / "out.jsonl")
        .write(tmp_path)
    )

Keyword arguments of ``Graph`` are the ``[pipeline]`` settings; those of a stage are its
table's keys, written as TOML values (``Path`` as a string, dicts as inline tables). A test
about how graph files are read (errors, line numbers) writes its TOML by hand instead.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

__all__ = ["Graph", "graph_file", "toml_value"]

_BARE_KEY = re.compile(r"[A-Za-z0-9_-]+")


def toml_value(value: Any) -> str:
    """``value`` as a TOML value: strings quoted, booleans lower case, lists and dicts inline."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        items = ", ".join(f"{_key(k)} = {toml_value(v)}" for k, v in value.items())
        return "{ " + items + " }" if items else "{}"
    msg = f"no TOML value for {value!r} ({type(value).__name__})"
    raise TypeError(msg)


def _key(key: str) -> str:
    return key if _BARE_KEY.fullmatch(key) else json.dumps(key)


class Graph:
    """A graph under construction: ``[pipeline]`` settings, then stage tables in order."""

    def __init__(self, name: str | None = None, **pipeline: Any) -> None:
        self.pipeline: dict[str, Any] = (
            {"name": name, **pipeline} if name is not None else dict(pipeline)
        )
        self.stages: dict[str, dict[str, Any]] = {}

    def source(self, name: str, *, uses: str, **options: Any) -> Graph:
        """A stage that reads no other stage (a camera, a file, a built-in scene)."""
        return self._add(name, {"uses": uses, **options})

    def stage(self, name: str, *, uses: str, inputs: list[str], **options: Any) -> Graph:
        """A stage that reads ``inputs`` and passes messages on."""
        return self._add(name, {"uses": uses, "inputs": inputs, **options})

    def sink(self, name: str, *, uses: str, inputs: list[str], **options: Any) -> Graph:
        """A stage at the end of the graph (a file, a broker, a browser)."""
        return self._add(name, {"uses": uses, "inputs": inputs, **options})

    def _add(self, name: str, table: dict[str, Any]) -> Graph:
        if name in self.stages:
            msg = f"stage {name!r} is already in the graph"
            raise ValueError(msg)
        self.stages[name] = table
        return self

    def text(self) -> str:
        """The graph file's TOML."""
        parts = [_table("pipeline", self.pipeline)] if self.pipeline else []
        parts += [_table(f"stages.{_key(n)}", t) for n, t in self.stages.items()]
        return "\n".join(parts)

    def write(self, folder: Path, name: str = "graph.toml") -> Path:
        """Write the graph as ``folder/name`` and return its path."""
        path = folder / name
        path.write_text(self.text())
        return path


def _table(header: str, values: dict[str, Any]) -> str:
    lines = [f"[{header}]", *(f"{_key(k)} = {toml_value(v)}" for k, v in values.items())]
    return "\n".join(lines) + "\n"


def graph_file(
    folder: Path,
    stages: dict[str, dict[str, Any]],
    pipeline: dict[str, Any] | None = None,
    name: str = "graph.toml",
) -> Path:
    """Write the graph of ``stages`` (tables in order) and ``pipeline`` settings to
    ``folder/name``: for tests that state a graph as plain dicts."""
    graph = Graph(**(pipeline or {}))
    for stage, table in stages.items():
        graph._add(stage, dict(table))
    return graph.write(folder, name)
