"""The ``video`` sink: annotated recordings per stream, H.264 MP4 that browsers play."""

from __future__ import annotations

from stages.sinks.video.stage import VideoSink

__all__ = ["VideoSink"]
