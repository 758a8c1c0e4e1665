"""The message that flows between stages: stream, order, timestamps, metadata and arrays.

Arrays (frames, tensors, detections) travel in shared memory when they are large and inline
when small; a stage sees plain numpy arrays either way.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from .keys import DETECTIONS_PREFIX, FRAME

if TYPE_CHECKING:
    from .detections import Detections

__all__ = ["FRAME", "Message"]


@dataclass
class Message:
    """One unit of work: usually one frame of one stream and everything learned about it.

    ``seq`` orders messages within a stream; ``prev`` is the seq of the message sent before it
    in the same stream (-1 at the start), so gaps left by dropped frames are known downstream.
    ``t_capture`` is wall-clock seconds at capture; ``t_mono_ns`` is the monotonic clock at
    capture, comparable across processes on one host, for latency.
    """

    stream: str
    seq: int
    prev: int = -1
    t_capture: float = field(default_factory=time.time)
    t_mono_ns: int = field(default_factory=time.monotonic_ns)
    meta: dict[str, Any] = field(default_factory=dict)
    arrays: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def frame(self) -> np.ndarray | None:
        """The captured image (H, W, 3) uint8 BGR, or None if this message carries none."""
        return self.arrays.get(FRAME)

    @frame.setter
    def frame(self, value: np.ndarray) -> None:
        self.arrays[FRAME] = value

    @property
    def detections(self) -> Detections | None:
        """The detections found in this frame (parallel arrays), or None if none were made."""
        from .detections import Detections

        return Detections.from_arrays(self.arrays)

    @detections.setter
    def detections(self, value: Detections) -> None:
        for key in [k for k in self.arrays if k.startswith(DETECTIONS_PREFIX)]:
            del self.arrays[key]
        self.arrays.update(value.to_arrays())

    def derive(self, **changes: Any) -> Message:
        """A new message for the same frame position: same stream/seq/times, shallow-copied
        meta and arrays, with ``changes`` applied."""
        out = Message(
            stream=self.stream,
            seq=self.seq,
            prev=self.prev,
            t_capture=self.t_capture,
            t_mono_ns=self.t_mono_ns,
            meta=dict(self.meta),
            arrays=dict(self.arrays),
        )
        for key, value in changes.items():
            setattr(out, key, value)
        return out
