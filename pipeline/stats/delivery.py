"""The delivery check, now kept with the rest of the accounting (``accounting.delivery``)."""

from __future__ import annotations

from ..accounting.delivery import SinkDelivery, StreamSource, delivery_report, summary_lines

__all__ = ["SinkDelivery", "StreamSource", "delivery_report", "summary_lines"]
