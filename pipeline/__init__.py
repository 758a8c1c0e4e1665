"""rkpipe's runtime: graphs of stage processes joined by ZeroMQ, frames in shared memory."""

from .errors import GraphError, ModelError, RkpipeError, SourceError, StageSetupError
from .messages import FRAME, Message
from .stage import Context, Outputs, Source, Stage, StageConfig

__all__ = [
    "FRAME",
    "Context",
    "GraphError",
    "Message",
    "ModelError",
    "Outputs",
    "RkpipeError",
    "Source",
    "SourceError",
    "Stage",
    "StageConfig",
    "StageSetupError",
]

__version__ = "0.1.0"
