"""What travels between stages, as typed values: the ``Envelope`` header (its kind, the
message, the shared-memory slots it uses, its accounting) and ``Accounting``, the frame
accounting every envelope carries. msgpack stays the wire format: ``pipeline.transport.codec``
only serialises these (``Accounting.to_wire`` is the list it packs).

``source_drops``: how many frames of the stream the source dropped before this seq (each counted at
the source); ``lost``: frames lost just before this one and counted upstream, as
``(n, reason)``; ``skip``: for a SKIP marker, why the frame was dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from enum import IntEnum
from typing import TYPE_CHECKING, Any

from ..messages import Message

if TYPE_CHECKING:
    from ..transport.framepool import SlotRef

__all__ = ["END", "EOS", "MSG", "SKIP", "Accounting", "Envelope", "Kind"]


class Kind(IntEnum):
    """What an envelope is (its number is the first field on the wire)."""

    MSG = 0  # a message
    SKIP = 1  # a stage dropped this seq (the accounting's ``skip`` says why)
    END = 2  # the stream is over
    EOS = 3  # the producer is done with every stream


MSG, SKIP, END, EOS = Kind.MSG, Kind.SKIP, Kind.END, Kind.EOS
KINDS = tuple(Kind)  # by wire number: the decoder's lookup, no enum call per message


@dataclass(slots=True)
class Accounting:
    """What one message says of the frames of its stream before it (see module doc)."""

    source_drops: int = 0
    lost: list[tuple[int, str]] = field(default_factory=list)
    skip: str = ""

    def to_wire(self) -> list[Any]:
        return [self.source_drops, self.lost, self.skip]

    def rest(self) -> Accounting:
        """What a later part of the same frame carries: the source drops only (losses and a
        reason are said once, on the first)."""
        return Accounting(self.source_drops)

    def skipped(self, reason: str) -> Accounting:
        """The same accounting with the frame dropped for ``reason``."""
        return Accounting(self.source_drops, self.lost, reason)


@dataclass(slots=True)
class Envelope:
    """One envelope: its kind, whether more parts of the same link follow (``more``), the
    message (for a marker, only its stream, seq, prev and t_mono_ns mean anything), the
    shared-memory slots its arrays are in (filled in by the decoder), and its accounting."""

    kind: Kind
    msg: Message
    more: bool = False
    acct: Accounting = field(default_factory=Accounting)
    refs: Sequence[SlotRef] = ()

    @classmethod
    def message(cls, msg: Message, more: bool = False, acct: Accounting | None = None) -> Envelope:
        """A MSG envelope carrying ``msg``."""
        return cls(MSG, msg, more, acct or Accounting())

    @classmethod
    def marker(
        cls,
        kind: Kind,
        stream: str,
        seq: int,
        prev: int,
        acct: Accounting | None = None,
        more: bool = False,
        t_mono_ns: int = 0,
    ) -> Envelope:
        """A marker with no payload (SKIP or END) at ``seq`` of ``stream``."""
        return cls(kind, Message(stream, seq, prev, 0.0, t_mono_ns), more, acct or Accounting())

    @classmethod
    def skip(
        cls,
        stream: str,
        seq: int,
        prev: int,
        acct: Accounting | None = None,
        more: bool = False,
        t_mono_ns: int = 0,
    ) -> Envelope:
        """A SKIP marker: frame ``seq`` was dropped (``acct.skip`` says why)."""
        return cls(SKIP, Message(stream, seq, prev, 0.0, t_mono_ns), more, acct or Accounting())

    @classmethod
    def end(
        cls,
        stream: str,
        seq: int,
        prev: int,
        acct: Accounting | None = None,
        more: bool = False,
        t_mono_ns: int = 0,
    ) -> Envelope:
        """An END marker: ``stream`` is over, ``seq`` the place of its end."""
        return cls(END, Message(stream, seq, prev, 0.0, t_mono_ns), more, acct or Accounting())

    @classmethod
    def eos(cls) -> Envelope:
        """The producer is done with every stream."""
        return cls(EOS, Message("", -1, -1, 0.0, 0))
