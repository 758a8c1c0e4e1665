"""What ``rkpipe export`` prints: numbered steps with their times, the check figures, the
layers the toolkit's accuracy analysis blames, the remedies, and how to use the result.

Steps print as plain lines (easy to grep in CI logs); on a terminal the simulator's per-image
progress is redrawn in place.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import TextIO

from stages.classes import COCO_NAMES
from stages.infer.rknn_export.build import LayerFigure
from stages.infer.rknn_export.checks import SCORE_SLACK, CutCheck, SimCheck
from stages.infer.rknn_export.surgery import HeadCut
from stages.infer.rknn_export.tensors import HEADER
from stages.infer.rknn_export.verify import MAX_DET

__all__ = [
    "Progress",
    "analysis_lines",
    "cut_lines",
    "graph_lines",
    "hybrid_lines",
    "names_preview",
    "remedy_lines",
    "sim_lines",
]

INDENT = "      "


class Progress:
    """``[k/N] what`` lines, each later closed with the time it took; indented detail lines."""

    def __init__(self, total: int, out: TextIO | None = None) -> None:
        self.total, self.k = total, 0
        self.out = out or sys.stdout
        self.tty = self.out.isatty()
        self.t0 = time.monotonic()
        self.live = False  # a line being redrawn in place

    def step(self, what: str) -> None:
        self._end_live()
        self.k += 1
        self.t0 = time.monotonic()
        print(f"[{self.k}/{self.total}] {what}", file=self.out, flush=True)

    def say(self, *lines: str) -> None:
        self._end_live()
        for line in lines:
            print(f"{INDENT}{line}", file=self.out, flush=True)

    def elapsed(self) -> float:
        return time.monotonic() - self.t0

    def count(self, done: int, total: int, what: str) -> None:
        """``done``/``total`` redrawn in place on a terminal; silent otherwise."""
        if self.tty:
            print(f"\r{INDENT}{done}/{total} {what}", end="", file=self.out, flush=True)
            self.live = True

    def _end_live(self) -> None:
        if self.live:
            print(file=self.out)
            self.live = False


def names_preview(names: tuple[str, ...], limit: int = 6) -> str:
    """The first few class names, for a summary line."""
    shown = ", ".join(names[:limit])
    return shown + (", ..." if len(names) > limit else "")


def cut_lines(info: HeadCut, check: CutCheck) -> list[str]:
    """The cut check: decoded tensors against the original's, then boxes at --conf."""
    lines = [
        f"cut model decoded back to the stock (1, {4 + info.num_classes}, N) output, "
        f"element by element on {check.boxes.images} images:"
    ]
    for t in check.tensors:
        unit = " px" if t.name == "boxes" else ""
        lines.append(f"  {t.name:<7} max abs error {t.max_abs:.3g}{unit}, cosine {t.cosine:.6f}")
    lines.append(f"boxes at conf {check.conf}: {check.boxes.summary()}")
    return lines


def sim_lines(check: SimCheck, names: tuple[str, ...], kind: str, min_cosine: float) -> list[str]:
    """The simulator check: the per-output table, boxes, and label recall per class."""
    lines = [HEADER]
    for o in check.outputs:
        slack = o.name.startswith("cls") and o.cosine < min_cosine and o.max_abs <= SCORE_SLACK
        lines.append(o.row() + ("  (scores near 0 throughout: judged by max abs)" if slack else ""))
    lines.append(f"boxes at conf {check.conf}: {check.boxes.summary()}")
    if check.capped:
        lines.append(
            f"  ({check.capped} images left out: a model reached {MAX_DET} boxes there, a top "
            "of near-equal scores that any difference reorders)"
        )
    if check.labels is not None:
        ref, got = check.labels
        lines.append(f"recall of the labels per class (IoU >= 0.5, conf {check.conf}):")
        for cls, (m, n) in ref.per_class.items():
            g = got.per_class.get(cls, (0, n))[0]
            name = names[cls] if cls < len(names) else str(cls)
            lines.append(f"  {name:<16} float {m / n:.3f} ({m}/{n})  {kind} {g / n:.3f} ({g}/{n})")
    return lines


def _cos(value: float | None) -> str:
    return "-" if value is None else f"{value:.5f}"


def analysis_lines(rows: list[LayerFigure], outputs: tuple[str, ...], count: int = 8) -> list[str]:
    """The layers that lose most alone (single-layer cosine), and each output's accumulated
    cosine, from the toolkit's accuracy analysis."""
    scored = [r for r in rows if r.single is not None and r.op not in ("Input", "exDataConvert")]
    worst = sorted(scored, key=lambda r: r.single or 0.0)[:count]
    lines = ["rknn-toolkit2 accuracy analysis (1 image), layers that lose most on their own:"]
    lines += [
        f"  {r.single:.5f} alone, {_cos(r.entire)} accumulated  {r.layer} ({r.op})" for r in worst
    ]
    ends = {r.layer: r for r in rows if r.layer in outputs}
    if ends:
        figures = ", ".join(f"{name} {_cos(ends[name].entire)}" for name in outputs if name in ends)
        lines.append(f"accumulated cosine at the outputs: {figures}")
    return lines


def remedy_lines(args: argparse.Namespace, calib_source: str) -> list[str]:
    """The known remedies for INT8 loss, those not already in use, best first."""
    lines = ["remedies for INT8 loss, one at a time:"]
    lines.append(
        f"  --calib DIR         more, or more typical, calibration images (now {calib_source}): "
        "50-200 frames like the ones the model will see"
    )
    if args.quant_algo == "normal":
        lines.append("  --quant-algo mmse   slower build, often closer (or kl_divergence)")
    if not args.hybrid:
        lines.append("  --hybrid 4          keep the 4 worst layers above in FP16")
    lines.append("  --no-quantize       FP16 throughout: no INT8 loss, slower on the NPU")
    return lines


def hybrid_lines(chosen: list[LayerFigure]) -> list[str]:
    """The layers a hybrid build kept in FP16, with their INT8 single-layer cosine."""
    lines = [f"kept in FP16 ({len(chosen)} layers; their INT8 single-layer cosine):"]
    lines += [f"  {r.single:.5f}  {r.layer} ({r.op})" for r in chosen]
    return lines


def graph_lines(out: Path, info: HeadCut) -> list[str]:
    """How to run the model: the infer stage's lines, and what goes before and after it."""
    h, w = info.input_hw
    if tuple(n.replace("_", " ") for n in info.names) == COCO_NAMES:
        names = ""  # the decoder's default
    elif info.names == tuple(str(i) for i in range(info.num_classes)):
        names = f", names = [your {info.num_classes} class names]"
    elif len(info.names) <= 20:
        names = f", names = {json.dumps(list(info.names))}"
    else:
        names = f', names = [the {len(info.names)} names under "classes" in the .json]'
    return [
        "use it in a graph (as graphs/three_npu_cores.toml does):",
        "  [stages.npu]",
        '  uses = "infer"',
        f"  model = {json.dumps(str(out.resolve()))}",
        f'after uses = "letterbox" with layout = "nhwc_uint8" (its size, {w}x{h}, comes from '
        f'the model); before uses = "yolov8_decode"{names}',
    ]
