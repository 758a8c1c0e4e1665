"""Tensor-level agreement: how closely one model's outputs follow another's, before any
threshold, as rknn-toolkit2's accuracy analysis measures it (cosine similarity per output),
with the largest absolute error beside it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import ModelError

__all__ = ["HEADER", "OutputAgreement", "compare_outputs", "cosine"]


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    """Cosine similarity of two arrays taken as flat vectors (float64). Two all-zero arrays
    agree (1.0); an all-zero one against one that is not shares nothing (0.0)."""
    x, y = np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64)
    nx, ny = float(np.linalg.norm(x)), float(np.linalg.norm(y))
    if nx == 0.0 or ny == 0.0:
        return 1.0 if nx == ny else 0.0
    return float(np.clip(x @ y / (nx * ny), -1.0, 1.0))


@dataclass(frozen=True)
class OutputAgreement:
    """One output over every compared image: the cosine similarity of all its values taken
    together, the largest absolute difference, and the largest reference value (for scale)."""

    name: str
    cosine: float
    max_abs: float
    ref_max: float

    def row(self) -> str:
        """A table row: name, cosine, max abs error, reference scale."""
        return f"{self.name:<8} {self.cosine:>9.6f}  {self.max_abs:>13.4g}  {self.ref_max:>10.4g}"

    def to_dict(self) -> dict[str, float]:
        return {"cosine": self.cosine, "max_abs": self.max_abs, "ref_max": self.ref_max}


HEADER = f"{'output':<8} {'cosine':>9}  {'max abs error':>13}  {'max |float|':>10}"


def compare_outputs(
    refs: Sequence[Sequence[np.ndarray]],
    cands: Sequence[Sequence[np.ndarray]],
    names: Sequence[str],
) -> list[OutputAgreement]:
    """Per output name: ``refs[i][j]`` against ``cands[i][j]`` over all images ``i``; the
    shapes must be the same (a layout mix-up would otherwise compare unrelated values)."""
    out = []
    for j, name in enumerate(names):
        shapes = {(np.shape(r[j]), np.shape(c[j])) for r, c in zip(refs, cands, strict=True)}
        if any(a != b for a, b in shapes):
            msg = f"output {name}: shapes differ, reference vs candidate {sorted(shapes)}"
            raise ModelError(msg)
        ref = np.concatenate([np.ravel(r[j]) for r in refs]).astype(np.float64)
        cand = np.concatenate([np.ravel(c[j]) for c in cands]).astype(np.float64)
        diff = float(np.abs(ref - cand).max()) if ref.size else 0.0
        scale = float(np.abs(ref).max()) if ref.size else 0.0
        out.append(OutputAgreement(name, cosine(ref, cand), diff, scale))
    return out
