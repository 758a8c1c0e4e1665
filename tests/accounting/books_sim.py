"""A run without processes: a source, a relay that sees whole streams and a sink, each with
its real books (``SourceBook``, ``StageBook``) over a real ledger file, the run's books
(``RunBook``) over the run's plan, and queues between them in place of sockets. Faults are
steps: a process dies (its queue dies with it, its ledger stays), possibly half-way through
a commit, and its next incarnation opens the same ledger, as the runtime does."""

from __future__ import annotations

import functools
import tempfile
from collections import Counter, deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.accounting.books import STOPPED, SourceBook
from pipeline.accounting.envelope import END, MSG, SKIP, Accounting, Envelope
from pipeline.accounting.keys import tally_key
from pipeline.accounting.run_book import RunBook
from pipeline.accounting.stage_book import StageBook
from pipeline.graph.load import load_graph
from pipeline.graph.plan import Plan, make_plan
from pipeline.messages import Message
from pipeline.runtime.ledger import Ledger
from pipeline.stats.metrics import StageStats

STEPS = (
    "produce",  # the source reads a frame (a live one queues it; drops the oldest when full)
    "send",  # the source sends its oldest queued frame
    "relay",  # the relay takes its next link and sends its result on (or filters it)
    "deliver",  # the sink takes its next link
    "copy",  # a link reaches the sink twice (a replica's resend)
    "kill_source",  # the source dies, maybe half-way through numbering a frame
    "kill_relay",  # the relay dies, maybe holding a link it took
    "kill_sink",  # the sink dies, maybe half-way through a frame's commit
    "stop",  # a clean stop: the source ends its stream (what it queued is left at the stop)
)


@functools.lru_cache(maxsize=256)
def plan_for(source: str, relay: str, sink: str, live: bool) -> Plan:
    """The run's plan for a graph source -> relay -> sink of these names (made once)."""
    with tempfile.TemporaryDirectory() as tmp:
        return write_plan(Path(tmp), source, relay, sink, live)


def write_plan(folder: Path, source: str, relay: str, sink: str, live: bool) -> Plan:
    graph = folder / "graph.toml"
    graph.write_text(
        f"""
[pipeline]
name = "sim"
[stages.{source}]
uses = "synthetic"
live = {str(live).lower()}
[stages.{relay}]
uses = "passthrough"
inputs = ["{source}"]
[stages.{sink}]
uses = "jsonl"
inputs = ["{relay}"]
path = "{folder}/out.jsonl"
"""
    )
    return make_plan(load_graph(graph), "sim", str(folder))


@dataclass
class Run:
    """One simulated run; ``step`` plays a step by name, ``finish`` stops it cleanly."""

    folder: Path
    plan: Plan
    live: bool
    filter_every: int = 0  # the relay filters out every n-th frame (0: none)
    queue_size: int = 2
    source: str = field(init=False)
    relay: str = field(init=False)
    sink: str = field(init=False)

    def __post_init__(self) -> None:
        self.source, self.relay, self.sink = (i.stage for i in self.plan.instances)
        self.ledgers = {
            i.instance: Ledger.create(self.folder / f"ledger-{n}")
            for n, i in enumerate(self.plan.instances)
        }
        self.run_ledger = Ledger.create(self.folder / "ledger-run")
        self.books = RunBook(self.plan, self.run_ledger, self.ledgers, self.folder / "gone")
        self.specs = {i.stage: i for i in self.plan.instances}
        self.to_relay: deque[Envelope] = deque()
        self.to_sink: deque[Envelope] = deque()
        self.delivered: list[int] = []  # what the sink's user received, in order
        self.kills: Counter[str] = Counter()
        self.filtered = 0
        self.ended = False
        self._start_source(restarted=False)
        self._start_relay()
        self._start_sink()

    # -- incarnations: a fresh process opens the same ledger ------------------------------------
    def _start_source(self, restarted: bool) -> None:
        ledger = self.ledgers[self.source]
        self.src = SourceBook(ledger, self.source)
        self.src_stats = StageStats(ledger)
        self.queue: deque[int] = deque()
        if restarted:
            died = self.src.resume(self.live)
            if died:
                self.src_stats.count_drop("crashed", died)

    def _start_relay(self, restarted: bool = False) -> None:
        self.relay_book = StageBook(self.ledgers[self.relay], self.relay, True, sink=False)
        self.relay_ends: set[str] = set()
        spec = self.specs[self.relay]
        self.relay_lost_ends = self.books.lost_ends(spec) if restarted else {}

    def _start_sink(self, restarted: bool = False) -> None:
        self.sink_book = StageBook(self.ledgers[self.sink], self.sink, True, sink=True)
        self.sink_ends: set[str] = set()
        self.sink_lost_ends = self.books.lost_ends(self.specs[self.sink]) if restarted else {}

    # -- the steps -------------------------------------------------------------------------------
    def step(self, name: str, arg: int) -> None:
        getattr(self, f"do_{name}")(arg)

    def do_produce(self, _arg: int) -> None:
        if self.ended:
            return
        seq, _ = self.src.number(self.src.next)
        if self.live:
            if len(self.queue) >= self.queue_size:
                self.src.drop(self.queue.popleft())
                self.src_stats.count_drop("live_overflow")
            self.queue.append(seq)
        else:
            self._send(seq)

    def do_send(self, _arg: int) -> None:
        if self.queue:
            self._send(self.queue.popleft())

    def _send(self, seq: int) -> None:
        msg = Message(self.source, seq, self.src.sent)
        self.to_relay.append(Envelope.message(msg, acct=Accounting(self.src.source_drops)))
        self.src.send(seq)

    def do_relay(self, arg: int) -> None:
        if self.to_relay:
            self._relay_one(self.to_relay.popleft())

    def _relay_one(self, d: Envelope, restored: bool = False, die: bool = False) -> None:
        adm = self.relay_book.admit(self.source, d, restored)
        if adm is None:
            return
        self.relay_book.passing_on(adm, d)
        if die:  # taken, chain moved on, died before its result left
            return
        acct = adm.acct
        if d.kind == MSG and self.filter_every and d.msg.seq % self.filter_every == 0:
            self.filtered += 1
            d = Envelope(SKIP, d.msg, acct=acct.skipped(self.relay_book.dropped_here("filtered")))
        elif d.kind == END:
            if d.msg.stream in self.relay_ends:
                return
            self.relay_ends.add(d.msg.stream)
            self.books.stream_ended(self.specs[self.relay], d.msg.stream)
        self.to_sink.append(Envelope(d.kind, d.msg, acct=acct.skipped(acct.skip or d.acct.skip)))

    def do_deliver(self, arg: int, die_half_way: bool = False) -> None:
        if not self.to_sink:
            return
        d = self.to_sink.popleft()
        adm = self.sink_book.admit(self.relay, d)
        if adm is None:
            return
        outcome: str | None = None
        if d.kind == MSG:
            outcome = ""
        if die_half_way:  # part of the commit written, not the commit: undone on restart
            chain = adm.chain
            assert chain is not None
            if d.kind == MSG:
                chain.ledger.add(tally_key(self.relay, d.msg.stream, "delivered"), 1, chain.stamp)
            chain.ledger.set(f"{chain.key}last", d.msg.seq, chain.stamp)
            return
        if outcome == "":
            self.delivered.append(d.msg.seq)
        self.sink_book.settle(adm, d, outcome)
        if d.kind == END:
            self.sink_ends.add(d.msg.stream)
            self.books.stream_ended(self.specs[self.sink], d.msg.stream)

    def do_copy(self, _arg: int) -> None:
        if self.to_sink:
            self.to_sink.appendleft(self.to_sink[0])

    def do_kill_source(self, arg: int) -> None:
        if self.ended:
            return
        if arg % 2 and not self.live:  # numbered, not yet sent: its seq is given again
            self.src.number(self.src.next)
        self.kills["source"] += 1
        self.books.died()
        self._start_source(restarted=True)

    def do_kill_relay(self, arg: int) -> None:
        if arg % 2 and self.to_relay:  # died holding the link it took
            self._relay_one(self.to_relay.popleft(), die=True)
        self.to_relay.clear()  # what was queued for it dies with it
        self.kills["relay"] += 1
        self.books.died()
        self._start_relay(restarted=True)

    def do_kill_sink(self, arg: int) -> None:
        if arg % 2:
            self.do_deliver(arg, die_half_way=True)
        self.to_sink.clear()
        self.kills["sink"] += 1
        self.books.died()
        self._start_sink(restarted=True)

    # -- the end ---------------------------------------------------------------------------------
    def do_stop(self, _arg: int) -> None:
        """A clean stop: the source settles what it queued as ``stopped`` and sends END."""
        if not self.ended:
            while self.queue:
                self.src.drop(self.queue.popleft())
                self.src_stats.count_drop(STOPPED)
            end = Message(self.source, self.src.next, self.src.sent)
            self.to_relay.append(Envelope(END, end, acct=Accounting(self.src.source_drops)))
            self.books.stream_ended(
                self.specs[self.source], self.source, self.src.next, self.src.source_drops
            )
            self.ended = True

    def finish(self) -> dict[str, Any]:
        """Stop cleanly, let everything downstream drain, and make the run's report."""
        self.do_stop(0)
        while self.to_relay:  # the relay takes everything, then its producer's EOS ...
            self.do_relay(0)
        for stream, (end_seq, source_drops) in self.relay_lost_ends.items():  # ``end_lost_streams``
            if stream not in self.relay_ends:
                self._relay_one(
                    self.relay_book.restored_end(stream, end_seq, source_drops), restored=True
                )
        while self.to_sink:  # ... and so does the sink
            self.do_deliver(0)
        for stream, (end_seq, source_drops) in self.sink_lost_ends.items():
            if stream not in self.sink_ends:
                self.to_sink.append(self.sink_book.restored_end(stream, end_seq, source_drops))
                self._deliver_restored()
        return self.books.report()

    def _deliver_restored(self) -> None:
        d = self.to_sink.popleft()
        adm = self.sink_book.admit(self.relay, d, restored=True)
        if adm is not None and self.sink_book.settles_here(adm):
            self.sink_book.settle(adm, d, None)

    def close(self) -> None:
        for ledger in [*self.ledgers.values(), self.run_ledger]:
            ledger.close()
