"""Each camera's retained ``online``/``offline`` (plain strings) and frames per second.

A stream whose source reports its health (``ctx.source_health()``) is ``online`` while the
source says ``live`` and ``offline`` while it is connecting, reconnecting or down; a source
that reports nothing is ``online`` from its first frame. Either way a stream is ``offline``
once it ended, and every stream is when the sink stops. ``poll`` runs about once a second on
the sender thread (the health file is re-read only when it changed), so a camera that sends
no frames at all still shows as offline.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

from stages.sinks.mqtt.discovery import Discovery
from stages.sinks.mqtt.retained import Retained

__all__ = ["CameraStatus"]

FPS_WINDOW_S = 5.0  # fps is measured over, and published at most once per, this long


class CameraStatus:
    """Stream -> online/offline on ``status_topic(stream)`` and fps on ``fps_topic(stream)``
    (either may give "" for none), announced to Home Assistant when ``discovery`` is set;
    ``remember(topic, gone)`` is told each topic set, with its value once nobody keeps it."""

    def __init__(
        self,
        retained: Retained,
        status_topic: Callable[[str], str],
        fps_topic: Callable[[str], str],
        health: Callable[[], dict[str, dict[str, Any]]],
        discovery: Discovery | None = None,
        remember: Callable[[str, str], None] = lambda _topic, _gone: None,
    ) -> None:
        self.retained, self.discovery, self.remember = retained, discovery, remember
        self.status_topic, self.fps_topic, self.health = status_topic, fps_topic, health
        self.lock = threading.Lock()
        self.known: set[str] = set()
        self.ended: set[str] = set()
        self.health_state: dict[str, str] = {}
        self.frames: dict[str, tuple[float, int]] = {}  # stream -> (window start, frames)
        self.last_frame: dict[str, float] = {}
        self.shown: dict[str, str] = {}  # stream -> the status last set

    def frame(self, stream: str) -> None:
        """A frame of ``stream`` reached the sink (while it shows offline, the health is read
        again: frames flowing mean the source is probably live by now)."""
        now = time.monotonic()
        if self.shown.get(stream) != "online":
            self.poll()
        with self.lock:
            self.last_frame[stream] = now
            if stream not in self.known or stream in self.ended:
                self.ended.discard(stream)
                self._announce(stream)
            start, n = self.frames.get(stream, (now, -1))
            n += 1  # frames since ``start``, the first not counted
            if now - start >= FPS_WINDOW_S:
                self._fps(stream, n / (now - start))
                start, n = now, 0
            self.frames[stream] = (start, n)

    def end(self, stream: str) -> None:
        """``stream`` ended: offline, 0 fps."""
        with self.lock:
            self.ended.add(stream)
            self.frames.pop(stream, None)
            self._fps(stream, 0.0)
            self._update(stream)

    def poll(self) -> None:
        """Follow the sources' health; an idle stream's fps falls to 0."""
        health = self.health()
        now = time.monotonic()
        with self.lock:
            for stream, h in health.items():
                state = str(h.get("state", "")) if isinstance(h, dict) else ""
                if self.health_state.get(stream) != state or stream not in self.known:
                    self.health_state[stream] = state
                    self._announce(stream)
            for stream, t in self.last_frame.items():
                if stream in self.frames and now - t > 2 * FPS_WINDOW_S:
                    self.frames.pop(stream)
                    self._fps(stream, 0.0)

    def stop(self) -> None:
        """The sink stops: every stream it knows is offline."""
        with self.lock:
            self.ended.update(self.known)
            for stream in self.known:
                self._update(stream)

    def _announce(self, stream: str) -> None:
        if stream not in self.known:
            self.known.add(stream)
            if self.discovery is not None:
                self.retained.set(*self.discovery.camera(stream, self.status_topic(stream)))
                if self.fps_topic(stream):
                    self.retained.set(*self.discovery.fps(stream, self.fps_topic(stream)))
        self._update(stream)

    def _update(self, stream: str) -> None:
        state = self.health_state.get(stream)
        online = stream not in self.ended and (state is None or state == "live")
        if state is None and stream not in self.last_frame:
            online = False  # neither health nor frames yet
        self.shown[stream] = "online" if online else "offline"
        topic = self.status_topic(stream)
        if topic:
            self.remember(topic, "offline")
            self.retained.set(topic, self.shown[stream])

    def _fps(self, stream: str, fps: float) -> None:
        topic = self.fps_topic(stream)
        if topic:
            self.remember(topic, "0.0")
            self.retained.set(topic, f"{fps:.1f}")
