"""The names stages agree on: which ``Message.arrays`` and ``Message.meta`` keys carry what.

A stage that produces or reads one of these uses the constant, so a contract between two
stages is written once and found by name.
"""

from __future__ import annotations

__all__ = [
    "DETECTIONS_PREFIX",
    "FRAME",
    "META_EVENTS",
    "META_INFER_MS",
    "META_LETTERBOX",
    "META_LINES",
    "META_QUANT",
    "META_ZONES",
    "OUTPUT_PREFIX",
    "TENSOR",
    "output_index",
    "output_key",
]

# -- arrays ----------------------------------------------------------------------------------
FRAME = "frame"  # the captured image, (H, W, 3) uint8 BGR
TENSOR = "tensor"  # the model input a preprocess stage made (letterbox's default ``output``)
OUTPUT_PREFIX = "out."  # model outputs in the model's order: out.0, out.1, ...
DETECTIONS_PREFIX = "det."  # Detections fields and per-row data: det.xyxy, det.age, ...

# -- meta --------------------------------------------------------------------------------------
META_LETTERBOX = "letterbox"  # LetterboxGeometry.to_dict() of the tensor, to map boxes back
META_QUANT = "quant"  # per-output (zero_point, scale) when a backend returns raw int8 outputs
META_INFER_MS = "infer_ms"  # time the model took on this frame
META_EVENTS = "events"  # analytics events (stages/events.schema.json), appended in order
META_LINES = "lines"  # line_crossing's lines and totals, for drawing
META_ZONES = "zones"  # zones' polygons and occupancy, for drawing


def output_key(index: int) -> str:
    """The arrays key of model output ``index``."""
    return f"{OUTPUT_PREFIX}{index}"


def output_index(key: str) -> int:
    """The model output index of an ``out.N`` key."""
    return int(key[len(OUTPUT_PREFIX) :])
