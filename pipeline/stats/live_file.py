"""The run's live figures shared with its stages: the supervisor replaces ``live.json`` in
the run folder at each stats tick (what the live view shows, per stage instance), so a sink
that serves an API (the preview's ``GET /api/stats``) can answer without asking anyone."""

from __future__ import annotations

from typing import Any

from ..health import HealthFile
from .report import Snapshot

__all__ = ["LiveFile", "snapshot_json"]


class LiveFile(HealthFile):
    """``<run folder>/live.json``: see :func:`snapshot_json`; replaced in one step."""

    NAME = "live.json"


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def snapshot_json(snap: Snapshot) -> dict[str, Any]:
    """The live figures as plain JSON: per stage instance its state, rates and counts; per
    stream the frames delivered at the sinks and their rate."""
    return {
        "pipeline": snap.pipeline,
        "run_s": round(snap.run_s, 2),
        "sink_fps": round(snap.sink_fps, 2),
        "streams": {
            s: {"delivered": n, "fps": round(snap.stream_fps.get(s, 0.0), 2)}
            for s, n in sorted(snap.streams.items())
        },
        "stages": [
            {
                "stage": r.stage,
                "instance": r.instance,
                "state": r.state,
                "frames_in": r.frames_in,
                "frames_out": r.frames_out,
                "fps_in": round(r.fps_in, 2),
                "fps_out": round(r.fps_out, 2),
                "cpu_percent": round(r.cpu_percent, 1),
                "latency_p50_ms": _round(r.p50_ms),
                "latency_p99_ms": _round(r.p99_ms),
                "drops": dict(r.drops),
                "queue_depth": r.queue_depth,
                "restarts": r.restarts,
            }
            for r in snap.rows
        ],
    }
