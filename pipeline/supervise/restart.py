"""What the supervisor does when a stage process dies: restart it with backoff, disable it,
or stop the run, by the stage's ``on_failure``; and which stream ends a restarted stage must
make up for (their END died with its predecessor).

``on_failure`` (per stage in the graph):
    ``restart``  restart with backoff; after ``restart_limit`` deaths within
                 ``restart_window_s`` the run ends with an error. The default for every
                 stage but sinks.
    ``disable``  restart with backoff; past the limit the stage is left out for the rest of
                 the run with one loud error line, and the run goes on (what it would have
                 received is counted as lost there). The default for sinks.
    ``stop``     the first death ends the run with an error.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from typing import Literal

__all__ = ["Decision", "RestartPolicy", "default_on_failure"]

OnFailure = Literal["restart", "disable", "stop"]
Decision = Literal["restart", "disable", "stop"]
MAX_BACKOFF_S = 30.0


def default_on_failure(is_sink: bool) -> OnFailure:
    return "disable" if is_sink else "restart"


@dataclass
class RestartPolicy:
    """One instance's deaths within the window, and what to do about the next one."""

    on_failure: OnFailure
    limit: int
    window_s: float
    deaths: deque[float] = field(default_factory=deque)

    def died(self, now: float) -> tuple[Decision, float]:
        """Record a death; returns what to do and, for a restart, after how long."""
        while self.deaths and now - self.deaths[0] > self.window_s:
            self.deaths.popleft()
        self.deaths.append(now)
        if self.on_failure == "stop":
            return "stop", 0.0
        if len(self.deaths) > self.limit:
            return ("disable" if self.on_failure == "disable" else "stop"), 0.0
        return "restart", min(MAX_BACKOFF_S, 0.25 * 2 ** (len(self.deaths) - 1))

    def describe(self, code: int) -> str:
        """How the process ended, for a person."""
        return f"signal {-code}" if code < 0 else f"status {code}"
