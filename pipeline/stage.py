"""The stage interface: typed config from the graph file, setup in the child, process per message.

A stage is constructed in the runner from validated config only; it opens models, devices and
files in ``setup`` inside its own process; ``process`` turns one message into zero, one or many.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
from pydantic import BaseModel, ConfigDict

from .messages import Message

__all__ = ["Context", "Outputs", "Source", "Stage", "StageConfig"]

Outputs = Message | Iterable[Message] | None


class StageConfig(BaseModel):
    """Base of every stage's options. Unknown keys are errors, so typos fail at validate time."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


@dataclass
class Context:
    """What a running stage instance knows about its place in the graph and the run."""

    stage: str
    pipeline: str = "pipeline"  # the graph's [pipeline] name
    replica: int = 0
    replicas: int = 1
    cpus: list[int] = field(default_factory=list)
    graph_dir: Path = field(default_factory=Path.cwd)
    run_id: str = "inline"
    resume_seq: int = -1
    restarted: bool = False  # this process replaces one that crashed: don't clobber its output
    max_frames: int | None = None
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("rkpipe"))
    _alloc: Any = None  # set by the worker: callable(shape, dtype) -> ndarray in shared memory
    _count_drop: Any = None  # set by the worker: callable(reason, n)
    _count_event: Any = None  # set by the worker: callable(kind, n)

    @property
    def instance(self) -> str:
        """``name`` for a single instance, ``name.N`` for replica N."""
        return self.stage if self.replicas == 1 else f"{self.stage}.{self.replica}"

    def resolve_path(self, path: str | Path) -> Path:
        """A path from the graph file, resolved against the graph file's folder."""
        p = Path(path).expanduser()
        return p if p.is_absolute() else (self.graph_dir / p)

    def alloc(self, shape: tuple[int, ...], dtype: Any = np.uint8) -> np.ndarray:
        """An output array in this stage's shared-memory pool: write into it and send it on,
        and no copy is made on the way out. Outside a worker it is a plain array."""
        if self._alloc is None:
            return np.empty(shape, dtype)
        return self._alloc(tuple(shape), np.dtype(dtype))

    def count_drop(self, reason: str, n: int = 1) -> None:
        """Record frames this stage dropped on purpose (e.g. a corrupt frame), by reason."""
        if self._count_drop is not None:
            self._count_drop(reason, n)

    def count_event(self, kind: str, n: int = 1) -> None:
        """Record something notable that lost no frame (a camera reconnect), by kind."""
        if self._count_event is not None:
            self._count_event(kind, n)


class Stage:
    """Base class of every stage. Subclasses set ``Config`` and override ``process``."""

    Config: ClassVar[type[StageConfig]] = StageConfig
    #: False for stages that must see each stream in order through one instance (trackers).
    replicable: ClassVar[bool] = True
    #: >0 for stages that mostly wait on a device (an NPU): ``process`` then runs in a stage
    #: thread with up to this many messages queued for it, so receiving, sending and copying
    #: overlap the device's work and it never idles between messages. Results keep order.
    overlap: ClassVar[int] = 0

    def __init__(self, config: StageConfig | None = None, **options: Any) -> None:
        self.config = config if config is not None else self.Config(**options)

    @classmethod
    def replica_options(cls, config: StageConfig) -> list[dict[str, Any]] | None:
        """Per-replica option overrides, for stages that decide their own replica count
        (inference: one process per entry of ``npu_cores``). None means use ``replicas``."""
        return None

    def setup(self, ctx: Context) -> None:
        """Open resources (models, devices, files). Runs in the stage's own process."""

    def process(self, msg: Message) -> Outputs:
        """Handle one message; return None to drop it, one message, or several."""
        return msg

    def end_stream(self, stream: str) -> Outputs:
        """A stream has ended: flush what is held for it and forget its state."""
        return None

    def close(self) -> None:
        """Release resources; best effort, called once at the end."""


class Source(Stage):
    """A stage with no inputs that produces one stream of messages.

    ``read`` returns the next message or None at the end of the stream. A live source is read
    in its own thread and never waits: when downstream is full the oldest pending frame is
    dropped and counted. A non-live source is read only when downstream has room.
    """

    replicable: ClassVar[bool] = False

    @property
    def live(self) -> bool:
        """True for cameras and network streams (drop oldest), False for files (wait)."""
        return False

    @property
    def stream_id(self) -> str:
        """The stream name this source produces; set by the runner from the stage name."""
        return getattr(self, "_stream_id", "stream")

    def read(self) -> Message | None:
        raise NotImplementedError
