"""The mqtt sink against a real mosquitto broker: every event arrives, valid and on its topic;
status and Last Will are retained plain strings; a broker outage loses nothing up to the outbox
bound, and what the bound drops is counted; bad credentials end the run with one clear line,
and no secret is ever printed."""

from __future__ import annotations

import json
import logging
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import pytest

from pipeline import Context, StageSetupError
from stages.events import load_schema
from stages.sinks.mqtt import MqttSink
from stages.sinks.mqtt.connection import Connection
from stages.sinks.mqtt.topics import render_topic
from support.mosquitto import Broker, Subscriber, broker_fixture  # noqa: F401  (the fixture)
from support.mqtt_graph import NODE, all_ids, graph_text, start_run
from support.rkpipe import ROOT, poll_for, rkpipe_env, run_rkpipe, write_graph

VALIDATOR = jsonschema.Draft202012Validator(load_schema())


# -- configuration ---------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("options", "says"),
    [
        ({"topic": "rkpipe/{camera}/events"}, "unknown placeholder {camera}"),
        ({"topic": "rkpipe/+/events"}, "wildcards"),
        ({"password": "x", "password_env": "X"}, "not both"),
        ({"ca_certs": "ca.pem"}, "need tls = true"),
        ({"qos": 3}, "qos"),
    ],
)
def test_bad_options_are_rejected_naming_the_problem(tmp_path: Path, options, says) -> None:
    where = SimpleNamespace(host="127.0.0.1", port=1883, ca=None)
    path = write_graph(tmp_path, graph_text(where, 10, **options))
    res = run_rkpipe("validate", str(path), cwd=tmp_path, timeout=60)
    assert res.returncode == 2
    assert "stages.mqtt" in res.stderr and says in res.stderr, res.stderr
    assert "Traceback" not in res.stderr


def test_topics_leave_out_levels_an_event_lacks() -> None:
    tpl = "site/{stream}/{type}/{line}/{zone}"
    assert render_topic(tpl, {"stream": "cam0", "type": "counts"}) == "site/cam0/counts"
    assert render_topic(tpl, {"stream": "a/b+#", "type": "x", "zone": "z"}) == "site/a_b__/x/z"


# -- against a real broker -------------------------------------------------------------------
@pytest.mark.integration
def test_every_event_arrives_valid_on_its_topic_with_retained_status(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_leaks
) -> None:
    with Broker(tmp_path / "broker", users={"test": "test-pw", "rkpipe": "s3cret"}) as b:
        sub = Subscriber(b, ["site/#", "rkpipe/#"])
        try:
            text = graph_text(
                b,
                40,
                every=5,
                fps=40,
                topic="site/{stream}/{type}/{line}{zone}",
                username="rkpipe",
                password_env="TEST_MQTT_PW",
            )
            monkeypatch.setenv("TEST_MQTT_PW", "s3cret")  # the secret stays out of the graph
            res = run_rkpipe("run", str(write_graph(tmp_path, text)), cwd=tmp_path, timeout=60)
            assert res.returncode == 0, res.stderr
            want = all_ids(40, 5)
            assert poll_for(lambda: len(sub.ids()) >= len(want), timeout=10)
            assert poll_for(lambda: b"offline" in sub.on(f"rkpipe/{NODE}/status"), timeout=5)
        finally:
            sub.close()
        late = Subscriber(b, ["rkpipe/#"])  # a consumer that connects afterwards sees the state
        try:
            assert poll_for(lambda: len(late.messages) >= 3, timeout=5)
        finally:
            late.close()
    events = sub.events()
    assert sorted(e["id"] for _, e in events) == sorted(want)
    for topic, ev in events:
        VALIDATOR.validate(ev)
        where = ev.get("line", ev.get("zone", ""))
        assert topic == f"site/{ev['stream']}/{ev['type']}" + (f"/{where}" if where else "")

    # per stream, plain strings: online while frames come, offline once it ended (values are
    # sent again after a reconnect, which a loaded machine can cause: count the changes)
    def changes(values: list[bytes]) -> list[bytes]:
        return [v for i, v in enumerate(values) if i == 0 or values[i - 1] != v]

    for cam in ("cam0", "cam1"):
        assert changes(sub.on(f"rkpipe/{NODE}/{cam}/status")) == [b"online", b"offline"]
    assert changes(sub.on(f"rkpipe/{NODE}/status")) == [b"online", b"offline"]
    retained = {t: p for t, p, r in late.messages if r}
    assert retained[f"rkpipe/{NODE}/status"] == retained[f"rkpipe/{NODE}/cam0/status"] == b"offline"


@pytest.mark.integration
def test_consumer_script_prints_live_counts(tmp_path: Path, broker: Broker, no_leaks) -> None:
    frames, every = 20, 2
    n = len(all_ids(frames, every))
    consumer = subprocess.Popen(
        [
            sys.executable,
            str(ROOT / "graphs" / "mqtt_counts.py"),
            "--port",
            str(broker.port),
            "--host",
            broker.host,
            "--events",
            str(n),
            "--timeout",
            "30",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert consumer.stdout is not None
        assert "listening on" in consumer.stdout.readline()
        path = write_graph(tmp_path, graph_text(broker, frames, every))
        res = run_rkpipe("run", str(path), cwd=tmp_path)
        assert res.returncode == 0, res.stderr
        out, err = consumer.communicate(timeout=30)
    finally:
        consumer.kill()
    assert consumer.returncode == 0, err
    # 10 picks per stream alternate in/out: 5 each; one zone entry per pick
    assert "cam0 line door: in 5 out 5" in out
    assert f"final counts ({n} events):" in out
    assert "cam1         line door         in      5 out      5" in out
    assert "cam1         zone lobby        occupancy     10" in out
    assert f"status rkpipe/{NODE}/cam0/status: online" in out
    # afterwards, the retained plain numbers alone (what a Node-RED flow reads)
    script = str(ROOT / "graphs" / "mqtt_counts.py")
    where = ["--host", broker.host, "--port", str(broker.port)]
    totals = subprocess.run(
        [sys.executable, script, *where, "--timeout", "2"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert totals.returncode == 0, totals.stderr
    assert f"rkpipe/{NODE}/cam1/door/in/person = 5" in totals.stdout
    assert f"rkpipe/{NODE}/cam1/zones/lobby/car = 1" in totals.stdout  # as the last counts said
    assert f"status rkpipe/{NODE}/cam0/status: offline" in totals.stdout


@pytest.mark.integration
@pytest.mark.slow
@pytest.mark.parametrize("bound", ["unbounded", "spool"])
def test_broker_restart_mid_run_loses_no_event(
    tmp_path: Path, broker: Broker, bound: str, no_leaks
) -> None:
    """QoS 1 and the outbox: events published while the broker is down arrive after it comes
    back on the same port; with ``max_queued`` tiny, the overflow waits in the spool file."""
    frames, every = 120, 2
    opts = {"max_queued": 3, "spool_dir": "spool"} if bound == "spool" else {}
    sub = Subscriber(broker, ["rkpipe/+/+/events/#"], client_id="outage-sub", persistent=True)
    path = write_graph(tmp_path, graph_text(broker, frames, every, fps=40, **opts))
    stats = tmp_path / "stats.json"
    proc = start_run(path, "--stats-out", str(stats))
    try:
        assert poll_for(lambda: len(sub.ids()) >= 6, timeout=15), "no events before the outage"
        broker.stop()
        time.sleep(1.5)
        broker.start()
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    want = all_ids(frames, every)
    assert poll_for(lambda: set(sub.ids()) >= want, timeout=10), (
        sorted(want - set(sub.ids())),
        err[-4000:],
    )
    sub.close()
    assert set(sub.ids()) == want  # QoS 1 is at least once: a resend may repeat an id
    mqtt = json.loads(stats.read_text())["stages"]["mqtt"]
    assert mqtt["drops"] == 0 and mqtt["restarts"] == 0, err[-4000:]
    assert f"mqtt broker {broker.address} not reachable" in err
    assert f"reconnected to {broker.address}" in err
    if bound == "spool":
        assert "outbox full" not in err
        assert not (tmp_path / "spool" / "mqtt.jsonl").exists()  # delivered, nothing kept


@pytest.mark.integration
def test_a_message_published_as_the_connection_drops_is_sent_after_the_reconnect(
    broker: Broker,
) -> None:
    """The client cannot write a QoS 1 message while the broker is away, but keeps it and
    sends it after reconnecting: its receipt says "waiting" (it must not raise, which killed
    the sender thread and restarted the sink) and later "acknowledged"; the message arrives."""
    sub = Subscriber(broker, ["rkpipe/+/+/events/#"], client_id="drop-sub", persistent=True)
    cfg = MqttSink.Config(host=broker.host, port=broker.port, reconnect_min_s=0.1)
    conn = Connection(cfg, "drop-test", f"rkpipe/{NODE}/status", Path, logging.getLogger("test"))
    conn.open()
    try:
        assert conn.connected.is_set()
        broker.stop()
        assert poll_for(lambda: not conn.connected.is_set(), timeout=10)
        receipt = conn.publish(f"rkpipe/{NODE}/cam0/events/x", '{"id": "late"}', 1, False)
        assert receipt.rc == 0 and receipt.is_published() is False  # waiting, not failed
        broker.start()
        assert poll_for(receipt.is_published, timeout=15)
        assert poll_for(
            lambda: b'{"id": "late"}' in sub.on(f"rkpipe/{NODE}/cam0/events/x"), timeout=10
        )
    finally:
        conn.close(0.0)
        sub.close()


@pytest.mark.integration
@pytest.mark.slow
def test_outbox_smaller_than_the_outage_counts_what_it_drops(
    tmp_path: Path, broker: Broker, no_leaks
) -> None:
    frames, every = 120, 2
    sub = Subscriber(broker, ["rkpipe/+/+/events/#"], client_id="bound-sub", persistent=True)
    path = write_graph(tmp_path, graph_text(broker, frames, every, fps=40, max_queued=20))
    stats = tmp_path / "stats.json"
    proc = start_run(path, "--stats-out", str(stats))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        assert poll_for(lambda: len(sub.ids()) >= 6, timeout=15)
        broker.stop()  # down until the outbox overflows, however slow the machine is
        assert poll_for(lambda: any("outbox full" in line for line in lines), 30), lines
        broker.start()
        proc.wait(30)
        reader.join(10)
        err = "".join(lines)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    mqtt_stats = json.loads(stats.read_text())["stages"]["mqtt"]
    dropped = mqtt_stats["drops_by_reason"].get("mqtt_outbox_full", 0)
    assert dropped > 0 and mqtt_stats["drops"] == dropped, (mqtt_stats, err[-3000:])
    # every event arrived or was counted as dropped (status and totals are retained latest
    # values, never queued)
    want = all_ids(frames, every)
    poll_for(lambda: len(set(sub.ids())) + dropped >= len(want), timeout=10)
    sub.close()
    assert set(sub.ids()) < want
    assert len(set(sub.ids())) + dropped == len(want), err
    # said once per outage (and once more at most while the backlog drains), not per event
    assert err.count("while broker") <= 2 and err.count("is away; dropping") == 1, err


@pytest.mark.integration
def test_broker_down_at_start_is_waited_for(tmp_path: Path, no_leaks) -> None:
    b = Broker(tmp_path / "broker")
    b.start()  # once, so the subscriber's session (and its queue) outlives the outage
    sub = Subscriber(b, ["rkpipe/+/+/events/#"], client_id="late-sub", persistent=True)
    b.stop()
    proc = start_run(write_graph(tmp_path, graph_text(b, 40, 4, fps=40)))
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        said = f"mqtt broker {b.address} not reachable"
        assert poll_for(lambda: any(said in line for line in lines), timeout=20)
        b.start()
        assert proc.wait(30) == 0, "".join(lines)
        assert poll_for(lambda: set(sub.ids()) >= all_ids(40, 4), timeout=10)
    finally:
        proc.kill()
        sub.close()
        b.stop()


@pytest.mark.integration
def test_wrong_password_ends_the_run_with_one_clear_line(tmp_path: Path, no_leaks) -> None:
    with Broker(tmp_path / "broker", users={"rkpipe": "right"}) as b:
        text = graph_text(b, 1000, username="rkpipe", password="wrong")
        res = run_rkpipe("run", str(write_graph(tmp_path, text)), cwd=tmp_path, timeout=60)
    assert res.returncode != 0
    assert "Traceback" not in res.stderr
    errors = [line for line in res.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, res.stderr
    assert f"mqtt: mqtt broker {b.address} refused the connection: Not authorized" in errors[0]


@pytest.mark.integration
def test_no_secret_appears_in_any_error_or_log_line(tmp_path: Path, no_leaks) -> None:
    """A refused password, an unreachable broker and a missing key file are each said in
    one line naming host:port or the option, never the user, password or key path."""
    secrets = ("viewer-7731", "pw-9f3c2a", "s3cret-keys")
    with Broker(tmp_path / "broker", users={"viewer-7731": "right"}) as b:
        text = graph_text(b, 1000, username="viewer-7731", password="pw-9f3c2a")
        refused = run_rkpipe("run", str(write_graph(tmp_path, text)), cwd=tmp_path, timeout=60)
    assert f"mqtt broker {b.address} refused the connection" in refused.stderr
    text = graph_text(b, 20, username="viewer-7731", password="pw-9f3c2a")  # broker is down
    away = run_rkpipe("run", str(write_graph(tmp_path, text)), cwd=tmp_path, timeout=60)
    assert away.returncode == 0, away.stderr
    assert f"mqtt broker {b.address} not reachable" in away.stderr
    assert "messages not delivered" in away.stderr
    key = tmp_path / "s3cret-keys" / "client.key"
    text = graph_text(b, 20, tls=True, certfile=str(key), keyfile=str(key))
    nokey = run_rkpipe("run", str(write_graph(tmp_path, text)), cwd=tmp_path, timeout=60)
    assert nokey.returncode != 0
    assert "the file given as certfile does not exist" in nokey.stderr
    for res in (refused, away, nokey):
        assert "Traceback" not in res.stderr
        for secret in secrets:
            assert secret not in res.stderr + res.stdout, res.stderr


@pytest.mark.integration
def test_tls_to_a_broker_signed_by_the_given_ca(tmp_path: Path, no_leaks) -> None:
    with Broker(tmp_path / "broker", tls=True) as b:
        sub = Subscriber(b, ["rkpipe/+/+/events/#"])
        try:
            text = graph_text(b, 10, tls=True, ca_certs=str(b.ca))
            res = run_rkpipe("run", str(write_graph(tmp_path, text)), cwd=tmp_path, timeout=60)
            assert res.returncode == 0, res.stderr
            assert poll_for(lambda: set(sub.ids()) == all_ids(10, 2), timeout=10)
        finally:
            sub.close()
        # without the CA (system CAs only) the broker's certificate is refused, at setup
        sink = MqttSink(host=b.host, port=b.port, tls=True)
        with pytest.raises(StageSetupError) as err:
            sink.setup(Context(stage="mqtt"))
    assert f"mqtt broker {b.address}: TLS failed" in str(err.value)
    assert "CERTIFICATE_VERIFY_FAILED" in str(err.value)


SINK_ALONE = """
import sys, time
from pipeline import Context, Message
from stages.sinks.mqtt.stage import MqttSink
sink = MqttSink(host="127.0.0.1", port=int(sys.argv[1]), client_id="will-test")
sink.setup(Context(stage="mqtt", node="board1"))
sink.process(Message("cam0", 0))
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.integration
def test_last_will_marks_the_pipeline_offline_when_the_sink_is_killed(
    tmp_path: Path, broker: Broker
) -> None:
    sub = Subscriber(broker, [f"rkpipe/{NODE}/status", f"rkpipe/{NODE}/cam0/status"])
    proc = subprocess.Popen(  # in a folder of its own: no camera topics of an earlier run
        [sys.executable, "-c", textwrap.dedent(SINK_ALONE), str(broker.port)],
        cwd=tmp_path,
        env=rkpipe_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert poll_for(lambda: sub.on(f"rkpipe/{NODE}/status") == [b"online"], timeout=5)
        assert poll_for(lambda: len(sub.on(f"rkpipe/{NODE}/cam0/status")) == 1, timeout=5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        assert poll_for(
            lambda: sub.on(f"rkpipe/{NODE}/status") == [b"online", b"offline"], timeout=5
        )
    finally:
        proc.kill()
        sub.close()
    assert sub.on(f"rkpipe/{NODE}/cam0/status") == [b"online"]  # the stream's last word was online
