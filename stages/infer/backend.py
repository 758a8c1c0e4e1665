"""What the backends share: the backend interface and the model-file check."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

import numpy as np

from pipeline.errors import ModelError

__all__ = ["Backend", "first_line", "require_model_file"]


class Backend(Protocol):
    """One loaded model on one device: ``run`` takes the input tensor, returns the outputs.
    A backend that returns raw int8 outputs also has ``quant``: each output's
    (zero_point, scale), which the infer stage passes on in ``meta["quant"]``."""

    def run(self, x: np.ndarray) -> list[np.ndarray]: ...

    def close(self) -> None: ...


def require_model_file(path: Path, where: str) -> None:
    """ModelError unless ``path`` is a readable file; ``where`` names the option (for the user)."""
    path = path.resolve()
    if not path.exists():
        raise ModelError(f"model file {path} not found ({where})")
    if not path.is_file():
        raise ModelError(f"model {path} is not a file ({where})")


def first_line(exc: BaseException) -> str:
    """An exception's message as one line (runtimes often add pages of context)."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
