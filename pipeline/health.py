"""Source health shared with every stage of a run: the supervisor keeps the latest state of
each source (connecting, live, reconnecting, down) in one small JSON file in the run folder,
replaced atomically on each change; stages that publish camera status read it."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["HealthFile"]


class HealthFile:
    """``<run folder>/health.json``: ``{stream: {"state", "detail", "since", "reconnects"}}``."""

    NAME = "health.json"

    def __init__(self, run_dir: str | Path) -> None:
        self.path = Path(run_dir) / self.NAME
        self._seen: tuple[int, int] | None = None
        self._cached: dict[str, dict[str, Any]] = {}

    def write(self, health: dict[str, dict[str, Any]]) -> None:
        """Replace the file in one step (readers see the old or the new, never half)."""
        tmp = self.path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            json.dump(health, f)
        os.replace(tmp, self.path)

    def read(self) -> dict[str, dict[str, Any]]:
        """The latest health; re-read only when the file changed."""
        try:
            st = self.path.stat()
        except FileNotFoundError:
            return {}
        stamp = (st.st_mtime_ns, st.st_ino)
        if stamp != self._seen:
            try:
                data = json.loads(self.path.read_text())
            except (OSError, ValueError):  # replaced between stat and read: next time
                return self._cached
            self._cached = data if isinstance(data, dict) else {}
            self._seen = stamp
        return self._cached
