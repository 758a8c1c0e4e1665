"""Shared-memory frame pools: a producer writes arrays into fixed slots, consumers map them.

Each segment is a file in /dev/shm holding N equal slots and a generation counter per slot.
The counter works as a seqlock: odd while the producer writes a slot, even once it is
published. A reference carries the even generation it was published with, so a consumer can
tell, before and after using a slot, whether it was overwritten under it; such frames are
dropped and counted, never used.
"""

from __future__ import annotations

import contextlib
import errno
import math
import mmap
import os
import re
import stat
import threading
import weakref
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..errors import ShmError, TransportError

if TYPE_CHECKING:
    from ..accounting.envelope import Envelope

__all__ = [
    "SHM_DIR",
    "FrameLost",
    "FramePool",
    "PoolReader",
    "SlotRef",
    "segment_bytes",
]

SHM_DIR = Path("/dev/shm")
HEADER_BYTES = 4096  # [magic, stride, slots, 0...] then a generation counter per slot
ALIGN = 4096
_FIELDS = 8
MAX_SLOTS = HEADER_BYTES // 8 - _FIELDS
_MAGIC = 0x726B70697065  # "rkpipe"


SHM_FIX = (
    "make /dev/shm bigger (docker run --shm-size=1g, or: sudo mount -o remount,size=1G "
    "/dev/shm), give the stages fewer pool_slots, or use smaller frames or a smaller model input"
)


def segment_bytes(slots: int, slot_bytes: int) -> int:
    """The size of a pool segment of ``slots`` slots for arrays of ``slot_bytes``."""
    return HEADER_BYTES + -(-slot_bytes // ALIGN) * ALIGN * slots


def _reserve(fd: int, path: Path, size: int) -> None:
    """Give the segment its memory now: a tmpfs file is sparse, so a /dev/shm too small for it
    would otherwise be found by a SIGBUS at the first write past the free space, mid-run."""
    try:
        os.posix_fallocate(fd, 0, size)
    except OSError as exc:
        if exc.errno not in (errno.ENOSPC, errno.ENOMEM, errno.EFBIG):
            return  # a file system without fallocate: pages come as they are written
        path.unlink(missing_ok=True)
        st = os.statvfs(path.parent)
        free, total = st.f_bavail * st.f_frsize / 2**20, st.f_blocks * st.f_frsize / 2**20
        msg = (
            f"{path.parent} has no room for frame pool {path.name} ({size / 2**20:.1f} MB; "
            f"{free:.0f} MB free of {total:.0f} MB, another process may have filled it): "
            f"{SHM_FIX}"
        )
        raise ShmError(msg) from None


_SEGMENT_NAME = re.compile(r"rkpipe-[A-Za-z0-9._-]{1,200}")


class FrameLost(Exception):
    """A referenced slot was overwritten or its segment is gone. Raised while decoding an
    envelope, ``link`` is the envelope as a SKIP marker, so its place in the stream is kept."""

    link: Envelope | None = None


@dataclass(frozen=True)
class SlotRef:
    """Where an array lives: segment name, slot index, published generation, layout."""

    segment: str
    slot: int
    gen: int
    dtype: str
    shape: tuple[int, ...]

    def to_wire(self) -> list:
        return [self.segment, self.slot, self.gen, self.dtype, list(self.shape)]

    @classmethod
    def from_wire(cls, w: list) -> SlotRef:
        return cls(w[0], int(w[1]), int(w[2]), w[3], tuple(w[4]))


class _Segment:
    """One mapped /dev/shm file of ``slots`` slots of ``slot_bytes`` each.

    The producer maps it writable and, after a restart, opens the segment its predecessor
    left (same name, same layout) rather than making another, so a restart leaks nothing and
    generations keep counting up. A consumer maps it read-only, and only a regular file of
    this user's with a sane layout.
    """

    def __init__(self, name: str, slots: int, slot_bytes: int, create: bool) -> None:
        self.name = name
        self.path = SHM_DIR / name
        stride = -(-slot_bytes // ALIGN) * ALIGN
        size = segment_bytes(slots, slot_bytes)
        if create:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        else:
            fd = os.open(self.path, os.O_RDONLY | os.O_NOFOLLOW)
        try:
            st = os.fstat(fd)
            if create:
                os.fchmod(fd, 0o600)
                if st.st_size != size:
                    os.ftruncate(fd, 0)  # a different layout: start over, zeroed
                    os.ftruncate(fd, size)
                _reserve(fd, self.path, size)
                self.mm = mmap.mmap(fd, size)
            else:
                _check_foreign(name, st)
                self.mm = mmap.mmap(fd, st.st_size, prot=mmap.PROT_READ)
        finally:
            os.close(fd)
        header = np.frombuffer(self.mm, np.uint64, count=HEADER_BYTES // 8)
        fresh = int(header[0]) != _MAGIC or (int(header[1]), int(header[2])) != (stride, slots)
        if create and fresh:
            header[_FIELDS:] = 0
            header[:3] = (_MAGIC, stride, slots)
        elif not create:
            _check_layout(name, header, self.mm.size())
        self.stride, self.slots, self.slot_bytes = int(header[1]), int(header[2]), slot_bytes
        self.header = header
        self.gens = header[_FIELDS:]

    def view(self, slot: int, dtype: np.dtype, shape: tuple[int, ...]) -> np.ndarray:
        offset = HEADER_BYTES + slot * self.stride
        count = math.prod(shape)
        return np.frombuffer(self.mm, dtype, count=count, offset=offset).reshape(shape)

    def close(self) -> None:
        self.gens = self.header = None  # type: ignore[assignment]
        with contextlib.suppress(BufferError):  # views still alive: it goes when they do
            self.mm.close()


def _check_foreign(name: str, st: os.stat_result) -> None:
    if not stat.S_ISREG(st.st_mode) or st.st_uid != os.getuid():
        msg = f"{name} is not a frame pool of this user"
        raise TransportError(msg)


def _check_layout(name: str, header: np.ndarray, size: int) -> None:
    stride, slots = int(header[1]), int(header[2])
    ok = int(header[0]) == _MAGIC and stride % ALIGN == 0 and 2 <= slots <= MAX_SLOTS
    if not ok or HEADER_BYTES + stride * slots != size:
        msg = f"{name} is not an rkpipe frame pool"
        raise TransportError(msg)


class FramePool:
    """The producer side: hands out writable slot arrays and publishes them as references.

    Slots are reused least recently handed out first (a slot given back unsent goes first).
    The pool is sized by the supervisor to exceed the number of
    messages the graph can hold in flight downstream, so in normal operation a slot is free
    again before it comes round; the generation check catches anything that holds on longer.
    """

    def __init__(self, prefix: str, slots: int) -> None:
        if not 2 <= slots <= MAX_SLOTS:
            msg = f"pool slots must be between 2 and {MAX_SLOTS}, got {slots}"
            raise ValueError(msg)
        self.prefix = prefix
        self.slots = slots
        self._segments: dict[int, _Segment] = {}
        self._order: dict[int, deque[int]] = {}  # least recently handed out first
        self._owned: dict[int, tuple[weakref.ref, _Segment, int, int]] = {}
        self._lock = threading.Lock()  # a stage thread (overlap) allocates beside the loop

    def alloc(self, shape: tuple[int, ...], dtype: np.dtype | str) -> np.ndarray:
        """A writable array in the next slot of the right size; publish it with ``publish``."""
        with self._lock:
            return self._alloc(shape, np.dtype(dtype))

    def _alloc(self, shape: tuple[int, ...], dt: np.dtype) -> np.ndarray:
        nbytes = math.prod(shape) * dt.itemsize
        seg = self._segments.get(nbytes)
        if seg is None:
            seg = _Segment(f"{self.prefix}-{nbytes}", self.slots, nbytes, create=True)
            self._segments[nbytes] = seg
            # a restart goes on round the ring after the slot written last (highest generation)
            start = (int(np.argmax(seg.gens[: self.slots])) + 1) % self.slots
            self._order[nbytes] = deque([*range(start, self.slots), *range(start)])
        order = self._order[nbytes]
        slot = order.popleft()
        order.append(slot)
        gen = int(seg.gens[slot])
        gen = gen + 1 if gen % 2 == 0 else gen + 2  # odd: being written
        seg.gens[slot] = gen
        arr = seg.view(slot, dt, tuple(shape))
        key = id(arr)
        drop = lambda _r, k=key: self._owned.pop(k, None)  # noqa: E731
        self._owned[key] = (weakref.ref(arr, drop), seg, slot, gen)
        return arr

    def owns(self, arr: np.ndarray) -> bool:
        entry = self._owned.get(id(arr))
        return entry is not None and entry[0]() is arr

    def publish(self, arr: np.ndarray) -> SlotRef:
        """Mark a slot written (generation even) and return its reference. Raises FrameLost
        if the ring came round and handed the slot out again before this array was sent."""
        with self._lock:
            return self._publish(arr)

    def _publish(self, arr: np.ndarray) -> SlotRef:
        _, seg, slot, written = self._owned[id(arr)]
        gen = int(seg.gens[slot])
        if gen not in (written, written + 1):
            raise FrameLost(f"{seg.name} slot {slot} was reused before it was sent")
        if gen == written:
            gen += 1
            seg.gens[slot] = gen
        return SlotRef(seg.name, slot, gen, arr.dtype.str, tuple(arr.shape))

    def release(self, arr: np.ndarray) -> None:
        """Give back an array's slot that was never sent (a dropped camera frame), so the
        next ``alloc`` reuses it instead of advancing the ring."""
        with self._lock:
            entry = self._owned.pop(id(arr), None)
            if entry is not None and entry[0]() is arr:
                _, seg, slot, _ = entry
                order = self._order[seg.slot_bytes]
                order.remove(slot)
                order.appendleft(slot)

    def put(self, arr: np.ndarray) -> SlotRef:
        """Copy an array into the next slot and publish it (one copy, for arrays not made
        with ``alloc``)."""
        dst = self.alloc(arr.shape, arr.dtype)
        np.copyto(dst, arr)
        return self.publish(dst)

    def close(self, unlink: bool = True) -> None:
        for seg in self._segments.values():
            seg.close()
            if unlink:
                seg.path.unlink(missing_ok=True)
        self._segments.clear()
        self._owned.clear()


class PoolReader:
    """The consumer side: maps producers' segments on first use and returns read-only views."""

    def __init__(self, prefix: str = "rkpipe-", max_segments: int = 64) -> None:
        self.prefix = prefix  # only segments named so may be mapped: this run's
        self._segments: dict[str, _Segment] = {}
        self._max = max_segments
        self._views: dict[int, tuple[weakref.ref, SlotRef]] = {}

    def _segment(self, name: str) -> _Segment:
        seg = self._segments.get(name)
        if seg is None:
            if not name.startswith(self.prefix) or not _SEGMENT_NAME.fullmatch(name):
                msg = f"segment {name[:80]!r} is not one of this run's frame pools"
                raise TransportError(msg)
            if len(self._segments) >= self._max:  # drop the oldest mapping (restarted peers)
                old = next(iter(self._segments))
                self._segments.pop(old).close()
            try:
                seg = _Segment(name, 0, 0, create=False)
            except FileNotFoundError as exc:
                raise FrameLost(f"segment {name} is gone") from exc
            self._segments[name] = seg
        return seg

    def is_current(self, ref: SlotRef) -> bool:
        """True while the slot still holds the frame ``ref`` was published with."""
        try:
            seg = self._segment(ref.segment)
        except (FrameLost, TransportError):
            return False
        return 0 <= ref.slot < seg.slots and int(seg.gens[ref.slot]) == ref.gen

    def view(self, ref: SlotRef) -> np.ndarray:
        """A read-only array over the slot; raises FrameLost if it was overwritten, or if the
        reference does not fit the segment (a slot past its end, an array larger than a slot)."""
        seg = self._segment(ref.segment)
        dt = np.dtype(ref.dtype)
        if not 0 <= ref.slot < seg.slots or math.prod(ref.shape) * dt.itemsize > seg.stride:
            msg = f"{ref.segment} slot {ref.slot} does not hold a {list(ref.shape)} array"
            raise TransportError(msg)
        if int(seg.gens[ref.slot]) != ref.gen:
            raise FrameLost(f"{ref.segment} slot {ref.slot} was overwritten")
        arr = seg.view(ref.slot, dt, ref.shape)
        arr.flags.writeable = False
        key = id(arr)

        def forget(_ref: weakref.ref, k: int = key) -> None:
            self._views.pop(k, None)

        self._views[key] = (weakref.ref(arr, forget), ref)
        return arr

    def ref_of(self, arr: np.ndarray) -> SlotRef | None:
        """The reference of an array this reader returned (so it can be forwarded, not copied)."""
        entry = self._views.get(id(arr))
        if entry is not None and entry[0]() is arr:
            return entry[1]
        return None

    def close(self) -> None:
        for seg in self._segments.values():
            seg.close()
        self._segments.clear()
