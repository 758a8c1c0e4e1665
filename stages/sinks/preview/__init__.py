"""The ``preview`` sink: a live browser view of every stream, with boxes, ids and counts."""

from __future__ import annotations

from stages.sinks.preview.stage import PreviewSink

__all__ = ["PreviewSink"]
