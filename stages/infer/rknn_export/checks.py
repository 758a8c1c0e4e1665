"""The two checks an export must pass, each on tensors first and on boxes second.

Cut check (ONNX Runtime): the cut model's six outputs, decoded back to the stock
(1, 4 + nc, N) layout, must equal the original's output element by element (boxes within
``BOX_ATOL`` pixels, scores within ``SCORE_RTOL``), whatever the model detects; then the
boxes at ``--conf`` must be the same boxes ("no boxes on either side" agrees).

Simulator check (rknn-toolkit2, FP16 or INT8 against the float cut model): every output's
cosine similarity must reach ``--min-cosine`` (a class-score output may instead stay within
``SCORE_SLACK`` everywhere: scores near zero on every image make cosine meaningless), and
where the float model finds boxes at ``--conf`` the converted one must find ``--min-recall``
of them. Images where either model reaches ``MAX_DET`` boxes are left out of that: a capped
set is the top of many near-equal scores, which the smallest difference reorders. With
labelled images, recall of the labels per class is reported for both models.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from pipeline.detections import Detections
from pipeline.errors import ModelError
from stages.infer.rknn_export.tensors import OutputAgreement, compare_outputs
from stages.infer.rknn_export.verify import (
    MAX_DET,
    Agreement,
    agreement,
    decode_all,
    onnx_outputs,
)
from stages.infer.sim_outputs import split_to_stock
from stages.yolov8_decode.decode import decode_yolov8

__all__ = ["SCORE_SLACK", "CutCheck", "SimCheck", "check_cut", "check_sim", "uncapped_agreement"]

BOX_ATOL = 1e-2  # pixels; float32 decode of the same logits differs by ~1e-4 at 640
SCORE_RTOL, SCORE_ATOL = 1e-4, 1e-7  # the same sigmoid of the same logits: exact in practice
SCORE_SLACK = 0.02  # a class-score output whose every score moves less than this passes


@dataclass(frozen=True)
class CutCheck:
    """Cut against original: tensors (decoded boxes in pixels, scores) and boxes at conf."""

    tensors: list[OutputAgreement]
    boxes: Agreement
    conf: float
    exact: bool

    @property
    def passed(self) -> bool:
        b = self.boxes
        return self.exact and b.matched == b.reference and not b.extra

    def to_dict(self) -> dict[str, Any]:
        return {
            "images": self.boxes.images,
            "tensors": {t.name: t.to_dict() for t in self.tensors},
            "boxes": {"conf": self.conf, **self.boxes.to_dict()},
        }


def _stock(output: np.ndarray) -> np.ndarray:
    """A stock output as (4 + nc, N), from (1, 4 + nc, N) or its transpose."""
    pred = output[0] if output.ndim == 3 else output
    return pred.T if pred.shape[0] > pred.shape[1] else pred


def check_cut(original: Any, cut: Any, images: Sequence[np.ndarray], conf: float) -> CutCheck:
    """Run both models; a ModelError (with the figures) unless the cut reproduces the
    original exactly."""
    refs = [_stock(o[0]) for o in onnx_outputs(original, images)]
    cut_outs = onnx_outputs(cut, images)
    cands = [split_to_stock(o)[0] for o in cut_outs]
    if refs[0].shape != cands[0].shape:
        msg = (
            f"the original's output {refs[0].shape} is not the stock (4 + nc, anchors) layout "
            f"the cut head decodes to, {cands[0].shape}: export the model without NMS or "
            "end-to-end heads (plain `model.export(format='onnx')`)"
        )
        raise ModelError(msg)
    tensors = compare_outputs(
        [(r[:4], r[4:]) for r in refs], [(c[:4], c[4:]) for c in cands], ["boxes", "scores"]
    )
    exact = all(
        np.all(np.abs(c[:4] - r[:4]) <= BOX_ATOL)
        and np.all(np.abs(c[4:] - r[4:]) <= SCORE_ATOL + SCORE_RTOL * np.abs(r[4:]))
        for r, c in zip(refs, cands, strict=True)
    )
    ref_dets = [decode_yolov8([r[None]], conf=conf) for r in refs]
    boxes = agreement(ref_dets, decode_all(cut_outs, conf))
    result = CutCheck(tensors, boxes, conf, exact)
    if not result.passed:
        figures = "; ".join(
            f"{t.name} max abs error {t.max_abs:.3g}, cosine {t.cosine:.6f}" for t in tensors
        )
        msg = (
            "the cut model does not reproduce the original's outputs "
            f"({figures}; boxes at conf {conf}: {boxes.summary()})"
        )
        raise ModelError(msg)
    return result


@dataclass(frozen=True)
class SimCheck:
    """Simulator against the float cut model: per-output figures, boxes at ``conf``, and
    per-class recall of the labels (float, converted) when the images carry labels."""

    outputs: list[OutputAgreement]
    boxes: Agreement
    conf: float
    labels: tuple[Agreement, Agreement] | None
    capped: int = 0  # images left out of ``boxes``: a model reached MAX_DET boxes

    def failures(self, min_cosine: float, min_recall: float) -> list[str]:
        """What falls short, one line each; empty when the check passes."""
        bad = []
        for o in self.outputs:
            slack = o.name.startswith("cls") and o.max_abs <= SCORE_SLACK
            if o.cosine < min_cosine and not slack:
                bad.append(f"{o.name}: cosine {o.cosine:.4f} < --min-cosine {min_cosine}")
        if self.boxes.reference and self.boxes.recall < min_recall:
            bad.append(
                f"boxes: recall {self.boxes.recall:.3f} < --min-recall {min_recall} "
                f"({self.boxes.matched}/{self.boxes.reference} float boxes found)"
            )
        return bad

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "images": self.boxes.images,
            "outputs": {o.name: o.to_dict() for o in self.outputs},
            "boxes": {"conf": self.conf, "capped_images": self.capped, **self.boxes.to_dict()},
        }
        if self.labels is not None:
            out["label_recall"] = {
                kind: {str(c): [m, n] for c, (m, n) in a.per_class.items()}
                for kind, a in zip(("float", "converted"), self.labels, strict=True)
            }
        return out


def check_sim(
    cut: Any,
    images: Sequence[np.ndarray],
    sim: Sequence[Sequence[np.ndarray]],
    names: Sequence[str],
    conf: float,
    labels: Sequence[Detections | None],
) -> SimCheck:
    """Compare the simulator's outputs with the float cut model's on the same images."""
    ref = onnx_outputs(cut, images)
    outputs = compare_outputs(ref, sim, names)
    ref_dets, sim_dets = decode_all(ref, conf), decode_all(sim, conf)
    labelled = [i for i, gt in enumerate(labels) if gt is not None]
    gts = [gt for gt in labels if gt is not None]
    recall = None
    if gts:
        recall = (
            agreement(gts, [ref_dets[i] for i in labelled]),
            agreement(gts, [sim_dets[i] for i in labelled]),
        )
    boxes, capped = uncapped_agreement(ref_dets, sim_dets)
    return SimCheck(outputs, boxes, conf, recall, capped)


def uncapped_agreement(
    refs: Sequence[Detections], cands: Sequence[Detections]
) -> tuple[Agreement, int]:
    """Box agreement over the images where neither side reached ``MAX_DET`` boxes, and how
    many images were left out."""
    pairs = [(r, c) for r, c in zip(refs, cands, strict=True) if max(len(r), len(c)) < MAX_DET]
    kept = agreement([r for r, _ in pairs], [c for _, c in pairs])
    return kept, len(refs) - len(pairs)
