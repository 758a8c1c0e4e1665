"""A stream's line (or zone) in a graph file, by name: which analytics stage counts it, and
the edit of the file's text that changes it there, keeping the user's comments (``patch_stage``).
What a change from outside the file (an MQTT ``.../lines/<line>/set``) goes through before
``GraphFile`` validates, writes and reloads it, as it does a control API change.

The stream gets its own list in that stage (``lines.cam0 = [...]``), made from the list it sees
now (its own, or the ``"*"`` one) with the one entry changed and the others as they were, so
its other lines stay and the other streams keep the ``"*"`` list."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import GraphError
from .edit import EditError, patch_stage
from .load import Graph, load_graph, tomllib

__all__ = ["SHAPE_KEYS", "ShapeEdit", "change_shape"]

#: the per-stream tables of the analytics stages (their ``shapes_key``) and what each holds
SHAPE_KEYS = {"lines": "line", "zones": "zone"}
ALL_STREAMS = "*"


@dataclass(frozen=True)
class ShapeEdit:
    """The graph's new text, and the stage whose table changed."""

    stage: str
    text: str


def change_shape(
    text: str, path: Path, key: str, stream: str, name: str, changes: Mapping[str, Any]
) -> ShapeEdit:
    """``text`` with the ``key`` ("lines" or "zones") entry ``name`` of ``stream`` changed by
    ``changes`` (its keys replace the entry's: ``{"a": [x, y], "b": [x, y]}``). Raises
    EditError: 404 for a stream, or a line of it, that is not in the graph; 409 for a graph
    file that is not valid as it is, or a name two stages count for the stream."""
    what = SHAPE_KEYS[key]
    graph = _current(path, text)
    streams = [n for n, s in graph.stages.items() if s.is_source]
    if stream not in streams:
        raise EditError(f"no stream named {stream!r}; streams are: {', '.join(streams)}", 404)
    raw = tomllib.loads(text).get("stages", {})
    holders: list[tuple[str, list[Any]]] = []
    names: list[str] = []
    for stage, sdef in graph.stages.items():
        table = raw.get(stage, {}).get(key)
        if getattr(sdef.cls, "shapes_key", None) != key or not isinstance(table, dict):
            continue
        if stream not in sources(graph, stage):
            continue
        entries = _listed(table, stream)
        here = [e.get("name") for e in entries if isinstance(e, dict)]
        names += [n for n in here if isinstance(n, str)]
        if name in here:
            holders.append((stage, entries))
    if not holders:
        known = f"; its {what}s are: {', '.join(names)}" if names else ""
        raise EditError(f"stream {stream!r} has no {what} named {name!r}{known}", 404)
    if len(holders) > 1:
        stages = ", ".join(s for s, _ in holders)
        msg = f"{what} {name!r} of stream {stream!r} is in more than one stage ({stages})"
        raise EditError(f"{msg}; rename one, or change it in the file", 409)
    stage, entries = holders[0]
    new = [
        {**entry, **changes} if isinstance(entry, dict) and entry.get("name") == name else entry
        for entry in entries
    ]
    return ShapeEdit(stage, patch_stage(text, stage, {key: {stream: new}}))


def sources(graph: Graph, stage: str) -> set[str]:
    """The source stages (so the streams) whose messages reach ``stage``."""
    found: set[str] = set()
    seen: set[str] = set()
    todo = [stage]
    while todo:
        name = todo.pop()
        sdef = graph.stages.get(name)
        if name in seen or sdef is None:
            continue
        seen.add(name)
        if sdef.is_source:
            found.add(name)
        todo.extend(sdef.common.inputs)
    return found


def _current(path: Path, text: str) -> Graph:
    """The graph as the file is now: a change is made to a valid graph only."""
    try:
        return load_graph(path, text=text)
    except GraphError as exc:
        first = exc.problems[0] if exc.problems else str(exc)
        more = f" (and {len(exc.problems) - 1} more)" if len(exc.problems) > 1 else ""
        msg = f"the graph file is not valid as it is: {first}{more}; fix it first"
        raise EditError(msg, 409) from None


def _listed(table: dict[str, Any], stream: str) -> list[Any]:
    """The raw entries ``stream`` sees in a per-stream table (its own, else ``"*"``), one
    entry standing alone as a list of one."""
    entries = table.get(stream) if stream in table else table.get(ALL_STREAMS, [])
    if isinstance(entries, dict):
        return [entries]
    return list(entries) if isinstance(entries, list) else []
