"""Edits of a graph file's text that keep the user's comments, key order and layout (tomlkit
round-trips TOML): change a stage's keys, add a stage, remove one. What the control API does
to a graph before it is validated, written back and reloaded, so the file stays the truth."""

from __future__ import annotations

from typing import Any

import tomlkit
from tomlkit.exceptions import TOMLKitError
from tomlkit.items import Table

from ..errors import GraphError

__all__ = ["EditError", "add_stage", "patch_stage", "remove_stage"]


class EditError(GraphError):
    """An edit that cannot be made to this graph: ``status`` is the HTTP answer it gets."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def patch_stage(text: str, name: str, patch: dict[str, Any]) -> str:
    """``text`` with stage ``name``'s table changed by a JSON merge patch (RFC 7396): tables
    merge key by key, ``None`` removes a key, anything else replaces it. Keys the patch does
    not name keep their place, comments and formatting."""
    doc = _parse(text)
    table = _stages(doc).get(name)
    if not isinstance(table, Table):
        raise EditError(f"no stage named {name!r} in the graph", 404)
    _merge(table, patch, f"stages.{name}")
    return tomlkit.dumps(doc)


def add_stage(
    text: str, name: str, table: dict[str, Any], readers: list[str] | tuple[str, ...] = ()
) -> str:
    """``text`` with a new ``[stages.NAME]`` table after the last stage, and NAME added to
    the ``inputs`` of each of ``readers`` (a new camera and the stage that takes it, in one
    edit a running run can apply)."""
    doc = _parse(text)
    stages = _stages(doc)
    for reader in readers:
        inputs = _inputs_of(stages, reader)
        if name not in inputs:
            inputs.append(name)
    if name in stages:
        raise EditError(f"a stage named {name!r} is already in the graph", 409)
    if not isinstance(table.get("uses"), str):
        raise EditError(f"stages.{name}: a new stage needs `uses` (a stage name)")
    new = tomlkit.table()
    for key, value in table.items():
        if value is not None:
            new.add(key, _item(value, f"stages.{name}.{key}"))
    stages.add(name, new)
    return tomlkit.dumps(doc)


def remove_stage(text: str, name: str) -> str:
    """``text`` without stage ``name``, and without NAME in the ``inputs`` of the stages that
    read it (the validator then says if one is left reading nothing)."""
    doc = _parse(text)
    stages = _stages(doc)
    if name not in stages:
        raise EditError(f"no stage named {name!r} in the graph", 404)
    del stages[name]
    for table in stages.values():
        inputs = table.get("inputs") if isinstance(table, Table) else None
        if isinstance(inputs, list) and name in inputs:
            inputs.remove(name)
    return tomlkit.dumps(doc)


def _inputs_of(stages: Table, reader: Any) -> Any:
    """Stage ``reader``'s ``inputs`` array (made if it has none), to change in place."""
    table = stages.get(reader) if isinstance(reader, str) else None
    if not isinstance(table, Table):
        raise EditError(f"readers: no stage named {reader!r} in the graph", 404)
    inputs = table.get("inputs")
    if inputs is None:
        inputs = table["inputs"] = tomlkit.array()
    if not isinstance(inputs, list):
        raise EditError(f"stages.{reader}.inputs is not a list")
    return inputs


def _parse(text: str) -> tomlkit.TOMLDocument:
    try:
        return tomlkit.parse(text)
    except TOMLKitError as exc:
        raise EditError(f"the graph file is not valid TOML: {exc}", 409) from None


def _stages(doc: tomlkit.TOMLDocument) -> Table:
    stages = doc.get("stages")
    if not isinstance(stages, Table):
        raise EditError("the graph file has no [stages] tables", 409)
    return stages


def _merge(table: Any, patch: dict[str, Any], where: str) -> None:
    for key, value in patch.items():
        if not isinstance(key, str) or not key:
            raise EditError(f"{where}: keys are non-empty strings")
        if value is None:
            if key in table:
                del table[key]
        elif isinstance(value, dict) and hasattr(table.get(key), "items"):
            _merge(table[key], value, f"{where}.{key}")
        else:
            table[key] = _keep_comment(table, key, _item(value, f"{where}.{key}"))


def _keep_comment(table: Any, key: str, value: Any) -> Any:
    """``value`` with the comment at the end of the line it replaces."""
    try:
        old = table.item(key)
    except (KeyError, AttributeError):
        return value
    new = tomlkit.item(value)
    if getattr(old, "trivia", None) is not None and old.trivia.comment:
        new.trivia.comment = old.trivia.comment
        new.trivia.comment_ws = old.trivia.comment_ws
    return new


def _item(value: Any, where: str) -> Any:
    """A JSON value as TOML (lists of tables written inline, as graphs write them)."""
    if isinstance(value, bool | int | float | str):
        return value
    if isinstance(value, list):
        array = tomlkit.array()
        for v in value:
            array.append(_inline(v, where) if isinstance(v, dict) else _item(v, where))
        return array
    if isinstance(value, dict):
        return _inline(value, where)
    raise EditError(f"{where}: {type(value).__name__} values have no TOML form")


def _inline(value: dict[str, Any], where: str) -> Any:
    inline = tomlkit.inline_table()
    for k, v in value.items():
        if v is not None:
            inline[str(k)] = _item(v, f"{where}.{k}")
    return inline
