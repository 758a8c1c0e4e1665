"""The sending side of a stage process: the outlet, encoding, room to send, markers.

Results leave only when every downstream stage has room (credits). Each output carries its
frame accounting (``integrity``): the source drops before its seq, and losses counted just
before it. An instance that sees whole streams re-links each stream's outputs to the link it
sent before (``prev``), so consumers behind it find an unbroken chain even where frames were
lost upstream (they are counted in the accounting instead).
"""

from __future__ import annotations

from collections.abc import Callable

from zmq.auth import load_certificate

from ..accounting.envelope import Accounting, Envelope
from ..accounting.reasons import BEHIND
from ..graph.plan import InstanceSpec
from ..messages import Message
from ..transport.codec import END, SKIP, Kind, encode
from ..transport.framepool import FramePool, PoolReader
from ..transport.links import Outlet, Reject

__all__ = ["Sender"]


class Sender:
    """One stage instance's outlet to every downstream stage."""

    def __init__(
        self,
        spec: InstanceSpec,
        pool: FramePool,
        reader: PoolReader,
        token: str = "",
        on_reject: Reject | None = None,
    ) -> None:
        secret = load_certificate(spec.curve_key_file)[1] if spec.curve_key_file else None
        self.outlet = Outlet(
            spec.endpoint, spec.outputs, spec.partition, token, on_reject, curve_secret=secret,
            best_effort=spec.best_effort, released=spec.released,
        )  # fmt: skip
        self.pool = pool
        self.reader = reader
        self.window = spec.window  # the pipeline's credit window (see Outlet.room)
        self.inline_all = spec.endpoint.startswith("tcp://")
        self.rechain = spec.sees_whole_streams
        self._last: dict[str, int] = {}  # stream -> seq of the last link sent
        self._prev: dict[str, int] = {}  # stream -> prev of that link (for its later parts)

    @property
    def sock(self):
        return self.outlet.sock

    def ready(self, stream: str | None = None) -> bool:
        return self.outlet.ready(stream)

    def poll_credits(self, timeout_ms: int = 0) -> bool:
        return self.outlet.poll_credits(timeout_ms)

    def room(self) -> int | None:
        return self.outlet.room(self.window)

    def _link_prev(self, stream: str, seq: int, prev: int) -> int:
        """``prev`` for a link of ``seq``: the input's, or, re-linking, the last sent."""
        if not self.rechain:
            return prev
        if self._last.get(stream) == seq:  # a further part of the same link
            return self._prev[stream]
        prev = self._last.get(stream, -1)
        self._last[stream], self._prev[stream] = seq, prev
        return prev

    def send(self, msg: Message, more: bool, acct: Accounting) -> bool:
        """Encode and send one result; False if a downstream replica died as it was sent."""
        prev = self._link_prev(msg.stream, msg.seq, msg.prev)
        saved, msg.prev = msg.prev, prev
        try:
            parts = encode(
                Envelope.message(msg, more, acct), self.pool, self.reader, self.inline_all
            )
        finally:
            msg.prev = saved

        def behind() -> list:  # what a best-effort stage without room gets in its place
            why = acct.skipped(BEHIND)
            return encode(Envelope.skip(msg.stream, msg.seq, prev, why, more, msg.t_mono_ns))

        return self.outlet.send(parts, msg.stream, behind, msg.seq)

    def marker(self, kind: Kind, msg: Message, more: bool, acct: Accounting) -> bool:
        """Send a SKIP (this frame was dropped, ``acct``'s reason says why) or END marker."""
        assert kind in (SKIP, END)
        prev = self._link_prev(msg.stream, msg.seq, msg.prev)
        env = Envelope.marker(kind, msg.stream, msg.seq, prev, acct, more, msg.t_mono_ns)
        parts = encode(env)
        return self.outlet.send(parts, msg.stream, None, msg.seq)

    def wait_for_room(
        self, stream: str | None, meanwhile: Callable[[], None], stop: Callable[[], bool]
    ) -> bool:
        """Block until every downstream stage can take a message (of ``stream``), calling
        ``meanwhile`` while waiting; False if ``stop`` said to give up."""
        while not self.outlet.ready(stream):
            self.outlet.poll_credits(100)
            meanwhile()
            if stop():
                return False
        return True

    def regroup(self, outputs: dict[str, list[str]]) -> list[str]:
        """A downstream stage's replicas changed (a reload): see ``Outlet.regroup``."""
        return self.outlet.regroup(outputs)

    def forget_gone(self, is_gone: Callable[[str], bool]) -> None:
        self.outlet.forget_gone(is_gone)

    def broadcast_eos(
        self, is_gone: Callable[[str], bool], meanwhile: Callable[[], None] | None = None
    ) -> list[str]:
        return self.outlet.broadcast_eos(is_gone=is_gone, meanwhile=meanwhile)

    def close(self, linger_ms: int = 0) -> None:
        """Close the outlet; what was sent last (END, EOS) still leaves within ``linger_ms``."""
        self.outlet.close(linger_ms)
