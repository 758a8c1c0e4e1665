"""``rkpipe stages``: the built-in stages and their options, read from each stage's config
class, as text for people, as Markdown for ``docs/stages.md`` or as a JSON Schema of graph
files for editors.

The schema covers ``[pipeline]``, the keys every stage has, and each built-in's options (the
``uses`` value picks which apply). A top-level option may also be a ``${VAR}`` string, since
the graph loader fills those in from the environment before checking types.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from .errors import GraphError
from .graph.resolve import resolve_stage
from .graph.schema import PipelineSettings, StageCommon
from .registry import stage_targets
from .stage import Source, Stage

__all__ = ["graph_schema", "main", "markdown"]

_ENV = {"type": "string", "pattern": r"\$\{[^}]+\}", "description": "from the environment"}


def _builtins() -> dict[str, type[Stage]]:
    return {name: resolve_stage(name, Path.cwd()) for name in sorted(stage_targets())}


def _paragraph(cls: type) -> str:
    """The first paragraph of a class's docstring on one line, without reStructuredText marks."""
    para = (cls.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(para.split()).replace("``", "").removesuffix("::")


def _summary(cls: type) -> str:
    """The first sentence of a class's docstring, without reStructuredText marks."""
    head, dot, _ = _paragraph(cls).partition(". ")
    return head + ("." if dot else "")


def _type(prop: dict[str, Any]) -> str:
    """A short type for people: ``integer``, ``"a" | "b"``, ``list of number``, ``... or none``."""
    if "enum" in prop:
        return " | ".join(json.dumps(v) for v in prop["enum"])
    if "const" in prop:
        return json.dumps(prop["const"])
    if "anyOf" in prop:
        kinds = [_type(p) for p in prop["anyOf"] if p.get("type") != "null"]
        none = any(p.get("type") == "null" for p in prop["anyOf"])
        return " | ".join(dict.fromkeys(kinds)) + (" or none" if none else "")
    if "$ref" in prop:
        return "table"
    kind = prop.get("type", "any")
    if kind == "array":
        items = prop.get("items") or (prop.get("prefixItems") or [{}])[0]
        return f"list of {_type(items)}"
    return {"object": "table"}.get(kind, kind)


def _options(model: type[BaseModel]) -> list[tuple[str, str, str, str]]:
    """(key, type, default, description) of each option of ``model``."""
    schema = model.model_json_schema()
    required = set(schema.get("required", ()))
    rows = []
    for key, prop in schema.get("properties", {}).items():
        if key in required:
            default = "required"
        elif "default" in prop:
            value = prop["default"]
            default = "default none" if value is None else f"default {json.dumps(value)}"
        else:  # made per instance (an empty list, the COCO names)
            default = "default set by the stage"
        rows.append((key, _type(prop), default, prop.get("description", "")))
    return rows


def describe(name: str, cls: type[Stage]) -> list[str]:
    """One stage as text: its name, role and what it does, then each option with its type and
    default, and what it means on the line below."""
    role = "source" if issubclass(cls, Source) else "stage"
    lines = [f"{name} ({role}): {_summary(cls)}"]
    for key, kind, default, doc in _options(cls.Config):
        lines.append(f"  {key:<18} {kind}, {default}")
        if doc:
            lines.append(f"  {'':<18} {doc}")
    return lines


MARKDOWN_COMMAND = "rkpipe stages --markdown > docs/stages.md"

_MD_HEAD = f"""\
<!-- Generated from each stage's options by `{MARKDOWN_COMMAND}`: edit the stages. -->

# Built-in stages

Every built-in stage a graph can name in `uses`, and each of its options with its type, default
and meaning, as the stage's own config class declares them (`rkpipe stages NAME` prints the
same on a terminal). The keys every stage table has (`inputs`, `cpus`, `replicas`,
`on_failure`, ...) are in [graphs.md](graphs.md#stage-tables); any string value may be a
`${{VAR}}` from the environment."""


def _md(text: str) -> str:
    """``text`` safe inside a Markdown table cell: no column breaks, tags or emphasis."""
    for a, b in (("|", "\\|"), ("<", "&lt;"), (">", "&gt;"), ("*", "\\*")):
        text = text.replace(a, b)
    return text


def _md_code(text: str) -> str:
    return "`" + text.replace("|", "\\|") + "`"


def _md_stage(name: str, cls: type[Stage]) -> list[str]:
    """One stage as a Markdown section: what it does, then a table of its options."""
    lines = [f"## {name}", "", _md(_paragraph(cls)), ""]
    rows = _options(cls.Config)
    if not rows:
        return [*lines, "No options of its own."]
    lines += ["| option | type | default | meaning |", "| --- | --- | --- | --- |"]
    for key, kind, default, doc in rows:
        value = default.removeprefix("default ")
        plain = value in ("required", "set by the stage")
        shown = value if plain else _md_code(value)
        lines.append(f"| `{key}` | {_md_code(kind)} | {shown} | {_md(doc)} |")
    return lines


def markdown() -> str:
    """The reference of every built-in stage as Markdown (``docs/stages.md``), a table of
    contents first."""
    stages = _builtins()
    toc = ["| `uses` | role | what it does |", "| --- | --- | --- |"]
    for name, cls in stages.items():
        role = "source" if issubclass(cls, Source) else "stage"
        toc.append(f"| [`{name}`](#{name}) | {role} | {_md(_summary(cls))} |")
    parts = [_MD_HEAD, "\n".join(toc)]
    parts += ["\n".join(_md_stage(name, cls)) for name, cls in stages.items()]
    return "\n\n".join(parts) + "\n"


def graph_schema() -> dict[str, Any]:
    """A JSON Schema (draft 2020-12) of rkpipe graph files with every built-in's options."""
    defs: dict[str, Any] = {}
    branches = []
    common = _hoist(StageCommon.model_json_schema(), "common", defs)["properties"]
    common = {k: v if k == "uses" else _or_env(v) for k, v in common.items()}
    for name, cls in _builtins().items():
        own = _hoist(cls.Config.model_json_schema(), name, defs)
        props = {k: _or_env(v) for k, v in own.get("properties", {}).items()}
        then = {
            "properties": {**props, **common, "uses": {"const": name}},
            "required": ["uses", *own.get("required", [])],
            "additionalProperties": False,
        }
        branches.append({"if": {"properties": {"uses": {"const": name}}}, "then": then})
    pipeline = PipelineSettings.model_json_schema()
    pipeline["properties"] = {k: _or_env(v) for k, v in pipeline["properties"].items()}
    stage = {
        "type": "object",
        "required": ["uses"],
        "properties": {
            "uses": {
                "type": "string",
                "description": 'a built-in, "module:Class" or "file.py:Class"',
                "examples": sorted(stage_targets()),
            }
        },
        "allOf": branches,
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "rkpipe graph file",
        "type": "object",
        "properties": {
            "pipeline": pipeline,
            "stages": {"type": "object", "additionalProperties": stage},
        },
        "additionalProperties": False,
        "$defs": defs,
    }


def _or_env(prop: dict[str, Any]) -> dict[str, Any]:
    """``prop``, or a ``${VAR}`` string where a string of its own would not match one (a
    choice of words, ``decoder = "${RKPIPE_DECODER:-auto}"``)."""
    free_text = prop.get("type") == "string" and not {"enum", "const", "pattern"} & set(prop)
    return prop if free_text else {"anyOf": [prop, _ENV]}


def _hoist(schema: dict[str, Any], prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    """Move ``schema``'s ``$defs`` into ``defs`` under ``prefix.`` names, fixing the refs."""
    local = {k: f"{prefix}.{k}" for k in schema.get("$defs", {})}

    def fix(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                node = {**node, "$ref": f"#/$defs/{local[ref[len('#/$defs/') :]]}"}
            return {k: fix(v) for k, v in node.items()}
        return [fix(v) for v in node] if isinstance(node, list) else node

    for key, sub in schema.pop("$defs", {}).items():
        defs[local[key]] = fix(sub)
    return fix(schema)


def main(argv: list[str]) -> int:
    """list the built-in stages and their options (--json-schema: for editors, --markdown: docs)"""
    p = argparse.ArgumentParser(
        prog="rkpipe stages",
        description="List the built-in stages and their options, or one stage in full.",
    )
    p.add_argument("name", nargs="?", help="one stage's options")
    p.add_argument(
        "--json-schema",
        action="store_true",
        help="print a JSON Schema of graph files (for an editor's TOML support)",
    )
    p.add_argument(
        "--markdown",
        action="store_true",
        help=f"print every built-in's options as Markdown (docs/stages.md: {MARKDOWN_COMMAND})",
    )
    args = p.parse_args(argv)
    try:
        stages = _builtins()
    except GraphError as exc:
        print(f"rkpipe stages: {exc}", file=sys.stderr)
        return 1
    if args.json_schema:
        print(json.dumps(graph_schema(), indent=2))
        return 0
    if args.markdown:
        print(markdown(), end="")
        return 0
    if args.name is not None and args.name not in stages:
        known = ", ".join(stages)
        print(
            f"rkpipe stages: no built-in stage {args.name!r}; built-ins: {known}", file=sys.stderr
        )
        return 2
    names = [args.name] if args.name else list(stages)
    text = "\n\n".join("\n".join(describe(name, stages[name])) for name in names)
    with contextlib.suppress(BrokenPipeError):  # e.g. piped into head
        print(text)
    return 0
