"""The rules for names a graph gives: what each may hold, how long it may be, which are taken.

A name in a graph does not stay in the graph: a stage's name is its socket in the run folder,
its frame pools and ledger in /dev/shm and, for a source, the stream's name in every output
file, topic and Home Assistant id; a line's or zone's name (and a class's) is a topic level, a
Home Assistant id and part of a snapshot's file name. So each name is checked once, when the
graph is loaded, against every place it goes, and a name that would be cut, would take two
topic levels, or would share a file, topic or sensor with another is refused there, with the
limit in the message; no writer truncates or rewrites a name behind the user's back.

Two kinds of name:

- **identifiers** (the pipeline's name, stage names, hence stream names): ``[A-Za-z0-9_-]``,
  the characters every file system, topic, socket path, client id and HA id takes as they are.
- **labels** (line, zone and class names, which a person reads on a dashboard): any printable
  text without ``/ + #`` (topic separator and wildcards) or control characters, no space at
  either end, and no two on one stream that differ only in case, spaces or punctuation (those
  share a Home Assistant id, where every such character becomes ``_``, and a file name).

The lengths make the longest composite fit its limit; :func:`longest_uses` states each one
(its test checks them): a file name is at most 255 bytes, a Unix socket path 107, a Home
Assistant entity id 255.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

__all__ = [
    "IDENT_CHARS",
    "MAX_LABEL_BYTES",
    "MAX_PIPELINE_NAME",
    "MAX_STAGE_NAME",
    "RESERVED_LABELS",
    "RESERVED_STAGE_NAMES",
    "SOCKET_PATH_MAX",
    "fold",
    "ident_problem",
    "label_clashes",
    "label_problem",
    "longest_uses",
    "path_problem",
    "stage_name_problem",
]

IDENT_CHARS = "letters, digits, _ or -"
_IDENT = re.compile(r"[A-Za-z0-9_-]+")

#: a stage's name, so also a stream's: its socket ``<run folder>/<stage>.<replica>.sock`` must
#: fit a Unix socket path (107 bytes) under /tmp/rkpipe-<run id>/, with room for a replica
MAX_STAGE_NAME = 64
#: the pipeline's name: in the MQTT client id and Home Assistant device of every sink, the
#: sinks' state folder, ``{pipeline}`` in topics, and each HA entity id with a stream, a line
#: and a class (``sensor.rkpipe_<pipeline>_<stream>_<line>_<direction>_<class>``, 255 at most)
MAX_PIPELINE_NAME = 48
#: a line's, zone's or class's name, in UTF-8 bytes: part of a snapshot's or clip's file name
#: (``.HHMMSS.mmm_line_crossing_<line>_<track>.crop.jpg.part``, 255 at most) and of HA ids
MAX_LABEL_BYTES = 48
SOCKET_PATH_MAX = 107  # sun_path is 108 bytes with its NUL

#: stage names the run itself uses, and where: a stage of that name would take its place
RESERVED_STAGE_NAMES = {
    "control": "the supervisor's control socket <run folder>/control.sock",
    "run": "the run's own ledger /dev/shm/rkpipe-<run id>-ledger-run",
}
#: line names that would share the mqtt sink's topics or Home Assistant ids with a zone's
RESERVED_LABELS = {
    "line": {
        "zones": "the mqtt sink's zone totals {state_prefix}/zones/<zone>/<class>",
        "zone": "the Home Assistant ids of zone sensors <stream>_zone_<zone>_<class>",
    },
}

_TOPIC_CHARS = {"/": "the topic level separator", "+": "an MQTT wildcard", "#": "an MQTT wildcard"}


def ident_problem(value: str, what: str, limit: int) -> str | None:
    """Why ``value`` cannot be an identifier of at most ``limit`` characters (None: it can)."""
    if not value or len(value) > limit or not _IDENT.fullmatch(value):
        return (
            f"{what} {value!r} is not allowed: use 1-{limit} {IDENT_CHARS} "
            "(it names files, sockets, topics and Home Assistant ids as it is)"
        )
    return None


def stage_name_problem(name: str, run_folder: str) -> str | None:
    """Why ``name`` cannot name a stage: its characters, its length, a name the run uses, or
    a socket path past the limit in ``run_folder`` (a long TMPDIR)."""
    if why := ident_problem(name, "stage name", MAX_STAGE_NAME):
        return why + " and its stream"
    if name.lower() in RESERVED_STAGE_NAMES:
        where = RESERVED_STAGE_NAMES[name.lower()]
        return f'stage name "{name}" is taken by {where}; rename the stage'
    longest = f"{run_folder}/{name}.{63}.sock"  # replicas up to 64: <name>.63
    if len(longest.encode()) > SOCKET_PATH_MAX:
        return (
            f'stage "{name}": its socket {longest} would be {len(longest.encode())} bytes, past '
            f"the {SOCKET_PATH_MAX} a Unix socket path allows; use a shorter stage name or a "
            "shorter TMPDIR"
        )
    return None


def label_problem(value: str, what: str, kind: str = "") -> str | None:
    """Why ``value`` cannot be the name of a line, zone or class (``what`` says which, for the
    message; ``kind`` picks the reserved names: "line")."""
    size = len(value.encode())
    if not value or size > MAX_LABEL_BYTES:
        return (
            f"{what} {value!r} is {size} bytes: use 1-{MAX_LABEL_BYTES} (UTF-8); it is part of "
            "snapshot file names, MQTT topics and Home Assistant ids"
        )
    for ch in value:
        if ch in _TOPIC_CHARS:
            return (
                f"{what} {value!r} holds {ch!r}, {_TOPIC_CHARS[ch]}: it would not be one MQTT "
                "topic level; use another character (a space, _ or -)"
            )
        if unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") or _noncharacter(ch):
            return f"{what} {value!r} holds {ch!r}, a control or invisible character; remove it"
    if value != value.strip():
        return f"{what} {value!r} starts or ends with a space; remove it"
    if value.startswith("$"):
        return f"{what} {value!r} starts with $, which begins the broker's own topics; remove it"
    reserved = RESERVED_LABELS.get(kind, {})
    if fold(value) in reserved:
        return f"{what} {value!r} would share {reserved[fold(value)]}; rename it"
    return None


def _noncharacter(ch: str) -> bool:
    """U+FDD0-U+FDEF and U+xFFFE/U+xFFFF, which MQTT topics should not hold."""
    code = ord(ch)
    return 0xFDD0 <= code <= 0xFDEF or code & 0xFFFE == 0xFFFE


def fold(value: str) -> str:
    """What a label becomes where only ``[a-z0-9_-]`` survive (Home Assistant ids, file names
    on a case-blind card): two labels with one fold would share a sensor or a file."""
    return re.sub(r"[^A-Za-z0-9-]+", "_", value).lower()  # ASCII only: "ß" is "_", not "ss"


def label_clashes(values: Iterable[str]) -> list[tuple[str, str]]:
    """Pairs of distinct labels in ``values`` that fold to the same text."""
    seen: dict[str, str] = {}
    clashes = []
    for value in values:
        first = seen.setdefault(fold(value), value)
        if first != value and (first, value) not in clashes:
            clashes.append((first, value))
    return clashes


NAME_MAX = 255  # bytes of one file name
PATH_MAX = 4095  # bytes of a path, without its NUL


def path_problem(path: str) -> str | None:
    """Why the file system would refuse ``path`` for its length (None: it would not)."""
    if len(path.encode()) > PATH_MAX:
        return f"{path[:60]}... is {len(path.encode())} bytes, past the {PATH_MAX} a path allows"
    for part in path.split("/"):
        if len(part.encode()) > NAME_MAX:
            return (
                f"{part[:60]}... is {len(part.encode())} bytes, past the {NAME_MAX} "
                "a file name allows"
            )
    return None


def longest_uses(run_folder: str, host: str = "h" * 63) -> dict[str, tuple[str, int]]:
    """The longest text each limit makes, with the limit it must fit: for the test that keeps
    the limits above honest (``host``: the longest host name label, in client ids)."""
    pipeline, stage = "p" * MAX_PIPELINE_NAME, "s" * MAX_STAGE_NAME
    label, track = "l" * MAX_LABEL_BYTES, "-9223372036854775808"
    instance = f"{stage}.63"
    return {
        "snapshot part file": (f".235959.999_line_crossing_{label}_{track}.crop.jpg.part", 255),
        "clip part file": (f".235959.999_line_crossing_{label}_{track}.mp4.part", 255),
        "stream file": (f"{stage}.jsonl", 255),
        "socket path": (f"{run_folder}/{instance}.sock", SOCKET_PATH_MAX),
        "frame pool": (f"rkpipe-4194304xffffffff-pool-{instance}-{2**40}", 207),
        "ledger": (f"rkpipe-4194304xffffffff-ledger-{instance}", 255),
        "mqtt state folder": (pipeline, 255),
        "mqtt client id": (f"rkpipe-{pipeline}-{instance}-{host}", 65535),
        "mqtt topic": (
            f"homeassistant/sensor/rkpipe-{pipeline}-{instance}-{host}/"
            f"{stage}_{label}_out_{label}/config",
            65535,
        ),
        "HA entity id": (f"sensor.rkpipe_{pipeline}_{stage}_{label}_out_{label}", 255),
    }
