"""Demand-driven credits for links out of sources: a frame waits at its source, not here.

A stage fed by sources would, with plain credits, let every source keep ``window`` frames
queued in front of it, however busy the stages behind it are: with six cameras fanning into
one letterbox that is a dozen frames ageing in front of the NPU, while a live source could
have replaced each of them by a newer one. Here a taken frame's credit is owed, not returned,
and owed credits go back, oldest first (every source gets its turn, so no stream starves),
only while the frames waiting here plus the credits lately given back (``in_flight``) are
fewer than the room the stages behind have (``Outlet.room``: a device stage has room while
its device has fewer than its overlap), plus ``lookahead`` frames (default none: a frame held
here would go on as soon as the stage behind has any credit, and age in its queue). The queue
then stays at the bottleneck's device, one frame deep behind the one at work.

A credit given back and not used within ``horizon_s`` (a camera that stalled, a slow one)
stops counting, so one quiet source never holds the others back; the credits a HELLO grants
(a source's start or restart) are never counted. A credit owed is never lost, only delayed.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Hashable, Iterable
from typing import Generic, TypeVar

__all__ = ["Demand"]


K = TypeVar("K", bound=Hashable)


class Demand(Generic[K]):
    """Which owed credits go back now, for the inlets (by key) that run on demand."""

    def __init__(self, keys: Iterable[K], lookahead: int = 0, horizon_s: float = 0.1):
        self.lookahead = lookahead
        self.horizon_s = horizon_s
        self.owed: deque[K] = deque()  # one entry per credit owed, oldest first
        self.given: dict[K, deque[float]] = {k: deque() for k in keys}  # not yet used
        self.held = 0  # frames that came in on these inlets and were not taken yet

    def __contains__(self, key: object) -> bool:
        return key in self.given

    def add(self, key: K) -> None:
        """A new inlet runs on demand from now on (a source added by a reload)."""
        self.given.setdefault(key, deque())

    def arrived(self, key: K) -> None:
        """A message came in on ``key`` (it used the oldest credit given back, if any)."""
        self.held += 1
        if self.given[key]:
            self.given[key].popleft()

    def taken(self, key: K, owe: bool = True) -> None:
        """The stage took a message of ``key``; its credit is owed now, or, with
        ``owe=False``, once the caller says (``owe``: a device still holds the frame)."""
        self.held = max(0, self.held - 1)
        if owe:
            self.owe(key)

    def owe(self, key: K) -> None:
        self.owed.append(key)

    def in_flight(self, now: float) -> int:
        """Credits given back within the horizon that no message has used yet."""
        since = now - self.horizon_s
        for times in self.given.values():
            while times and times[0] < since:
                times.popleft()
        return sum(len(t) for t in self.given.values())

    def release(
        self, room: int | None, now: float, ended: Callable[[K], bool] = lambda _k: False
    ) -> list[K]:
        """The owed credits to give back now, oldest first, where the stages behind have
        ``room`` for that many more messages (None: no limit, e.g. every consumer is gone).
        Credits owed to an inlet that ``ended`` are dropped: nothing more comes on it."""
        if self.owed and any(ended(k) for k in self.given):
            self.owed = deque(k for k in self.owed if not ended(k))
        if room is None:
            n = len(self.owed)
        else:
            n = min(len(self.owed), room + self.lookahead - self.held - self.in_flight(now))
        out = [self.owed.popleft() for _ in range(max(0, n))]
        for key in out:
            self.given[key].append(now)
        return out
