"""Topic templates of the mqtt sink: checked when the graph is loaded, filled per message so
that a value can never add a level or a wildcard."""

from __future__ import annotations

import re
import string
from typing import Any

__all__ = [
    "TOPIC_FIELDS",
    "check_command_prefix",
    "check_template",
    "clean_id",
    "level",
    "render_topic",
]

TOPIC_FIELDS = ("node", "stream", "type", "line", "zone", "direction", "class_name", "pipeline")


def check_template(value: str) -> str:
    """Reject unknown placeholders and MQTT wildcards in a topic template."""
    if not value:
        return value
    names = [f for _, f, _, _ in string.Formatter().parse(value) if f is not None]
    unknown = [n for n in names if n not in TOPIC_FIELDS]
    if unknown:
        allowed = " ".join("{" + f + "}" for f in TOPIC_FIELDS)
        raise ValueError(f"unknown placeholder {{{unknown[0]}}}; use {allowed}")
    if "+" in value or "#" in value:
        raise ValueError(f"wildcards + and # cannot be published to: {value!r}")
    return value


def check_command_prefix(prefix: str) -> None:
    """With ``commands``: the state prefix, under which command topics are, must name each
    stream in a level of its own and hold nothing that varies per event (a subscription
    filter is made of it, ``{stream}`` a ``+``)."""
    if not prefix:
        raise ValueError("commands needs state_prefix: the command topics are under it")
    names = {f for _, f, _, _ in string.Formatter().parse(prefix) if f is not None}
    if names - {"node", "pipeline", "stream"}:
        raise ValueError(
            "commands needs a state_prefix of {node}, {pipeline} and {stream} only; "
            f"{prefix!r} has more"
        )
    if "{stream}" not in prefix.split("/"):
        raise ValueError(
            "commands needs {stream} as a level of its own in state_prefix, e.g. "
            f"rkpipe/{{node}}/{{stream}}; got {prefix!r}"
        )


def level(value: object) -> str:
    """``value`` as one topic level: no separator, wildcard or NUL."""
    return re.sub(r"[/+#\x00]", "_", str(value))


def render_topic(template: str, fields: dict[str, Any]) -> str:
    """Fill a topic template; values cannot add levels or wildcards, and a level left empty
    (the event has no such field) is dropped."""
    values = {k: level(fields[k]) for k in TOPIC_FIELDS if k in fields}
    topic = string.Formatter().vformat(template, (), _Blank(values))
    return "/".join(part for part in topic.split("/") if part)


class _Blank(dict):
    def __missing__(self, key: str) -> str:
        return ""


def clean_id(text: str) -> str:
    """``text`` with only the characters client ids and Home Assistant object ids allow."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", text)
