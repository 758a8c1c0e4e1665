"""Letterbox geometry: fit a frame into the model input keeping its aspect ratio, and back.

Matches Ultralytics' ``LetterBox(auto=False, center=True)``: one scale for both axes, the
resized image centred, the border filled with grey 114. The geometry is small and plain, so
it rides in message metadata from preprocess to postprocess, which maps boxes back with it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import cv2
import numpy as np

__all__ = [
    "PAD_VALUE",
    "LetterboxGeometry",
    "letterbox_boxes",
    "letterbox_geometry",
    "letterbox_into",
    "letterbox_nchw_into",
    "unletterbox_boxes",
]

PAD_VALUE = 114  # Ultralytics' border grey


@dataclass(frozen=True)
class LetterboxGeometry:
    """How a ``src_w`` x ``src_h`` frame sits in a ``dst_w`` x ``dst_h`` model input:
    resized by ``scale``, its top-left corner at (``pad_x``, ``pad_y``)."""

    scale: float
    pad_x: int
    pad_y: int
    src_w: int
    src_h: int
    dst_w: int
    dst_h: int

    @property
    def new_w(self) -> int:
        """Width of the resized frame inside the input."""
        return min(round(self.src_w * self.scale), self.dst_w)

    @property
    def new_h(self) -> int:
        """Height of the resized frame inside the input."""
        return min(round(self.src_h * self.scale), self.dst_h)

    def to_dict(self) -> dict[str, int | float]:
        """Plain ints and floats, for message metadata (msgpack)."""
        return {k: (float(v) if k == "scale" else int(v)) for k, v in asdict(self).items()}

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> LetterboxGeometry:
        """Inverse of ``to_dict``; names the missing keys if any."""
        names = [f.name for f in fields(cls)]
        missing = [n for n in names if n not in data]
        if missing:
            msg = f"letterbox geometry is missing {', '.join(missing)}; got keys {sorted(data)}"
            raise ValueError(msg)
        return cls(float(data["scale"]), *(int(data[n]) for n in names[1:]))


def letterbox_geometry(src_hw: tuple[int, int], dst_hw: tuple[int, int]) -> LetterboxGeometry:
    """The geometry that fits a frame of ``src_hw`` (height, width) into ``dst_hw``."""
    (src_h, src_w), (dst_h, dst_w) = src_hw, dst_hw
    scale = min(dst_h / src_h, dst_w / src_w)
    new_w, new_h = round(src_w * scale), round(src_h * scale)
    pad_x = round((dst_w - new_w) / 2 - 0.1)  # Ultralytics' rounding: odd pixel goes right
    pad_y = round((dst_h - new_h) / 2 - 0.1)
    return LetterboxGeometry(scale, pad_x, pad_y, src_w, src_h, dst_w, dst_h)


def _fill_border(out: np.ndarray, geom: LetterboxGeometry, value: float, hw_axes: int) -> None:
    """Fill the four border strips of ``out`` (axes ``hw_axes``, ``hw_axes + 1`` are H, W)."""
    y0, x0 = geom.pad_y, geom.pad_x
    y1, x1 = y0 + geom.new_h, x0 + geom.new_w
    lead = (slice(None),) * hw_axes
    for border in (
        (*lead, slice(0, y0)),
        (*lead, slice(y1, None)),
        (*lead, slice(y0, y1), slice(0, x0)),
        (*lead, slice(y0, y1), slice(x1, None)),
    ):
        out[border] = value


def _check_out(out: np.ndarray, shape: tuple[int, ...], dtype: type) -> None:
    if out.shape != shape or out.dtype != dtype:
        msg = f"letterbox output must be {shape} {np.dtype(dtype)}, got {out.shape} {out.dtype}"
        raise ValueError(msg)


def letterbox_into(
    src: np.ndarray, out: np.ndarray, geom: LetterboxGeometry, pad_value: int = PAD_VALUE
) -> np.ndarray:
    """Resize ``src`` (H, W, C) uint8 straight into ``out`` (dst_h, dst_w, C) and grey the
    border, in place: ``out`` may be a shared-memory slot; nothing full-size is allocated."""
    _check_out(out, (geom.dst_h, geom.dst_w, *src.shape[2:]), src.dtype.type)
    _fill_border(out, geom, pad_value, 0)
    y0, x0 = geom.pad_y, geom.pad_x
    inner = out[y0 : y0 + geom.new_h, x0 : x0 + geom.new_w]
    if inner.shape[:2] == src.shape[:2]:
        np.copyto(inner, src)
        return out
    done = cv2.resize(src, (geom.new_w, geom.new_h), dst=inner, interpolation=cv2.INTER_LINEAR)
    if done is not inner and not np.shares_memory(done, inner):  # cv2 could not use the view
        np.copyto(inner, done.reshape(inner.shape))
    return out


def letterbox_nchw_into(
    src: np.ndarray, out: np.ndarray, geom: LetterboxGeometry, pad_value: int = PAD_VALUE
) -> np.ndarray:
    """Letterbox a BGR uint8 frame into ``out`` (1, 3, dst_h, dst_w) or (3, dst_h, dst_w)
    float32 as RGB / 255, the ONNX input; only the resized frame (uint8) is a temporary."""
    planes = out[0] if out.ndim == 4 else out
    _check_out(planes, (3, geom.dst_h, geom.dst_w), np.float32)
    _fill_border(planes, geom, pad_value / 255.0, 1)
    small = src
    if (geom.new_h, geom.new_w) != src.shape[:2]:
        small = cv2.resize(src, (geom.new_w, geom.new_h), interpolation=cv2.INTER_LINEAR)
    y0, x0 = geom.pad_y, geom.pad_x
    inner = planes[:, y0 : y0 + geom.new_h, x0 : x0 + geom.new_w]
    inv = np.float32(1.0 / 255.0)
    for c in range(3):  # RGB plane c reads BGR channel 2 - c
        np.multiply(small[:, :, 2 - c], inv, out=inner[c])
    return out


def unletterbox_boxes(xyxy: np.ndarray, geom: LetterboxGeometry) -> np.ndarray:
    """Map boxes (N, 4) from model-input pixels to source-frame pixels, clipped to the frame."""
    pad = np.array([geom.pad_x, geom.pad_y, geom.pad_x, geom.pad_y], np.float32)
    out = (np.asarray(xyxy, np.float32).reshape(-1, 4) - pad) / np.float32(geom.scale)
    np.clip(out[:, 0::2], 0, geom.src_w, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, geom.src_h, out=out[:, 1::2])
    return out


def letterbox_boxes(xyxy: np.ndarray, geom: LetterboxGeometry) -> np.ndarray:
    """Map boxes (N, 4) from source-frame pixels to model-input pixels (inverse, unclipped)."""
    pad = np.array([geom.pad_x, geom.pad_y, geom.pad_x, geom.pad_y], np.float32)
    return np.asarray(xyxy, np.float32).reshape(-1, 4) * np.float32(geom.scale) + pad
