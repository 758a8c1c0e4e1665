"""The outbox's write-ahead spool: every message is on disk before it is handed to the client, so a
killed sink loses nothing and the next start sends what the broker never acknowledged.

Two files in ``spool_dir``: ``<instance>.jsonl`` holds one JSON line per message, numbered
(``n``) in the order messages were queued; ``<instance>.acked`` holds the watermark (every
message numbered below it was acknowledged) and the acknowledged numbers above it
(:mod:`.acks`), rewritten in one ``pwrite`` at each PUBACK, so a restarted sink sends again only
what the broker never acknowledged. QoS 1 repeats one only when the kill falls between the
PUBACK and that write. Lines are written with one ``write`` each, so a killed process leaves
whole lines (a line cut short by a crash of the machine is skipped). The file is emptied
whenever everything in it was acknowledged, and its acknowledged head is cut off when that head
outgrows the rest. Offsets here are logical: they keep growing across such cuts, so items keep
the offsets they were given.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from pipeline.errors import StageSetupError
from pipeline.output_files import PRIVATE, UnsafeOutput, make_folder, open_file, replacing
from stages.sinks.mqtt.acks import Done, parse_record

__all__ = ["Item", "Spool"]

Key = tuple[str, str]  # (topic, payload) of a message
COMPACT_MIN_BYTES = 1 << 20  # cut the acknowledged head off once it is this large


@dataclass(slots=True)
class Item:
    """One message to publish: topic, payload text, retain flag; ``n`` and ``offset`` are its
    number and place in the spool (-1 without one)."""

    topic: str
    payload: str
    retain: bool = False
    n: int = -1
    offset: int = -1
    size: int = 0

    def to_line(self) -> bytes:
        doc = {"n": self.n, "topic": self.topic, "retain": self.retain, "payload": self.payload}
        return (json.dumps(doc, separators=(",", ":")) + "\n").encode()

    @classmethod
    def from_line(cls, line: bytes) -> Item:
        d = json.loads(line)
        return cls(str(d["topic"]), str(d["payload"]), bool(d.get("retain")), int(d.get("n", -1)))


class Spool:
    """The write-ahead file of one outbox: ``append`` before sending, ``load`` what memory had
    no room for, ``mark`` what the broker acknowledged."""

    def __init__(
        self, path: Path, max_bytes: int, taken: Callable[[], Collection[Key]] = tuple
    ) -> None:
        self.path = path
        self.mark_path = path.with_suffix(".acked")
        self.max_bytes = max_bytes
        try:
            make_folder(path.parent, PRIVATE)
            self.mark_fd = open_file(self.mark_path, PRIVATE, read=True)
        except UnsafeOutput as exc:
            raise StageSetupError(f"mqtt: spool: {exc}") from None
        try:  # one sink per spool: held until close, or until the process dies
            fcntl.flock(self.mark_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            os.close(self.mark_fd)
            msg = f"mqtt: the spool {path} is in use by another sink; give each its own spool_dir"
            raise StageSetupError(msg) from None
        self.acked, self.skipped = 0, 0  # watermark; unreadable lines found at the start
        self.done = Done()  # acknowledged (or given up) above the watermark
        self.record = b""  # what the mark file says now
        self.taken = 0  # left out at the start: the broker had them (the witness saw them)
        live = self._recover(taken())  # what the broker took: asked once the spool is ours
        self.file = _open(path)
        self.start = 0  # logical offset of the file's first byte
        self.end = self.file.seek(0, os.SEEK_END)
        self.next_n = self.acked + len(live)
        self.unloaded = len(live)  # lines past ``load_at`` not yet taken into memory
        self.load_at = 0

    # -- start: what the last run left ---------------------------------------------------
    def _recover(self, taken: Collection[Key]) -> list[Item]:
        """Keep the lines the broker never acknowledged nor was seen ``taken`` (topic,
        payload) by the witness, in their order, in a fresh file,
        renumbered above every number the old mark can name (so it stays right at every
        moment, also if this process is killed here); then mark that new start."""
        try:
            watermark, done = parse_record(os.pread(self.mark_fd, 1 << 16, 0))
        except OSError:
            watermark, done = 0, Done()  # everything is sent again (QoS 1 allows repeats)
        live: list[Item] = []
        top = watermark
        if self.path.exists():
            with self.path.open("rb") as f:
                for line in f:
                    try:
                        item = Item.from_line(line)
                    except (ValueError, KeyError, TypeError):
                        self.skipped += line.strip() != b""
                        continue
                    top = max(top, item.n + 1)
                    if item.n >= 0 and (item.n < watermark or item.n in done):
                        continue  # acknowledged (no number: an older format, kept)
                    if (item.topic, item.payload) in taken:
                        self.taken += 1
                        continue
                    live.append(item)
        with replacing(self.path, PRIVATE) as f:
            for i, item in enumerate(live):
                item.n = top + i
                f.write(item.to_line())
        self.acked = top
        self.done.below(top)
        self._write_mark()
        return live

    # -- the outbox's side ---------------------------------------------------------------
    def append(self, item: Item, in_memory: bool) -> None:
        """Write ``item`` (numbered next) at the end; ``in_memory`` False leaves it on disk
        only, to be loaded later."""
        item.n, self.next_n = self.next_n, self.next_n + 1
        line = item.to_line()
        item.offset, item.size = self.end, len(line)
        self.file.write(line)
        self.file.flush()  # in the kernel at once: a killed process loses no line
        self.end += len(line)
        if in_memory:
            self.load_at = self.end
        else:
            self.unloaded += 1

    def load(self, count: int) -> list[Item]:
        """Up to ``count`` of the oldest lines not yet in memory."""
        items: list[Item] = []
        self.file.seek(self.load_at - self.start)
        while self.unloaded and len(items) < count:
            offset = self.load_at
            line = self.file.readline()
            if not line:  # cannot happen while the counts are right; stay consistent
                self.unloaded = 0
                break
            self.load_at += len(line)
            self.unloaded -= 1
            item = Item.from_line(line)
            item.offset, item.size = offset, len(line)
            items.append(item)
        self.file.seek(0, os.SEEK_END)
        return items

    @property
    def waiting_bytes(self) -> int:
        """Bytes of the lines not yet loaded."""
        return self.end - self.load_at

    def finish(self, n: int) -> None:
        """Message ``n`` was acknowledged or given up (on disk at the next ``mark``)."""
        self.done.add(n)

    def mark(self, n: int, offset: int) -> None:
        """Every message numbered below ``n`` (the one at ``offset``) and those ``finish``
        named were acknowledged or given up: say so on disk, then empty the file or cut its
        head when that pays."""
        self.acked = n
        self.done.below(n)
        self._write_mark()
        if n == self.next_n and not self.unloaded and self.end > self.start:
            self.file.truncate(0)
            self.start = self.load_at = self.end
        elif offset - self.start > max(COMPACT_MIN_BYTES, self.end - offset):
            self._cut(offset)

    def _write_mark(self) -> None:
        record = self.done.record(self.acked)
        if record != self.record:
            self.record = record
            os.pwrite(self.mark_fd, record, 0)  # one call: a killed process leaves it whole

    def _cut(self, offset: int) -> None:
        self.file.flush()
        self.file.seek(offset - self.start)
        rest = self.file.read()
        with replacing(self.path, PRIVATE) as f:
            f.write(rest)
        self.file.close()
        self.file = _open(self.path)
        self.start = offset

    def close(self, left: int) -> None:
        """Close the files; with nothing ``left`` unacknowledged, remove them."""
        if left:
            self.file.flush()
            os.fsync(self.file.fileno())
            os.fsync(self.mark_fd)
        self.file.close()
        os.close(self.mark_fd)
        if not left:
            self.path.unlink(missing_ok=True)
            self.mark_path.unlink(missing_ok=True)

    def __len__(self) -> int:
        return self.unloaded


def _open(path: Path) -> BinaryIO:
    """Open for appending and reading, owner-only (events may say who was where), never
    through a link (``pipeline.output_files``; rewritten files are made new and renamed)."""
    return os.fdopen(open_file(path, PRIVATE, append=True, read=True), "a+b")
