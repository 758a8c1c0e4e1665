"""The receiving side of a stage process: inlets, per-stream order, credits, frame chains.

Each producer instance feeds one inlet. Envelopes are checked as they arrive (a bad one is
refused and counted, never raised); a frame whose shared-memory slot was overwritten becomes
a SKIP marker in its place. Streams from a replicated producer stage are re-joined in order
(one reorder buffer per such stage); from a single instance they arrive in order already.
A link's credit goes back when the stage takes it, so a producer never has more than
``window`` messages queued here; on links out of sources (``source_demand``, off by default) it goes
back only as the stages behind have room (``demand.Demand``), so frames wait at the source.
Where this instance sees whole streams, each stream's frame chain per producing stage it comes
via (``integrity.Chain``) finds frames that were lost upstream.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from zmq.auth import load_certificate

from ..accounting.books import Chain
from ..accounting.stage_book import StageBook
from ..errors import TransportError
from ..graph.plan import InstanceSpec
from ..graph.schema import PipelineSettings
from ..transport.codec import EOS, Envelope, decode
from ..transport.framepool import FrameLost, PoolReader
from ..transport.links import Inlet
from ..transport.reorder import ReorderBuffer
from .demand import Demand
from .ledger import Ledger

__all__ = ["Inputs", "RateLimitedLog", "Received"]

log = logging.getLogger("rkpipe.inputs")


@dataclass
class Received:
    """A received envelope, the inlet it came by, and the producing stage it came via (``via``)."""

    inlet: Inlet
    via: str
    d: Envelope

    @property
    def stream(self) -> str:
        return self.d.msg.stream


class RateLimitedLog:
    """Say something about a peer at most once a minute (a hostile peer cannot flood logs)."""

    def __init__(self, period_s: float = 60.0) -> None:
        self.period_s = period_s
        self._last: dict[str, float] = {}

    def __call__(self, peer: str, text: str) -> None:
        now = time.monotonic()
        if now - self._last.get(peer, -1e9) >= self.period_s:
            self._last[peer] = now
            log.warning("%s", text)


def _server_key(key_file: str | None) -> bytes | None:
    """A CurveZMQ producer's public key, from its certificate (None: a plain link)."""
    return load_certificate(key_file)[0] if key_file else None


class Inputs:
    """Every inlet of one stage instance, and what is ready for its stage, in order."""

    def __init__(
        self,
        spec: InstanceSpec,
        reader: PoolReader,
        ledger: Ledger,
        count_corrupt: Callable[[str, str], None],
        count_drop: Callable[[str], None],
        token: str = "",
        finished: set[str] | frozenset[str] = frozenset(),
        may_give_up: Callable[[int], bool] | None = None,
        extra_window: int = 0,
        book: StageBook | None = None,
        settings: PipelineSettings | None = None,
    ) -> None:
        self.spec = spec
        self.reader = reader
        self.ledger = ledger
        self.count_corrupt = count_corrupt
        self.count_drop = count_drop
        self.token = token
        self.extra_window = extra_window
        self.inlets: list[Inlet] = []
        self.via_of: dict[int, str] = {}
        for stage, producer, ep in spec.inputs:
            self._inlet(stage, producer, ep).eos = producer in finished
        settings = settings or PipelineSettings.model_validate(spec.settings)
        timeout = settings.reorder_timeout_ms / 1000
        give_up = may_give_up or (lambda _t: True)
        self.reorders: dict[str, ReorderBuffer[Received]] = {
            stage: ReorderBuffer(timeout, may_give_up=give_up) for stage in spec.replicated_inputs()
        }
        self.whole = spec.sees_whole_streams
        self.book = book or StageBook(ledger, spec.stage, self.whole, sink=not spec.outputs)
        self.ready: deque[Received] = deque()
        on_demand = settings.source_demand and spec.outputs and spec.source_inputs
        fed = [i for i in self.inlets if self.via_of[id(i)] in spec.source_inputs]
        self.demand: Demand[Inlet] | None = Demand(fed) if on_demand else None
        self._give_up = give_up
        self._timeout = timeout
        self._demand_wanted = bool(settings.source_demand and spec.outputs)

    def _inlet(self, stage: str, producer: str, endpoint: str) -> Inlet:
        spec = self.spec
        inlet = Inlet(
            endpoint,
            producer,
            spec.instance,
            spec.stage,
            spec.replica,
            spec.window + self.extra_window,
            self.token,
            _server_key(spec.input_curve.get(stage)),
        )
        self.inlets.append(inlet)
        self.via_of[id(inlet)] = stage
        return inlet

    def connect(
        self,
        inputs: list[tuple[str, str, str]],
        sources: list[str],
        curve: dict[str, str] | None = None,
        renewed: list[str] | None = None,
    ) -> list[Inlet]:
        """A reload added producers (a new source): an inlet for each one not yet here.
        ``sources``: the producer stages that are sources now; ``curve``: certificates of
        producers with CurveZMQ links; ``renewed``: producers here that ended and run again.
        Returns the new inlets, for the loop to watch; an inlet to a producer that was
        removed stays until its EOS."""
        self.spec.input_curve = {**self.spec.input_curve, **(curve or {})}
        for inlet in self.inlets:  # a producer that ended (let go) and runs again
            if inlet.producer in (renewed or ()):
                inlet.eos = False
        have = {i.producer for i in self.inlets}
        fresh = [(s, p, ep) for s, p, ep in inputs if p not in have]
        new = [self._inlet(*entry) for entry in fresh]
        self.spec.inputs = [*self.spec.inputs, *fresh]
        self.spec.source_inputs = list(sources)
        counts: dict[str, int] = {}
        for stage, _, _ in inputs:
            counts[stage] = counts.get(stage, 0) + 1
        for stage, n in counts.items():
            if n > 1 and stage not in self.reorders:
                self.reorders[stage] = ReorderBuffer(self._timeout, may_give_up=self._give_up)
        fed = [i for i in new if self.via_of[id(i)] in sources]
        if self.demand is None and self._demand_wanted and fed:
            self.demand = Demand(fed)
        elif self.demand is not None:
            for inlet in fed:
                self.demand.add(inlet)
        return new

    # -- receiving -------------------------------------------------------------------------------
    def receive(self, inlet: Inlet) -> None:
        """Take in everything ``inlet`` has."""
        via = self.via_of[id(inlet)]
        while (parts := inlet.recv()) is not None:
            try:
                d = decode(parts, self.reader)
            except FrameLost as exc:
                if exc.link is None:  # not even the header could be read
                    self._corrupt(inlet, str(exc))
                    continue
                d = exc.link  # its slot was rewritten before it could be read: a SKIP
                d.acct.skip = self.book.dropped_here("overwritten")
                self.count_drop("overwritten")
            except TransportError as exc:
                self._corrupt(inlet, str(exc))
                continue
            if d.kind == EOS:
                inlet.eos = True
                continue
            if self.demand is not None and inlet in self.demand:
                self.demand.arrived(inlet)
            self._order(Received(inlet, via, d))

    def _corrupt(self, inlet: Inlet, why: str) -> None:
        """A message that is not a valid envelope: refused and counted, its credit returned
        (the producer spent one on it)."""
        self.count_corrupt(inlet.producer, why)
        inlet.credit()

    def _order(self, link: Received) -> None:
        reorder = self.reorders.get(link.via)
        if reorder is None:
            self.ready.append(link)
            return
        d = link.d
        if d.msg.stream not in reorder.streams and self.whole:
            reorder.start(d.msg.stream, self.chain(link.via, d.msg.stream).last)
        late = reorder.late
        self.ready.extend(
            reorder.push(d.msg.stream, d.msg.seq, d.msg.prev, link, d.more, d.msg.t_mono_ns)
        )
        if reorder.late > late:  # its place was given up (and counted): drop it, credit back
            if self.demand is not None and link.inlet in self.demand:
                self.demand.taken(link.inlet)
            else:
                link.inlet.credit()

    def expire(self) -> None:
        """Release what waited long enough for a predecessor that can no longer come."""
        for reorder in self.reorders.values():
            if reorder.waiting():
                self.ready.extend(reorder.expire())

    def flush(self) -> None:
        """Every producer is done: release everything still held, in order."""
        for reorder in self.reorders.values():
            self.ready.extend(reorder.flush())

    # -- taking ----------------------------------------------------------------------------------
    def peek(self) -> Received | None:
        return self.ready[0] if self.ready else None

    def take(self, credit: bool = True) -> Received:
        """The next link in order; its credit goes back to its producer now, or, with
        ``credit=False``, when the caller says (``credit(link)``)."""
        link = self.ready.popleft()
        if self.demand is not None and link.inlet in self.demand:
            self.demand.taken(link.inlet, owe=credit)
        elif credit:
            link.inlet.credit()
        return link

    def credit(self, link: Received) -> None:
        """A taken link's credit, held until now (``take(credit=False)``), goes back (or,
        on demand, is owed until the stages behind have room)."""
        if self.demand is not None and link.inlet in self.demand:
            self.demand.owe(link.inlet)
        else:
            link.inlet.credit()

    def release(self, room: int | None) -> None:
        """Give back the owed credits the stages behind have ``room`` for (see ``Demand``)."""
        if self.demand is None or not self.demand.owed:
            return
        given: dict[Inlet, int] = {}
        for inlet in self.demand.release(room, time.monotonic(), lambda i: i.eos):
            given[inlet] = given.get(inlet, 0) + 1
        for inlet, n in given.items():
            inlet.credit(n)

    def owes(self) -> bool:
        """Credits are owed (the loop must look again soon, see ``Demand.horizon_s``)."""
        return self.demand is not None and bool(self.demand.owed)

    def chain(self, via: str, stream: str) -> Chain:
        return self.book.chain(via, stream)

    def forget(self, stream: str) -> None:
        for reorder in self.reorders.values():
            reorder.forget(stream)

    # -- state -----------------------------------------------------------------------------------
    @property
    def ended(self) -> bool:
        """Every producer said EOS (or is gone for good)."""
        return all(i.eos for i in self.inlets)

    def held(self) -> int:
        return len(self.ready) + sum(len(r) for r in self.reorders.values())

    def waiting_on_order(self) -> bool:
        return any(r.waiting() for r in self.reorders.values())

    def close(self) -> None:
        for inlet in self.inlets:
            inlet.close()
