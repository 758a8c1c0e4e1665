"""Ledger keys, built and parsed in one place, so no two files spell one differently and no
key is ever cut to fit.

A ledger entry's key has a fixed size (``KEY_BYTES``). Every name a key holds is bounded:
stage and stream names by the graph's own rule (1-64 letters, digits, ``_`` or ``-``, no
``:``), drop reasons and event kinds (free text from stages and peers) by ``bounded``, which
keeps a short text as it is and gives a long one a readable head and a hash of the whole,
so two long texts never share a key. The longest key these bounds allow fits ``KEY_BYTES``
(checked at import, and by ``check_names`` for a graph's names), so the ledger never
truncates; it refuses a key that does not fit (``KeyTooLong``) rather than cut it.

Keys, where ``P`` is the producing stage a stream comes via, ``S`` a stream:
    ``src:S:<field>``          a source's numbering (``SourceBook``)
    ``chain:P:S:<field>``      where a stream stands, via P (``Chain``)
    ``tally:P:S:<what>``       a sink's tally: ``delivered``, ``drop:<reason>``, ``end``
    ``drop:<reason>``          a stage's drops by reason (counted where they happen)
    ``event:<kind>``           a stage's events (not frames)
    ``in`` ``out`` ``in:S`` ``out:S``   frames in and out, in all and per stream
    ``last_death_ns`` ``deaths``   the run ledger: when a process of the run last died
"""

from __future__ import annotations

import hashlib
import re

__all__ = [
    "CHAIN",
    "DEATHS",
    "DROP",
    "KEY_BYTES",
    "LAST_DEATH",
    "NAME_MAX",
    "REASON_MAX",
    "SRC",
    "TALLY",
    "KeyTooLong",
    "bounded",
    "chain_key",
    "check_key",
    "check_names",
    "drop_key",
    "event_key",
    "longest_key",
    "parse_via_stream",
    "reason_at",
    "src_key",
    "tally_key",
]

SRC, CHAIN, TALLY, DROP = "src:", "chain:", "tally:", "drop:"  # key prefixes
LAST_DEATH, DEATHS = "last_death_ns", "deaths"  # the run ledger's keys
NAME_MAX = 64  # a stage or stream name (graph.load's rule; codec.STREAM_NAME)
REASON_MAX = 128  # a drop reason with its place, ``<word>@<stage>``, or an event kind
KEY_BYTES = 288  # a ledger entry's key field
_NAME = re.compile(rf"[A-Za-z0-9_-]{{1,{NAME_MAX}}}")
_FIELDS = (
    "commit",
    "last",
    "source_drops",
    "open",
    "next",
    "sent",
    "settled",
    "count",
    "delivered",
    "end",
)


class KeyTooLong(ValueError):
    """A ledger key longer than the ledger's key field (a bug: keys are bounded here)."""


def bounded(text: str, limit: int = REASON_MAX) -> str:
    """``text`` if it fits ``limit`` bytes, else its head and a hash of all of it: distinct
    texts stay distinct, and the head still says what it was."""
    if len(text) * 4 <= limit:  # short enough whatever its characters (most reasons)
        return text
    raw = text.encode()
    if len(raw) <= limit:
        return text
    digest = hashlib.blake2b(raw, digest_size=6).hexdigest()
    head = raw[: limit - len(digest) - 1].decode(errors="ignore")
    return f"{head}~{digest}"


def reason_at(word: str, where: str) -> str:
    """A drop reason with the place it happened, ``crashed@cam0``."""
    return bounded(f"{word}@{where}")


def check_key(key: str) -> bytes:
    """``key`` encoded, or KeyTooLong: a ledger key is never truncated."""
    raw = key.encode()
    if len(raw) > KEY_BYTES:
        msg = f"ledger key of {len(raw)} bytes does not fit {KEY_BYTES}: {key[:80]}..."
        raise KeyTooLong(msg)
    return raw


def src_key(stream: str, field: str = "") -> str:
    """A source's numbering of ``stream``; the prefix of all of it without ``field``."""
    return f"{SRC}{stream}:{field}"


def chain_key(via: str, stream: str, field: str = "") -> str:
    """Where ``stream`` stands as it comes via stage ``via``; the prefix without ``field``."""
    return f"{CHAIN}{via}:{stream}:{field}"


def tally_key(via: str, stream: str, what: str = "") -> str:
    """A sink's tally of ``stream`` from ``via``: ``delivered``, ``drop:<reason>``, ``end``."""
    return f"{TALLY}{via}:{stream}:{what}"


def drop_key(reason: str) -> str:
    """A stage's drops for ``reason``."""
    return f"{DROP}{bounded(reason)}"


def event_key(kind: str) -> str:
    """A stage's count of events of ``kind``."""
    return f"event:{bounded(kind)}"


def parse_via_stream(rest: str) -> tuple[str, str, str]:
    """``P:S:<what>`` (a chain or tally key without its prefix) as (via, stream, what).
    Names hold no ``:``, so the first two colons split it."""
    via, stream, what = rest.split(":", 2)
    return via, stream, what


def longest_key(names: list[str] | tuple[str, ...] = ()) -> int:
    """The longest key, in bytes, that stages and streams of these names can write (the
    longest allowed names if none are given)."""
    longest = max((len(n.encode()) for n in names), default=NAME_MAX)
    keys = [
        tally_key("p" * longest, "s" * longest, f"drop:{'r' * REASON_MAX}"),
        chain_key("p" * longest, "s" * longest, max(_FIELDS, key=len)),
        src_key("s" * longest, max(_FIELDS, key=len)),
        drop_key("r" * REASON_MAX),
        event_key("e" * REASON_MAX),
        f"out:{'s' * longest}",
    ]
    return max(len(k.encode()) for k in keys)


def check_names(names: list[str] | tuple[str, ...]) -> list[str]:
    """Problems with names that go into ledger keys (empty: none): each a stage or stream
    name by the graph's rule, and every key they make within ``KEY_BYTES``."""
    bad = [f"{n!r} cannot be part of a ledger key" for n in names if not _NAME.fullmatch(n)]
    if not bad and longest_key(names) > KEY_BYTES:
        bad.append(f"names make ledger keys of {longest_key(names)} bytes (limit {KEY_BYTES})")
    return bad


assert longest_key() <= KEY_BYTES, "the ledger's key field is too small for the name limits"
