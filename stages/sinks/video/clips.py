"""Event clips: an MP4 of ``before_s`` seconds before an event to ``after_s`` seconds after it,
cut from the recording's own H.264 samples (no second encoder), written as fragmented MP4
like the recording.

Each stream keeps a ring of its latest encoded packets. At an event, a clip opens at the last
keyframe at least ``before_s`` before it (or the oldest kept, near a recording's start),
takes the ring from there and every packet that
follows until ``after_s`` past the event; an event while a clip is open extends it. Clips are
named after their first event (``stages/event_files.py``) and pruned by count and age.
"""

from __future__ import annotations

import contextlib
import errno
import itertools
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.output_files import DEFAULT_MODES, Modes, make_folder
from stages.event_files import event_file, prune
from stages.sinks.video.fmp4 import FragmentFile, InitSegment

__all__ = ["ClipOptions", "ClipRecorder"]

OBJECT_EVENTS = ("line_crossing", "zone_enter", "zone_exit")


class ClipOptions(BaseModel):
    """The video sink's ``clips`` option."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: str = Field("out/clips", description="folder (relative: the working directory)")
    before_s: float = Field(5.0, ge=0, le=60, description="seconds kept before an event")
    after_s: float = Field(5.0, ge=0, le=600, description="seconds recorded after it")
    types: list[str] = Field(list(OBJECT_EVENTS), description="event types that make a clip")
    keep: int = Field(200, ge=1, description="newest clips kept in the folder")
    max_age_h: float = Field(168.0, ge=0, description="older ones are deleted; 0: no limit")


@dataclass
class _Packet:
    pts: int  # in frames
    key: bool
    data: bytes  # the sample as MP4 holds it


class ClipRecorder:
    """One stream's clips, fed every sample its recording writes (``packet``) and the events
    of each frame written (``events``). A clip is written as the recording is, a fragment
    per frame (``fmp4``), so a killed process leaves it playable too. A write that fails (a
    full disk) is kept in ``error`` for the sink to count (it then asks the encoder for a
    keyframe); the clip goes on at the next keyframe once there is space again."""

    def __init__(
        self,
        options: ClipOptions,
        header: Callable[[], InitSegment | None],
        rate: Fraction,
        modes: Modes = DEFAULT_MODES,
    ) -> None:
        self.options = options
        self.modes = modes
        self.header = header  # the recording's MP4 header, known from its first sample on
        self.rate = rate
        self.before = round(options.before_s * rate)
        self.after = round(options.after_s * rate)
        self.ring: deque[_Packet] = deque()
        self.clip: FragmentFile | None = None
        self.start = self.end = 0
        self.written: list[Path] = []
        self.error: OSError | None = None  # the latest failed write, until the sink takes it

    def events(self, frame: int, events: Iterable[Mapping[str, Any]]) -> None:
        """Frame ``frame`` (0-based, in the recording, already given to ``packet``) carried
        ``events``."""
        wanted = [e for e in events if e.get("type") in self.options.types and "track_id" in e]
        if not wanted:
            return
        if self.clip is not None:
            self.end = max(self.end, frame + self.after)
            return
        self._open(wanted[0], frame)

    def packet(self, pts: int, key: bool, data: bytes) -> None:
        """A sample of the recording (``pts`` in frames), once it is in the recording."""
        item = _Packet(pts, key, data)
        self.ring.append(item)
        limit = pts - self.before  # the ring keeps the last keyframe at or before this
        while len(self.ring) > 1 and self.ring[0].pts < limit:
            later = itertools.islice(self.ring, 1, None)
            if self.ring[0].key and not any(p.key and p.pts <= limit for p in later):
                break
            self.ring.popleft()
        if self.clip is not None:
            self._mux(item)
            if pts >= self.end:
                self.close()

    def take_error(self) -> OSError | None:
        """The latest failed write since the last call, if any."""
        error, self.error = self.error, None
        return error

    def _open(self, event: Mapping[str, Any], frame: int) -> None:
        init = self.header()
        # the keyframe at least before_s back; else the oldest one kept (a recording that
        # began less than before_s ago begins there); else the clip starts at the next one
        keys = [p for p in self.ring if p.key and p.pts <= frame - self.before]
        first = keys[-1] if keys else next((p for p in self.ring if p.key), None)
        path = Path(self.options.dir) / event_file(event, ".mp4")
        try:
            make_folder(path.parent, self.modes)
            self.clip = FragmentFile(path, self.rate, self.modes)
        except OSError as exc:
            self.error = exc
            return
        self.clip.need_key = True  # a clip starts at a keyframe, or it cannot be decoded
        self.start = first.pts if first is not None else -1
        self.end = frame + self.after
        self.written.append(path)
        if init is None:
            return
        for p in list(self.ring):
            if first is not None and p.pts >= first.pts:
                self._mux(p)
        if self.ring and self.ring[-1].pts >= self.end:  # after_s = 0: the event's frame ends it
            self.close()

    def _mux(self, item: _Packet) -> None:
        init = self.header()
        if self.clip is None or init is None or item.pts < self.start:
            return
        if self.start < 0:
            if not item.key:
                return
            self.start = item.pts
        try:
            if not self.clip.append(init, item.pts - self.start, item.data, item.key):
                self.error = OSError(errno.EAGAIN, "the clip waits for a keyframe after a lost one")
        except OSError as exc:  # cut off again: the clip goes on at the next keyframe
            self.error = exc

    def close(self) -> None:
        """Finish the open clip, if any (the end of the stream cuts it short)."""
        if self.clip is not None:
            try:
                self.clip.finish()
            except OSError as exc:
                self.error = exc
            self.clip = None
        with contextlib.suppress(OSError):  # pruning is tried again at the next clip
            prune(Path(self.options.dir), self.options.keep, self.options.max_age_h * 3600, ".mp4")
