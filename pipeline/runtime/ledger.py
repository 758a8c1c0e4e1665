"""A stage instance's counters in shared memory, owned by the supervisor, so they outlive the
process that writes them.

Counts kept only in a process die with it: a stage killed by SIGKILL would take its last
second of counts along, and a restarted one would not know where its predecessor stopped.
So each instance writes its counters into a small segment that the supervisor creates before
the first start and removes at the end of the run: every incarnation of the instance adds to
the same numbers, a restarted one reads where the last one stopped, and the supervisor reads
the final figures even of a process that was killed.

The segment is a table of (key, value, undo, stamp) entries. Keys are strings of a bounded
size, built in ``accounting.keys`` (a key that does not fit is refused, never cut); an
entry is added by writing its key and value and only then raising the entry count, so a
reader never sees a half-written key. Only the instance's own process writes (one lock for
its threads).

Several counters that must change together (a frame's accounting) are written as one
commit: each write keeps the value it replaces (``undo``) and the commit's number
(``stamp``), and the commit is done when its number is written to a commit counter, last. A
process killed half-way leaves stamps newer than the commit counter, which ``rollback``
undoes, so a commit is all or nothing.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import threading
from pathlib import Path

import numpy as np

from ..accounting.keys import KEY_BYTES, check_key

__all__ = ["LEDGER_ENTRIES", "Ledger", "LedgerFull"]

LEDGER_ENTRIES = 2048
_KEY_BYTES = KEY_BYTES  # keys are bounded to fit (accounting.keys), never truncated
_ENTRY = np.dtype([("key", f"S{_KEY_BYTES}"), ("value", "<i8"), ("undo", "<i8"), ("stamp", "<i8")])
_HEADER = 64  # magic, entry count
_MAGIC = 0x726B6C6564676572  # "rkledger"


class LedgerFull(Exception):
    """No room for another counter (a stage inventing unbounded drop reasons)."""


class Ledger:
    """Named int64 counters in one shared-memory file; ``create`` (supervisor) or ``open``."""

    def __init__(self, path: Path, mm: mmap.mmap) -> None:
        self.path = path
        self._mm = mm
        head = np.frombuffer(mm, np.uint64, count=2)
        if int(head[0]) != _MAGIC:
            msg = f"{path} is not an rkpipe ledger"
            raise ValueError(msg)
        self._count = head[1:2]
        self._table = np.frombuffer(mm, _ENTRY, count=LEDGER_ENTRIES, offset=_HEADER)
        # the columns, as views made once (a field lookup per write would cost more)
        self._values = self._table["value"]
        self._undo = self._table["undo"]
        self._stamps = self._table["stamp"]
        self._index: dict[str, int] = {}
        self._lock = threading.Lock()

    @classmethod
    def create(cls, path: Path) -> Ledger:
        """A new, empty ledger at ``path`` (mode 0600), replacing any file there."""
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.ftruncate(fd, _HEADER + _ENTRY.itemsize * LEDGER_ENTRIES)
            mm = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        np.frombuffer(mm, np.uint64, count=1)[0] = _MAGIC
        return cls(path, mm)

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """The ledger the supervisor made at ``path``."""
        fd = os.open(path, os.O_RDWR)
        try:
            size = os.fstat(fd).st_size
            if size != _HEADER + _ENTRY.itemsize * LEDGER_ENTRIES:
                msg = f"{path} is not an rkpipe ledger (size {size})"
                raise ValueError(msg)
            mm = mmap.mmap(fd, 0)
        finally:
            os.close(fd)
        return cls(path, mm)

    # -- writing (the instance's own process) ---------------------------------------------------
    def _refresh(self) -> None:
        """Learn the entries added since (by an earlier incarnation)."""
        for i in range(len(self._index), int(self._count[0])):
            self._index[self._table[i]["key"].decode()] = i

    def _slot(self, key: str, initial: int = 0) -> int:
        idx = self._index.get(key)
        if idx is not None:
            return idx
        self._refresh()
        idx = self._index.get(key)
        if idx is not None:
            return idx
        n = int(self._count[0])
        if n >= LEDGER_ENTRIES:
            msg = f"ledger {self.path.name} is full ({LEDGER_ENTRIES} counters)"
            raise LedgerFull(msg)
        self._table[n] = (check_key(key), initial, initial, -1)  # its value before any commit
        self._count[0] = n + 1  # publish the entry only once its key is written
        self._index[key] = n
        return n

    def add(self, key: str, n: int = 1, stamp: int = -1) -> int:
        """Add ``n`` to counter ``key`` (made at 0 on first use); returns the new value.
        ``stamp``: the number of the commit this write belongs to (see ``rollback``)."""
        with self._lock:
            i = self._slot(key)
            value = int(self._values[i]) + n
            self._write(i, value, stamp)
            return value

    def set(self, key: str, value: int, stamp: int = -1) -> None:
        with self._lock:
            self._write(self._slot(key), value, stamp)

    def setdefault(self, key: str, value: int) -> int:
        """Counter ``key``, made at ``value`` (outside any commit) if it is new: a counter
        whose first write is part of a commit then rolls back to ``value``, not to 0."""
        with self._lock:
            return int(self._values[self._slot(key, value)])

    def _write(self, i: int, value: int, stamp: int) -> None:
        if stamp >= 0:  # keep what is replaced until the commit is done
            self._undo[i] = self._values[i]
            self._stamps[i] = stamp
        self._values[i] = value

    def rollback(self, prefix: str, committed: int) -> int:
        """Undo the writes of keys starting with ``prefix`` stamped after commit
        ``committed`` (a commit its process did not finish); returns how many."""
        with self._lock:
            self._refresh()
            undone = 0
            for key, i in self._index.items():
                if key.startswith(prefix) and self._stamps[i] > committed:
                    self._values[i] = self._undo[i]
                    self._stamps[i] = committed
                    undone += 1
            return undone

    def get(self, key: str, default: int = 0) -> int:
        """Counter ``key``, or ``default`` if it was never written."""
        with self._lock:
            idx = self._index.get(key)
            if idx is None:
                self._refresh()
                idx = self._index.get(key)
            return default if idx is None else int(self._values[idx])

    # -- reading (anyone) -----------------------------------------------------------------------
    def snapshot(self) -> dict[str, int]:
        """Every counter now."""
        n = min(int(self._count[0]), LEDGER_ENTRIES)
        rows = self._table[:n].copy()
        return {bytes(r["key"]).decode(errors="replace"): int(r["value"]) for r in rows}

    def with_prefix(self, prefix: str) -> dict[str, int]:
        """Counters whose key starts with ``prefix``, keyed by the rest."""
        return {k[len(prefix) :]: v for k, v in self.snapshot().items() if k.startswith(prefix)}

    def close(self) -> None:
        self._count = self._table = None  # type: ignore[assignment]
        self._values = self._undo = self._stamps = None  # type: ignore[assignment]
        with contextlib.suppress(BufferError):  # a view is still alive: it goes with it
            self._mm.close()
