"""What kind of loss a drop reason is, for the report: a fault, a policy, or a stop.

A reason is ``<word>@<where>`` (``crashed@pre``) or a word alone (``sink_disabled``). The
word says which kind it is:
    lost to faults      a process died, a slot was overwritten, a sink could not write or
                        was disabled, a corrupt frame, or anything not accounted for
    dropped by policy   what the graph asked for: a live source dropping its oldest frame
                        (``live_overflow``), a stage filtering a frame out (``filtered``,
                        ``skipped``), a best-effort sink (the preview) that had no room
                        for a frame (``behind``)
    left at stop        what was in flight when the run was stopped (``stopped``: queued in
                        a live source at a clean stop; ``in_flight_at_stop``: on the way
                        when the run was stopped at once)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

__all__ = ["BEHIND", "KINDS", "Kind", "by_kind", "kind_of"]

#: The drop reason of a frame a best-effort sink (the preview) had no room for.
BEHIND = "behind"

Kind = Literal["faults", "policy", "stop"]
KINDS: dict[Kind, str] = {
    "faults": "lost to faults",
    "policy": "dropped by policy",
    "stop": "left at stop",
}
_POLICY = frozenset({"live_overflow", "filtered", "skipped", BEHIND})
_STOP = frozenset({"stopped", "in_flight_at_stop"})


def kind_of(reason: str) -> Kind:
    """The kind of loss ``reason`` names; a word not known here is a fault."""
    word = reason.split("@", 1)[0]
    if word in _POLICY:
        return "policy"
    if word in _STOP:
        return "stop"
    return "faults"


def by_kind(dropped: Mapping[str, int]) -> dict[Kind, dict[str, int]]:
    """``dropped`` (reason -> frames) split by kind, each kind's reasons in order."""
    out: dict[Kind, dict[str, int]] = {k: {} for k in KINDS}
    for reason, n in sorted(dropped.items()):
        if n:
            out[kind_of(reason)][reason] = n
    return out
