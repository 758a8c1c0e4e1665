"""The ``letterbox`` stage and its geometry: resize with borders to the model's input size,
and map boxes back to the frame."""

from __future__ import annotations

from stages.letterbox.geometry import (
    LetterboxGeometry,
    letterbox_boxes,
    letterbox_geometry,
    letterbox_into,
    letterbox_nchw_into,
    unletterbox_boxes,
)
from stages.letterbox.stage import Letterbox

__all__ = [
    "Letterbox",
    "LetterboxGeometry",
    "letterbox_boxes",
    "letterbox_geometry",
    "letterbox_into",
    "letterbox_nchw_into",
    "unletterbox_boxes",
]
