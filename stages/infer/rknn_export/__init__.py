"""``rkpipe export``: turn a stock YOLOv8/YOLO11 detection ONNX into a verified RK3588 .rknn.

The head is cut at its per-stride convolutions (``surgery``), built with rknn-toolkit2 in its
own venv (``toolkit_env``, ``build``, ``build_rknn``) and checked in the toolkit's simulator
against the float model with rkpipe's own decoders (``verify``).
"""

from __future__ import annotations

from stages.infer.rknn_export.surgery import HeadCut, cut_heads, load_onnx

__all__ = ["HeadCut", "cut_heads", "load_onnx"]
