"""Many boards, one broker: two runs of one graph with different ``node`` ids on one real
mosquitto keep their retained totals, status, Last Will and Home Assistant discovery apart
(and their client ids: neither takes the other's session); and a board-local broker bridged
to a central one stores the events while the central one is down and forwards them after it
returns (mosquitto's ``connection`` bridge, QoS 1)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import paho.mqtt.client as mqtt
import pytest

from pipeline import Context
from stages.sinks.mqtt import MqttSink
from support.faults import instance_pid
from support.mosquitto import Broker, Subscriber, broker_fixture  # noqa: F401  (the fixture)
from support.mqtt_graph import NODE, all_ids, graph_text, start_run
from support.rkpipe import poll_for, write_graph

BOARDS = ("board-a", "board-b")


def _stop(proc: subprocess.Popen) -> tuple[int, str]:
    proc.send_signal(signal.SIGINT)
    try:
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    return proc.returncode, err


@pytest.mark.integration
def test_two_boards_running_one_graph_on_one_broker_stay_apart(
    tmp_path: Path, broker: Broker, no_leaks
) -> None:
    sub = Subscriber(broker, ["rkpipe/#", "homeassistant/#"])
    runs: dict[str, subprocess.Popen] = {}
    try:
        for node in BOARDS:
            folder = tmp_path / node
            folder.mkdir()
            text = graph_text(broker, 2000, 2, fps=20, pipeline={"node": node}, ha_discovery=True)
            runs[node] = start_run(write_graph(folder, text))

        def counting(node: str) -> bool:
            latest = sub.latest()
            total = latest.get(f"rkpipe/{node}/cam0/door/in/person", b"0")
            return int(total) >= 3 and latest.get(f"rkpipe/{node}/status") == b"online"

        assert poll_for(lambda: all(counting(n) for n in BOARDS), timeout=60)

        # board-a's sink dies without a word: its Last Will marks board-a offline, only it
        pid = instance_pid(runs["board-a"].pid, "mqtt")
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        assert poll_for(lambda: sub.on("rkpipe/board-a/status")[-1:] == [b"offline"], 10)
        assert sub.latest()["rkpipe/board-b/status"] == b"online"
        assert sub.latest()["rkpipe/board-b/cam0/status"] == b"online"
        # the supervisor restarts it; the totals of board-a carry on from its own file
        assert poll_for(lambda: sub.on("rkpipe/board-a/status")[-1:] == [b"online"], 30)
        assert poll_for(lambda: counting("board-a"), 10)
        results = {node: _stop(proc) for node, proc in runs.items()}
    finally:
        for proc in runs.values():
            proc.kill()
        sub.close()
    for node, (rc, err) in results.items():
        assert rc == 130, f"{node}: {err}"
        assert "connection lost" not in err, f"{node} lost its broker session: {err}"

    for node in BOARDS:  # each board's totals only ever grow: no other board writes them
        for line_dir in ("in", "out"):
            seen = [int(p) for p in sub.on(f"rkpipe/{node}/cam0/door/{line_dir}/person")]
            assert seen and seen == sorted(seen), (node, seen)
        assert sub.on(f"rkpipe/{node}/status")[-1] == b"offline"

    configs = {t: json.loads(p) for t, p in sub.latest().items() if t.startswith("homeassistant/")}
    by_node: dict[str, set[str]] = {n: set() for n in BOARDS}
    for topic, doc in configs.items():
        (node,) = [n for n in BOARDS if topic.split("/")[2] == f"rkpipe-mqtt_test-mqtt-{n}"]
        assert doc["availability"][0]["topic"] == f"rkpipe/{node}/status"
        assert doc["device"]["identifiers"] == [f"rkpipe-mqtt_test-mqtt-{node}"]
        assert doc.get("state_topic", f"rkpipe/{node}/").startswith(f"rkpipe/{node}/")
        by_node[node].add(doc["unique_id"])
    assert len(by_node["board-a"]) == len(by_node["board-b"]) >= 10
    assert not by_node["board-a"] & by_node["board-b"]


def _bridge(central: Broker) -> str:
    """A board-local mosquitto's bridge to ``central``: rkpipe's topics go out at QoS 1 with
    a persistent session, so the local broker keeps them while the central one is away."""
    return "\n".join(
        [
            "connection central",
            f"address {central.host}:{central.port}",
            "topic rkpipe/# out 1",
            "topic homeassistant/# out 1",
            "cleansession false",
            f"clientid bridge-{NODE}",
            "restart_timeout 1",
            "notifications false",
        ]
    )


@pytest.mark.integration
def test_a_local_broker_bridged_to_a_central_one_forwards_what_came_while_it_was_down(
    tmp_path: Path, no_leaks
) -> None:
    central = Broker(tmp_path / "central")
    local = Broker(tmp_path / "local", extra=_bridge(central))
    central.start()
    local.start()
    events = Subscriber(central, ["rkpipe/+/+/events/#"], client_id="central-sub", persistent=True)
    try:
        probe = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        probe.connect(local.host, local.port)
        probe.loop_start()

        def bridged() -> bool:  # the bridge is up: a message on the local broker gets through
            probe.publish(f"rkpipe/{NODE}/probe/events/x", "probe", qos=1)
            return bool(events.on(f"rkpipe/{NODE}/probe/events/x"))

        assert poll_for(bridged, timeout=20, interval=0.3)
        probe.disconnect()
        probe.loop_stop()

        central.stop()  # the central broker is away for the whole run
        frames, every = 20, 2
        res = start_run(write_graph(tmp_path, graph_text(local, frames, every)))
        _, err = res.communicate(timeout=120)
        assert res.returncode == 0, err  # the local broker acknowledged every event
        central.start()

        want = all_ids(frames, every)
        assert poll_for(lambda: want <= set(events.ids()), timeout=30), sorted(
            want - set(events.ids())
        )
        got = events.events()
        ids = [e["id"] for _, e in got if e["id"] in want]
        first = {}
        for topic, ev in got:  # at least once: a second copy is the same message again
            assert first.setdefault(ev["id"], (topic, ev)) == (topic, ev)
        assert len(ids) - len(set(ids)) <= 20  # at most one bridge window sent twice
        late = Subscriber(central, ["rkpipe/#"])
        try:
            total = f"rkpipe/{NODE}/cam0/door/in/person"
            assert poll_for(lambda: late.latest().get(total) == b"5", timeout=10)
            assert late.latest()[f"rkpipe/{NODE}/status"] == b"offline"
        finally:
            late.close()
    finally:
        events.close()
        local.stop()
        central.stop()


@pytest.mark.integration
def test_two_runs_on_one_board_have_their_own_client_ids_and_one_device(
    tmp_path: Path, broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client id adds the run id: a second run does not throw the first off the broker
    (which it would, with one id, again and again); the Home Assistant device stays one."""
    monkeypatch.chdir(tmp_path)
    sinks = []
    try:
        for run in ("4242xaaaa0001", "4343xbbbb0002"):
            sink = MqttSink(host=broker.host, port=broker.port, flush_timeout_s=1)
            sink.setup(Context(stage="mqtt", run_id=run, node=NODE))
            sinks.append(sink)
        a, b = sinks
        assert a.client_id != b.client_id and a.device_id == b.device_id
        assert a.client_id == f"rkpipe-pipeline-mqtt-{NODE}-4242xaaaa0001"
        assert poll_for(lambda: all(s.conn.connected.is_set() for s in sinks), timeout=10)
        dropped = poll_for(lambda: not all(s.conn.connected.is_set() for s in sinks), timeout=2)
        assert not dropped, "one run's sink threw the other's off the broker"
    finally:
        for sink in sinks:
            sink.close()
