"""Re-join a stream's messages in capture order after they were spread over replicas.

Every message names its predecessor in the stream (``prev``), so gaps left on purpose (a
camera dropped frames) are not mistaken for losses. A message is released when its
predecessor was. A missing predecessor is waited for as long as it may still come: the wait
ends (the gap is given up, to be counted by the stage's frame accounting) only once
``timeout_s`` has passed *and* ``may_give_up`` says a process of the run died after the last
released message was made, so a healthy replica that is merely slow (start-up, a loaded
machine) never loses a frame. ``capacity`` bounds what is held whatever happens. A message
that arrives after its place was given up is late: it is dropped, never delivered out of
order (it was counted with its gap).
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
    last: int = -1  # seq of the last released message (streams start at -1)
    t_last: int = 0  # its monotonic capture time, ns
    held: dict[int, tuple[int, list[T], bool, float, int]] = field(default_factory=dict)
    # seq -> (prev, parts, complete, arrival time, t_mono_ns)


def _always(_t_mono_ns: int) -> bool:
    return True


class ReorderBuffer(Generic[T]):
    """Per-stream order by (seq, prev) links, bounded in size; gaps given up per the rules
    above. ``may_give_up(t_mono_ns)`` is True if a frame made after ``t_mono_ns`` may have
    died (a process of the run died since)."""

    def __init__(
        self,
        timeout_s: float = 1.0,
        capacity: int = 256,
        may_give_up: Callable[[int], bool] = _always,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.timeout_s = timeout_s
        self.capacity = capacity
        self.may_give_up = may_give_up
        self.clock = clock
        self.streams: dict[str, _StreamState[T]] = {}
        self.gaps = 0  # gaps given up (their frames are counted by the frame accounting)
        self.late = 0  # messages that came after their place was given up

    def __len__(self) -> int:
        return sum(len(s.held) for s in self.streams.values())

    def start(self, stream: str, last: int) -> None:
        """Begin ``stream`` after ``last`` (a restarted consumer goes on where it stopped)."""
        self.streams[stream] = _StreamState(last=last)

    def push(
        self, stream: str, seq: int, prev: int, item: T, more: bool = False, t_mono_ns: int = 0
    ) -> list[T]:
        """Add one part of message ``seq``; ``more`` says further parts of it follow.
        Returns the items now in order."""
        state = self.streams.get(stream)
        if state is None:
            state = self.streams[stream] = _StreamState()
        if seq <= state.last and seq not in state.held:
            self.late += 1
            return []
        entry = state.held.get(seq)
        parts = entry[1] if entry else []
        parts.append(item)
        arrived = entry[3] if entry else self.clock()
        state.held[seq] = (prev, parts, not more, arrived, t_mono_ns)
        out = self._release(state)
        if len(state.held) > self.capacity:
            out += self._skip_gap(state)
        return out

    def _release(self, state: _StreamState[T]) -> list[T]:
        out: list[T] = []
        while state.held:
            seq = min(state.held)
            prev, parts, complete, _, t_mono = state.held[seq]
            if prev > state.last or not complete:
                return out
            del state.held[seq]
            state.last, state.t_last = seq, t_mono
            out.extend(parts)
        return out

    def _skip_gap(self, state: _StreamState[T]) -> list[T]:
        """Give up on the missing predecessor of the oldest held message."""
        seq = min(state.held)
        prev, parts, _, arrived, t_mono = state.held[seq]
        state.held[seq] = (prev, parts, True, arrived, t_mono)  # take what came of it
        self.gaps += 1
        state.last = max(state.last, prev)
        return self._release(state)

    def expire(self) -> list[T]:
        """Release what has waited long enough for a predecessor that can no longer come."""
        now = self.clock()
        out: list[T] = []
        for state in self.streams.values():
            while state.held:
                oldest = min(state.held)
                if now - state.held[oldest][3] < self.timeout_s:
                    break
                if not self.may_give_up(state.t_last):
                    break
                out += self._skip_gap(state)
        return out

    def flush(self) -> list[T]:
        """Everything held, in order (used when every producer is done)."""
        out: list[T] = []
        for state in self.streams.values():
            while state.held:
                out += self._skip_gap(state)
        return out

    def forget(self, stream: str) -> None:
        self.streams.pop(stream, None)

    def waiting(self) -> bool:
        """True if some stream holds messages waiting for a predecessor."""
        return any(s.held for s in self.streams.values())
