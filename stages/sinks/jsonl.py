"""A sink that writes one JSON line per message: stream, seq, timestamps, payload summary."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import IO, Any

from pydantic import Field

from pipeline.messages import Message
from pipeline.stage import Context, Stage, StageConfig

__all__ = ["JsonlSink"]


class JsonlSink(Stage):
    """Append a JSON line per message to ``path`` (relative paths: the working directory).

    Arrays are summarised by shape and dtype, never dumped; metadata goes in as it is.
    """

    replicable = False

    class Config(StageConfig):
        path: str = Field("out/events.jsonl", description="file to append to; {stream} allowed")
        flush_every: int = Field(1, ge=1, description="lines between flushes (1: tail-able)")

    def setup(self, ctx: Context) -> None:
        self.files: dict[Path, IO[str]] = {}
        self.pending = 0

    def _file(self, stream: str) -> IO[str]:
        path = Path(self.config.path.format(stream=stream))
        f = self.files.get(path)
        if f is None:
            path.parent.mkdir(parents=True, exist_ok=True)
            f = self.files[path] = path.open("a")
        return f

    def process(self, msg: Message) -> Message:
        line = json.dumps(self.record(msg), separators=(",", ":"), default=_plain)
        f = self._file(msg.stream)
        f.write(line + "\n")
        self.pending += 1
        if self.pending >= self.config.flush_every:
            f.flush()
            self.pending = 0
        return msg

    @staticmethod
    def record(msg: Message) -> dict[str, Any]:
        return {
            "stream": msg.stream,
            "seq": msg.seq,
            "t_capture": round(msg.t_capture, 6),
            "latency_ms": round((time.monotonic_ns() - msg.t_mono_ns) / 1e6, 3),
            "meta": msg.meta,
            "arrays": {k: [list(v.shape), v.dtype.str] for k, v in msg.arrays.items()},
        }

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def _plain(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
