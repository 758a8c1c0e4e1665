"""Command topics of the mqtt sink (``commands = true``; off by default): a Home Assistant
automation, or ``mosquitto_pub``, changes the running pipeline the way an edited graph file
does.

    {state_prefix}/lines/<line>/set      {"a": [x, y], "b": [x, y]}: move the stream's line
    {state_prefix}/lines/<line>/set/result   the answer: {"ok": true, ...} or {"ok": false,
                                              "error": ..., "problems": [...]}, not retained

A command goes through the graph file (``GraphFile``), as a control API change does: the
stage that counts the stream's line is found (``change_shape``), the graph is validated in
full with the change, written back keeping the user's comments, and the run reloads it. A
command that cannot be made changes nothing, and says why once: one log line and one result.

Commands are parsed defensively: a payload is at most ``MAX_PAYLOAD`` bytes of JSON with known
keys and plain numbers; anything else is refused without an exception. A retained command is
not obeyed (it would act again at every start and undo later edits of the file), an empty
payload (what removing a retained message sends) is ignored, and so is a topic the sink
publishes itself. Commands wait in a short queue and are made one at a time on their own
thread, so the network thread, and the acknowledgements of events, never wait for a file.
"""

from __future__ import annotations

import json
import logging
import queue
import threading
from collections.abc import Callable
from typing import Any

from pipeline.errors import GraphError
from pipeline.graph.edit import EditError
from pipeline.graph.graph_file import GraphFile
from pipeline.graph.shapes import change_shape
from pipeline.secrets import mask

__all__ = [
    "MAX_PAYLOAD",
    "CommandTopics",
    "Commands",
    "line_changes",
]

MAX_PAYLOAD = 1024  # bytes of a command's JSON
MAX_TOPIC = 512  # characters of a command's topic
MAX_WAITING = 8  # commands queued while one is being made
MAX_COORDINATE = 100_000  # |x|, |y| of a point, pixels or fractions
LINE_KEYS = ("a", "b", "relative")
EXAMPLE = '{"a": [0.4, 0], "b": [0.4, 1]}'
STREAM = "{stream}"


class CommandTopics:
    """The command topics under a state prefix rendered for this board (``{node}`` and
    ``{pipeline}`` filled, ``{stream}`` left as it is: one level of its own)."""

    def __init__(self, prefix: str) -> None:
        self.levels = [lv for lv in prefix.split("/") if lv]
        self.stream_at = self.levels.index(STREAM)

    def filters(self) -> list[str]:
        """The subscription that takes every command."""
        base = "/".join("+" if lv == STREAM else lv for lv in self.levels)
        return [f"{base}/lines/+/set"]

    def parse(self, topic: str) -> tuple[str, str] | None:
        """(stream, line) of a command topic; None for any other topic."""
        parts = topic.split("/")
        n = len(self.levels)
        if len(parts) != n + 3 or parts[n] != "lines" or parts[n + 2] != "set":
            return None
        if any(lv != STREAM and lv != part for lv, part in zip(self.levels, parts, strict=False)):
            return None
        stream, line = parts[self.stream_at], parts[n + 1]
        return (stream, line) if stream and line else None


def line_changes(payload: bytes) -> dict[str, Any]:
    """The keys of a line that a ``.../lines/<line>/set`` payload changes: ``a`` and ``b``
    ([x, y], pixels or, with ``relative``, fractions 0-1), ``relative``. Raises ValueError
    saying what is wrong; never anything else."""
    if len(payload) > MAX_PAYLOAD:
        raise ValueError(f"{len(payload)} bytes; a command is at most {MAX_PAYLOAD}")
    try:
        value = json.loads(payload.decode("utf-8"), parse_constant=_no_constant)
    except UnicodeDecodeError:
        raise ValueError("not UTF-8 text") from None
    except (ValueError, RecursionError) as exc:
        raise ValueError(f"not JSON ({exc})") from None
    if not isinstance(value, dict):
        raise ValueError(f"expected a JSON object such as {EXAMPLE}, got {_kind(value)}")
    unknown = [k for k in value if k not in LINE_KEYS]
    if unknown:
        raise ValueError(f"unknown key {unknown[0][:40]!r}; a line takes a, b and relative")
    if "a" not in value and "b" not in value:
        raise ValueError(f"nothing to move: give a and b, e.g. {EXAMPLE}")
    changes: dict[str, Any] = {k: _point(value[k], k) for k in ("a", "b") if k in value}
    if "relative" in value:
        if not isinstance(value["relative"], bool):
            raise ValueError(f"relative is true or false, got {_kind(value['relative'])}")
        changes["relative"] = value["relative"]
    return changes


def _point(value: Any, key: str) -> list[float]:
    numbers = isinstance(value, list) and all(
        isinstance(v, int | float) and not isinstance(v, bool) for v in value
    )
    if not numbers or len(value) != 2:
        raise ValueError(f"{key} is [x, y], two numbers; got {_kind(value)}")
    if not all(abs(v) <= MAX_COORDINATE for v in value):  # NaN and inf fail this too
        raise ValueError(f"{key}: coordinates are numbers within +-{MAX_COORDINATE}")
    return list(value)


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a coordinate")


def _kind(value: Any) -> str:
    if isinstance(value, list):
        return f"a list of {len(value)}"
    return {dict: "an object", str: "a string", bool: "true/false", type(None): "null"}.get(
        type(value), "a number"
    )


class Commands:
    """Takes the messages of the command subscription (``offer``, from paho's network
    thread) and makes each command on its own thread; ``publish(topic, payload)`` sends a
    result, ``own(topic)`` says whether the sink publishes that topic itself."""

    def __init__(
        self,
        topics: CommandTopics,
        graph_file: GraphFile | None,
        publish: Callable[[str, str], None],
        own: Callable[[str], bool],
        log: logging.Logger,
    ) -> None:
        self.topics, self.file, self.publish, self.own, self.log = (
            topics, graph_file, publish, own, log
        )  # fmt: skip
        self.waiting: queue.Queue[tuple[str, bytes] | None] = queue.Queue(MAX_WAITING)
        self.said_retained: set[str] = set()
        self.busy = False  # said "too many commands" since the queue was last empty
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="mqtt-commands", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        """Make no more commands; the one being made (a file write) is let finish."""
        self.stopping.set()
        while True:
            try:
                self.waiting.get_nowait()
            except queue.Empty:
                break
        try:
            self.waiting.put(None, timeout=2.0)
        except queue.Full:  # pragma: no cover  (nothing is queued once stopping is set)
            return
        self.thread.join(2.0)

    def offer(self, topic: str, payload: bytes, retained: bool) -> None:
        """A message on the command subscription (paho's network thread: nothing slow)."""
        if self.stopping.is_set() or self.own(topic) or not payload:
            return  # (a topic of ours: a line named "lines"; no payload: a retained one removed)
        if retained:
            if topic not in self.said_retained and len(self.said_retained) < 100:
                self.said_retained.add(topic)
                self.log.warning(
                    "mqtt: a retained command on %s is not obeyed (it would act again at every "
                    "start); publish commands without retain, and remove this one with "
                    "mosquitto_pub -r -n -t '%s'",
                    _shown(topic),
                    _shown(topic),
                )
            return
        if len(payload) > MAX_PAYLOAD or len(topic) > MAX_TOPIC:
            what = "topic" if len(topic) > MAX_TOPIC else "payload"
            size = len(topic) if what == "topic" else len(payload)
            limit = MAX_TOPIC if what == "topic" else MAX_PAYLOAD
            self._refuse(topic, f"bad {what}: {size} bytes; a command's is at most {limit}")
            return
        try:
            self.waiting.put_nowait((topic, payload))
        except queue.Full:
            if not self.busy:
                self.busy = True
                self.log.warning(
                    "mqtt: commands come faster than the graph file takes them; those past %d "
                    "waiting are ignored (said once while they wait)",
                    MAX_WAITING,
                )

    def handle(self, topic: str, payload: bytes) -> dict[str, Any]:
        """Make one command: its result, also published and said in the log."""
        names = self.topics.parse(topic)
        if names is None:
            return self._refuse(topic, "not a command topic (<prefix>/lines/<line>/set)")
        stream, line = names
        try:
            changes = line_changes(payload)
        except ValueError as exc:
            return self._refuse(topic, f"bad payload: {exc}")
        graph = self.file
        if graph is None:
            return self._refuse(topic, "this sink is not part of a run with a graph file")
        stages: list[str] = []

        def edit(text: str) -> str:
            done = change_shape(text, graph.path, "lines", stream, line, changes)
            stages.append(done.stage)
            return done.text

        try:
            applied = graph.change(edit)
        except EditError as exc:
            return self._refuse(topic, str(exc))
        except GraphError as exc:  # the validator's messages: nothing was written
            problems = [mask(p) for p in exc.problems]
            return self._refuse(topic, "the graph would not be valid; nothing changed", problems)
        where = f"line {line!r} of stream {stream!r} in stage {stages[-1]!r}"
        if not (applied.in_place or applied.restart or applied.reloaded):
            self.log.warning("mqtt: command on %s: %s is there already", _shown(topic), where)
        else:
            asked = "the run reloads it" if applied.reloaded else "the run could not be asked to"
            self.log.warning(
                "mqtt: command on %s: moved %s; written to %s, %s",
                _shown(topic),
                where,
                graph.path,
                asked,
            )
        result = {"ok": True, "stage": stages[-1], "stream": stream, "line": line}
        return self._answer(topic, {**result, **applied.to_json()})

    def _run(self) -> None:
        while True:
            try:
                item = self.waiting.get(timeout=1.0)
            except queue.Empty:
                self.busy = False
                continue
            if item is None:
                return
            if self.waiting.empty():
                self.busy = False
            topic, payload = item
            try:
                self.handle(topic, payload)
            except Exception as exc:  # a command never ends the sink
                self._refuse(topic, f"failed: {type(exc).__name__}: {exc}")

    def _refuse(self, topic: str, error: str, problems: list[str] | None = None) -> dict[str, Any]:
        said = f"{error}: {'; '.join(problems)}" if problems else error
        self.log.warning("mqtt: command on %s refused: %s", _shown(topic), mask(said))
        result: dict[str, Any] = {"ok": False, "error": mask(error)}
        if problems:
            result["problems"] = problems
        return self._answer(topic, result)

    def _answer(self, topic: str, result: dict[str, Any]) -> dict[str, Any]:
        if len(topic) <= MAX_TOPIC:
            try:
                self.publish(f"{topic}/result", json.dumps(result, separators=(",", ":")))
            except (ValueError, OSError) as exc:  # a topic the client refuses
                self.log.warning("mqtt: cannot answer on %s/result: %s", _shown(topic), exc)
        return result


def _shown(topic: str) -> str:
    """A topic as the log shows it: a stranger's topic is cut short."""
    return topic if len(topic) <= 120 else f"{topic[:120]}..."
