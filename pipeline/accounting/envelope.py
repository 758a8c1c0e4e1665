"""The frame accounting every envelope carries, as a typed value (msgpack stays the wire
format: ``to_wire`` is the list the codec packs).

``source_drops``: how many frames of the stream the source dropped before this seq (each counted at
the source); ``lost``: frames lost just before this one and counted upstream, as
``(n, reason)``; ``skip``: for a SKIP marker, why the frame was dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["Accounting"]


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
