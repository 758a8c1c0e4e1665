"""``rkpipe run --watch``: notice that the graph file was saved, so the run reloads it.

Polled from the supervisor's loop (no inotify dependency, works on any filesystem): a change
of the file's stat is confirmed by its bytes, so a ``touch`` or an editor that rewrites the
same text does not reload, and a file still being written (its stat moved within the last
``settle_s``) is looked at again next time. An editor that saves by renaming a new file over
the old one is seen the same way, since the path is what is watched.
"""

from __future__ import annotations

import hashlib
import os
import time
from pathlib import Path

__all__ = ["GraphWatch"]


class GraphWatch:
    """Whether the graph file at ``path`` holds other bytes than when last ``seen``."""

    def __init__(self, path: Path, every_s: float = 0.5, settle_s: float = 0.3) -> None:
        self.path = path
        self.every_s = every_s
        self.settle_s = settle_s
        self._next = 0.0
        self._stat: tuple[int, int, int] | None = None
        self._digest = b""
        self.seen()

    def seen(self) -> None:
        """The file as it is now is the one running (a reload just read it)."""
        self._stat = self._read_stat()
        self._digest = self._read_digest()

    def changed(self, now: float) -> bool:
        """True once the saved file differs from what runs (at most every ``every_s``)."""
        if now < self._next:
            return False
        self._next = now + self.every_s
        stat = self._read_stat()
        if stat == self._stat or stat is None:
            return False
        mtime_ns = stat[0]
        if (now_ns := time.time_ns()) - mtime_ns < self.settle_s * 1e9 and mtime_ns <= now_ns:
            return False  # still being written: look again next time
        self._stat = stat
        return self._read_digest() != self._digest  # not when touched or saved unchanged

    def _read_stat(self) -> tuple[int, int, int] | None:
        try:
            st = os.stat(self.path)
        except OSError:
            return None  # gone for a moment (an editor's rename): the run keeps its graph
        return (st.st_mtime_ns, st.st_size, st.st_ino)

    def _read_digest(self) -> bytes:
        try:
            return hashlib.sha256(self.path.read_bytes()).digest()
        except OSError:
            return self._digest
