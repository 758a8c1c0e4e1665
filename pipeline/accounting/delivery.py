"""The run's own check of its one invariant, per stream and sink: produced, delivered, dropped
by reason, and "exact" or the difference (see ``pipeline.runtime.integrity``).

A source's ledger says how many frames its stream had and why the source dropped some; a
sink's ledger holds its tally of every frame that reached it or was counted on the way. What
the tally does not cover never reached the sink: a sink that was disabled (counted there,
``sink_disabled``), or a run stopped at once with frames in flight (``in_flight_at_stop``,
after the supervisor undid the killed processes' half-done commits); both keep the books
exact. Any other difference is reported as ``unaccounted`` and the run is not exact.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..runtime.ledger import Ledger
from .books import tallies
from .keys import src_key
from .reasons import KINDS, by_kind

__all__ = ["SinkDelivery", "StreamSource", "delivery_report", "summary_lines"]


@dataclass
class StreamSource:
    """What a source's ledger says of its stream."""

    produced: int  # frames numbered (the next seq)
    dropped: dict[str, int]  # at the source, by reason
    source_drops: int  # source drops in all


@dataclass
class SinkDelivery:
    """One sink's account of one stream."""

    delivered: int = 0
    dropped: Counter[str] = field(default_factory=Counter)
    difference: int = 0  # frames neither delivered nor counted (0 when exact)
    exact: bool = True

    def to_json(self) -> dict[str, Any]:
        kinds = by_kind(self.dropped)
        return {
            "delivered": self.delivered,
            "dropped": sum(self.dropped.values()),
            "dropped_by_reason": dict(sorted(self.dropped.items())),
            # the same frames by kind: lost to faults, dropped by policy, left at stop
            "dropped_by_kind": {k: sum(v.values()) for k, v in kinds.items()},
            "exact": self.exact,
            "difference": self.difference,
        }


def source_of(ledger: Ledger, stream: str) -> StreamSource:
    values = ledger.snapshot()
    drops = {k[len("drop:") :]: v for k, v in values.items() if k.startswith("drop:") and v}
    return StreamSource(
        produced=values.get(src_key(stream, "next"), 0),
        dropped=drops,
        source_drops=values.get(src_key(stream, "source_drops"), 0),
    )


def _sink_account(
    source: StreamSource, tally: dict[str, int], where: str, disabled: bool, stopped: bool
) -> SinkDelivery:
    """Source drops are counted at the source (the sink's tally leaves them out)."""
    out = SinkDelivery(delivered=tally.get("delivered", 0))
    for key, n in tally.items():
        if key.startswith("drop:") and n:
            out.dropped[key[len("drop:") :]] += n
    for reason, n in source.dropped.items():
        out.dropped[f"{reason}@{where}"] += n
    said = sum(source.dropped.values())
    if source.source_drops > said:  # seqs the source stage skipped without saying why
        out.dropped[f"skipped@{where}"] += source.source_drops - said
    accounted = out.delivered + sum(out.dropped.values()) - max(0, said - source.source_drops)
    missing = source.produced - accounted
    if missing > 0:
        reason = "sink_disabled" if disabled else "in_flight_at_stop" if stopped else ""
        out.difference = missing
        out.exact = reason in ("sink_disabled", "in_flight_at_stop")
        out.dropped[reason or "unaccounted"] += missing
    elif missing < 0:
        out.difference, out.exact = missing, False
    return out


def delivery_report(
    sources: dict[str, Ledger],
    sinks: dict[str, Ledger],
    reaches: dict[str, set[str]],
    disabled: set[str] | frozenset[str] = frozenset(),
    stopped: bool = False,
) -> dict[str, Any]:
    """``streams`` of the stats: per stream, what its source produced and each sink's account.
    ``sources``: stream -> its source's ledger; ``sinks``: sink instance -> ledger;
    ``reaches``: sink instance -> the streams whose source is upstream of it."""
    streams: dict[str, Any] = {}
    exact = True
    for stream, ledger in sources.items():
        source = source_of(ledger, stream)
        entry: dict[str, Any] = {
            "produced": source.produced,
            "dropped_at_source": dict(sorted(source.dropped.items())),
            "sinks": {},
        }
        for sink, sink_ledger in sinks.items():
            if stream not in reaches.get(sink, ()):
                continue
            paths = {p: t for (p, s), t in tallies(sink_ledger).items() if s == stream}
            merged: dict[str, int] = Counter()
            for t in paths.values():
                merged.update(t)
            if len(paths) > 1:  # the stream reaches the sink by several paths: each counts
                merged = {k: v // len(paths) for k, v in merged.items()}
            account = _sink_account(source, merged, stream, sink in disabled, stopped)
            exact &= account.exact
            entry["sinks"][sink] = account.to_json()
        streams[stream] = entry
    return {"exact": exact, "streams": streams}


def summary_lines(report: dict[str, Any]) -> list[str]:
    """The delivery check as lines for a person, one per stream and sink."""
    lines = []
    for stream, entry in report["streams"].items():
        for sink, acc in entry["sinks"].items():
            dropped = "".join(
                f"; {KINDS[kind]} {sum(reasons.values())} ("
                + ", ".join(f"{r} {n}" for r, n in reasons.items())
                + ")"
                for kind, reasons in by_kind(acc["dropped_by_reason"]).items()
                if reasons
            )
            verdict = "exact" if acc["exact"] else f"NOT exact ({acc['difference']:+d} frames)"
            lines.append(
                f"  {stream} -> {sink}: produced {entry['produced']}, "
                f"delivered {acc['delivered']}{dropped}: {verdict}"
            )
    return lines
