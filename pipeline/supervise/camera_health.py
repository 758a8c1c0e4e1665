"""Camera health as the supervisor keeps it: each source's latest state (connecting, live,
reconnecting, down), since when, and its outages and time not live, shared with every stage
of the run through ``health.json`` and written into the run's stats at the end.

Sources report a change of state (or of its reason) on the control channel; this module
turns those reports into the per-stream record, says when a camera has been down past
``fail_on_source_down_s``, and tells a person each change once: ``cam0 down: connection
refused: camera off or wrong port; retrying``, ``cam0 reconnecting: ...``, ``cam0 live again
after 12.3 s``. A new reason for the same state is a repeat: said at most once per
``REPEAT_S``, with how many went unsaid; a camera that flaps says at most ``BURST`` changes
per ``REPEAT_S``, then where it stands and how many changes went unsaid.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..health import HealthFile
from ..secrets import mask

__all__ = ["BURST", "REPEAT_S", "CameraHealth", "span"]

REPEAT_S = 60.0  # a repeat (same state, new reason) is said at most this often per camera
BURST = 6  # changes of state said per camera within REPEAT_S before the rest are counted


@dataclass
class _Said:
    """What was last said of one camera, and what went unsaid since."""

    times: list[float] = field(default_factory=list)  # when changes were said, last REPEAT_S
    last: float = float("-inf")  # when anything was last said
    unsaid: int = 0  # reports not said since ``last``
    outage_since: float | None = None  # when the current outage began (None: live)
    told_down: bool = False  # a line (said or counted) told of this outage


REMOVED = "removed"  # a source a reload took away


class CameraHealth:
    """The health of every source of one run, by stream."""

    def __init__(self, run_dir: str | Path, say: Callable[[str], None] | None = None) -> None:
        self.file = HealthFile(run_dir)
        self.streams: dict[str, dict[str, Any]] = {}
        self.say = say or (lambda line: None)
        self._said: dict[str, _Said] = {}

    def update(self, stream: str, state: str, detail: str, now: float | None = None) -> None:
        """Record a source's new health and share it with every stage (health.json). Time
        not live is summed per stream in outages (a camera never live is down throughout)."""
        old = self.streams.get(stream, {})
        if old.get("state") == REMOVED:  # what a removed source says as it stops is not news
            return
        now = time.time() if now is None else now
        changed = state != old.get("state")
        entry = {
            "state": state,
            "detail": detail[:300],
            "since": now if changed else old.get("since", now),
            "reconnects": old.get("reconnects", 0) + (changed and state == "reconnecting"),
            "down_s": old.get("down_s", 0.0),
            "outages": old.get("outages", 0),
        }
        was_live = old.get("state") == "live"
        if changed and old and not was_live:  # time not live ends (or goes on in another state)
            entry["down_s"] += now - old["since"]
        if changed and state != "live" and was_live:  # a live camera is lost: an outage
            entry["outages"] += 1
        entry["ever_live"] = old.get("ever_live", False) or state == "live"
        self.streams[stream] = entry
        self.file.write(self.streams)
        self._tell(stream, old, entry, now)

    def remove(self, stream: str, now: float | None = None) -> None:
        """A reload removed the source: its record stops here (an outage it was in ends, and
        it is never again down too long)."""
        h = self.streams.get(stream)
        if h is None:
            return
        now = time.time() if now is None else now
        if h["state"] != "live":
            h["down_s"] = h.get("down_s", 0.0) + now - h["since"]
        h.update(state=REMOVED, detail="removed by a reload", since=now)
        self.file.write(self.streams)

    # -- what a person is told -------------------------------------------------------------------
    def _tell(self, stream: str, old: dict[str, Any], new: dict[str, Any], now: float) -> None:
        """Say a change once; a repeat or a flap within REPEAT_S is counted instead."""
        said = self._said.setdefault(stream, _Said())
        state, was = new["state"], old.get("state")
        if state == "live":
            line = _live_line(stream, said, old, now)
            said.outage_since, said.told_down = None, False
        else:
            if said.outage_since is None and (was in (None, "live") or state != "connecting"):
                said.outage_since = now  # it left live, or has not been live yet
            line = _down_line(stream, said, old, new, now)
            said.told_down = said.told_down or line is not None
        if line is None:
            return
        said.times = [t for t in said.times if now - t < REPEAT_S]
        repeat = was == state
        if (repeat and now - said.last < REPEAT_S) or (not repeat and len(said.times) >= BURST):
            said.unsaid += 1
            return
        if not repeat:
            said.times.append(now)
        self._say(said, line, now)

    def _say(self, said: _Said, line: str, now: float) -> None:
        if said.unsaid:
            line += f" ({said.unsaid} more report{'s' * (said.unsaid != 1)} not shown)"
        said.unsaid, said.last = 0, now
        self.say(mask(line))  # a reason may quote a URL: never its password

    def tick(self, now: float | None = None) -> None:
        """Where a camera whose reports went unsaid stands now, once its REPEAT_S is over."""
        now = time.time() if now is None else now
        for stream, said in self._said.items():
            if said.unsaid and now - said.last >= REPEAT_S:
                h = self.streams[stream]
                detail = f": {h['detail']}" if h["detail"] and h["state"] != "live" else ""
                self._say(said, f"rkpipe: {stream} now {h['state']}{detail}", now)

    def down_too_long(self, limit: float | None, now: float | None = None) -> list[str]:
        """``fail_on_source_down_s``: an error for each camera not live for ``limit``
        seconds (each said once)."""
        if limit is None:
            return []
        now = time.time() if now is None else now
        errors = []
        for stream, h in self.streams.items():
            down = h["state"] not in ("live", REMOVED)
            if down and now - h["since"] > limit and not h.get("failed"):
                h["failed"] = True
                errors.append(
                    f"{stream}: camera {h['state']} for {now - h['since']:.0f}s "
                    f"(fail_on_source_down_s = {limit:g}): {h['detail'] or 'no frames'}"
                )
        return errors

    def final(self, now: float | None = None) -> dict[str, dict[str, Any]]:
        """The record for the run's stats: an outage still going at the end counts to
        ``now``; a camera never live was down the whole run."""
        now = time.time() if now is None else now
        for h in self.streams.values():
            if h["state"] not in ("live", REMOVED):
                h["down_s"] = h.get("down_s", 0.0) + now - h["since"]
            if not h.get("ever_live"):
                h["outages"] = max(1, h["outages"])
        return self.streams


def _live_line(stream: str, said: _Said, old: dict[str, Any], now: float) -> str | None:
    """The line for a camera that is live, or None when nobody was told it was not."""
    if not said.told_down or old.get("state") == "live":
        return None
    took = span(now - (now if said.outage_since is None else said.outage_since))
    if old.get("ever_live"):
        return f"rkpipe: {stream} live again after {took}"
    return f"rkpipe: {stream} live after {took} down"


def _down_line(
    stream: str, said: _Said, old: dict[str, Any], new: dict[str, Any], now: float
) -> str | None:
    """The line for a camera that is not live, or None for ``connecting`` (a first
    connection, or a restarted stage's)."""
    state, why = new["state"], new["detail"]
    reason = f": {why}" if why else ""
    if state == "down":
        since = said.outage_since
        long = old.get("state") == "reconnecting" and since is not None
        after = f" after {span(now - since)}" if long and since is not None else ""
        return f"rkpipe: {stream} down{after}{reason}; retrying"
    if state == "reconnecting":
        return f"rkpipe: {stream} reconnecting{reason}"
    if state == "connecting":
        return None
    return f"rkpipe: {stream} {state}{reason}"


def span(seconds: float) -> str:
    """A length of time for a log line: ``4.2 s``, ``3 m 10 s``, ``2 h 5 m``."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} m {secs} s"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes} m"
