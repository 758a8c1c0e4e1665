"""Inference stage: run a detection model (ONNX Runtime, RKNN on the RK3588 NPU, or a simulated
NPU for benchmarks) on the tensor a preprocess stage put in each message."""

from __future__ import annotations

from stages.infer.stage import Infer

__all__ = ["Infer"]
