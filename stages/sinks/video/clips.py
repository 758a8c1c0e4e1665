"""Event clips: an MP4 of ``before_s`` seconds before an event to ``after_s`` seconds after it,
cut from the recording's own H.264 packets (no second encoder).

Each stream keeps a ring of its latest encoded packets. At an event, a clip opens at the last
keyframe at least ``before_s`` before it, takes the ring from there and every packet that
follows until ``after_s`` past the event; an event while a clip is open extends it. Clips are
named after their first event (``stages/event_files.py``) and pruned by count and age.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from pipeline.output_files import DEFAULT_MODES, Modes, make_folder
from stages.event_files import event_file, prune

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
    data: bytes


class ClipRecorder:
    """One stream's clips, fed every packet its recording's encoder makes (``packet``) and
    the events of each frame written (``events``)."""

    def __init__(
        self,
        options: ClipOptions,
        template: Any,
        rate: Fraction,
        modes: Modes = DEFAULT_MODES,
    ) -> None:
        self.options = options
        self.modes = modes
        self.template = template  # the recording's stream: codec and its parameters
        self.rate = rate
        self.before = round(options.before_s * rate)
        self.after = round(options.after_s * rate)
        self.ring: deque[_Packet] = deque()
        self.span = self.before + round(2 * rate)  # + a keyframe interval's worth, at least
        self.clip: Any = None  # (container, stream, descriptor) while a clip is open
        self.start = self.end = 0
        self.keyed = False  # the open clip has its first keyframe
        self.written: list[Path] = []

    def events(self, frame: int, events: Iterable[Mapping[str, Any]]) -> None:
        """Frame ``frame`` (0-based, in the recording) carried ``events``."""
        wanted = [e for e in events if e.get("type") in self.options.types and "track_id" in e]
        if not wanted:
            return
        if self.clip is not None:
            self.end = max(self.end, frame + self.after)
            return
        self._open(wanted[0], frame)

    def packet(self, packet: Any) -> None:
        """An encoded packet of the recording, before it is muxed there."""
        pts = round(packet.pts * packet.time_base * self.rate)
        item = _Packet(pts, bool(packet.is_keyframe), bytes(packet))
        self.ring.append(item)
        while self.ring and self.ring[0].pts < pts - self.span:
            self.ring.popleft()
        if self.clip is not None:
            self._mux(item)
            if pts >= self.end:
                self.close()

    def _open(self, event: Mapping[str, Any], frame: int) -> None:
        from stages.sinks.video.encoders import open_av

        path = Path(self.options.dir) / event_file(event, ".mp4")
        make_folder(path.parent, self.modes)
        keys = [p for p in self.ring if p.key and p.pts <= frame - self.before]
        first = keys[-1] if keys else next((p for p in self.ring if p.key), None)
        container, fd = open_av(path, self.modes, {"movflags": "+faststart"})
        self.clip = (container, container.add_stream_from_template(self.template), fd)
        self.start = first.pts if first is not None else frame
        self.end = frame + self.after
        self.keyed = False
        self.written.append(path)
        for p in [p for p in self.ring if first is not None and p.pts >= first.pts]:
            self._mux(p)

    def _mux(self, item: _Packet) -> None:
        import av

        if item.pts < self.start or not (self.keyed or item.key):
            return  # a clip starts at a keyframe, or it cannot be decoded
        self.keyed = True
        container, stream, _ = self.clip
        packet = av.Packet(item.data)
        packet.pts = packet.dts = item.pts - self.start  # no B-frames: decode order is time
        packet.time_base = 1 / self.rate
        packet.is_keyframe = item.key
        packet.stream = stream
        container.mux(packet)

    def close(self) -> None:
        """Finish the open clip, if any (the end of the stream cuts it short)."""
        if self.clip is not None:
            self.clip[0].close()
            os.close(self.clip[2])
            self.clip = None
        prune(Path(self.options.dir), self.options.keep, self.options.max_age_h * 3600, ".mp4")
