"""Analytics events (schema ``rkpipe.event/1``): builders, the JSON Schema, and validation.

Analytics stages append events to ``msg.meta["events"]``; sinks publish them unchanged. Every
event is a flat JSON object with these fields:

- ``schema`` "rkpipe.event/1"; ``type`` line_crossing | zone_enter | zone_loiter | zone_exit |
  counts (types are only ever added within version 1: a consumer skips a type it does not
  know, and every event valid before a type was added stays valid)
- ``id`` unique string (``run:stream:seq:line-or-zone:track...``; the run id keeps ids of two
  runs apart); ``stream``; ``seq`` (frame);
  ``t_capture`` (unix seconds); ``time`` (t_capture as ISO 8601 UTC)
- line_crossing: ``line``, ``direction`` (in | out), ``track_id``, ``class_id``,
  ``class_name``, ``point`` [x, y], ``totals`` {"in": n, "out": n} (that line, all classes)
- zone_enter / zone_loiter / zone_exit: ``zone``, ``track_id``, ``class_id``, ``class_name``;
  loiter (once per stay, when the object has been inside the zone's ``loiter_s`` and still
  is) and exit add ``dwell_s``, the seconds inside so far
- with the analytics stage's ``snapshot`` option, object events add ``snapshot`` (a JPEG of
  the annotated frame) and, when the object is in view, ``snapshot_crop`` (the object cut
  out): paths relative to the snapshots folder (``stages/analytics/event_snapshots.py``)
- counts (periodic per-stream snapshot): ``lines`` {line: {"in": {class: n}, "out": {...}}},
  ``zones`` {zone: {"occupancy": {class: n}}}

The full schema is ``stages/events.schema.json`` (``load_schema()``). ``validate_event`` uses
``jsonschema`` when installed and otherwise checks the required keys of each type.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime, timezone
from functools import lru_cache
from importlib import resources
from typing import Any, Protocol

from stages.classes import class_name

__all__ = [
    "EVENT_TYPES",
    "SCHEMA",
    "class_name",
    "counts_event",
    "iso_time",
    "line_crossing_event",
    "load_schema",
    "validate_event",
    "zone_enter_event",
    "zone_exit_event",
    "zone_loiter_event",
]

SCHEMA = "rkpipe.event/1"
EVENT_TYPES = ("line_crossing", "zone_enter", "zone_loiter", "zone_exit", "counts")

Event = dict[str, Any]


class _Frame(Protocol):
    """What a builder needs of a message: which stream, which frame, when."""

    stream: str
    seq: int
    t_capture: float


def iso_time(t: float) -> str:
    """Unix seconds as ISO 8601 UTC with milliseconds, e.g. 2024-05-01T12:00:00.250Z."""
    dt = datetime.fromtimestamp(t, timezone.utc)
    return dt.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _base(msg: _Frame, kind: str, key: str, run: str) -> Event:
    head = f"{run}:" if run else ""
    return {
        "schema": SCHEMA,
        "type": kind,
        "id": f"{head}{msg.stream}:{msg.seq}:{key}",
        "stream": msg.stream,
        "seq": int(msg.seq),
        "t_capture": float(msg.t_capture),
        "time": iso_time(msg.t_capture),
    }


def line_crossing_event(
    msg: _Frame,
    line: str,
    direction: str,
    track_id: int,
    class_id: int,
    point: tuple[float, float],
    totals: Mapping[str, int],
    name: str | None = None,
    *,
    run: str = "",
) -> Event:
    """A track crossed ``line`` in ``direction``; ``totals`` are the line's running totals.
    ``run`` (the run id) starts the event's id, so ids of different runs never clash."""
    ev = _base(msg, "line_crossing", f"{line}:{track_id}", run)
    ev.update(
        line=line,
        direction=direction,
        track_id=int(track_id),
        class_id=int(class_id),
        class_name=name or class_name(int(class_id)),
        point=[round(float(point[0]), 2), round(float(point[1]), 2)],
        totals={"in": int(totals["in"]), "out": int(totals["out"])},
    )
    return ev


def zone_enter_event(
    msg: _Frame, zone: str, track_id: int, class_id: int, name: str | None = None, *, run: str = ""
) -> Event:
    """A track entered ``zone``."""
    return _zone_event(msg, "enter", zone, track_id, class_id, name, run)


def zone_exit_event(
    msg: _Frame,
    zone: str,
    track_id: int,
    class_id: int,
    dwell_s: float,
    name: str | None = None,
    *,
    run: str = "",
) -> Event:
    """A track left ``zone`` after ``dwell_s`` seconds inside."""
    ev = _zone_event(msg, "exit", zone, track_id, class_id, name, run)
    ev["dwell_s"] = round(max(float(dwell_s), 0.0), 3)
    return ev


def zone_loiter_event(
    msg: _Frame,
    zone: str,
    track_id: int,
    class_id: int,
    dwell_s: float,
    name: str | None = None,
    *,
    run: str = "",
) -> Event:
    """A track has been inside ``zone`` for ``dwell_s`` seconds and still is (once per stay)."""
    ev = _zone_event(msg, "loiter", zone, track_id, class_id, name, run)
    ev["dwell_s"] = round(max(float(dwell_s), 0.0), 3)
    return ev


def _zone_event(
    msg: _Frame, what: str, zone: str, track_id: int, class_id: int, name: str | None, run: str
) -> Event:
    ev = _base(msg, f"zone_{what}", f"{zone}:{track_id}:{what}", run)
    ev.update(
        zone=zone,
        track_id=int(track_id),
        class_id=int(class_id),
        class_name=name or class_name(int(class_id)),
    )
    return ev


def counts_event(
    msg: _Frame,
    lines: Mapping[str, Mapping[str, Mapping[str, int]]] | None = None,
    zones: Mapping[str, Mapping[str, int]] | None = None,
    *,
    run: str = "",
) -> Event:
    """A per-stream snapshot: crossings per line/direction/class since the start, and
    occupancy per zone/class now (``zones`` maps zone -> class_name -> n)."""
    ev = _base(msg, "counts", "counts", run)
    ev["lines"] = {
        name: {d: {c: int(n) for c, n in dirs.get(d, {}).items()} for d in ("in", "out")}
        for name, dirs in (lines or {}).items()
    }
    ev["zones"] = {
        name: {"occupancy": {c: int(n) for c, n in occ.items()}}
        for name, occ in (zones or {}).items()
    }
    return ev


@lru_cache(maxsize=1)
def load_schema() -> dict[str, Any]:
    """The event JSON Schema (draft 2020-12), as shipped in the ``stages`` package."""
    text = resources.files("stages").joinpath("events.schema.json").read_text("utf-8")
    return json.loads(text)


@lru_cache(maxsize=8)
def _validator(kind: str) -> Any:
    """A jsonschema validator of one event type (one branch of the oneOf, so errors name the
    field at fault), or None when jsonschema is not installed."""
    try:
        import jsonschema
    except ImportError:
        return None
    root = load_schema()
    schema = {"$schema": root["$schema"], "$defs": root["$defs"], "$ref": f"#/$defs/{kind}"}
    cls = jsonschema.Draft202012Validator
    return cls(schema, format_checker=cls.FORMAT_CHECKER)


def validate_event(event: Mapping[str, Any]) -> None:
    """Raise ValueError naming what is wrong when ``event`` does not follow the schema."""
    if not isinstance(event, Mapping):
        msg = f"invalid event: expected an object, got {type(event).__name__}"
        raise ValueError(msg)
    kind = event.get("type")
    if kind not in EVENT_TYPES:
        msg = f"invalid event: type must be one of {list(EVENT_TYPES)}, got {kind!r}"
        raise ValueError(msg)
    validator = _validator(kind)
    if validator is None:
        _check_required(event)
        return
    errors = list(validator.iter_errors(event))
    if errors:
        err = min(errors, key=lambda e: len(e.absolute_path))
        where = "/".join(str(p) for p in err.absolute_path) or "(event)"
        msg = f"invalid {kind} event at {where}: {err.message}"
        raise ValueError(msg)


def _check_required(event: Mapping[str, Any]) -> None:
    """The light check used without jsonschema: schema tag and required keys of the type."""
    kind = event["type"]
    if event.get("schema") != SCHEMA:
        msg = f"invalid {kind} event: schema must be {SCHEMA!r}, got {event.get('schema')!r}"
        raise ValueError(msg)
    missing = [k for k in load_schema()["$defs"][kind]["required"] if k not in event]
    if missing:
        msg = f"invalid {kind} event: missing {', '.join(missing)}"
        raise ValueError(msg)
