"""The stage interface: typed config from the graph file, setup in the child, process per message.

A stage object is built inside its own process from validated config; it opens models,
devices and files in ``setup``; ``process`` turns one message into zero, one or many.
A stage declares its options as a :class:`StageConfig` and names it as its type parameter,
which gives ``self.config`` that type::

    class BrightnessConfig(StageConfig):
        dark_below: float = 40.0

    class Brightness(Stage[BrightnessConfig]):
        def process(self, msg: Message) -> Message: ...
"""

from __future__ import annotations

import typing
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ConfigDict

from .context import Context
from .messages import Message

if TYPE_CHECKING:
    from .doctor.check import Check, DoctorContext

__all__ = ["Context", "Outputs", "Source", "Stage", "StageConfig"]

Outputs = Message | Iterable[Message] | None


class StageConfig(BaseModel):
    """Base of every stage's options. Unknown keys are errors, so typos fail at validate time."""

    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


C = TypeVar("C", bound=StageConfig)


class Stage(Generic[C]):
    """Base class of every stage. Subclasses name their config type and override ``process``.

    ``Stage[MyConfig]`` sets ``Config = MyConfig``; a nested ``class Config(StageConfig)``
    works too (``self.config`` is then untyped for a type checker).
    """

    Config: ClassVar[type[StageConfig]] = StageConfig
    #: False for stages that must see each stream in order through one instance (trackers).
    replicable: ClassVar[bool] = True
    #: True for a sink that may fall behind (the preview): its producer never waits for it,
    #: a frame it has no room for reaches it as a SKIP counted ``behind`` (graph: best_effort).
    best_effort: ClassVar[bool] = False
    #: >0 for stages that mostly wait on a device (an NPU): ``process`` then runs in a stage
    #: thread with up to this many messages queued for it, so receiving, sending and copying
    #: overlap the device's work and it never idles between messages. Results keep order.
    overlap: ClassVar[int] = 0
    #: False for a sink that never reads the image (``msg.frame``: a file of JSON lines, a
    #: broker): it is not copied out of shared memory before the sink writes (see ``process``).
    reads_frame: ClassVar[bool] = True
    #: Options that only lay out the stage's processes (inference: ``npu_cores``, whose
    #: entries become each process's ``npu_core``): a reload that changes one adds or lets
    #: go processes, and the others need not take it.
    layout_options: ClassVar[tuple[str, ...]] = ()

    config: C

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "Config" in cls.__dict__:
            return
        for base in getattr(cls, "__orig_bases__", ()):
            args = typing.get_args(base)
            if args and isinstance(args[0], type) and issubclass(args[0], StageConfig):
                cls.Config = args[0]
                return

    def __init__(self, config: C | None = None, **options: Any) -> None:
        self.config = config if config is not None else self.Config(**options)  # type: ignore[assignment]

    @classmethod
    def replica_options(cls, config: StageConfig) -> list[dict[str, Any]] | None:
        """Per-replica option overrides, for stages that decide their own replica count
        (inference: one process per entry of ``npu_cores``). None means use ``replicas``."""
        return None

    @classmethod
    def doctor(cls, config: StageConfig, ctx: DoctorContext) -> list[Check]:
        """What ``rkpipe doctor GRAPH`` checks for this stage on this machine, beyond its
        options (a model loads, a camera or broker answers); nothing by default."""
        return []

    @classmethod
    def input_size(cls, config: StageConfig, graph_dir: Path) -> tuple[int, int] | None:
        """The (width, height) of the image this stage takes, when its options fix one
        (inference: its model's input), for the stages that feed it; None: any size."""
        return None

    @classmethod
    def from_consumers(
        cls, config: StageConfig, sizes: dict[str, tuple[int, int]]
    ) -> tuple[dict[str, Any], list[tuple[str, str]]]:
        """Options this stage takes from the stages it feeds, given the input size each one
        fixes (stage name -> (width, height)): letterbox's ``size = "model"``. Returns the
        options to set and the problems, as (option, reason); nothing by default."""
        return {}, []

    @classmethod
    def plan(cls, name: str, graph: Any, board_report: Path | None) -> list[str]:
        """What ``rkpipe graph --plan`` says about this stage of the loaded ``graph``
        (inference: whether the NPU keeps up with the cameras); the first line also goes
        into ``rkpipe validate``. ``board_report``: a board's measured figures, if any."""
        return []

    @classmethod
    def frame_bytes(cls, config: StageConfig) -> int:
        """About how many bytes one message's arrays take in this stage's shared-memory
        pool, to size /dev/shm (``rkpipe doctor``); 0 for stages that write none."""
        return 0

    def setup(self, ctx: Context) -> None:
        """Open resources (models, devices, files). Runs in the stage's own process."""

    def process(self, msg: Message) -> Outputs:
        """Handle one message; return None to drop it, one message, or several.

        At a sink, returning counts the frame delivered: return only once what the user
        reads holds it (a line in the file, a frame in a recording that plays, a message in
        a durable spool), and raise ``OSError`` if it cannot be delivered (counted
        ``sink_error``). A frame is handed to a sink once: it is never counted twice. A sink
        is given its own copy of the arrays, taken while their shared memory still held them,
        so what it writes is intact even where the pool comes round under it."""
        return msg

    def reconfigure(self, config: C) -> bool:
        """Take changed options in place, between two messages, keeping what the stage
        holds (tracks, totals); False when it cannot (it is restarted with them instead)."""
        return False

    def end_stream(self, stream: str) -> Outputs:
        """A stream has ended: flush what is held for it and forget its state."""
        return None

    def close(self) -> None:
        """Release resources; best effort, called once at the end."""


class Source(Stage[C]):
    """A stage with no inputs that produces one stream of messages.

    ``read`` returns the next message or None at the end of the stream. A live source is read
    in its own thread and never waits: when downstream is full the oldest pending frame is
    dropped and counted. A non-live source is read only when downstream has room.
    """

    replicable: ClassVar[bool] = False
    _stream_id: str = "stream"

    @property
    def live(self) -> bool:
        """True for cameras and network streams (drop oldest), False for files (wait)."""
        return False

    @property
    def stream_id(self) -> str:
        """The stream name this source produces: its stage's name, set by the runtime."""
        return self._stream_id

    @stream_id.setter
    def stream_id(self, name: str) -> None:
        self._stream_id = name

    def read(self) -> Message | None:
        raise NotImplementedError
