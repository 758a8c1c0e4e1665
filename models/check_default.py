"""Check the default detector the way the pipeline will use it: full 640x360 frames of
held-out synthetic clips, letterboxed to 640x640 at scale 1, through ONNX Runtime; prints
precision and recall at IoU 0.5 and records them in ``models/default_model.json``.

    python models/check_default.py [--model models/rkpipe-yolov8n.onnx]
    python models/check_default.py --model models/rkpipe-yolov8n-640x384.onnx --no-record

Any input size (the frame is letterboxed into the model's input) and either layout: the
stock (1, 84, N) output or the six split-head outputs ``rkpipe export`` cuts (made stock
with ``split_to_stock``, which the export's cut check holds to the stock tail).

The decode here is a plain reference (all anchors, then NMS), not the pipeline's decoder.
Ground-truth objects less than ``--min-vis`` visible are "don't care": finding one is not a
false positive, missing one is not a miss.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stages.synthetic import FrameTruth, Scene  # noqa: E402

CHECK_SEED_BASE = 2_000_000  # clip seeds used by neither the train nor the val split
CLASSES = {0: "person", 2: "car"}


def letterbox(
    frame: np.ndarray, hw: tuple[int, int] = (640, 640)
) -> tuple[np.ndarray, float, int, int]:
    """(1, 3, H, W) float32 RGB input, the scale and the (x, y) padding."""
    h, w = frame.shape[:2]
    r = min(hw[0] / h, hw[1] / w)
    nh, nw = round(h * r), round(w * r)
    img = frame if (nh, nw) == (h, w) else cv2.resize(frame, (nw, nh))
    top, left = (hw[0] - nh) // 2, (hw[1] - nw) // 2
    canvas = np.full((*hw, 3), 114, np.uint8)
    canvas[top : top + nh, left : left + nw] = img
    x = cv2.cvtColor(canvas, cv2.COLOR_BGR2RGB).transpose(2, 0, 1)[None].astype(np.float32)
    return x / 255.0, r, left, top


def decode(out: np.ndarray, conf: float, iou: float, r: float, left: int, top: int):
    """(1, 84, N) -> boxes xyxy in frame pixels, scores, class ids (after class-wise NMS)."""
    pred = out[0].T  # (N, 84)
    cls = pred[:, 4:].argmax(1)
    score = pred[np.arange(len(pred)), 4 + cls]
    keep = score >= conf
    pred, cls, score = pred[keep], cls[keep], score[keep]
    xywh = np.stack(
        [pred[:, 0] - pred[:, 2] / 2, pred[:, 1] - pred[:, 3] / 2, pred[:, 2], pred[:, 3]], 1
    )
    idx = (
        cv2.dnn.NMSBoxesBatched(xywh.tolist(), score.tolist(), cls.tolist(), conf, iou)
        if len(score)
        else []
    )
    idx = np.asarray(idx, int).reshape(-1)
    xyxy = xywh[idx].copy()
    xyxy[:, 2:] += xyxy[:, :2]
    xyxy = (xyxy - [left, top, left, top]) / r
    return xyxy, score[idx], cls[idx]


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box in ``a`` (N, 4) with every box in ``b`` (M, 4)."""
    lt = np.maximum(a[:, None, :2], b[None, :, :2])
    rb = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(rb - lt, 0, None), axis=2)
    area_a = np.prod(a[:, 2:] - a[:, :2], axis=1)
    area_b = np.prod(b[:, 2:] - b[:, :2], axis=1)
    return inter / (area_a[:, None] + area_b[None, :] - inter + 1e-9)


def match(det, truth: FrameTruth, min_vis: float) -> dict[int, np.ndarray]:
    """Per class: [true positives, false positives, objects to find] for one frame."""
    xyxy, score, cls = det
    out = {}
    for c in CLASSES:
        d = xyxy[cls == c][np.argsort(-score[cls == c])]
        g = truth.xyxy[truth.class_id == c].astype(np.float64)
        care = truth.visibility[truth.class_id == c] >= min_vis
        ious = iou_matrix(d, g) if len(d) and len(g) else np.zeros((len(d), len(g)))
        used = np.zeros(len(g), bool)
        tp = fp = 0
        for k in range(len(d)):
            cand = np.where(~used & care, ious[k], 0.0)
            j = int(cand.argmax()) if len(g) else -1
            if j >= 0 and cand[j] >= 0.5:
                used[j], tp = True, tp + 1
            elif not (len(g) and (np.where(~care, ious[k], 0.0) >= 0.5).any()):
                fp += 1
        out[c] = np.array([tp, fp, int(care.sum())])
    n_other = int(np.isin(cls, list(CLASSES), invert=True).sum())
    out[0] = out[0] + [0, n_other, 0]  # any other class is a false positive
    return out


def run(args: argparse.Namespace) -> dict:
    """Evaluate every clip; returns the figures."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = args.threads
    sess = ort.InferenceSession(str(args.model), opts, providers=["CPUExecutionProvider"])
    from stages.infer.sim_outputs import split_to_stock

    name, shape = sess.get_inputs()[0].name, sess.get_outputs()[0].shape
    hw = tuple(sess.get_inputs()[0].shape[2:4])
    totals = {c: np.zeros(3, int) for c in CLASSES}
    ms = []
    for k, preset in enumerate(args.presets):
        scene = Scene(preset, seed=CHECK_SEED_BASE + k)
        for i in range(0, args.frames * args.step, args.step):
            x, r, left, top = letterbox(scene.render(i), hw)
            t0 = time.perf_counter()
            outs = sess.run(None, {name: x})
            out = split_to_stock(outs) if len(outs) == 6 else outs[0]
            ms.append((time.perf_counter() - t0) * 1e3)
            det = decode(out, args.conf, 0.45, r, left, top)
            for c, v in match(det, scene.truth(i), args.min_vis).items():
                totals[c] += v
    tp, fp, n = sum(totals.values())
    res = {
        "input": name,
        "output_shape": shape,
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(n, 1),
        "objects": int(n),
        "infer_ms_mean": float(np.mean(ms)),
    }
    for c, (ctp, cfp, cn) in totals.items():
        res[CLASSES[c]] = {
            "precision": ctp / max(ctp + cfp, 1),
            "recall": ctp / max(cn, 1),
            "objects": int(cn),
        }
    return res


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=ROOT / "models" / "rkpipe-yolov8n.onnx")
    p.add_argument("--presets", nargs="+", default=["easy", "hard"])
    p.add_argument("--frames", type=int, default=100, help="frames per clip")
    p.add_argument("--step", type=int, default=5, help="take every step-th frame")
    p.add_argument("--conf", type=float, default=0.25)
    p.add_argument("--min-vis", type=float, default=0.5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--record", type=Path, default=ROOT / "models" / "default_model.json")
    p.add_argument("--no-record", action="store_true")
    args = p.parse_args(argv)
    if not args.model.exists():
        raise SystemExit(f"no model at {args.model}: run models/train_default.py first")
    res = run(args)
    res.update(
        clips=[f"{p}:seed={CHECK_SEED_BASE + k}" for k, p in enumerate(args.presets)],
        frames_per_clip=args.frames,
        step=args.step,
        conf=args.conf,
        min_vis=args.min_vis,
    )
    print(json.dumps(res, indent=2))
    if not args.no_record:
        summary = ROOT / "models" / "runs" / "train_summary.json"
        doc = json.loads(args.record.read_text()) if args.record.exists() else {}
        if summary.exists():
            doc["training"] = json.loads(summary.read_text())
        doc["check"] = res
        args.record.write_text(json.dumps(doc, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
