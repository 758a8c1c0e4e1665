"""The stage side of the accounting: what a stage instance decides of each link it takes,
as a plain object over its ledger (no sockets, no process), so it can be driven and checked
directly.

For a stage that sees whole streams, each link is checked against its stream's chain as it
comes via its producing stage (``Chain``): a copy of a link already taken is refused
(never processed twice); a hole before it is frames lost uncounted upstream, counted here
as ``crashed@<via>`` and carried on the link's results (``lost``) so no later stage counts
them again. A sink settles each link's fate in its tally (``Tally``) in the same commit
that moves the chain on, after the stage handled it: a sink killed half-way counts the
frame as lost, never delivered.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ..messages import Message
from ..runtime.ledger import Ledger
from .books import Chain, Tally, crashed_at
from .envelope import END, Accounting, Envelope
from .keys import CHAIN, parse_via_stream, reason_at

__all__ = ["Admission", "StageBook"]


@dataclass(slots=True)
class Admission:
    """A link taken: the stage it came via, its stream's chain (None where the stage sees only
    part of a stream, or for an END restored after it was taken), the frames found lost
    just before it, and the accounting its results carry on."""

    via: str
    chain: Chain | None
    lost: int
    acct: Accounting


class StageBook:
    """One stage instance's chains and (at a sink) tallies, in its ledger."""

    def __init__(self, ledger: Ledger, stage: str, whole: bool, sink: bool) -> None:
        self.ledger = ledger
        self.stage = stage
        self.whole = whole  # sees whole streams (not one replica of a replicated stage's input)
        self.sink = sink
        self.chains: dict[tuple[str, str], Chain] = {}
        self.tallies: dict[tuple[str, str], Tally] = {}

    def chain(self, via: str, stream: str) -> Chain:
        """``stream``'s chain as it comes via stage ``via`` (read from the ledger once)."""
        key = (via, stream)
        chain = self.chains.get(key)
        if chain is None:
            chain = self.chains[key] = Chain(self.ledger, via, stream)
        return chain

    def admit(self, via: str, d: Envelope, restored: bool = False) -> Admission | None:
        """Take link ``d`` from ``via``: None for a copy of one already taken. ``restored``:
        an END the supervisor says this stage never passed on (taken by a predecessor that
        died before sending it on): it goes on now."""
        chain = self.chain(via, d.msg.stream) if self.whole else None
        lost = chain.gap(d) if chain is not None else 0
        if lost is None and restored:
            lost, chain = 0, None
        if lost is None:
            return None
        annotations = list(d.acct.lost)
        if lost:
            annotations.append((lost, crashed_at(via)))
        return Admission(
            via, chain, lost, Accounting(d.acct.source_drops, annotations, d.acct.skip)
        )

    def settles_here(self, adm: Admission) -> bool:
        """Whether the link's fate is settled in this stage's tally (a sink's own link)."""
        return self.sink and adm.chain is not None

    def passing_on(self, adm: Admission, d: Envelope) -> None:
        """The link's results are about to be sent: its chain moves on first, so what dies
        from here on is found downstream."""
        if adm.chain is not None:
            adm.chain.advance(d)

    def settle(self, adm: Admission, d: Envelope, outcome: str | None) -> None:
        """At a sink: link ``d``'s fate (``outcome``: "" delivered, a reason dropped, None no
        frame yet) and the chain move on, one commit."""
        assert adm.chain is not None
        key = (adm.via, d.msg.stream)
        tally = self.tallies.get(key)
        if tally is None:
            tally = self.tallies[key] = Tally(self.ledger, adm.chain)
        tally.record(d, adm.lost, outcome if not d.more or outcome else None)
        adm.chain.advance(d)

    def dropped_here(self, word: str) -> str:
        """The reason for a frame this stage dropped (``filtered``, ``overwritten``)."""
        return reason_at(word, self.stage)

    def via_of(self, stream: str, vias: Iterable[str]) -> str:
        """The stage ``stream`` came via (from the ledger), else the first of ``vias``."""
        for key in self.ledger.with_prefix(CHAIN):
            via, s, _ = parse_via_stream(key)
            if s == stream:
                return via
        return next(iter(vias))

    def restored_end(self, stream: str, end_seq: int, source_drops: int) -> Envelope:
        """The END of ``stream`` that died with an earlier incarnation, rebuilt."""
        return Envelope(END, Message(stream, end_seq, end_seq - 1), acct=Accounting(source_drops))
