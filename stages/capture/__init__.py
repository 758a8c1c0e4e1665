"""The ``capture`` stage: video files, network streams, cameras, GStreamer pipelines and
synthetic scenes as a pipeline source (see ``stages.capture.stage``)."""

from __future__ import annotations

from stages.capture.stage import Capture

__all__ = ["Capture"]
