"""The environment variables a graph file reads: ``${VAR}`` and ``${VAR:-default}`` in its
string values, as the shell reads them (the default stands in for a variable that is unset
or empty), and the list of them with their defaults and where each is used, for
``rkpipe deploy``'s environment file and the README's table.
"""

from __future__ import annotations

import os
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib  # type: ignore[import-not-found,unused-ignore]

__all__ = ["ENV_REF", "Variable", "graph_variables", "variable_value"]

ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


@dataclass(frozen=True)
class Variable:
    """One variable a graph reads: its default (None: it has none and must be set) and the
    keys that use it (``stages.cam0.source``)."""

    name: str
    default: str | None
    keys: tuple[str, ...]


def variable_value(
    name: str, default: str | None, env: Mapping[str, str] = os.environ
) -> str | None:
    """What ``${name}`` / ``${name:-default}`` stands for: the variable's value, or the
    default when it is unset or empty (``RKPIPE_CAM0=`` in an env file); None when unset
    without a default (an empty one without a default is empty, as in the shell)."""
    value = env.get(name)
    if default is not None and not value:
        return default
    return value


def graph_variables(path: Path) -> list[Variable]:
    """Every variable the graph file at ``path`` reads, in the order they first appear."""
    raw = tomllib.loads(path.read_text("utf-8"))
    defaults: dict[str, str | None] = {}
    keys: dict[str, list[str]] = {}
    for key, text in _strings(raw, ()):
        for m in ENV_REF.finditer(text):
            name, default = m.group(1), m.group(2)
            if defaults.get(name) is None:
                defaults[name] = default
            keys.setdefault(name, [])
            if key not in keys[name]:
                keys[name].append(key)
    return [Variable(name, defaults[name], tuple(keys[name])) for name in keys]


def _strings(value: Any, keys: tuple[str, ...]) -> Iterator[tuple[str, str]]:
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _strings(v, (*keys, str(k)))
    elif isinstance(value, list):
        for v in value:
            yield from _strings(v, keys)
    elif isinstance(value, str):
        yield ".".join(keys), value
