"""Home Assistant presence from the mqtt sink: retained "in view now" counts per stream and
class (zeros too, debounced on the capture clock, 0 once the stream ended), an occupancy
binary_sensor reading them, an ``event`` entity per event topic whose value template (run
with Jinja, HA's template engine) gives HA's payload, and an ``image`` of each stream's
latest snapshot; checked against HA's documented discovery fields on a real mosquitto."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import cv2
import jsonschema
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from jinja2.sandbox import ImmutableSandboxedEnvironment

from pipeline import Context, InlineRuntime, Message
from pipeline.detections import Detections
from stages.events import (
    counts_event,
    line_crossing_event,
    zone_enter_event,
    zone_exit_event,
    zone_loiter_event,
)
from stages.sinks.mqtt import MqttSink
from stages.sinks.mqtt.discovery import Discovery, ha_event_type
from stages.sinks.mqtt.ha_entities import HaEntities
from stages.sinks.mqtt.presence import Debounced, Presence
from stages.sinks.mqtt.retained import Retained
from stages.sinks.mqtt.topics import render_topic
from stages.synthetic import Scene
from support.ha_schemas import EVENT, IMAGE, OCCUPANCY
from support.mosquitto import Broker, Subscriber, broker_fixture  # noqa: F401  (the fixture)
from support.mqtt_graph import NODE, start_run
from support.rkpipe import poll_for, write_graph

PERSON, CAR = 0, 2
T0 = 1_700_000_000.0
PREFIX = f"rkpipe/{NODE}/cam0"


def frame(seq: int, people: int, cars: int = 0, untracked: int = 0, fps: float = 10) -> Message:
    """A frame of cam0 at ``fps`` with tracked people and cars and untracked boxes."""
    msg = Message("cam0", seq, seq - 1, t_capture=T0 + seq / fps)
    cls = [PERSON] * people + [CAR] * cars + [PERSON] * untracked
    ids = list(range(1, people + cars + 1)) + [-1] * untracked
    msg.detections = Detections(
        np.tile(np.array([[0, 0, 10, 10]], np.float32), (len(cls), 1)),
        np.full(len(cls), 0.9, np.float32),
        np.array(cls, np.int32),
        np.array(ids, np.int64),
    )
    return msg


class Recording(Retained):
    """Retained values, with every change kept in order."""

    def __init__(self) -> None:
        super().__init__()
        self.changes: list[tuple[str, Any]] = []

    def set(self, topic: str, payload: Any) -> None:
        if self.values.get(topic) != payload:
            self.changes.append((topic, payload))
        super().set(topic, payload)

    def on(self, topic: str) -> list[Any]:
        return [p for t, p in self.changes if t == topic]


# -- in view now: plain objects -------------------------------------------------------------
def test_in_view_counts_are_debounced_listed_with_zeros_and_zero_at_the_end() -> None:
    retained = Recording()
    presence = Presence(retained, lambda s: f"rkpipe/{NODE}/{s}", ["person", "dog"], 0.5)
    counts = [2] * 10 + [3] + [2] * 3 + [1] * 10  # a one-frame extra person is not shown
    for seq, n in enumerate(counts):
        presence.frame(frame(seq, n, cars=1 if seq >= 20 else 0, untracked=2))
    presence.learn("cam0", [counts_event(frame(99, 0), zones={"lobby": {"bicycle": 0}})])
    presence.end("cam0")
    # from 0, each count once it held 0.5 s; 0 when the stream ends
    assert retained.on(f"{PREFIX}/objects/person") == ["0", "2", "1", "0"]
    assert retained.on(f"{PREFIX}/objects/dog") == ["0"]  # listed from the first frame
    assert retained.on(f"{PREFIX}/objects/car") == ["0"]  # in view 0.4 s only, then ended
    assert retained.on(f"{PREFIX}/objects/bicycle") == ["0"]  # named by a counts event


def streak_start(history: list[tuple[float, int]]) -> float:
    """When the run of equal values at the end of ``history`` began."""
    start, last = history[-1]
    for t, n in reversed(history):
        if n != last:
            break
        start = t
    return start


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 3), st.floats(0.01, 0.4)), min_size=1, max_size=80),
    st.floats(0.0, 1.0),
)
def test_a_count_shows_only_once_it_held_hold_s_and_a_steady_one_always_shows(
    feed: list, hold_s: float
) -> None:
    number, t = Debounced(0), 0.0
    history: list[tuple[float, int]] = []  # (time, value fed)
    for n, gap in feed:
        t += gap
        history.append((t, n))
        if number.feed(n, t, hold_s):
            assert number.shown == n and t - streak_start(history) >= hold_s - 1e-9
    last_t, last = history[-1]
    if last_t - streak_start(history) >= hold_s:
        assert number.shown == last


# -- Home Assistant: the documented fields ----------------------------------------------------
def render(template: str, payload: str) -> str:
    """``template`` as Home Assistant renders an MQTT value template: ``value`` is the
    payload, ``value_json`` its JSON (HA's engine is Jinja in a sandbox)."""
    env = ImmutableSandboxedEnvironment()
    try:
        value_json = json.loads(payload)
    except ValueError:
        value_json = None
    return env.from_string(template).render(value=payload, value_json=value_json)


def run_sink(broker: Broker, msgs: list[Message], **opts: Any) -> InlineRuntime:
    runtime = InlineRuntime()
    sink = MqttSink(host=broker.host, port=broker.port, flush_timeout_s=5, **opts)
    sink.setup(Context(stage="mqtt", run_id="r1", runtime=runtime, node=NODE))
    for msg in msgs:
        sink.process(msg)
    sink.end_stream("cam0")
    sink.close()
    return runtime


@pytest.mark.integration
def test_presence_events_and_snapshot_entities_follow_home_assistants_fields(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    ok, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 90, np.uint8))
    assert ok
    (tmp_path / "out" / "snapshots" / "cam0").mkdir(parents=True)
    (tmp_path / "out" / "snapshots" / "cam0" / "1.jpg").write_bytes(jpeg.tobytes())
    msgs = [frame(seq, 1) for seq in range(5)]
    crossing = line_crossing_event(msgs[1], "door", "in", 1, PERSON, (1, 2), {"in": 1, "out": 0})
    crossing["snapshot"] = "cam0/1.jpg"
    kinds = [
        crossing,
        zone_enter_event(msgs[2], "lobby", 1, PERSON),
        zone_loiter_event(msgs[3], "lobby", 1, PERSON, 30.0),
        zone_exit_event(msgs[4], "lobby", 1, PERSON, 31.5),
    ]
    msgs[0].meta["events"] = [counts_event(msgs[0], {"door": {"in": {}, "out": {}}}, {})]
    for msg, ev in zip(msgs[1:], kinds, strict=True):
        msg.meta["events"] = [ev]
    sub = Subscriber(broker, ["homeassistant/#", "rkpipe/#"])
    try:
        run_sink(broker, msgs, ha_discovery=True, presence_classes=["person", "car"])
        want = f"{PREFIX}/objects/person"
        assert poll_for(lambda: sub.latest().get(want) == b"0", timeout=10)  # ended
        state = sub.latest()
        events_on = {
            t: [json.loads(p) for p in sub.on(t)] for t, _, _ in sub.messages if "/events/" in t
        }
    finally:
        sub.close()
    configs = {t: json.loads(p) for t, p in state.items() if t.startswith("homeassistant/")}
    by_name = {doc["name"]: (topic.split("/")[1], doc) for topic, doc in configs.items()}

    # in view now, and occupancy from the same number
    for cls in ("person", "car"):
        component, doc = by_name[f"cam0 {cls} in view"]
        assert component == "sensor" and doc["state_topic"] == f"{PREFIX}/objects/{cls}"
        assert doc["state_class"] == "measurement"
        component, doc = by_name[f"cam0 {cls} occupancy"]
        assert component == "binary_sensor"
        jsonschema.validate(doc, OCCUPANCY)
        assert doc["state_topic"] == f"{PREFIX}/objects/{cls}"
        assert render(doc["value_template"], "0") == "OFF"
        assert render(doc["value_template"], "2") == "ON"

    # one event entity per event topic; the template turns each event into HA's payload
    entities = {n: d for n, (c, d) in by_name.items() if c == "event"}
    assert sorted(entities) == [
        "cam0 line crossing",
        "cam0 zone enter",
        "cam0 zone exit",
        "cam0 zone loiter",
    ]
    for ev in kinds:
        doc = entities[f"cam0 {ev['type'].replace('_', ' ')}"]
        jsonschema.validate(doc, EVENT)
        assert doc["state_topic"] == f"{PREFIX}/events/{ev['type']}"
        (sent,) = events_on[doc["state_topic"]]  # what the sink published there
        payload = json.loads(render(doc["value_template"], json.dumps(sent)))
        assert (
            payload["event_type"] == ha_event_type(ev)
            and payload["event_type"] in (doc["event_types"])
        )
        assert payload["class_name"] == "person" and payload["id"] == ev["id"]
    loiter = entities["cam0 zone loiter"]
    (sent,) = events_on[loiter["state_topic"]]
    assert json.loads(render(loiter["value_template"], json.dumps(sent)))["dwell_s"] == 30.0

    # the latest snapshot of the stream, as an image entity
    component, doc = by_name["cam0 snapshot"]
    assert component == "image"
    jsonschema.validate(doc, IMAGE)
    assert doc["image_topic"] == f"{PREFIX}/snapshot/latest"
    assert state[doc["image_topic"]] == jpeg.tobytes()

    for doc in configs.values():  # every entity: this board's device and availability
        assert doc["unique_id"].startswith(f"rkpipe-pipeline-mqtt-{NODE}_")
        assert doc["availability"][0]["topic"] == f"rkpipe/{NODE}/status"
    assert len({d["unique_id"] for d in configs.values()}) == len(configs)


def test_one_event_topic_gives_one_event_entity_and_a_per_event_topic_none() -> None:
    """Without {type} in ``topic`` every kind arrives on one topic: one entity takes them
    all, growing its event types; with {line} or {zone} there is no one state topic."""

    def make(template: str) -> tuple[Recording, HaEntities]:
        retained = Recording()
        discovery = Discovery("homeassistant", "dev", "p", f"rkpipe/{NODE}/status")
        topic = lambda t, f: render_topic(t, {"node": NODE, **f})  # noqa: E731
        return retained, HaEntities(retained, discovery, topic, template, "")

    msg = frame(0, 1)
    retained, entities = make("rkpipe/{node}/{stream}/events")
    entities.seen("cam0", [counts_event(msg, {"door": {"in": {}, "out": {}}}, {})])
    entities.seen("cam0", [zone_enter_event(msg, "lobby", 1, PERSON)])
    configs = [json.loads(p) for t, p in retained.changes if t.startswith("homeassistant/event/")]
    assert [c["event_types"] for c in configs] == [["in", "out"], ["in", "out", "enter"]]
    assert {c["unique_id"] for c in configs} == {"dev_cam0_event_events"}
    assert {c["state_topic"] for c in configs} == {f"rkpipe/{NODE}/cam0/events"}

    retained, entities = make("rkpipe/{node}/{stream}/{line}{zone}")
    entities.seen("cam0", [zone_enter_event(msg, "lobby", 1, PERSON)])
    assert retained.changes == []


@pytest.mark.integration
def test_a_real_run_publishes_what_is_in_view_per_camera_and_class(
    tmp_path: Path, broker: Broker, no_leaks
) -> None:
    """synthetic camera -> its truth as tracked boxes -> mqtt, in a real ``rkpipe run``: every
    in-view count published is one the scene had in a frame, and 0 after the stream ends."""
    frames = 60
    text = f"""
[pipeline]
name = "presence"
node = "{NODE}"
[stages.cam0]
uses = "synthetic"
scene = "easy"
seed = 3
frames = {frames}
realtime = true
fps = 20
[stages.truth]
uses = "rk_test_overlay:Overlay"
inputs = ["cam0"]
seed = 3
fps = 20
overlays = false
[stages.mqtt]
uses = "mqtt"
inputs = ["truth"]
host = "{broker.host}"
port = {broker.port}
presence_hold_s = 0
presence_classes = ["person", "car", "bicycle"]
ha_discovery = true
"""
    sub = Subscriber(broker, [f"{PREFIX}/objects/#", "homeassistant/binary_sensor/#"])
    try:
        proc = start_run(write_graph(tmp_path, text))
        _, err = proc.communicate(timeout=90)
        assert proc.returncode == 0, err
        person = f"{PREFIX}/objects/person"
        ended = poll_for(lambda: sub.on(person)[-1:] == [b"0"] and len(sub.on(person)) > 1, 10)
        assert ended, (sub.on(person), err[-2000:])
        published = {
            c: [int(p) for p in sub.on(f"{PREFIX}/objects/{c}")] for c in ("person", "car")
        }
        occupancy = [t for t in sub.latest() if t.endswith("_occupied_person/config")]
    finally:
        sub.close()
    scene = Scene("easy", 3, 640, 360, 20.0)
    truth = [scene.truth(seq).class_id.tolist() for seq in range(frames)]
    for cls, cid in (("person", 0), ("car", 2)):
        possible = {ids.count(cid) for ids in truth} | {0}
        assert set(published[cls]) <= possible, (cls, published[cls], possible)
        assert published[cls][-1] == 0  # the stream ended
    assert max(published["person"]) > 0 and max(published["car"]) > 0
    assert set(sub.on(f"{PREFIX}/objects/bicycle")) == {b"0"}  # listed, never seen
    assert len(occupancy) == 1
