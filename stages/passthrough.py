"""A stage that forwards every message unchanged: for wiring tests and as a template."""

from __future__ import annotations

import time

from pydantic import Field

from pipeline.messages import Message
from pipeline.stage import Stage, StageConfig

__all__ = ["Passthrough"]


class PassthroughConfig(StageConfig):
    delay_ms: float = Field(0.0, ge=0, description="time to spend on each message")


class Passthrough(Stage[PassthroughConfig]):
    """Forward each message; ``delay_ms`` simulates work (useful to see backpressure)."""

    def process(self, msg: Message) -> Message:
        if self.config.delay_ms:
            time.sleep(self.config.delay_ms / 1000)
        return msg
