"""Run stages inline, without processes or sockets, for unit tests of user stages.

``run_stage`` calls setup, process for each message, end_stream for each stream seen, and
close, and returns every output in order.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from .messages import Message
from .stage import Context, Outputs, Source, Stage

__all__ = ["read_source", "run_stage"]


def _as_list(out: Outputs) -> list[Message]:
    if out is None:
        return []
    return [out] if isinstance(out, Message) else list(out)


def run_stage(
    stage: Stage, messages: Iterable[Message], graph_dir: Path | None = None
) -> list[Message]:
    """Feed ``messages`` through ``stage`` in one process and collect its outputs."""
    ctx = Context(stage=type(stage).__name__, graph_dir=graph_dir or Path.cwd())
    stage.setup(ctx)
    outputs: list[Message] = []
    streams: list[str] = []
    try:
        for msg in messages:
            if msg.stream not in streams:
                streams.append(msg.stream)
            outputs.extend(_as_list(stage.process(msg)))
        for stream in streams:
            outputs.extend(_as_list(stage.end_stream(stream)))
    finally:
        stage.close()
    return outputs


def read_source(
    source: Source, limit: int, stream: str = "test", graph_dir: Path | None = None
) -> list[Message]:
    """Up to ``limit`` messages from a source, read inline."""
    source.stream_id = stream
    ctx = Context(stage=stream, graph_dir=graph_dir or Path.cwd())
    source.setup(ctx)
    out: list[Message] = []
    try:
        while len(out) < limit and (msg := source.read()) is not None:
            out.append(msg)
    finally:
        source.close()
    return out
