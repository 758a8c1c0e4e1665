"""A capacity plan for a graph as written: does the NPU keep up with the cameras?

Per inference stage on an NPU backend (rknn, sim): the model's input size, the NPU time per
frame per core (the board's ``board_report.json`` when one is given or found beside the graph
or in the working folder; else the reference figure, 20.5 ms for YOLOv8n at 640x640 on one
RK3588 core, scaled by pixels: an estimate), the frames per second the live sources upstream
offer (their ``fps``, else 30 assumed), whether that fits the cores, the FPS per stream to
expect and the share dropped at the sources when it does not, and what would make it fit:
a rectangular model for 16:9 cameras, another runtime per core, an ``fps`` cap on the cameras.
The plan assumes the NPU is the limit; the CPU work per frame is not in it.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.infer.input_size import model_input_size

__all__ = ["REFERENCE_MS", "CapacityPlan", "capacity_plan", "capacity_plans", "plan_lines"]

REFERENCE_MS = 20.5  # YOLOv8n INT8 640x640, one RK3588 core, from Python
REFERENCE_PIXELS = 640 * 640
ASSUMED_FPS = 30.0  # a live source without an fps: what most cameras send
RECT = (640, 384)  # the rectangular input 16:9 frames letterbox into at 640 wide


@dataclass
class CapacityPlan:
    """One inference stage's plan; ``fixes`` is empty when it fits."""

    stage: str
    backend: str
    input_wh: tuple[int, int]
    ms_per_frame: float
    ms_source: str
    cores: int
    runtimes: int
    streams: int
    live: int
    offered_fps: float
    assumed_fps: int  # live sources without an fps (30 assumed)
    fixes: list[str] = field(default_factory=list)

    @property
    def capacity_fps(self) -> float:
        return self.cores * 1000.0 / self.ms_per_frame

    @property
    def fits(self) -> bool:
        return self.offered_fps <= self.capacity_fps

    @property
    def stream_fps(self) -> float:
        """Expected delivered FPS per live stream (an even share when over capacity)."""
        if not self.live:
            return self.capacity_fps / max(self.streams, 1)
        return min(self.offered_fps, self.capacity_fps) / self.live

    @property
    def dropped(self) -> float:
        """Share of the offered frames dropped at the sources."""
        return 0.0 if self.fits else 1.0 - self.capacity_fps / self.offered_fps

    def summary(self) -> str:
        """One line, for ``rkpipe validate``."""
        w, h = self.input_wh
        verdict = (
            "fits"
            if self.fits
            else f"OVER capacity: {self.stream_fps:.1f} FPS per stream, {self.dropped:.0%} dropped"
        )
        offered = f"{self.offered_fps:g} FPS offered" if self.live else "sources not live"
        return (
            f"plan {self.stage}: {w}x{h}, {self.ms_per_frame:.1f} ms per frame per core "
            f"({self.ms_source}), {self.cores} core(s) -> {self.capacity_fps:.0f} FPS; "
            f"{offered}: {verdict}"
        )


def _board_ms(report: dict[str, Any], wh: tuple[int, int]) -> tuple[float, str] | None:
    """NPU ms per frame per core at ``wh`` from a board report: measured at that size, else
    the 640x640 figure scaled by pixels; None for a report of the sim or without figures."""
    if report.get("backend") != "rknn":
        return None
    sizes = report.get("input_sizes") or {}
    measured = (sizes.get("ms") or {}).get(f"{wh[0]}x{wh[1]}")
    if isinstance(measured, (int, float)) and measured > 0:
        return float(measured), f"measured at {wh[0]}x{wh[1]} on the board"
    per_core = [r["ms"] for r in report.get("inference", []) if r.get("ms")]
    if not per_core:
        return None
    ms = sum(per_core) / len(per_core) * wh[0] * wh[1] / REFERENCE_PIXELS
    return ms, "the board's 640x640 figure scaled by pixels"


def _sources_upstream(stages: dict[str, Any], name: str) -> list[str]:
    seen: set[str] = set()
    todo = list(stages[name].common.inputs)
    while todo:
        s = todo.pop()
        if s in stages and s not in seen:
            seen.add(s)
            todo.extend(stages[s].common.inputs)
    return [s for s in stages if s in seen and stages[s].is_source]


def _live_fps(sdef: Any) -> tuple[bool, float | None]:
    """Whether a source stage is live, and the FPS its options set (None: unknown)."""
    config = sdef.config
    live = getattr(config, "live", None)
    if live is None:  # capture: streams and cameras are live by default
        from stages.capture.opener import parse_source

        try:
            live = parse_source(config.source).kind.live_by_default
        except Exception:
            live = False
    fps = getattr(config, "fps", None)
    return bool(live), (float(fps) if fps else None)


def _fixes(plan: CapacityPlan, per_core: list[int], rect: float | None) -> list[str]:
    """What would make an over-capacity plan fit, each with its figure (``rect``: the
    board's measured ms at 640x384, if any)."""
    out = []
    w, h = plan.input_wh
    if (w, h) == (640, 640):
        rect_ms = rect or plan.ms_per_frame * RECT[0] * RECT[1] / (w * h)
        rect_fps = plan.cores * 1000 / rect_ms
        fit = "fits" if plan.offered_fps <= rect_fps else "still short"
        out.append(
            f"a rectangular model for 16:9 cameras: rkpipe export MODEL.onnx --imgsz 640x384 "
            f"(about {rect_ms:.1f} ms, {rect_fps:.0f} FPS: {fit})"
        )
    if per_core and min(per_core) < 2:
        out.append(
            "another runtime per core (npu_cores listing each core twice) keeps each core "
            "busy while the other copies"
        )
    if plan.live:
        cap = math.floor(plan.capacity_fps / plan.live)
        out.append(f"cap the cameras at fps = {cap} each ({cap * plan.live} FPS offered)")
    return out


def _read_report(path: Path | None) -> dict[str, Any] | None:
    if path is None or not path.is_file():
        return None
    try:
        doc = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def capacity_plans(graph: Any, board_report: Path | None = None) -> list[CapacityPlan]:
    """A plan per inference stage on an NPU backend (rknn, sim) of a loaded graph."""
    plans = (capacity_plan(graph, name, board_report) for name in graph.stages)
    return [p for p in plans if p is not None]


def capacity_plan(graph: Any, name: str, board_report: Path | None) -> CapacityPlan | None:
    """The plan of inference stage ``name``; None when it is not on an NPU backend."""
    from stages.infer.stage import InferConfig

    report = _read_report(board_report)
    config = graph.stages[name].config
    if not isinstance(config, InferConfig) or config.resolved_backend not in ("rknn", "sim"):
        return None
    path = (graph.graph_dir / Path(config.model).expanduser()).resolve()
    wh = model_input_size(config.model, config.resolved_backend, path) or _fed_size(graph, name)
    scale = wh[0] * wh[1] / REFERENCE_PIXELS
    if config.resolved_backend == "sim":
        ms, why = config.sim_ms * scale, "the sim's sim_ms scaled by pixels"
    elif report is not None and (board := _board_ms(report, wh)) is not None:
        ms, why = board
    else:
        ms = REFERENCE_MS * scale
        why = "reference 20.5 ms at 640x640" + (" scaled by pixels" if scale != 1 else "")
        why += ", an estimate"
    per_core = [config.npu_cores.count(c) for c in sorted(set(config.npu_cores))]
    sources = _sources_upstream(graph.stages, name)
    live_fps = [
        fps for is_live, fps in map(_live_fps, (graph.stages[s] for s in sources)) if is_live
    ]
    plan = CapacityPlan(
        stage=name,
        backend=config.resolved_backend,
        input_wh=wh,
        ms_per_frame=ms,
        ms_source=why,
        cores=len(per_core),
        runtimes=len(config.npu_cores),
        streams=len(sources),
        live=len(live_fps),
        offered_fps=sum(f or ASSUMED_FPS for f in live_fps),
        assumed_fps=sum(f is None for f in live_fps),
    )
    if not plan.fits:
        rect = _board_ms(report, RECT) if report is not None else None
        measured = rect[0] if rect and rect[1].startswith("measured") else None
        plan.fixes = _fixes(plan, per_core, measured if plan.backend == "rknn" else None)
    return plan


def _fed_size(graph: Any, name: str) -> tuple[int, int]:
    """The letterbox size feeding ``name`` when the model does not say (else 640x640)."""
    for inp in graph.stages[name].common.inputs:
        wh = getattr(graph.stages[inp].config, "wh", None)
        if wh is not None:
            return tuple(wh)
    return (640, 640)


def plan_lines(plan: CapacityPlan) -> list[str]:
    """One stage's plan as ``rkpipe graph --plan`` prints it."""
    p = plan
    w, h = p.input_wh
    lines = [
        f"stage {p.stage} ({p.backend}): model input {w}x{h}",
        f"  NPU time per frame per core: {p.ms_per_frame:.1f} ms ({p.ms_source})",
        f"  {p.cores} core(s), {p.runtimes} runtime(s): capacity {p.capacity_fps:.1f} FPS",
    ]
    if p.live:
        assumed = f" ({p.assumed_fps} without an fps: {ASSUMED_FPS:g} assumed)"
        lines.append(
            f"  offered: {p.live} live stream(s), {p.offered_fps:g} FPS in all, "
            f"{p.offered_fps / p.live:.1f} per stream" + (assumed if p.assumed_fps else "")
        )
    else:
        lines.append(f"  offered: {p.streams} stream(s), not live: paced by the pipeline")
    if p.fits:
        share = p.offered_fps / p.capacity_fps
        lines.append(
            f"  fits: {share:.0%} of capacity; expected {p.stream_fps:.1f} FPS per stream, "
            "none dropped"
        )
    else:
        lines.append(
            f"  does NOT fit: expected {p.stream_fps:.1f} FPS per stream, "
            f"{p.dropped:.0%} of the frames dropped at the sources"
        )
        lines += ["  would fit with:", *(f"    - {f}" for f in p.fixes)]
    return lines
