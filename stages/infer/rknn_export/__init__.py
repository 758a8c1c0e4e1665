"""``rkpipe export``: turn a stock YOLOv8/YOLO11 detection ONNX into a verified RK3588 .rknn.

The head is cut at its per-stride convolutions (``surgery``) and the cut checked against the
original; the model is built with rknn-toolkit2 in its own venv (``toolkit_env``, ``build``,
``build_rknn``) and checked in the toolkit's simulator against the float model (``checks``:
tensors with ``tensors``, boxes with ``verify``, labels with ``labels``). ``steps`` runs it
all, ``report`` prints it, and ``stages.infer.rknn_sidecar`` records it beside the .rknn.
"""

from __future__ import annotations

from stages.infer.rknn_export.surgery import HeadCut, cut_heads, load_onnx

__all__ = ["HeadCut", "cut_heads", "load_onnx"]
