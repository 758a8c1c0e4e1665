"""Detections of one frame as parallel numpy arrays, in the style of supervision's Detections.

Row ``i`` of every array describes the same object. The arrays travel between stages in a
message's ``arrays`` dict under a key prefix (``det.xyxy``, ``det.confidence`` ...), so they
ride the same zero-copy path as frames and tensors; ``to_arrays``/``from_arrays`` convert.
``data`` holds further per-row arrays (a tracker's ``age`` and ``velocity``) that follow the
rows through selection and merging.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from .keys import DETECTIONS_PREFIX

__all__ = ["DETECTIONS_PREFIX", "Detections"]

# field name -> (dtype, trailing shape); every array has N rows
_SPEC: dict[str, tuple[type, tuple[int, ...]]] = {
    "xyxy": (np.float32, (4,)),
    "confidence": (np.float32, ()),
    "class_id": (np.int32, ()),
    "tracker_id": (np.int64, ()),
}


def _expected(name: str, n: str | int) -> str:
    """The shape an array should have, written for an error message."""
    tail = _SPEC[name][1]
    return f"({n}, {', '.join(map(str, tail))})" if tail else f"({n},)"


@dataclass(eq=False)
class Detections:
    """N detected objects: boxes ``xyxy`` (N, 4) float32 in pixels, ``confidence`` (N,)
    float32, ``class_id`` (N,) int32, ``tracker_id`` (N,) int64 (-1: not tracked), and
    ``data``: more arrays of N rows each, by name."""

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    tracker_id: np.ndarray = None  # type: ignore[assignment]  # None: all -1, set on init
    data: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        """Coerce to C-contiguous arrays of the right dtypes (no copy when already so; the
        transport sends contiguous buffers) and check that the shapes agree."""
        xyxy = np.ascontiguousarray(self.xyxy, np.float32)
        if xyxy.size == 0 and xyxy.ndim < 2:
            xyxy = xyxy.reshape(0, 4)
        if xyxy.ndim != 2 or xyxy.shape[1] != 4:
            msg = f"Detections.xyxy: expected shape {_expected('xyxy', 'N')}, got {xyxy.shape}"
            raise ValueError(msg)
        self.xyxy = xyxy
        n = len(xyxy)
        if self.tracker_id is None:
            self.tracker_id = np.full(n, -1, np.int64)
        for name in ("confidence", "class_id", "tracker_id"):
            arr: np.ndarray = np.ascontiguousarray(getattr(self, name), _SPEC[name][0])
            if arr.shape != (n,):
                msg = (
                    f"Detections.{name}: expected shape {_expected(name, n)} to match "
                    f"xyxy {xyxy.shape}, got {arr.shape}"
                )
                raise ValueError(msg)
            setattr(self, name, arr)
        for name, values in list(self.data.items()):
            arr = np.ascontiguousarray(values)
            if arr.ndim == 0 or len(arr) != n:
                msg = f"Detections.data[{name!r}]: expected {n} rows, got shape {arr.shape}"
                raise ValueError(msg)
            self.data[name] = arr

    def __len__(self) -> int:
        return len(self.xyxy)

    def __repr__(self) -> str:
        return f"Detections(n={len(self)}, classes={sorted(set(self.class_id.tolist()))})"

    def __getitem__(self, index: Any) -> Detections:
        """Select rows by boolean mask, integer indices, a slice or one integer (kept 2-D)."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(
            self.xyxy[index],
            self.confidence[index],
            self.class_id[index],
            self.tracker_id[index],
            {k: v[index] for k, v in self.data.items()},
        )

    @classmethod
    def empty(cls) -> Detections:
        """No detections (every array with zero rows)."""
        return cls(np.zeros((0, 4), np.float32), np.zeros(0, np.float32), np.zeros(0, np.int32))

    @classmethod
    def merge(cls, items: Iterable[Detections]) -> Detections:
        """Concatenate several Detections in order (an empty input gives ``empty()``);
        ``data`` keeps the arrays every item has."""
        items = list(items)
        if not items:
            return cls.empty()
        shared = set.intersection(*(set(d.data) for d in items))
        return cls(
            **{name: np.concatenate([getattr(d, name) for d in items]) for name in _SPEC},
            data={k: np.concatenate([d.data[k] for d in items]) for k in sorted(shared)},
        )

    def anchors(self, kind: str = "bottom_center") -> np.ndarray:
        """The point (N, 2) float64 standing for each box: bottom_center, center or top_center."""
        from .geometry import anchor_points

        return anchor_points(self.xyxy, kind)

    def to_arrays(self, prefix: str = DETECTIONS_PREFIX) -> dict[str, np.ndarray]:
        """The arrays keyed ``prefix + field`` (and ``prefix + name`` for ``data``), ready
        for ``Message.arrays``."""
        out = {prefix + name: getattr(self, name) for name in _SPEC}
        out.update({prefix + name: arr for name, arr in self.data.items()})
        return out

    @classmethod
    def from_arrays(
        cls, arrays: Mapping[str, np.ndarray], prefix: str = DETECTIONS_PREFIX
    ) -> Detections | None:
        """Rebuild from ``to_arrays`` output; None when ``arrays`` holds no detections.
        A missing ``tracker_id`` means untracked; any other missing array is an error."""
        if prefix + "xyxy" not in arrays:
            return None
        missing = [prefix + k for k in ("confidence", "class_id") if prefix + k not in arrays]
        if missing:
            msg = f"{prefix}xyxy is present but {', '.join(missing)} missing"
            raise ValueError(msg)
        data = {
            k[len(prefix) :]: v
            for k, v in arrays.items()
            if k.startswith(prefix) and k[len(prefix) :] not in _SPEC
        }
        return cls(
            arrays[prefix + "xyxy"],
            arrays[prefix + "confidence"],
            arrays[prefix + "class_id"],
            arrays.get(prefix + "tracker_id"),  # type: ignore[arg-type]
            data,
        )
