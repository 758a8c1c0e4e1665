"""rkpipe's runtime: graphs of stage processes joined by ZeroMQ, frames in shared memory."""

from importlib.metadata import PackageNotFoundError, version

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

try:  # one version, the installed package's (pyproject.toml)
    __version__ = version("rkpipe")
except PackageNotFoundError:  # a tree that was never installed
    __version__ = "0+unknown"
