"""Re-join a stream's messages in capture order after they were spread over replicas.

Every message names its predecessor in the stream (``prev``), so gaps left on purpose (a
camera dropped frames) are not mistaken for losses. A message is released when its
predecessor was; one whose predecessor does not come within ``timeout_s``, or that would
overflow ``capacity``, is released anyway and the gap is counted as lost. A message that
arrives after its place was given up is late: it is dropped and counted, never delivered out
of order.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Generic, TypeVar

__all__ = ["ReorderBuffer"]

T = TypeVar("T")


@dataclass
class _StreamState(Generic[T]):
    last: int | None  # seq of the last released message; None until the first is known
    held: dict[int, tuple[int, list[T], bool, float]] = field(default_factory=dict)
    # seq -> (prev, parts, complete, arrival time)


class ReorderBuffer(Generic[T]):
    """Per-stream order by (seq, prev) links, bounded in size and waiting time.

    ``fresh`` is True for a consumer that starts with the run (streams begin at prev -1);
    a restarted consumer passes False and takes the first message it sees as the start.
    """

    def __init__(
        self,
        timeout_s: float = 1.0,
        capacity: int = 256,
        fresh: bool = True,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s = timeout_s
        self.capacity = capacity
        self.fresh = fresh
        self.clock = clock
        self.streams: dict[str, _StreamState[T]] = {}
        self.lost = 0
        self.late = 0

    def __len__(self) -> int:
        return sum(len(s.held) for s in self.streams.values())

    def push(self, stream: str, seq: int, prev: int, item: T, more: bool = False) -> list[T]:
        """Add one part of message ``seq``; ``more`` says further parts of it follow.
        Returns the items now in order."""
        state = self.streams.get(stream)
        if state is None:
            state = self.streams[stream] = _StreamState(last=-1 if self.fresh else None)
        if state.last is None:
            state.last = prev
        if seq <= state.last and seq not in state.held:
            self.late += 1
            return []
        entry = state.held.get(seq)
        parts = entry[1] if entry else []
        parts.append(item)
        state.held[seq] = (prev, parts, not more, entry[3] if entry else self.clock())
        out = self._release(state)
        if len(state.held) > self.capacity:
            out += self._skip_gap(state)
        return out

    def _release(self, state: _StreamState[T]) -> list[T]:
        out: list[T] = []
        while True:
            nxt = self._next_after(state)
            if nxt is None:
                return out
            seq, (_, parts, complete, _) = nxt
            if not complete:
                return out
            del state.held[seq]
            state.last = seq
            out.extend(parts)

    def _next_after(self, state: _StreamState[T]) -> tuple[int, tuple] | None:
        for seq, entry in state.held.items():
            if entry[0] == state.last:
                return seq, entry
        return None

    def _skip_gap(self, state: _StreamState[T]) -> list[T]:
        """Give up on the missing predecessor of the oldest held message."""
        seq = min(state.held)
        prev = state.held[seq][0]
        self.lost += 1 if state.last is not None and prev > state.last else 0
        state.last = prev
        return self._release(state)

    def expire(self) -> list[T]:
        """Release what has waited longer than the timeout for a lost predecessor."""
        now = self.clock()
        out: list[T] = []
        for state in self.streams.values():
            while state.held:
                oldest = min(state.held)
                if now - state.held[oldest][3] < self.timeout_s:
                    break
                if not state.held[oldest][2]:  # incomplete multi-part message: take what came
                    prev, parts, _, t = state.held[oldest]
                    state.held[oldest] = (prev, parts, True, t)
                out += self._skip_gap(state)
        return out

    def flush(self) -> list[T]:
        """Everything held, in order, counting the gaps (used when all producers are done)."""
        out: list[T] = []
        for state in self.streams.values():
            while state.held:
                oldest = min(state.held)
                prev, parts, _, t = state.held[oldest]
                state.held[oldest] = (prev, parts, True, t)
                out += self._skip_gap(state)
        return out

    def forget(self, stream: str) -> None:
        self.streams.pop(stream, None)
