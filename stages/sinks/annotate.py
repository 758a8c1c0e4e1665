"""Overlays shared by the video and preview sinks and the event snapshots: boxes with class
and track id, counting lines with live in/out totals, zones with occupancy, and a header with
stream, seq and FPS (or, on a snapshot, what happened).

Drawing goes into a copy: ``msg.frame`` is a read-only view of another process's shared
memory. Overlay metadata follows the event contract (``meta["lines"]``, ``meta["zones"]``);
an item of the wrong shape is skipped rather than stopping the sink.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any

import cv2
import numpy as np

from pipeline.detections import Detections
from pipeline.messages import Message
from stages.classes import COCO_NAMES

__all__ = ["RateMeter", "annotate", "annotate_event", "color_for"]

# distinct BGR colours, cycled by track id (or class id when untracked)
_PALETTE = [
    (75, 180, 60), (48, 130, 245), (200, 130, 0), (25, 225, 255), (180, 30, 145),
    (240, 240, 70), (230, 50, 240), (60, 245, 210), (190, 190, 250), (128, 128, 0),
    (255, 190, 220), (40, 110, 170), (200, 250, 255), (0, 0, 128), (195, 255, 170),
]  # fmt: skip
_LINE_COLOR = (0, 215, 255)
_ZONE_COLOR = (255, 160, 40)
_FONT = cv2.FONT_HERSHEY_SIMPLEX


def color_for(key: int) -> tuple[int, int, int]:
    """A stable colour for a track or class id."""
    return _PALETTE[int(key) % len(_PALETTE)]


class RateMeter:
    """Messages per second over the last ``window_s`` seconds; falls to 0 when they stop."""

    def __init__(self, window_s: float = 2.0) -> None:
        self.window_s = window_s
        self.times: deque[float] = deque()

    def tick(self, now: float | None = None) -> None:
        self.times.append(time.monotonic() if now is None else now)

    def rate(self, now: float | None = None) -> float:
        now = time.monotonic() if now is None else now
        while self.times and now - self.times[0] > self.window_s:
            self.times.popleft()
        if len(self.times) < 2:
            return 0.0
        return (len(self.times) - 1) / max(now - self.times[0], 1e-6)


def annotate(
    frame: np.ndarray,
    msg: Message,
    fps: float | None = None,
    class_names: Sequence[str] = COCO_NAMES,
) -> np.ndarray:
    """A copy of ``frame`` with the message's detections, lines, zones and a header drawn."""
    out = np.array(frame, dtype=np.uint8, copy=True, order="C")
    s = _Style(out.shape)
    _draw_zones(out, msg.meta.get("zones"), s)
    _draw_lines(out, msg.meta.get("lines"), s)
    dets = msg.detections
    if dets is not None and len(dets):
        _draw_detections(out, dets, class_names, s)
    head = f"{msg.stream}  seq {msg.seq}" + (f"  {fps:.1f} fps" if fps is not None else "")
    _label(out, head, (0, 0), (32, 32, 32), s, anchor="top")
    return out


def annotate_event(
    frame: np.ndarray,
    caption: str,
    box: Sequence[float] | None = None,
    label: str = "",
    key: int = 0,
    lines: Mapping[str, Any] | None = None,
    zones: Mapping[str, Any] | None = None,
) -> np.ndarray:
    """A copy of ``frame`` for an event snapshot: the event's line or zone, the object's
    ``box`` with ``label`` (coloured by ``key``, its track id), and ``caption`` on top."""
    out = np.array(frame, dtype=np.uint8, copy=True, order="C")
    s = _Style(out.shape)
    _draw_zones(out, zones, s)
    _draw_lines(out, lines, s)
    if box is not None:
        _draw_box(out, box, label, color_for(key), s)
    _label(out, caption, (0, 0), (32, 32, 32), s, anchor="top")
    return out


class _Style:
    """Font scale and thicknesses that stay readable from 320 px to 4K frames."""

    def __init__(self, shape: tuple[int, ...]) -> None:
        k = max(shape[0], shape[1]) / 1000
        self.font = max(0.4, 0.55 * k)
        self.text = max(1, round(1.3 * k))
        self.thick = max(2, round(2.5 * k))
        self.pad = max(3, round(4 * k))


def _label(
    img: np.ndarray,
    text: str,
    at: tuple[int, int],
    bg: tuple[int, int, int],
    s: _Style,
    anchor: str = "above",
) -> None:
    """Text on a filled box; ``anchor="above"`` puts it just over ``at``, "top" just under."""
    (w, h), base = cv2.getTextSize(text, _FONT, s.font, s.text)
    x = int(np.clip(at[0], 0, max(0, img.shape[1] - w - 2 * s.pad)))
    top = at[1] - h - base - 2 * s.pad if anchor == "above" else at[1]
    y = int(np.clip(top, 0, max(0, img.shape[0] - h - base - 2 * s.pad)))
    cv2.rectangle(img, (x, y), (x + w + 2 * s.pad, y + h + base + 2 * s.pad), bg, -1)
    fg = (0, 0, 0) if sum(bg) > 450 else (255, 255, 255)
    cv2.putText(img, text, (x + s.pad, y + s.pad + h), _FONT, s.font, fg, s.text, cv2.LINE_AA)


def _draw_detections(img: np.ndarray, dets: Detections, names: Sequence[str], s: _Style) -> None:
    for box, conf, cls, tid in zip(
        dets.xyxy, dets.confidence, dets.class_id, dets.tracker_id, strict=True
    ):
        name = names[cls] if 0 <= cls < len(names) else str(int(cls))
        text = f"{name} #{tid} {conf:.2f}" if tid >= 0 else f"{name} {conf:.2f}"
        _draw_box(img, box.tolist(), text, color_for(tid if tid >= 0 else cls), s)


def _draw_box(
    img: np.ndarray, box: Sequence[float], text: str, color: tuple[int, int, int], s: _Style
) -> None:
    x1, y1, x2, y2 = (round(float(v)) for v in box)
    cv2.rectangle(img, (x1, y1), (x2, y2), color, s.thick)
    _label(img, text, (x1, y1), color, s)


def _point(p: Any) -> tuple[int, int]:
    return round(float(p[0])), round(float(p[1]))


def _draw_lines(img: np.ndarray, lines: Any, s: _Style) -> None:
    if not isinstance(lines, Mapping):
        return
    for name, line in lines.items():
        try:
            a, b = _point(line["a"]), _point(line["b"])
        except (KeyError, TypeError, ValueError, IndexError):
            continue
        cv2.line(img, a, b, _LINE_COLOR, s.thick, cv2.LINE_AA)
        for p in (a, b):
            cv2.circle(img, p, s.thick * 2, _LINE_COLOR, -1, cv2.LINE_AA)
        mid = ((a[0] + b[0]) // 2, (a[1] + b[1]) // 2)
        text = f"{name}  in {line.get('in', 0)}  out {line.get('out', 0)}"
        _label(img, text, mid, _LINE_COLOR, s)


def _draw_zones(img: np.ndarray, zones: Any, s: _Style) -> None:
    if not isinstance(zones, Mapping):
        return
    for name, zone in zones.items():
        try:
            poly = np.asarray(zone["polygon"], np.float64).round().astype(np.int32)
        except (KeyError, TypeError, ValueError):
            continue
        if poly.ndim != 2 or poly.shape[1] != 2 or len(poly) < 3:
            continue
        x, y, w, h = cv2.boundingRect(poly)
        x0, y0 = max(x, 0), max(y, 0)
        x1, y1 = min(x + w, img.shape[1]), min(y + h, img.shape[0])
        if x1 > x0 and y1 > y0:  # tint the inside, touching only the zone's bounding box
            roi = img[y0:y1, x0:x1]
            fill = roi.copy()
            cv2.fillPoly(fill, [poly - (x0, y0)], _ZONE_COLOR)
            cv2.addWeighted(fill, 0.25, roi, 0.75, 0, dst=roi)
        cv2.polylines(img, [poly], True, _ZONE_COLOR, s.thick, cv2.LINE_AA)
        top = tuple(poly[np.argmin(poly[:, 1])])
        _label(img, f"{name}: {zone.get('occupancy', 0)}", top, _ZONE_COLOR, s)
