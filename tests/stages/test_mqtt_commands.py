"""The mqtt sink's command topics (``commands = true``), against a real mosquitto broker and a
real ``rkpipe run``: a line moved by a message on ``.../lines/<line>/set`` changes the graph
file (comments kept) and the run reloads it, so the line counts where it was moved; a bad
payload, an invalid edit, a line that is not there and a retained command change nothing, and
each is said once in the log and answered on ``.../set/result``. With commands off (the
default) the sink does not even subscribe, and a message there changes nothing."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import SimpleNamespace

import paho.mqtt.client as mqtt
import pytest
from pydantic import ValidationError

from pipeline.graph.graph_file import GraphFile
from stages.sinks.mqtt.commands import MAX_PAYLOAD, Commands, CommandTopics, line_changes
from stages.sinks.mqtt.config import MqttSinkConfig
from support.background_run import running
from support.graph import Graph
from support.mosquitto import Broker, Subscriber, broker_fixture  # noqa: F401  (the fixture)
from support.rkpipe import poll_for

NODE = "board1"
SET = f"rkpipe/{NODE}/cam0/lines/door/set"
COMMENT = "# the shop's door: left to right is in"
DOOR = {"name": "door", "a": [320, 0], "b": [320, 360]}
STAR_LINES = 'lines."*" = [{ name = "door", a = [320, 0], b = [320, 360] }]'


# -- payloads and topics ---------------------------------------------------------------------
def test_a_line_payload_is_read_into_the_keys_it_changes() -> None:
    assert line_changes(b'{"a": [200, 0], "b": [200.5, 360]}') == {
        "a": [200, 0],
        "b": [200.5, 360],
    }
    assert line_changes(b'{"b": [0.4, 1], "relative": true}') == {"b": [0.4, 1], "relative": True}


@pytest.mark.parametrize(
    ("payload", "says"),
    [
        (b"not json", "not JSON"),
        (b'{"a": [1, 2]', "not JSON"),
        (b"\xff\xfe", "not UTF-8"),
        (b"[[1, 2], [3, 4]]", "expected a JSON object"),
        (b'"door"', "expected a JSON object"),
        (b"{}", "nothing to move"),
        (b'{"a": [1, 2], "colour": "red"}', "unknown key 'colour'"),
        (b'{"name": "exit", "a": [1, 2]}', "unknown key 'name'"),
        (b'{"a": [1, 2, 3]}', "a is [x, y], two numbers"),
        (b'{"a": [true, 2]}', "a is [x, y], two numbers"),
        (b'{"a": ["1", 2]}', "a is [x, y], two numbers"),
        (b'{"a": {"x": 1, "y": 2}}', "a is [x, y]"),
        (b'{"b": [NaN, 2]}', "NaN is not a coordinate"),
        (b'{"b": [Infinity, 2]}', "Infinity is not a coordinate"),
        (b'{"b": [1e400, 2]}', "within"),
        (b'{"b": [1, 123456789012345678901234567890]}', "within"),
        (b'{"a": [1, 2], "relative": "yes"}', "relative is true or false"),
        (b"[" * 100_000, "bytes; a command is at most"),
        (b'{"a": [1, 2]}' + b" " * MAX_PAYLOAD, "bytes; a command is at most"),
    ],
)
def test_a_bad_payload_says_what_is_wrong_and_raises_nothing_else(
    payload: bytes, says: str
) -> None:
    with pytest.raises(ValueError) as err:
        line_changes(payload)
    assert type(err.value) is ValueError
    assert says in str(err.value)


def test_command_topics_are_under_the_state_prefix_one_level_per_name() -> None:
    topics = CommandTopics(f"rkpipe/{NODE}/{{stream}}")
    assert topics.filters() == [f"rkpipe/{NODE}/+/lines/+/set"]
    assert topics.parse(SET) == ("cam0", "door")
    assert topics.parse(f"rkpipe/{NODE}/cam0/lines/front door/set") == ("cam0", "front door")
    for other in (
        f"rkpipe/{NODE}/cam0/lines/door/set/result",
        f"rkpipe/{NODE}/cam0/zones/door/set",
        "rkpipe/board2/cam0/lines/door/set",
        f"rkpipe/{NODE}//lines/door/set",
    ):
        assert topics.parse(other) is None, other
    site = CommandTopics("site/{stream}/rkpipe")
    assert site.filters() == ["site/+/rkpipe/lines/+/set"]
    assert site.parse("site/cam1/rkpipe/lines/gate/set") == ("cam1", "gate")


@pytest.mark.parametrize(
    ("state_prefix", "says"),
    [
        ("", "commands needs state_prefix"),
        ("rkpipe/{node}/cam-{stream}", "a level of its own"),
        ("rkpipe/{node}/{stream}/{type}", "{node}, {pipeline} and {stream} only"),
    ],
)
def test_commands_need_a_state_prefix_with_the_stream_as_a_level(
    state_prefix: str, says: str
) -> None:
    with pytest.raises(ValidationError) as err:
        MqttSinkConfig(commands=True, state_prefix=state_prefix, status_topic="s/{stream}")
    assert says in str(err.value)
    assert not MqttSinkConfig(state_prefix="").commands  # off by default, any prefix then


def test_commands_are_made_one_at_a_time_and_what_is_not_one_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Without a broker: the file changes for a good command (no run to reload it), and an
    oversized payload, a retained command, an empty one and a topic of the sink's own change
    nothing; each said once, each command answered once on its result topic."""
    graph = shop(tmp_path, SimpleNamespace(host="127.0.0.1", port=1883))  # type: ignore[arg-type]
    original = graph.read_text()
    answers: list[tuple[str, dict]] = []
    own = f"rkpipe/{NODE}/cam0/lines/in/set"  # a total of a line named "lines", class "set"
    commands = Commands(
        CommandTopics(f"rkpipe/{NODE}/{{stream}}"),
        GraphFile(graph, None),
        lambda topic, payload: answers.append((topic, json.loads(payload))),
        lambda topic: topic == own,
        logging.getLogger("test.mqtt"),
    )
    commands.start()
    try:
        with caplog.at_level(logging.WARNING, "test.mqtt"):
            commands.offer(SET, b'{"a": [1, 2]}' + b" " * MAX_PAYLOAD, False)
            for _ in range(2):
                commands.offer(SET, b'{"a": [100, 0], "b": [100, 360]}', True)
            commands.offer(SET, b"", False)
            commands.offer(own, b"7", False)
            assert graph.read_text() == original
            commands.offer(SET, b'{"a": [200, 0], "b": [200, 360]}', False)
            assert poll_for(lambda: len(answers) == 2, 30), answers
    finally:
        commands.stop()
    assert not commands.thread.is_alive()
    (big_topic, big), (moved_topic, moved) = answers
    assert big_topic == moved_topic == f"{SET}/result"
    assert big == {"ok": False, "error": f"bad payload: {MAX_PAYLOAD + 13} bytes; a command's "
                   f"is at most {MAX_PAYLOAD}"}  # fmt: skip
    assert moved == {"ok": True, "stage": "count", "stream": "cam0", "line": "door",
                     "in_place": ["count"], "added": [], "removed": [], "restart": [],
                     "reloaded": False}  # fmt: skip
    assert 'lines.cam0 = [{name = "door", a = [200, 0], b = [200, 360]}]' in graph.read_text()
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 3, said  # the oversized one, the retained one (once), the move
    assert "refused: bad payload" in said[0] and "is not obeyed" in said[1]
    assert "the run could not be asked to" in said[2]


# -- a real run ------------------------------------------------------------------------------
def shop(folder: Path, b: Broker, **mqtt_options: object) -> Path:
    """An endless street at 15 fps, its true objects as tracks, one counting line for every
    stream (``"*"``), a jsonl file of every frame and the mqtt sink; a comment kept above
    the counting stage."""
    opts = {"host": b.host, "port": b.port, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5}
    path = (
        Graph("shop", node=NODE, stats_interval_s=0.5)
        .source("cam0", uses="synthetic", scene="easy", realtime=True, fps=15)
        .stage("truth", uses="rk_test_overlay:Overlay", inputs=["cam0"], overlays=False)
        .stage("count", uses="line_crossing", inputs=["truth"], lines={"*": [DOOR]})
        .sink("out", uses="jsonl", inputs=["count"], path=folder / "out.jsonl")
        .sink("mqtt", uses="mqtt", inputs=["count"], **{**opts, **mqtt_options})
        .write(folder)
    )
    text = path.read_text().replace("[stages.count]", f"{COMMENT}\n[stages.count]")
    inline = 'lines = { "*" = [{ name = "door", a = [320, 0], b = [320, 360] }] }'
    assert inline in text
    path.write_text(text.replace(inline, f"{STAR_LINES}  # every camera"))
    return path


def subscribed(b: Broker, topic_filter: str) -> bool:
    """Whether the broker has taken an rkpipe client's subscription to ``topic_filter`` (its
    log says so before its SUBACK, so a message published from then on is delivered)."""
    text = b.log.read_text() if b.log.exists() else ""
    at = text.find(f"\t{topic_filter} (QoS 1)")
    return at >= 0 and "Sending SUBACK to rkpipe-" in text[at:]


def publish(b: Broker, topic: str, payload: bytes | str, retain: bool = False) -> None:
    """One message from another client (a Home Assistant automation), acknowledged."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.connect(b.host, b.port)
    client.loop_start()
    try:
        client.publish(topic, payload, qos=1, retain=retain).wait_for_publish(10)
    finally:
        client.disconnect()
        client.loop_stop()


def lines_at(rows: list[dict]) -> list[list[float]]:
    return [r["meta"]["lines"]["door"]["a"] for r in rows if "door" in r["meta"].get("lines", {})]


def crossings(rows: list[dict]) -> list[dict]:
    return [e for r in rows for e in r["meta"].get("events", []) if e["type"] == "line_crossing"]


@pytest.mark.integration
@pytest.mark.slow
def test_a_line_moved_over_mqtt_goes_through_the_graph_file_and_counts_there(
    tmp_path: Path, broker: Broker, no_leaks
) -> None:
    graph = shop(tmp_path, broker, commands=True)
    original = graph.read_text()
    # left on the broker by an automation that set retain: not obeyed at the sink's start
    publish(broker, SET, '{"a": [100, 0], "b": [100, 360]}', retain=True)
    results = Subscriber(broker, [f"rkpipe/{NODE}/+/lines/+/set/result"])
    try:
        with running(graph) as run:
            run.wait_for_log("is not obeyed")
            assert poll_for(lambda: subscribed(broker, f"rkpipe/{NODE}/+/lines/+/set"), 60)
            publish(broker, SET, b"", retain=True)  # removed, as the log line says: ignored
            answers = lambda: [json.loads(p) for p in results.on(f"{SET}/result")]  # noqa: E731

            # a bad payload, an invalid edit, a line that is not there: nothing changes
            publish(broker, SET, b"{not json")
            assert poll_for(lambda: len(answers()) == 1, 60), "\n".join(run.log())
            publish(broker, SET, '{"a": [320, 0], "b": [320, 0]}')  # no length
            assert poll_for(lambda: len(answers()) == 2, 60), "\n".join(run.log())
            nope = f"rkpipe/{NODE}/cam0/lines/nope/set"
            publish(broker, nope, '{"a": [1, 0], "b": [1, 360]}')
            assert poll_for(lambda: len(results.on(f"{nope}/result")) == 1, 60)
            bad, invalid = answers()
            assert bad["ok"] is False and bad["error"].startswith("bad payload: not JSON")
            assert invalid["ok"] is False
            assert invalid["error"] == "the graph would not be valid; nothing changed"
            assert any(
                "zero length" in p and "stages.count.lines" in p for p in invalid["problems"]
            )
            missing = json.loads(results.on(f"{nope}/result")[0])
            assert missing == {
                "ok": False,
                "error": "stream 'cam0' has no line named 'nope'; its lines are: door",
            }
            assert graph.read_text() == original
            refused = run.said("mqtt: command on")
            assert len(refused) == 3 and all("refused" in line for line in refused), refused
            assert "bad payload" in refused[0] and "zero length" in refused[1]
            assert not run.said("rkpipe: reload:")
            assert len(run.said("is not obeyed")) == 1

            # the line moved: written to the file with its comment, reloaded, counted there
            assert poll_for(lambda: crossings(run.rows()), 90), "\n".join(run.log())
            publish(broker, SET, '{"a": [200, 0], "b": [200, 360]}')
            assert poll_for(lambda: len(answers()) == 3, 60), "\n".join(run.log())
            run.wait_for_log("count took its new options in place")
            moved_at = len(run.rows())
            moved = lambda: [e for e in crossings(run.rows()[moved_at:]) if e["point"][0] == 200]  # noqa: E731
            assert poll_for(moved, 90), "\n".join(run.log())
            stats = run.finish()
    finally:
        results.close()
    assert stats["exact"], stats["streams"]
    assert answers()[2] == {
        "ok": True,
        "stage": "count",
        "stream": "cam0",
        "line": "door",
        "in_place": ["count"],
        "added": [],
        "removed": [],
        "restart": [],
        "reloaded": True,
    }
    text = graph.read_text()
    assert COMMENT in text and text.index("[stages.truth]") < text.index(COMMENT)
    own = 'lines.cam0 = [{name = "door", a = [200, 0], b = [200, 360]}]\n'
    assert text.index(STAR_LINES) < text.index(own)  # the stream's own list, after the "*" one
    assert text.replace(own, "") == original, text  # and nothing else changed
    assert run.said("rkpipe: reload:") == [
        "rkpipe: reload: count: new lines; sent to its processes",
        "rkpipe: reload: count took its new options in place",
    ]
    assert len(run.said("mqtt: command on")) == 4
    assert (
        f"moved line 'door' of stream 'cam0' in stage 'count'; written to {graph}"
        in (run.said("mqtt: command on")[-1])
    )
    where = lines_at(run.rows())
    first = where.index([200.0, 0.0])  # from this frame on, the line is where it was moved
    assert {tuple(a) for a in where[:first]} == {(320.0, 0.0)}
    assert {tuple(a) for a in where[first:]} == {(200.0, 0.0)}
    assert stats["stages"]["count"]["restarts"] == 0


@pytest.mark.integration
def test_with_commands_off_a_message_on_a_set_topic_changes_nothing(
    tmp_path: Path, broker: Broker, no_leaks
) -> None:
    graph = shop(tmp_path, broker)  # commands left at their default
    original = graph.read_text()
    status = Subscriber(broker, [f"rkpipe/{NODE}/status"])
    try:
        with running(graph) as run:
            assert poll_for(lambda: b"online" in status.on(f"rkpipe/{NODE}/status"), 60)
            publish(broker, SET, '{"a": [200, 0], "b": [200, 360]}')
            rows = len(run.rows())
            assert poll_for(lambda: len(run.rows()) >= rows + 30, 60)  # well past its arrival
            stats = run.finish()
    finally:
        status.close()
    assert stats["exact"], stats["streams"]
    assert graph.read_text() == original
    assert not run.said("mqtt: command") and not run.said("rkpipe: reload:")
    assert "Received SUBSCRIBE from rkpipe-" not in broker.log.read_text()  # it never listened
    assert {tuple(a) for a in lines_at(run.rows())} == {(320.0, 0.0)}
