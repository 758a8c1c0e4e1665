"""What the preview shows, shared between the pipeline thread and the HTTP threads: the newest
frame of each stream (encoded to JPEG on demand, once per frame, for every viewer), the last
events with their snapshots, and each camera's health.

The pipeline thread only copies the newest frame in; a slow viewer skips frames and never
holds up the pipeline.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Any

import cv2
import numpy as np

from pipeline.keys import DETECTIONS_PREFIX, FRAME, META_EVENTS, META_LINES, META_ZONES
from pipeline.messages import Message
from stages.sinks.annotate import RateMeter, annotate

__all__ = ["EVENT_FIELDS", "PreviewHub"]

#: What the page lists of an event (when the event has it); ``snapshot`` becomes a URL.
EVENT_FIELDS = ("id", "type", "stream", "seq", "time", "track_id", "class_name", "line", "zone",
                "direction", "dwell_s")  # fmt: skip


class _Feed:
    """The newest frame of one stream, what is drawn on it, and its JPEG once encoded."""

    def __init__(self) -> None:
        self.version = 0
        self.msg: Message | None = None  # a private copy: frame, detections, lines, zones
        self.meter = RateMeter()
        self.frames = 0
        self.t_last = 0.0
        self.ended = False
        self.jpeg: tuple[int, bytes] | None = None
        self.encoding = threading.Lock()


class PreviewHub:
    """Newest frames by stream, shared between the pipeline thread and the HTTP threads."""

    def __init__(
        self, quality: int = 80, width: int | None = None, draw: bool = True, events: int = 50
    ) -> None:
        self.quality, self.width, self.draw = quality, width, draw
        self.cond = threading.Condition()
        self.feeds: dict[str, _Feed] = {}
        self.events: deque[dict[str, Any]] = deque(maxlen=events)
        self.closed = False

    def publish(self, msg: Message) -> None:
        """Keep a copy of ``msg``'s frame and overlays as the stream's newest frame. A message
        without a frame (a final counts snapshot) only updates the counts of the last one."""
        meta: dict[str, Any] = {k: msg.meta[k] for k in (META_LINES, META_ZONES) if k in msg.meta}
        self.add_events(msg.meta.get(META_EVENTS) or ())
        with self.cond:
            feed = self.feeds.get(msg.stream)
            if msg.frame is None:
                if feed is not None and feed.msg is not None:
                    feed.msg = feed.msg.derive(meta={**feed.msg.meta, **meta})
                    feed.version += 1
                    self.cond.notify_all()
                return
        arrays = {
            k: np.array(v, copy=True)
            for k, v in msg.arrays.items()
            if k.startswith(DETECTIONS_PREFIX)
        }
        arrays[FRAME] = np.array(msg.frame, copy=True)  # outside the lock: the viewers go on
        own = Message(msg.stream, msg.seq, msg.prev, msg.t_capture, msg.t_mono_ns, meta, arrays)
        with self.cond:
            feed = self.feeds.setdefault(msg.stream, _Feed())
            feed.msg, feed.ended = own, False
            feed.version += 1
            feed.frames += 1
            feed.t_last = time.time()
            feed.meter.tick()
            self.cond.notify_all()

    def add_events(self, events: Any) -> None:
        """Keep the listed fields of each event but the periodic counts (newest last)."""
        kept = [
            {k: ev[k] for k in (*EVENT_FIELDS, "snapshot") if k in ev}
            for ev in events
            if isinstance(ev, dict) and ev.get("type") != "counts"
        ]
        if kept:
            with self.cond:
                self.events.extend(kept)

    def recent_events(self) -> list[dict[str, Any]]:
        """The events kept, newest first."""
        with self.cond:
            return list(reversed(self.events))

    def end(self, stream: str) -> None:
        with self.cond:
            if stream in self.feeds:
                self.feeds[stream].ended = True

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_newer(self, stream: str, version: int, timeout: float) -> int | None:
        """The stream's version once it is past ``version`` (or the same after ``timeout``);
        None when the hub is closed or the stream unknown."""
        with self.cond:
            self.cond.wait_for(
                lambda: self.closed or self.feeds[stream].version != version, timeout
            )
            return None if self.closed else self.feeds[stream].version

    def jpeg(self, stream: str) -> tuple[int, bytes] | None:
        """(version, JPEG bytes) of the newest frame, encoded at most once per version."""
        with self.cond:
            feed = self.feeds.get(stream)
            if feed is None or feed.msg is None:
                return None
            version, msg, fps = feed.version, feed.msg, feed.meter.rate()
        with feed.encoding:
            if feed.jpeg is not None and feed.jpeg[0] >= version:
                return feed.jpeg
            frame = msg.frame
            assert frame is not None  # feeds keep only messages with a frame
            img = annotate(frame, msg, fps) if self.draw else frame
            if self.width and img.shape[1] > self.width:
                h = round(img.shape[0] * self.width / img.shape[1])
                img = cv2.resize(img, (self.width, h), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                return None
            feed.jpeg = (version, buf.tobytes())
            return feed.jpeg

    def status(self) -> dict[str, Any]:
        """Per stream: live FPS, last seq, frames seen, line counts and zone occupancy."""
        with self.cond:
            return {name: _stream_status(f) for name, f in sorted(self.feeds.items())}


def _stream_status(feed: _Feed) -> dict[str, Any]:
    msg = feed.msg
    assert msg is not None
    frame = msg.frame
    assert frame is not None  # feeds keep only messages with a frame
    lines = msg.meta.get(META_LINES) or {}
    zones = msg.meta.get(META_ZONES) or {}
    return {
        "fps": round(feed.meter.rate(), 2),
        "seq": msg.seq,
        "frames": feed.frames,
        "objects": len(msg.arrays.get(DETECTIONS_PREFIX + "xyxy", ())),
        "width": int(frame.shape[1]),
        "height": int(frame.shape[0]),
        "age_s": round(time.time() - feed.t_last, 3),
        "ended": feed.ended,
        "lines": {n: {"in": v.get("in", 0), "out": v.get("out", 0)} for n, v in lines.items()},
        "zones": {n: {"occupancy": v.get("occupancy", 0)} for n, v in zones.items()},
    }
