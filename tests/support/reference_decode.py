"""A straightforward YOLOv8 decode to check rkpipe's against, written the way common RK3588
examples (rknn_model_zoo's yolov8.py) do it: dequantize everything, decode every anchor,
then threshold, then a plain per-class numpy NMS. Slow on purpose; shares no code with
``stages.yolov8_decode``. Boxes come back in model-input pixels unless mapped with
``ref_unletterbox``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ref_decode_split", "ref_decode_stock", "ref_nms", "ref_unletterbox"]

Result = tuple[np.ndarray, np.ndarray, np.ndarray]  # xyxy (N, 4), score (N,), class (N,)


def _dequant(x, qp):
    if qp is None or x.dtype.kind == "f":
        return x.astype(np.float32)
    return (x.astype(np.float32) - qp[0]) * qp[1]


def _dfl(position):
    """(1, 4 * bins, H, W) logits -> (1, 4, H, W) expected distances."""
    n, c, h, w = position.shape
    y = position.reshape(n, 4, c // 4, h, w)
    y = np.exp(y - y.max(axis=2, keepdims=True))
    y = y / y.sum(axis=2, keepdims=True)
    acc = np.arange(c // 4, dtype=np.float32).reshape(1, 1, c // 4, 1, 1)
    return (y * acc).sum(axis=2)


def _box_process(position, input_hw):
    """Every anchor's xyxy (1, 4, H, W) in input pixels."""
    grid_h, grid_w = position.shape[2:4]
    col, row = np.meshgrid(np.arange(grid_w), np.arange(grid_h))
    grid = np.concatenate([col.reshape(1, 1, grid_h, grid_w), row.reshape(1, 1, grid_h, grid_w)], 1)
    stride = np.array([input_hw[1] // grid_w, input_hw[0] // grid_h]).reshape(1, 2, 1, 1)
    dist = _dfl(position)
    xy1 = grid + 0.5 - dist[:, 0:2]
    xy2 = grid + 0.5 + dist[:, 2:4]
    return np.concatenate([xy1 * stride, xy2 * stride], axis=1)


def _flatten(x):
    return x.transpose(0, 2, 3, 1).reshape(-1, x.shape[1])


def ref_nms(boxes, scores, iou):
    """Greedy NMS of one class; indices kept, highest score first (ties: input order)."""
    x1, y1, x2, y2 = boxes.T.astype(np.float64)
    areas = (x2 - x1) * (y2 - y1)
    order = np.argsort(-scores, kind="stable")
    keep = []
    while order.size > 0:
        i = order[0]
        keep.append(i)
        w = np.maximum(0.0, np.minimum(x2[i], x2[order[1:]]) - np.maximum(x1[i], x1[order[1:]]))
        h = np.maximum(0.0, np.minimum(y2[i], y2[order[1:]]) - np.maximum(y1[i], y1[order[1:]]))
        inter = w * h
        ovr = inter / (areas[i] + areas[order[1:]] - inter)
        order = order[1:][ovr <= iou]
    return np.array(keep, dtype=np.intp)


def _threshold_and_nms(boxes, class_scores, conf, iou, classes, max_det) -> Result:
    """Best class per anchor, score > conf, keep-list, per-class NMS, top ``max_det``."""
    cls = np.argmax(class_scores, axis=1)
    score = class_scores[np.arange(len(cls)), cls]
    pos = score > conf
    if classes is not None:
        pos &= np.isin(cls, classes)
    boxes, score, cls = boxes[pos], score[pos], cls[pos]
    out_b, out_s, out_c = [np.zeros((0, 4))], [np.zeros(0)], [np.zeros(0, int)]
    for c in sorted(set(cls.tolist())):
        inds = np.flatnonzero(cls == c)
        keep = ref_nms(boxes[inds], score[inds], iou)
        out_b.append(boxes[inds][keep])
        out_s.append(score[inds][keep])
        out_c.append(cls[inds][keep])
    boxes, score, cls = (np.concatenate(v) for v in (out_b, out_s, out_c))
    top = np.argsort(-score, kind="stable")[:max_det]
    return boxes[top], score[top], cls[top]


def ref_decode_split(
    outputs, conf=0.25, iou=0.45, quant=None, classes=None, max_det=300, input_hw=(640, 640)
) -> Result:
    """Decode NCHW split-head outputs [box, cls(, sum)] x 3 strides (the score sum is ignored)."""
    quant = quant or [None] * len(outputs)
    data = [_dequant(x, qp) for x, qp in zip(outputs, quant, strict=True)]
    per = len(data) // 3
    boxes = [_flatten(_box_process(data[per * i], input_hw)) for i in range(3)]
    scores = [_flatten(data[per * i + 1]) for i in range(3)]
    return _threshold_and_nms(
        np.concatenate(boxes), np.concatenate(scores), conf, iou, classes, max_det
    )


def ref_decode_stock(output, conf=0.25, iou=0.45, classes=None, max_det=300) -> Result:
    """Decode the stock (1, 4 + nc, N) output: every anchor's xywh -> xyxy, then threshold."""
    pred = output[0].T.astype(np.float32)
    cx, cy, w, h = pred[:, 0], pred[:, 1], pred[:, 2], pred[:, 3]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    return _threshold_and_nms(boxes, pred[:, 4:], conf, iou, classes, max_det)


def ref_unletterbox(xyxy, src_hw, dst_hw):
    """Map input-pixel boxes to the source frame, Ultralytics' scale_boxes + clip_boxes."""
    gain = min(dst_hw[0] / src_hw[0], dst_hw[1] / src_hw[1])
    pad_x = round((dst_hw[1] - round(src_hw[1] * gain)) / 2 - 0.1)
    pad_y = round((dst_hw[0] - round(src_hw[0] * gain)) / 2 - 0.1)
    out = (np.asarray(xyxy, np.float64) - [pad_x, pad_y, pad_x, pad_y]) / gain
    out[:, 0::2] = out[:, 0::2].clip(0, src_hw[1])
    out[:, 1::2] = out[:, 1::2].clip(0, src_hw[0])
    return out
