"""The books a stage process keeps of its streams, in its ledger: a source's numbering
(``SourceBook``), where a stream stands as it comes via each producing stage (``Chain``), and a
sink's tally of what became of each frame (``Tally``); each change one commit, so a process killed
half-way leaves its books as they were before it (``settle`` does the same for the report). How
these keep the invariant is said in ``pipeline.runtime.integrity``."""

from __future__ import annotations

import logging

from ..runtime.ledger import Ledger
from .envelope import END, SKIP, Envelope
from .keys import (
    CHAIN,
    SRC,
    TALLY,
    chain_key,
    parse_via_stream,
    reason_at,
    src_key,
    tally_key,
)

__all__ = [
    "STOPPED",
    "Chain",
    "SourceBook",
    "Tally",
    "crashed_at",
    "died_since",
    "settle",
    "tallies",
]

STOPPED = "stopped"  # frames a live source held when the run was stopped cleanly

log = logging.getLogger("rkpipe.accounting")
# where a stream stands before its first link, and a source before its first frame
_CHAIN_DEFAULTS = (("last", -1), ("source_drops", 0), ("open", 0))
_SOURCE_DEFAULTS = (("next", 0), ("sent", -1), ("settled", -1), ("source_drops", 0), ("count", 0))


def died_since(last_death_ns: int, t_mono_ns: int) -> bool:
    """Whether a process of the run died after a frame made at ``t_mono_ns`` (the supervisor
    records the last death's time; 0: none yet). ``t_mono_ns`` 0 means before the stream's
    first frame, so any death counts, but a run in which nothing died never loses a frame."""
    return last_death_ns > 0 and last_death_ns >= t_mono_ns


def crashed_at(stage: str) -> str:
    """The reason frames lost in a crash upstream of ``stage``'s output are counted under."""
    return reason_at("crashed", stage)


class Chain:
    """Where one stream stands, as it comes via one producing stage, at a stage that sees the whole
    stream: the last link taken, the source drops before it, and whether its parts are all in. Kept
    in the ledger, each link as one commit, so a restarted stage knows exactly where its predecessor
    stopped, even if it was killed half-way through a link."""

    def __init__(self, ledger: Ledger, via: str, stream: str) -> None:
        self.ledger = ledger
        self.via = via
        self.stream = stream
        key = self.key = chain_key(via, stream)
        for name, default in _CHAIN_DEFAULTS:  # a first commit rolls back to these
            ledger.setdefault(f"{key}{name}", default)
        self.committed = ledger.get(f"{key}commit", 0)
        ledger.rollback(key, self.committed)  # a link its process did not finish
        ledger.rollback(tally_key(via, stream), self.committed)
        self.last = ledger.get(f"{key}last", -1)
        self.source_drops = ledger.get(f"{key}source_drops", 0)
        self.open = bool(ledger.get(f"{key}open", 0))

    @property
    def stamp(self) -> int:
        """The number of the commit the next link's writes belong to."""
        return self.committed + 1

    def gap(self, d: Envelope) -> int | None:
        """How many frames just before link ``d`` were lost uncounted (0 normally), or None
        for a link already taken (a duplicate). Writes nothing: see ``advance``."""
        seq, last = d.msg.seq, self.last
        if seq < last or (seq == last and not self.open):
            return None
        if seq == last:  # a further part of the link in hand
            return 0
        annotated = sum(n for n, _ in d.acct.lost)
        lost = (seq - last - 1) - (d.acct.source_drops - self.source_drops) - annotated
        if lost < 0:  # more accounted than missing: a bug upstream, or a forged header
            log.warning(
                "stream %s from %s: seq %d accounts for %d frames more than are missing",
                self.stream,
                self.via,
                seq,
                -lost,
            )
            return 0
        return lost

    def incomplete(self, d: Envelope) -> bool:
        """Whether ``d`` starts a new link while the last one's parts were not all in (its
        producer died half-way through sending them)."""
        return self.open and d.msg.seq > self.last

    def advance(self, d: Envelope) -> None:
        """Take link ``d``: the commit of its accounting (written last)."""
        stamp = self.stamp
        if d.msg.seq != self.last:
            self.ledger.set(f"{self.key}last", d.msg.seq, stamp)
            self.ledger.set(f"{self.key}source_drops", d.acct.source_drops, stamp)
        self.ledger.set(f"{self.key}open", int(d.more), stamp)
        self.ledger.set(f"{self.key}commit", stamp)
        self.committed, self.last, self.source_drops, self.open = (
            stamp,
            d.msg.seq,
            d.acct.source_drops,
            d.more,
        )


class Tally:
    """What a sink did with each frame of one stream that came via one stage, in the ledger:
    delivered, or dropped by reason (with where); and the stream's length once its END came. Written
    as part of the link's commit (``Chain.stamp``)."""

    def __init__(self, ledger: Ledger, chain: Chain) -> None:
        self.ledger = ledger
        self.chain = chain
        self.key = tally_key(chain.via, chain.stream)

    def _add(self, what: str, n: int = 1) -> None:
        if n:
            self.ledger.add(f"{self.key}{what}", n, self.chain.stamp)

    def record(self, d: Envelope, lost: int, outcome: str | None) -> None:
        """The accounting of link ``d``: losses counted upstream, the hole before it, an
        unfinished link before it, and what became of its own frame (``outcome``: "" for
        delivered, a reason for dropped, None for a link that carries no frame yet)."""
        for n, reason in d.acct.lost:
            self._add(f"drop:{reason}", n)
        self._add(f"drop:{crashed_at(self.chain.via)}", lost + self.chain.incomplete(d))
        if d.kind == SKIP and not d.more:
            outcome = d.acct.skip or "skipped"
        if outcome == "":
            self._add("delivered")
        elif outcome is not None:
            self._add(f"drop:{outcome}")
        if d.kind == END:
            self.ledger.set(f"{self.key}end", d.msg.seq, self.chain.stamp)


def settle(ledger: Ledger) -> None:
    """Undo the commits a dead process left half-done in ``ledger``, as its restarted self
    would: read at the end of a run stopped at once, a frame whose fate was not committed is
    one in flight (``in_flight_at_stop``), never delivered or counted on half a commit."""
    keys = [*ledger.with_prefix(CHAIN), *ledger.with_prefix(TALLY)]  # a first link: tally only
    vias = {parse_via_stream(k)[:2] for k in keys}
    for via, stream in vias:
        Chain(ledger, via, stream)  # rolls its chain and tally back to the last commit
    for stream in {k.split(":", 1)[0] for k in ledger.with_prefix(SRC)}:
        SourceBook(ledger, stream)


def tallies(ledger: Ledger) -> dict[tuple[str, str], dict[str, int]]:
    """A sink ledger's tallies by (via, stream): delivered, drop:<reason>..., end."""
    out: dict[tuple[str, str], dict[str, int]] = {}
    for key, value in ledger.with_prefix(TALLY).items():
        via, stream, what = parse_via_stream(key)
        out.setdefault((via, stream), {})[what] = value
    for key, value in ledger.with_prefix(CHAIN).items():
        via, stream, what = parse_via_stream(key)
        if what == "source_drops" and (via, stream) in out:
            out[(via, stream)]["source_drops"] = value
    return out


class SourceBook:
    """A source's numbering of its stream, in the ledger: the next seq to give, the last frame
    sent, the last frame settled (sent or counted as dropped; frames are settled in order),
    and how many were dropped at the source. Each change is one commit, as in ``Chain``."""

    def __init__(self, ledger: Ledger, stream: str) -> None:
        self.ledger = ledger
        key = self.key = src_key(stream)
        for name, default in _SOURCE_DEFAULTS:
            ledger.setdefault(f"{key}{name}", default)
        self.committed = ledger.get(f"{key}commit", 0)
        ledger.rollback(key, self.committed)
        self.next = ledger.get(f"{key}next", 0)
        self.sent = ledger.get(f"{key}sent", -1)
        self.settled = ledger.get(f"{key}settled", -1)
        self.source_drops = ledger.get(f"{key}source_drops", 0)
        self.count = ledger.get(f"{key}count", 0)  # frames sent

    def _commit(self, **values: int) -> None:
        stamp = self.committed + 1
        for name, value in values.items():
            self.ledger.set(f"{self.key}{name}", value, stamp)
            setattr(self, name, value)
        self.ledger.set(f"{self.key}commit", stamp)
        self.committed = stamp

    def number(self, proposed: int) -> tuple[int, int]:
        """The seq for a new frame (``proposed`` by the stage, e.g. a file's frame index,
        if it is not behind) and how many seqs before it the stage skipped: frames it
        dropped and counted itself (an undecodable frame), settled as dropped here."""
        seq = max(proposed, self.next)
        skipped = seq - self.next
        if skipped:
            self._commit(next=seq + 1, source_drops=self.source_drops + skipped, settled=seq - 1)
        else:
            self._commit(next=seq + 1)
        return seq, skipped

    def drop(self, seq: int) -> None:
        """Frame ``seq`` was dropped here (counted by the caller, with its reason)."""
        self._commit(source_drops=self.source_drops + 1, settled=seq)

    def send(self, seq: int) -> None:
        self._commit(sent=seq, settled=seq, count=self.count + 1)

    def resume(self, live: bool) -> int:
        """After a restart, where to go on: a file source reads on after the last settled
        frame (none is sent twice); a live source's frames that died unsent in its
        predecessor's queue are gone: they are dropped now, and returned as a count."""
        if not live:
            self._commit(next=self.settled + 1)
            return 0
        died = max(0, self.next - self.settled - 1)
        if died:
            self._commit(source_drops=self.source_drops + died, settled=self.next - 1)
        return died
