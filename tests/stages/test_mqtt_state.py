"""Retained state beside the events, read from a real mosquitto: plain numbers for every class a
line or zone counts (zeros too), line totals that survive a restart without counting a run
twice, topics removed when a line or zone is gone, Home Assistant discovery configs that follow
HA's documented fields, event snapshots as JPEG bytes, and each camera's online/offline
following its source's health."""

from __future__ import annotations

import json
import logging
import re
import signal
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest

from pipeline import Context, InlineRuntime, Message
from stages.event_files import safe_name
from stages.events import (
    counts_event,
    line_crossing_event,
    zone_enter_event,
    zone_exit_event,
)
from stages.sinks.mqtt import MqttSink
from stages.sinks.mqtt.state_topics import StreamState
from stages.sinks.mqtt.status_memory import StatusMemory
from support.graph import Graph
from support.ha_schemas import EVENT
from support.mosquitto import Broker, Subscriber, broker_fixture  # noqa: F401  (the fixture)
from support.mqtt_graph import NODE, graph_text, start_run
from support.rkpipe import poll_for, write_graph

PERSON, CAR = 0, 2


def _msg(seq: int, *build: Any) -> Message:
    """A frame of cam0 carrying the events ``build`` makes (each called with the message)."""
    msg = Message("cam0", seq)
    msg.meta["events"] = [b(msg) for b in build]
    return msg


def crossing(direction: str, cls: int, track: int = 1) -> Any:
    return lambda m: line_crossing_event(
        m, "door", direction, track, cls, (1, 2), {"in": 0, "out": 0}
    )


def counts(lines: dict, zones: dict | None = None) -> Any:
    return lambda m: counts_event(m, lines, zones or {})


def run_sink(
    broker: Broker, run_id: str, msgs: list[Message], pipeline: str = "pipeline", **opts: Any
) -> InlineRuntime:
    """One run of an inline sink (in the current folder): its frames, the stream's end, close."""
    runtime = InlineRuntime()
    sink = MqttSink(host=broker.host, port=broker.port, flush_timeout_s=5, **opts)
    sink.setup(Context(stage="mqtt", pipeline=pipeline, run_id=run_id, runtime=runtime, node=NODE))
    for msg in msgs:
        sink.process(msg)
    sink.end_stream("cam0")
    sink.close()
    return runtime


def retained(broker: Broker, want: dict[str, bytes], topics: tuple = ("rkpipe/#",)) -> dict:
    """The retained values a new subscriber gets, once ``want`` is among them."""
    sub = Subscriber(broker, list(topics))
    try:
        poll_for(lambda: want.items() <= sub.latest().items(), timeout=10)
        seen = [-1]

        def quiet() -> bool:  # the burst of retained messages is over
            n, seen[0] = seen[0], len(sub.messages)
            return n == seen[0]

        poll_for(quiet, timeout=5, interval=0.3)
        return sub.latest()
    finally:
        sub.close()


# -- plain numbers -------------------------------------------------------------------------------
@pytest.mark.integration
def test_totals_are_plain_numbers_with_zero_classes_and_carry_on_after_a_restart(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    first = [
        _msg(0, crossing("in", PERSON, 1)),
        _msg(1, crossing("in", PERSON, 2)),
        _msg(2, crossing("out", CAR, 3)),
        _msg(3, lambda m: zone_enter_event(m, "lobby", 1, PERSON)),
        _msg(4, lambda m: zone_enter_event(m, "lobby", 2, PERSON)),
        _msg(
            5,
            counts(
                {"door": {"in": {"person": 2, "car": 0}, "out": {"person": 0, "car": 1}}},
                {"lobby": {"person": 2, "bicycle": 0}},
            ),
        ),
        _msg(6, lambda m: zone_exit_event(m, "lobby", 1, PERSON, 0.5)),
    ]
    run_sink(broker, "run1", first)
    want = {
        f"rkpipe/{NODE}/cam0/door/in/person": b"2",
        f"rkpipe/{NODE}/cam0/door/out/person": b"0",
        f"rkpipe/{NODE}/cam0/door/in/car": b"0",
        f"rkpipe/{NODE}/cam0/door/out/car": b"1",
        f"rkpipe/{NODE}/cam0/zones/lobby/person": b"1",
        f"rkpipe/{NODE}/cam0/zones/lobby/bicycle": b"0",
        f"rkpipe/{NODE}/cam0/status": b"offline",
    }
    state = retained(broker, want)
    assert want.items() <= state.items(), state
    assert (tmp_path / "out" / "mqtt" / "pipeline" / "cam0.json").is_file()

    # the next run: its counter starts from 0 again; the totals carry on from 2
    again = [
        _msg(0, crossing("in", PERSON, 1)),
        _msg(1, counts({"door": {"in": {"person": 1, "car": 0}, "out": {"car": 0}}})),
    ]
    run_sink(broker, "run2", again)
    want = {f"rkpipe/{NODE}/cam0/door/in/person": b"3", f"rkpipe/{NODE}/cam0/door/out/car": b"1"}
    assert want.items() <= retained(broker, want).items()

    # the sink of run2 restarts (its counter upstream does not): run2 is not added twice
    restarted = [
        _msg(2, crossing("in", PERSON, 4)),
        _msg(3, counts({"door": {"in": {"person": 2, "car": 0}, "out": {"car": 0}}})),
    ]
    run_sink(broker, "run2", restarted)
    want = {f"rkpipe/{NODE}/cam0/door/in/person": b"4", f"rkpipe/{NODE}/cam0/door/out/car": b"1"}
    assert want.items() <= retained(broker, want).items()


def test_a_long_pipeline_name_keeps_its_totals_in_a_bounded_folder(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A pipeline name of 300 characters (longer than a file name may be): the totals folder
    is a readable head and a hash, and the next run carries on counting."""
    monkeypatch.chdir(tmp_path)
    name = "long_" + "x" * 295
    for run in ("run1", "run2"):
        run_sink(broker, run, [_msg(0, crossing("in", PERSON, 1))], pipeline=name)
    (folder,) = (tmp_path / "out" / "mqtt").iterdir()
    assert folder.name.startswith("long_xxx") and len(folder.name) <= 120
    assert (folder / "cam0.json").is_file()
    want = {f"rkpipe/{NODE}/cam0/door/in/person": b"2"}
    assert want.items() <= retained(broker, want).items()


def test_names_that_clean_to_the_same_text_keep_apart_files() -> None:
    names = ["a/b", "a_b", "a b", "+", "#", "x" * 300, "x" * 299 + "y"]
    files = {safe_name(n, exact=True) for n in names}
    assert len(files) == len(names) and safe_name("a_b", exact=True) == "a_b"
    assert all(len(f) <= 120 and "/" not in f for f in files)


def test_a_totals_folder_that_cannot_be_made_is_said_plainly(
    tmp_path: Path,
    broker: Broker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "taken").write_text("a file where the folder would go")
    run_sink(broker, "run1", [_msg(0, crossing("in", PERSON, 1))], state_dir="taken")
    assert "mqtt: cannot make the folder for line totals taken/pipeline (" in caplog.text
    assert "totals are published but not kept, so the next run counts from 0" in caplog.text
    want = {f"rkpipe/{NODE}/cam0/door/in/person": b"1"}  # the numbers still go out
    assert want.items() <= retained(broker, want).items()


def test_every_total_is_on_disk_before_it_is_published_and_a_torn_line_is_skipped(
    tmp_path: Path,
) -> None:
    path = tmp_path / "cam0.json"
    state = StreamState(path, "run1")
    for track in range(3):
        state.fold(crossing("in", PERSON, track)(Message("cam0", track)))
        state.save()  # what StateTopics does before it publishes
    assert len(path.read_text().splitlines()) == 3  # a snapshot, then one line per change
    with path.open("a") as f:
        f.write('{"l":"door","d":"in","c":"pers')  # the process died while appending
    # no close: killed. The next incarnation of the same run sees all three.
    again = StreamState(path, "run1")
    assert again.total("door", "in", "person") == 3
    next_run = StreamState(path, "run2")
    next_run.fold(crossing("in", PERSON, 9)(Message("cam0", 0)))
    assert next_run.total("door", "in", "person") == 4


@pytest.mark.integration
def test_a_line_or_zone_that_is_gone_is_removed_with_its_sensors(
    tmp_path: Path,
    broker: Broker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    topics = ("rkpipe/#", "homeassistant/#")
    both = {
        "door": {"in": {"person": 1}, "out": {"person": 0}},
        "gate": {"in": {"car": 0}, "out": {"car": 2}},
    }
    run_sink(broker, "run1", [_msg(0, counts(both, {"lobby": {"person": 1}}))], ha_discovery=True)
    gate = f"rkpipe/{NODE}/cam0/gate/out/car"
    before = retained(broker, {gate: b"2"}, topics)
    gate_configs = [t for t in before if t.startswith("homeassistant/") and "_gate_" in t]
    lobby_configs = [t for t in before if t.startswith("homeassistant/") and "_zone_lobby_" in t]
    assert len(gate_configs) == 2 and len(lobby_configs) == 1, sorted(before)

    door_only = {"door": {"in": {"person": 1}, "out": {"person": 0}}}
    run_sink(broker, "run2", [_msg(0, counts(door_only))], ha_discovery=True)
    door = [f"rkpipe/{NODE}/cam0/door/{d}/person" for d in ("in", "out")]
    configs = [t for t in before if t.startswith("homeassistant/") and "_door_" in t]
    configs += [t for t in before if t.endswith("_event_line_crossing/config")]
    cam = [f"rkpipe/{NODE}/status", f"rkpipe/{NODE}/cam0/status", f"rkpipe/{NODE}/cam0/fps"]
    cam += [t for t in before if t.endswith(("_connected/config", "_fps/config"))]
    after = retained(broker, {door[0]: b"1"}, topics)
    # gate and lobby are gone, and the zone event entities with them
    assert sorted(after) == sorted([*door, *configs, *cam])
    assert sum("_event_zone_" in t for t in before) == 3
    assert "line gate of stream cam0 is gone" in caplog.text
    assert "zone lobby of stream cam0 is gone" in caplog.text


# -- Home Assistant discovery -----------------------------------------------------------------
# The options of HA's MQTT sensor and binary_sensor (home-assistant.io/integrations/sensor.mqtt,
# binary_sensor.mqtt) and the device / origin maps of MQTT discovery: a config may hold only
# these, with the documented types and values.
AVAILABILITY = {
    "type": "array",
    "minItems": 1,
    "items": {
        "type": "object",
        "properties": {
            "topic": {"type": "string", "minLength": 1},
            "payload_available": {"type": "string"},
            "payload_not_available": {"type": "string"},
            "value_template": {"type": "string"},
        },
        "required": ["topic"],
        "additionalProperties": False,
    },
}
DEVICE = {
    "type": "object",
    "properties": {
        k: {"type": "string"}
        for k in [
            "configuration_url",
            "hw_version",
            "manufacturer",
            "model",
            "model_id",
            "name",
            "serial_number",
            "suggested_area",
            "sw_version",
            "via_device",
        ]
    }
    | {
        "identifiers": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "connections": {"type": "array"},
    },
    "anyOf": [{"required": ["identifiers"]}, {"required": ["connections"]}],
    "additionalProperties": False,
}
ORIGIN = {
    "type": "object",
    "properties": {k: {"type": "string"} for k in ("name", "sw_version", "support_url")},
    "required": ["name"],
    "additionalProperties": False,
}
COMMON = {
    "availability": AVAILABILITY,
    "availability_mode": {"enum": ["all", "any", "latest"]},
    "device": DEVICE,
    "origin": ORIGIN,
    "enabled_by_default": {"type": "boolean"},
    "encoding": {"type": "string"},
    "entity_category": {"enum": ["config", "diagnostic"]},
    "entity_picture": {"type": "string"},
    "expire_after": {"type": "integer"},
    "force_update": {"type": "boolean"},
    "icon": {"type": "string", "pattern": "^mdi:"},
    "json_attributes_template": {"type": "string"},
    "json_attributes_topic": {"type": "string"},
    "name": {"type": ["string", "null"]},
    "default_entity_id": {"type": "string"},
    "qos": {"enum": [0, 1, 2]},
    "state_topic": {"type": "string", "minLength": 1},
    "unique_id": {"type": "string", "minLength": 1},
    "value_template": {"type": "string"},
}
SENSOR = {
    "type": "object",
    "properties": COMMON
    | {
        "device_class": {"type": "string"},
        "last_reset_value_template": {"type": "string"},
        "options": {"type": "array"},
        "state_class": {"enum": ["measurement", "measurement_angle", "total", "total_increasing"]},
        "suggested_display_precision": {"type": "integer", "minimum": 0},
        "unit_of_measurement": {"type": "string"},
    },
    "required": ["state_topic", "unique_id", "device"],
    "additionalProperties": False,
}
BINARY_SENSOR = {
    "type": "object",
    "properties": COMMON
    | {
        "device_class": {"type": "string"},
        "off_delay": {"type": "integer"},
        "payload_off": {"type": "string"},
        "payload_on": {"type": "string"},
    },
    "required": ["state_topic", "unique_id", "device"],
    "additionalProperties": False,
}
CONFIG_TOPIC = re.compile(
    r"^homeassistant/(sensor|binary_sensor|event)/(?:[a-zA-Z0-9_-]+/)?[a-zA-Z0-9_-]+/config$"
)


@pytest.mark.integration
def test_home_assistant_discovery_configs_follow_the_documented_fields(
    tmp_path: Path, broker: Broker, no_leaks
) -> None:
    """One option gives a device with a sensor per stream x line x direction x class
    (total_increasing), per zone x class, fps per stream and a connectivity binary_sensor per
    camera, each reading a retained plain state topic, and event entities reading the event
    topics (presence and snapshot entities: test_mqtt_presence.py)."""
    text = graph_text(broker, 20, 2, fps=40, ha_discovery=True)
    proc = start_run(write_graph(tmp_path, text))
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    sub = Subscriber(broker, ["homeassistant/#", "rkpipe/#"])
    try:
        assert poll_for(lambda: len(_configs(sub)) >= 10, timeout=10)
        configs, state = _configs(sub), sub.latest()
    finally:
        sub.close()
    kinds: dict[str, str] = {}
    for topic, doc in configs.items():
        component = CONFIG_TOPIC.match(topic)
        assert component, topic
        schema = {"sensor": SENSOR, "binary_sensor": BINARY_SENSOR, "event": EVENT}
        jsonschema.validate(doc, schema[component.group(1)])
        assert doc["availability"][0]["topic"] == f"rkpipe/{NODE}/status"
        kinds[doc["name"]] = doc.get("state_class") or doc.get("device_class") or "event"
        if component.group(1) == "event":  # events are not retained
            cam, kind = doc["name"].split(" ", 1)
            assert doc["state_topic"] == f"rkpipe/{NODE}/{cam}/events/{kind.replace(' ', '_')}"
            continue
        assert doc["state_topic"] in state, f"{topic}: no retained {doc['state_topic']}"
        if component.group(1) == "binary_sensor":
            assert state[doc["state_topic"]] in (doc["payload_on"].encode(), b"offline")
        else:
            float(state[doc["state_topic"]])  # a plain number
    assert len({d["unique_id"] for d in configs.values()}) == len(configs)
    assert len({json.dumps(d["device"], sort_keys=True) for d in configs.values()}) == 1
    assert state[f"rkpipe/{NODE}/status"] == b"offline"  # availability: the Last Will topic
    expected = {}
    for cam in ("cam0", "cam1"):
        expected |= {
            f"{cam} door in person": "total_increasing",
            f"{cam} door out person": "total_increasing",
            f"{cam} lobby car": "measurement",
            f"{cam} fps": "measurement",
            f"{cam} connected": "connectivity",
            f"{cam} line crossing": "event",
            f"{cam} zone enter": "event",
            f"{cam} zone loiter": "event",
            f"{cam} zone exit": "event",
        }
    assert kinds == expected
    assert state[f"rkpipe/{NODE}/cam0/door/in/person"] == b"5"  # 10 crossings alternate in and out


def _configs(sub: Subscriber) -> dict[str, dict]:
    return {t: json.loads(p) for t, p in sub.latest().items() if t.startswith("homeassistant/")}


@pytest.mark.integration
def test_home_assistant_coming_online_gets_every_config_again(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    sink = MqttSink(host=broker.host, port=broker.port, ha_discovery=True)
    sink.setup(Context(stage="mqtt", run_id="r1", node=NODE))
    sub = Subscriber(broker, ["homeassistant/#"])
    try:
        sink.process(_msg(0, crossing("in", PERSON)))
        config = "homeassistant/sensor/" + sink.device_id + "/cam0_door_in_person/config"
        assert poll_for(lambda: len(sub.on(config)) == 1, timeout=10)
        sub.client.publish("homeassistant/status", "online", qos=1)  # HA's birth message
        assert poll_for(lambda: len(sub.on(config)) == 2, timeout=10)
    finally:
        sink.close()
        sub.close()


# -- snapshots -----------------------------------------------------------------------------------
@pytest.mark.integration
def test_an_event_snapshot_goes_out_as_jpeg_bytes_and_no_other_file_does(
    tmp_path: Path,
    broker: Broker,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    monkeypatch.chdir(tmp_path)
    ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 200, np.uint8))
    assert ok
    shots = tmp_path / "out" / "snapshots" / "cam0"
    shots.mkdir(parents=True)
    (shots / "7.jpg").write_bytes(jpeg.tobytes())
    (shots / "fake.jpg").write_text("not a jpeg")
    (tmp_path / "secret.jpg").write_bytes(jpeg.tobytes())  # outside the output folder

    def with_snapshot(path: str) -> Any:
        def build(m: Message) -> dict:
            ev = crossing("in", PERSON)(m)
            ev["snapshot"] = path
            return ev

        return build

    paths = ["cam0/7.jpg", "../../secret.jpg", "/etc/passwd", "cam0/fake.jpg"]  # in out/snapshots
    msgs = [_msg(i, with_snapshot(p)) for i, p in enumerate([*paths, "cam0/gone.jpg"])]
    runtime = run_sink(broker, "r1", msgs)
    topic = f"rkpipe/{NODE}/cam0/snapshot/line_crossing"
    state = retained(broker, {topic: jpeg.tobytes()})
    assert state[topic] == jpeg.tobytes()
    assert runtime.drops == {"mqtt_snapshot_unreadable": 4}
    assert "its snapshot lies outside out/snapshots" in caplog.text
    assert caplog.text.count("not published") == 1  # said once, the rest counted


# -- camera status follows source health ----------------------------------------------------
@pytest.mark.integration
def test_camera_status_follows_the_source_health(tmp_path: Path, broker: Broker, no_leaks) -> None:
    """A camera that is live, lost for 2.5 s, live again and then ends: its retained status
    goes online, offline, online, offline (plain strings)."""
    sub = Subscriber(broker, [f"rkpipe/{NODE}/cam0/status"])
    graph = (
        Graph("health", node=NODE)
        .source(
            "cam0",
            uses="rk_test_stages:FlakyCamera",
            frames=100,
            fps=20,
            outage_at=20,
            outage_s=2.5,
        )
        .sink("mqtt", uses="mqtt", inputs=["cam0"], host=broker.host, port=broker.port)
    )
    proc = start_run(graph.write(tmp_path))
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    assert poll_for(lambda: sub.on(f"rkpipe/{NODE}/cam0/status")[-1:] == [b"offline"], timeout=5)
    sub.close()
    seen = [p.decode() for p in sub.on(f"rkpipe/{NODE}/cam0/status")]
    changes = [s for i, s in enumerate(seen) if i == 0 or seen[i - 1] != s]
    assert changes[-4:] == ["online", "offline", "online", "offline"], seen


@pytest.mark.integration
def test_a_camera_left_online_by_a_killed_run_is_offline_at_the_next_start(
    tmp_path: Path, broker: Broker, no_leaks
) -> None:
    """A SIGKILL leaves each camera's retained status as it was: the pipeline's Last Will says
    offline at once (every Home Assistant entity's availability), and the next start sets what
    the killed run left right before anything else: a camera since removed from the graph is
    offline with 0 fps, one still there is online again."""
    sub = Subscriber(broker, ["rkpipe/#"])
    status = lambda cam: f"rkpipe/{NODE}/{cam}/status"  # noqa: E731

    def graph(*cams: str) -> Path:
        g = Graph("camstatus", node=NODE)
        for cam in cams:
            g.source(cam, uses="synthetic", width=64, height=48, realtime=True, fps=10)
        opts = {"host": broker.host, "port": broker.port, "state_prefix": "rkpipe/{node}/{stream}"}
        return g.sink("mqtt", uses="mqtt", inputs=list(cams), **opts).write(tmp_path)

    def shown(want: dict[str, bytes]) -> bool:
        latest = sub.latest()
        return all(latest.get(t) == p for t, p in want.items())

    proc = start_run(graph("cam0", "cam1"))
    try:
        online = {status("cam0"): b"online", status("cam1"): b"online"}
        assert poll_for(lambda: shown(online), timeout=60), sub.latest()
        assert poll_for(lambda: float(sub.latest().get(f"rkpipe/{NODE}/cam1/fps", 0)) > 0, 30)
        proc.kill()  # SIGKILL: its stages follow it (PDEATHSIG) and nobody says goodbye
        proc.wait(timeout=30)
        assert poll_for(lambda: shown({f"rkpipe/{NODE}/status": b"offline"}), timeout=30)
        assert shown(online)  # what the killed run left: a retained "online"

        proc = start_run(graph("cam0"))  # cam1 is gone from the graph
        after = {
            f"rkpipe/{NODE}/status": b"online",
            status("cam0"): b"online",
            status("cam1"): b"offline",
            f"rkpipe/{NODE}/cam1/fps": b"0.0",
        }
        assert poll_for(lambda: shown(after), timeout=60), sub.latest()
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode in (0, 130), err
        assert poll_for(lambda: shown({status("cam0"): b"offline"}), timeout=10)
    finally:
        proc.kill()
        sub.close()


def test_camera_topics_are_remembered_once_and_a_bad_file_or_folder_is_said_once(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    log = logging.getLogger("test")
    path = tmp_path / "p" / "cameras.mqtt.json"
    mem = StatusMemory(path, log)
    mem.remember("a/status", "offline")
    mem.remember("a/fps", "0.0")
    written = path.stat().st_mtime_ns
    mem.remember("a/status", "offline")  # known: the file is not written again
    assert path.stat().st_mtime_ns == written
    assert StatusMemory(path, log).stale() == {"a/status": "offline", "a/fps": "0.0"}
    path.write_text("{cut short")
    assert StatusMemory(path, log).stale() == {}  # a damaged file starts a new one
    (tmp_path / "file").write_text("")
    blocked = StatusMemory(tmp_path / "file" / "cameras.mqtt.json", log)
    blocked.remember("a/status", "offline")
    blocked.remember("b/status", "offline")
    assert caplog.text.count("cannot keep the camera topics") == 1
    assert blocked.stale() == {"a/status": "offline", "b/status": "offline"}


@pytest.mark.integration
def test_a_camera_added_while_it_runs_gets_its_topics_and_its_end(
    tmp_path: Path, broker: Broker, no_leaks
) -> None:
    """A camera a reload adds is announced as any camera is (its status online, its Home
    Assistant entities); removed again, its stream ends and its status goes offline, while
    the camera that stayed goes on online."""
    sub = Subscriber(broker, ["rkpipe/#", "homeassistant/#"])
    status = lambda cam: f"rkpipe/{NODE}/{cam}/status"  # noqa: E731

    def graph(*cams: str) -> Path:
        g = Graph("camadded", node=NODE, stats_interval_s=0.5)
        for cam in cams:
            g.source(cam, uses="synthetic", width=64, height=48, realtime=True, fps=10)
        opts = {"host": broker.host, "port": broker.port, "ha_discovery": True}
        return g.sink("mqtt", uses="mqtt", inputs=list(cams), **opts).write(tmp_path)

    def shown(want: dict[str, bytes]) -> bool:
        latest = sub.latest()
        return all(latest.get(t) == p for t, p in want.items())

    def announced(cam: str) -> bool:
        return any(t.startswith("homeassistant/") and cam in t for t in sub.latest())

    proc = start_run(graph("cam0"), "--no-live")
    try:
        assert poll_for(lambda: shown({status("cam0"): b"online"}), timeout=60), sub.latest()
        assert not announced("cam1")
        graph("cam0", "cam1")
        proc.send_signal(signal.SIGHUP)
        assert poll_for(lambda: shown({status("cam1"): b"online"}), timeout=60), sub.latest()
        assert poll_for(lambda: announced("cam1"), timeout=30), sorted(sub.latest())
        graph("cam0")
        proc.send_signal(signal.SIGHUP)
        assert poll_for(lambda: shown({status("cam1"): b"offline"}), timeout=60), sub.latest()
        assert shown({status("cam0"): b"online"})
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
        sub.close()
    assert proc.returncode == 143, err
    assert "cam1 stopped; its stream ended" in err
    assert "delivered" in err and "NOT exact" not in err
