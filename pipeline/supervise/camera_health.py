"""Camera health as the supervisor keeps it: each source's latest state (connecting, live,
reconnecting, down), since when, and its outages and time not live, shared with every stage
of the run through ``health.json`` and written into the run's stats at the end.

Sources report a change of state (or of its reason) on the control channel; this module
turns those reports into the per-stream record, and says when a camera has been down past
``fail_on_source_down_s``.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from ..health import HealthFile

__all__ = ["CameraHealth"]


class CameraHealth:
    """The health of every source of one run, by stream."""

    def __init__(self, run_dir: str | Path) -> None:
        self.file = HealthFile(run_dir)
        self.streams: dict[str, dict[str, Any]] = {}

    def update(self, stream: str, state: str, detail: str, now: float | None = None) -> None:
        """Record a source's new health and share it with every stage (health.json). Time
        not live is summed per stream in outages (a camera never live is down throughout)."""
        old = self.streams.get(stream, {})
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

    def down_too_long(self, limit: float | None, now: float | None = None) -> list[str]:
        """``fail_on_source_down_s``: an error for each camera not live for ``limit``
        seconds (each said once)."""
        if limit is None:
            return []
        now = time.time() if now is None else now
        errors = []
        for stream, h in self.streams.items():
            if h["state"] != "live" and now - h["since"] > limit and not h.get("failed"):
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
            if h["state"] != "live":
                h["down_s"] = h.get("down_s", 0.0) + now - h["since"]
            if not h.get("ever_live"):
                h["outages"] = max(1, h["outages"])
        return self.streams
