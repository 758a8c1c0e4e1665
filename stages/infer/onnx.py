"""ONNX Runtime on the CPU: the default backend off the board and in tests."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ModelError, StageSetupError
from stages.infer.backend import first_line, require_model_file

__all__ = ["OnnxBackend"]

_DTYPES = {
    "tensor(float)": np.float32,
    "tensor(float16)": np.float16,
    "tensor(double)": np.float64,
    "tensor(uint8)": np.uint8,
    "tensor(int8)": np.int8,
    "tensor(int32)": np.int32,
    "tensor(int64)": np.int64,
}


class OnnxBackend:
    """One InferenceSession on CPUExecutionProvider with a fixed thread budget.

    ``threads`` intra-op threads, one inter-op thread and sequential execution, so an
    instance uses no more cores than it was given; idle threads do not spin, since the
    other stages of the pipeline need those cores.
    """

    def __init__(
        self,
        path: Path,
        threads: int,
        where: str,
        alloc: Callable[[tuple[int, ...], Any], np.ndarray] | None = None,
    ) -> None:
        require_model_file(path, where)
        try:
            import onnxruntime as ort
        except ImportError as exc:
            raise StageSetupError(
                f"backend 'onnx' needs onnxruntime (pip install onnxruntime): {exc}"
            ) from None
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
        opts.log_severity_level = 3  # errors only: ours carry the story
        try:
            self.session = ort.InferenceSession(
                str(path), sess_options=opts, providers=["CPUExecutionProvider"]
            )
        except Exception as exc:  # ORT raises its own types for bad protobufs, ops, etc.
            raise ModelError(f"cannot load ONNX model {path}: {ort_reason(exc, path)}") from None
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            names = ", ".join(i.name for i in inputs)
            raise ModelError(f"ONNX model {path} has {len(inputs)} inputs ({names}); need one")
        self.path = path
        self.input_name = inputs[0].name
        self.input_type = inputs[0].type
        self.input_shape = list(inputs[0].shape)  # ints, or names/None for dynamic dims
        self.output_names = [o.name for o in self.session.get_outputs()]
        self.add_batch: bool | None = None  # decided by the first tensor, then fixed
        self._seen: tuple = ((), None)  # shape and dtype of the last tensor that fit
        # Static outputs are written by ONNX Runtime straight into arrays from ``alloc``
        # (the stage's shared-memory pool), so they are not copied again on the way out.
        self.alloc = alloc
        self.out_specs = [
            (o.name, tuple(o.shape), _DTYPES.get(o.type)) for o in self.session.get_outputs()
        ]
        self.bound = alloc is not None and all(
            dt is not None and all(isinstance(d, int) for d in shape)
            for _, shape, dt in self.out_specs
        )
        self.binding = self.session.io_binding() if self.bound else None

    def _check(self, x: np.ndarray) -> None:
        """Compare the first tensor with the model's input; fix whether to add a batch axis."""
        want = _DTYPES.get(self.input_type)
        shape = self.input_shape
        add_batch = x.ndim == len(shape) - 1
        got = (1, *x.shape) if add_batch else x.shape
        fits = len(got) == len(shape) and all(
            not isinstance(d, int) or d == g for d, g in zip(shape, got, strict=True)
        )
        if want is None or x.dtype != want or not fits:
            dims = ",".join(str(d) if isinstance(d, int) else "?" for d in shape)
            wanted = np.dtype(want).name if want is not None else self.input_type
            raise ModelError(
                f"ONNX model {self.path.name} takes {wanted} [{dims}], "
                f"got {x.dtype.name} {list(x.shape)}: check the preprocess stage"
            )
        self.add_batch = add_batch

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        if self.add_batch is None or (x.shape, x.dtype) != self._seen:
            self._check(x)  # a clear ModelError for a tensor that does not fit
            self._seen = (x.shape, x.dtype)
        if self.add_batch:
            x = x[None]
        x = np.ascontiguousarray(x)
        if self.binding is None:
            return list(self.session.run(self.output_names, {self.input_name: x}))
        assert self.alloc is not None
        outs = [self.alloc(shape, dt) for _, shape, dt in self.out_specs]
        self.binding.bind_cpu_input(self.input_name, x)
        for (name, shape, dt), out in zip(self.out_specs, outs, strict=True):
            self.binding.bind_output(name, "cpu", 0, dt, list(shape), out.ctypes.data)
        self.session.run_with_iobinding(self.binding)
        return outs

    def close(self) -> None:
        self.session = None


_ORT_PREFIX = re.compile(r"^\[ONNXRuntimeError\] : \d+ : (\w+) : ")
_ORT_HINTS = {"INVALID_PROTOBUF": "not an ONNX file, or a damaged one"}


def ort_reason(exc: BaseException, path: Path) -> str:
    """ONNX Runtime's reason a model did not load, in one line and without repeating the
    path the caller names: ``Protobuf parsing failed (INVALID_PROTOBUF: not an ONNX file,
    or a damaged one)``."""
    text = first_line(exc)
    found = _ORT_PREFIX.match(text)
    code = found[1] if found else ""
    text = text[found.end() :] if found else text
    for shown in (str(path), path.name):
        text = text.replace(f"Load model from {shown} failed:", "").replace(shown, "it")
    text = text.strip().rstrip(".") or type(exc).__name__
    hint = _ORT_HINTS.get(code)
    if code:
        text += f" ({code}{': ' + hint if hint else ''})"
    return text
