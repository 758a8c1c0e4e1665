"""rkpipe's runtime: graphs of stage processes joined by ZeroMQ, frames in shared memory."""

from .context import Context, InlineRuntime, StageRuntime
from .detections import Detections
from .errors import (
    GraphError,
    ModelError,
    RkpipeError,
    SourceError,
    StageSetupError,
    TransportError,
)
from .keys import FRAME
from .messages import Message
from .stage import Outputs, Source, Stage, StageConfig

__all__ = [
    "FRAME",
    "Context",
    "Detections",
    "GraphError",
    "InlineRuntime",
    "Message",
    "ModelError",
    "Outputs",
    "RkpipeError",
    "Source",
    "SourceError",
    "Stage",
    "StageConfig",
    "StageRuntime",
    "StageSetupError",
    "TransportError",
]

__version__ = "0.1.0"
