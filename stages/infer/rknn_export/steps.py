"""The export, step by step: cut, check the cut, build, simulate, compare, and write the
``.rknn`` with its sidecar.

The cheap steps (load, cut, ONNX Runtime check) run before the toolkit is even looked for,
so a wrong model fails in seconds with a message about the model. Every check runs on the
user's images (``--calib``), else on built-in street scenes.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stages.infer.rknn_export import report
from stages.infer.rknn_export.build import BuildJob, BuildResult, run_build
from stages.infer.rknn_export.build_rknn import DISABLED_RULES
from stages.infer.rknn_export.calibration import UsageError, write_calibration
from stages.infer.rknn_export.checks import SCORE_SLACK, SimCheck, check_cut, check_sim
from stages.infer.rknn_export.labels import read_labels
from stages.infer.rknn_export.resize import resize_input
from stages.infer.rknn_export.surgery import cut_heads, input_size_of, load_onnx
from stages.infer.rknn_export.toolkit_env import require_toolkit
from stages.infer.rknn_export.verify import sim_outputs
from stages.infer.rknn_sidecar import write_sidecar

__all__ = ["export_model"]

CUT_CHECK_IMAGES = 4  # of the calibration images, for the cut-vs-original check
STEPS = 5


@dataclass
class _SimVerdict:
    """The simulator check, filled in while the toolkit waits for the answer."""

    check: SimCheck | None = None
    failures: list[str] = field(default_factory=list)


def _mode(args: argparse.Namespace) -> str:
    if args.no_quantize:
        return "fp16"
    return "hybrid" if args.hybrid else "int8"


class _Export:
    """One export's state: the progress printer, the cut, the images, the verdict."""

    def __init__(self, source: Path, out: Path, workdir: Path, args: argparse.Namespace):
        self.source, self.out, self.workdir, self.args = source, out, workdir, args
        self.progress = report.Progress(STEPS)
        self.verdict = _SimVerdict()
        self.kind = _mode(args).upper()

    def cut(self) -> None:
        """Steps 1 and 2: cut the head, then check the cut against the original."""
        args, p, where = self.args, self.progress, str(self.source)
        p.step(f"cut {where} at its six head convolutions")
        model = load_onnx(self.source)
        _, own_hw = input_size_of(model, where)
        hw = args.input_hw or own_hw
        # at another size the reference is the original at that size: its tail redone for
        # the new anchor grid, as Ultralytics would export it with the same weights
        model = resize_input(model, hw, where)
        self.cut_model, info = cut_heads(model, where=where)
        self.info = info
        resized = f" (resized from {own_hw[1]}x{own_hw[0]})" if hw != own_hw else ""
        p.say(
            f"input {hw[1]}x{hw[0]}{resized}, {info.num_classes} classes "
            f"({report.names_preview(info.names)}), outputs {', '.join(info.outputs)}"
        )
        self.calib = write_calibration(self.workdir / "calib", hw, args.calib, args.calib_count)
        p.step(f"check the cut against the original (ONNX Runtime, {self.calib.source})")
        images = self.calib.images(CUT_CHECK_IMAGES)
        self.cut_check = check_cut(model, self.cut_model, images, args.conf)
        p.say(*report.cut_lines(info, self.cut_check), f"ok ({p.elapsed():.1f} s)")
        split = args.split_onnx
        if split is None and hw != own_hw:  # the ONNX backend's model at that size, too
            split = self.out.with_suffix(".onnx")
            if split.resolve() == self.source.resolve():
                msg = f"the cut ONNX would overwrite {self.source}: name it with --split-onnx"
                raise UsageError(msg)
        if split is not None:
            split.parent.mkdir(parents=True, exist_ok=True)
            split.write_bytes(self.cut_model.SerializeToString())
            p.say(f"wrote the cut float ONNX {split} (runs with rkpipe's onnx backend)")

    def build(self) -> BuildResult:
        args, p = self.args, self.progress
        python = require_toolkit()
        cut_path = self.workdir / "split.onnx"
        cut_path.write_bytes(self.cut_model.SerializeToString())
        algo = "" if args.no_quantize else f", {args.quant_algo}"
        p.step(f"build {self.kind}{algo} for {args.target} (calibration: {self.calib.source})")
        self.out.parent.mkdir(parents=True, exist_ok=True)
        job = BuildJob(
            cut_path, self.out, self.calib, args.target, _mode(args), args.quant_algo,
            args.hybrid, args.verify_count,
        )  # fmt: skip
        return run_build(python, job, self.workdir, self.on_step, self.on_simulated)

    def on_step(self, step: dict[str, Any]) -> None:
        """Progress from the toolkit script."""
        p = self.progress
        name = step["step"]
        if name == "simulate" and step["done"] == 0:
            p.say(f"built ({p.elapsed():.1f} s)")
            p.step(f"simulate {step['total']} images in the toolkit's simulator")
        if name == "simulate":
            p.count(step["done"] + 1, step["total"], "images")
        elif name == "analyse":
            p.say(f"rknn-toolkit2 accuracy analysis of the {step['of'].upper()} model ...")
        elif name == "hybrid":
            p.say(f"hybrid: keeping the {step['layers']} worst layers in FP16 ...")

    def on_simulated(self) -> bool:
        """The toolkit has simulated: compare, print, and say whether to analyse."""
        args, p = self.args, self.progress
        if not args.verify_count:
            p.say(f"built ({p.elapsed():.1f} s); simulator check skipped (--verify-count 0)")
            return bool(args.analyze)
        p.say(f"simulated ({p.elapsed():.1f} s)")
        images = self.calib.images(args.verify_count)
        p.step(f"compare {self.kind} with the float model on {len(images)} images")
        labels = [
            read_labels(f, g, self.info.num_classes) if f else None
            for f, g in zip(self.calib.files, self.calib.geometries, strict=True)
        ][: args.verify_count]
        sim = sim_outputs(self.workdir / "sim.npz", len(images))
        check = check_sim(self.cut_model, images, sim, self.info.outputs, args.conf, labels)
        self.verdict.check = check
        self.verdict.failures = check.failures(args.min_cosine, args.min_recall)
        p.say(*report.sim_lines(check, self.info.names, self.kind, args.min_cosine))
        return bool(args.analyze or self.verdict.failures)

    def finish(self, built: BuildResult) -> bool:
        args, p, verdict = self.args, self.progress, self.verdict
        if built.hybrid:
            p.say(*report.hybrid_lines(built.hybrid))
        if built.analysis:
            p.say(*report.analysis_lines(built.analysis, self.info.outputs))
        if verdict.failures:
            p.say(*(f"FAIL {line}" for line in verdict.failures))
            if not args.no_quantize:
                p.say(*report.remedy_lines(args, self.calib.source))
        elif verdict.check is not None:
            p.say(
                f"ok: every output's cosine >= {args.min_cosine} (class scores: or within "
                f"{SCORE_SLACK}), recall >= {args.min_recall} where there are boxes"
            )
        sidecar = write_sidecar(self.out, self.sidecar(built))
        size = self.out.stat().st_size / 1e6
        print(f"wrote {self.out} ({size:.1f} MB) and {sidecar.name}")
        for line in report.graph_lines(self.out, self.info):
            print(line)
        return not verdict.failures

    def sidecar(self, built: BuildResult) -> dict[str, Any]:
        args, info, check = self.args, self.info, self.verdict.check
        h, w = info.input_hw
        return {
            "toolkit_version": built.toolkit_version,
            "target": args.target,
            "quantization": _mode(self.args),
            "quant_algo": None if args.no_quantize else args.quant_algo,
            "fp16_layers": [r.layer for r in built.hybrid],
            "toolkit_options": {"disable_rules": DISABLED_RULES},
            "input": {"name": info.input_name, "height": h, "width": w, "layout": "nhwc_uint8"},
            "outputs": list(info.outputs),
            "num_classes": info.num_classes,
            "classes": list(info.names),
            "source": str(self.source),
            "calibration": self.calib.source,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "check": {
                "passed": not self.verdict.failures,
                "min_cosine": args.min_cosine,
                "min_recall": args.min_recall,
                "cut": self.cut_check.to_dict(),
                "simulator": check.to_dict() if check else None,
            },
        }


def export_model(source: Path, out: Path, workdir: Path, args: argparse.Namespace) -> bool:
    """Run every step and print what it found; False when the simulator check fails."""
    job = _Export(source, out, workdir, args)
    job.cut()
    built = job.build()
    return job.finish(built)
