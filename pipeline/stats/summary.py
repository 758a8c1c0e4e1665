"""The lines a run prints when it ends: per stage figures, the delivery check per stream and
sink, how each camera fared, and a hint when sources dropped most of their frames."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ..accounting.delivery import summary_lines

__all__ = ["final_lines", "never_live_why", "silent_sources"]


def final_lines(stats: dict[str, Any]) -> list[str]:
    """Everything the end-of-run summary says, for stderr."""
    lines = [f"rkpipe: {stats['pipeline']} ran {stats['active_s']:.1f}s"]
    for name, s in stats["stages"].items():
        lat = s["latency_ms"]
        p50 = f"{lat['p50']:.1f}" if lat["p50"] is not None else "-"
        p99 = f"{lat['p99']:.1f}" if lat["p99"] is not None else "-"
        counts = f"in {s['frames_in']:>7} out {s['frames_out']:>7} {s['fps']:7.1f} fps"
        lines.append(f"  {name:<14} {counts}  latency p50 {p50} p99 {p99} ms  drops {s['drops']}")
    if stats.get("streams"):
        verdict = "exact" if stats.get("exact") else "NOT exact"
        lines.append(f"rkpipe: delivery ({verdict}: every frame delivered once or counted once):")
        lines += summary_lines({"streams": stats["streams"]})
    lines += _camera_lines(stats.get("health", {}))
    lines += _output_lines(stats.get("outputs", {}))
    hint = bottleneck_hint(stats)
    if hint:
        lines.append(f"rkpipe: hint: {hint}")
    return lines


def _camera_lines(health: dict[str, dict[str, Any]]) -> list[str]:
    """How each camera fared, when it was not live throughout."""
    out = []
    for stream, h in sorted(health.items()):
        outages, down = int(h.get("outages", 0)), float(h.get("down_s", 0.0))
        if not h.get("ever_live", True):
            out.append(f"rkpipe: {stream} was never live: {never_live_why(h)}")
            continue
        if not outages:
            continue
        minutes, seconds = divmod(round(down), 60)
        took = f"{minutes} m {seconds} s" if minutes else f"{seconds} s"
        ended = "" if h.get("state") == "live" else f"; at the end {h['state']}"
        detail = f" ({h['detail']})" if h.get("detail") and ended else ""
        out.append(
            f"rkpipe: {stream} was down {took} in {outages} outage{'s' * (outages != 1)}"
            f"{ended}{detail}"
        )
    return out


def never_live_why(h: dict[str, Any]) -> str:
    """Why a camera that was never live was not: its last state and what it said."""
    detail = str(h.get("detail") or "no frames")
    return f"{h.get('state', 'down')} at the end ({detail})"


def silent_sources(stats: dict[str, Any]) -> list[str]:
    """An error line for each source that produced no frame at all in a run that started
    (a camera that accepts and sends nothing, or refuses): such a run did not do its job.
    A source a reload removed before its first frame did nothing wrong."""
    out = []
    removed = set(stats.get("removed", []))
    for stream, entry in stats.get("streams", {}).items():
        if entry.get("produced", 0) == 0 and stream not in removed:
            h = stats.get("health", {}).get(stream)
            why = f": camera never live, {never_live_why(h)}" if h else ""
            out.append(f"{stream}: produced no frames{why}")
    return out


def _output_lines(outputs: dict[str, dict[str, str]]) -> list[str]:
    """Where each stage wrote (paths relative to here when they are below it)."""
    here = Path.cwd()
    out = []
    for stage, keys in outputs.items():
        for key, path in keys.items():
            p = Path(path)
            shown = p.relative_to(here) if p.is_relative_to(here) else p
            out.append(f"rkpipe: {stage} wrote {shown} ({key})")
    return out


def bottleneck_hint(stats: dict[str, Any]) -> str | None:
    """When live sources dropped most of what they offered: which stage could not keep up."""
    offered = dropped = 0.0
    for entry in stats.get("streams", {}).values():
        offered += entry.get("produced", 0)
        dropped += entry.get("dropped_at_source", {}).get("live_overflow", 0)
    if offered == 0 or dropped / offered < 0.5:
        return None
    stages = stats["stages"]
    busiest = max(stages, key=lambda n: stages[n].get("busy", 0.0))
    active = max(stats.get("active_s", 0.0), 1e-6)
    return (
        f"sources dropped {dropped / offered:.0%} of their frames: {busiest} is the bottleneck "
        f"({stages[busiest]['fps']:.1f} fps for {offered / active:.1f} offered, "
        f"busy {stages[busiest].get('busy', 0):.0%}); add replicas or NPU cores to it, or "
        "lower the sources' fps"
    )
