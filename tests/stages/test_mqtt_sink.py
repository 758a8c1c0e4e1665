"""The mqtt sink against a real mosquitto broker: every event arrives, valid and on its topic;
status and Last Will are retained; a broker outage loses nothing up to the outbox bound, and
what the bound drops is counted; bad credentials end the run with one clear line."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from types import SimpleNamespace

import jsonschema
import paho.mqtt.client as mqtt
import pytest

from pipeline import Context, InlineRuntime, Message, StageSetupError
from stages.events import line_crossing_event, load_schema
from stages.sinks.mqtt.outbox import Item, Outbox
from stages.sinks.mqtt.stage import MqttSink, render_topic
from support.mosquitto import Broker, broker_fixture  # noqa: F401  (the broker fixture)
from support.rkpipe import ROOT, poll_for, rkpipe_env, run_rkpipe, start_rkpipe, write_graph

VALIDATOR = jsonschema.Draft202012Validator(load_schema())


class Subscriber:
    """A paho client in the test process that records every message it gets."""

    def __init__(self, b: Broker, topics: list[str], client_id: str = "", persistent=False):
        self.messages: list[tuple[str, bytes, bool]] = []
        self.lock = threading.Lock()
        self.subscribed = threading.Event()
        kw = {"client_id": client_id, "clean_session": not persistent}
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, **kw)
        if b.users:
            self.client.username_pw_set("test", "test-pw")
        if b.ca is not None:
            self.client.tls_set(ca_certs=str(b.ca))
        self.client.reconnect_delay_set(0.1, 0.5)  # type: ignore[arg-type]
        self.client.on_connect = lambda c, *_: c.subscribe([(t, 1) for t in topics])
        self.client.on_subscribe = lambda *_: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(b.host, b.port)
        self.client.loop_start()
        assert self.subscribed.wait(5), "test subscriber could not subscribe"

    def _on_message(self, _c, _u, msg: mqtt.MQTTMessage) -> None:
        with self.lock:
            self.messages.append((msg.topic, msg.payload, msg.retain))

    def on(self, topic: str) -> list[bytes]:
        with self.lock:
            return [p for t, p, _ in self.messages if t == topic]

    def events(self) -> list[tuple[str, dict]]:
        with self.lock:
            return [(t, json.loads(p)) for t, p, _ in self.messages if not t.endswith("status")]

    def ids(self) -> list[str]:
        return [e["id"] for _, e in self.events()]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def graph_text(
    b: Broker | SimpleNamespace, frames: int, every: int = 2, fps: float = 0, **mqtt_opts
) -> str:
    """cam0 (and cam1) -> EmitEvents -> mqtt; ``fps`` > 0 paces the (non-live) source."""
    pace = f"realtime = true\nfps = {fps}" if fps else ""
    opts = {"host": b.host, "port": b.port, "reconnect_min_s": 0.2, "reconnect_max_s": 0.5}
    opts.update(mqtt_opts)
    lines = "\n".join(f"{k} = {json.dumps(v)}" for k, v in opts.items())
    cams = "".join(
        f'[stages.{c}]\nuses = "synthetic"\nwidth = 64\nheight = 48\nframes = {frames}\n{pace}\n'
        for c in ("cam0", "cam1")
    )
    return (
        f'[pipeline]\nname = "mqtt_test"\n{cams}'
        f'[stages.ev]\nuses = "rk_test_events:EmitEvents"\ninputs = ["cam0", "cam1"]\n'
        f'every = {every}\ntypes = ["line_crossing", "zone_enter", "counts"]\n'
        f'[stages.mqtt]\nuses = "mqtt"\ninputs = ["ev"]\n{lines}\n'
    )


def all_ids(frames: int, every: int) -> set[str]:
    """The event ids rk_test_events:EmitEvents gives ``frames`` frames of cam0 and cam1."""
    return {
        f"{cam}:{seq}:{key}"
        for cam in ("cam0", "cam1")
        for seq in range(0, frames, every)
        for key in (f"door:{seq // every}", f"lobby:{seq // every}:enter", "counts")
    }


def start_run(path: Path, *args: str) -> subprocess.Popen:
    return start_rkpipe("run", str(path), *args, cwd=path.parent)


# -- the outbox, in process ------------------------------------------------------------------
class Acked:
    def __init__(self, done: bool) -> None:
        self.done = done

    def is_published(self) -> bool:
        return self.done


def _items(n: int) -> list[Item]:
    return [Item(f"t/{i}", json.dumps({"id": i})) for i in range(n)]


def _drain(box: Outbox) -> list[str]:
    out = []
    while (item := box.next()) is not None:
        out.append(item.topic)
    return out


def test_outbox_overflows_to_the_spool_and_replays_in_order(tmp_path: Path) -> None:
    box = Outbox(3, tmp_path / "spool.jsonl", 1 << 20)
    assert sum(box.put(it) for it in _items(10)) == 0
    assert len(box) == 10 and len(box.memory) == 3
    assert len((tmp_path / "spool.jsonl").read_text().splitlines()) == 7  # one line each
    assert _drain(box) == [f"t/{i}" for i in range(10)]
    assert (tmp_path / "spool.jsonl").stat().st_size == 0  # emptied once replayed


def test_outbox_drops_the_oldest_beyond_its_bounds(tmp_path: Path) -> None:
    box = Outbox(3)
    assert [box.put(it) for it in _items(5)] == [0, 0, 0, 1, 1]
    assert _drain(box) == ["t/2", "t/3", "t/4"]
    line = len(_items(1)[0].to_line())
    spooled = Outbox(2, tmp_path / "s.jsonl", 3 * line)  # 2 in memory + 3 on disk
    assert sum(spooled.put(it) for it in _items(8)) == 3
    assert _drain(spooled) == [f"t/{i}" for i in range(3, 8)]


def test_outbox_holds_messages_until_acked_and_keeps_unacked_for_next_start(
    tmp_path: Path,
) -> None:
    path = tmp_path / "spool.jsonl"
    box = Outbox(10, path, 1 << 20)
    for it in _items(4):
        box.put(it)
    first, second = box.next(), box.next()
    box.sending(first, Acked(True))
    box.sending(second, Acked(False))
    box.settle()
    assert len(box) == 3  # the unacked in-flight message still counts
    assert box.close() == 3
    again = Outbox(10, path, 1 << 20)
    assert _drain(again) == ["t/1", "t/2", "t/3"]


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
                topic="site/{stream}/{type}/{line}{zone}",
                username="rkpipe",
                password_env="TEST_MQTT_PW",
            )
            monkeypatch.setenv("TEST_MQTT_PW", "s3cret")  # the secret stays out of the graph
            res = run_rkpipe("run", str(write_graph(tmp_path, text)), cwd=tmp_path, timeout=60)
            assert res.returncode == 0, res.stderr
            want = all_ids(40, 5)
            assert poll_for(lambda: len(sub.ids()) >= len(want), timeout=10)
            assert poll_for(lambda: b"offline" in sub.on("rkpipe/status"), timeout=5)
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
    # per stream: online before its first event, offline (with its event count) at the end
    for cam in ("cam0", "cam1"):
        states = [json.loads(p) for p in sub.on(f"rkpipe/{cam}/status")]
        assert [s["state"] for s in states] == ["online", "offline"]
        assert states[1]["events"] == len([1 for _, e in events if e["stream"] == cam])
    assert sub.on("rkpipe/status") == [b"online", b"offline"]
    retained = {t: p for t, p, r in late.messages if r}
    assert retained["rkpipe/status"] == b"offline"
    assert json.loads(retained["rkpipe/cam0/status"])["state"] == "offline"


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
        res = run_rkpipe("run", str(write_graph(tmp_path, graph_text(broker, frames, every))))
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
    assert "status rkpipe/cam0/status: online" in out


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
    sub = Subscriber(broker, ["rkpipe/+/events/#"], client_id="outage-sub", persistent=True)
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
    assert poll_for(lambda: set(sub.ids()) >= want, timeout=10), sorted(want - set(sub.ids()))
    sub.close()
    assert set(sub.ids()) == want  # QoS 1 is at least once: a resend may repeat an id
    assert json.loads(stats.read_text())["stages"]["mqtt"]["drops"] == 0
    assert f"mqtt broker {broker.address} not reachable" in err
    assert f"reconnected to {broker.address}" in err
    if bound == "spool":
        assert "outbox full" not in err
        assert not (tmp_path / "spool" / "mqtt.jsonl").exists()  # delivered, nothing kept


@pytest.mark.integration
@pytest.mark.slow
def test_outbox_smaller_than_the_outage_counts_what_it_drops(
    tmp_path: Path, broker: Broker, no_leaks
) -> None:
    frames, every = 120, 2
    sub = Subscriber(broker, ["rkpipe/#"], client_id="bound-sub", persistent=True)
    path = write_graph(tmp_path, graph_text(broker, frames, every, fps=40, max_queued=20))
    stats = tmp_path / "stats.json"
    proc = start_run(path, "--stats-out", str(stats))
    try:
        assert poll_for(lambda: len(sub.ids()) >= 6, timeout=15)
        broker.stop()
        time.sleep(1.5)
        broker.start()
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 0, err
    mqtt_stats = json.loads(stats.read_text())["stages"]["mqtt"]
    dropped = mqtt_stats["drops_by_reason"].get("mqtt_outbox_full", 0)
    assert dropped > 0 and mqtt_stats["drops"] == dropped
    # every message (events, and each stream's online and offline status) arrived or was
    # counted as dropped
    want = all_ids(frames, every)

    def arrived() -> int:
        # a retained status comes again when the subscriber resubscribes: count it once
        statuses = sum(len(set(sub.on(f"rkpipe/{cam}/status"))) for cam in ("cam0", "cam1"))
        return len(set(sub.ids())) + statuses

    poll_for(lambda: arrived() + dropped >= len(want) + 4, timeout=10)
    sub.close()
    assert set(sub.ids()) < want
    assert arrived() + dropped == len(want) + 4, err
    assert err.count("outbox full") == 1, err  # said once per outage, not per event


@pytest.mark.integration
def test_broker_down_at_start_is_waited_for(tmp_path: Path, no_leaks) -> None:
    b = Broker(tmp_path / "broker")
    b.start()  # once, so the subscriber's session (and its queue) outlives the outage
    sub = Subscriber(b, ["rkpipe/+/events/#"], client_id="late-sub", persistent=True)
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
def test_tls_to_a_broker_signed_by_the_given_ca(tmp_path: Path, no_leaks) -> None:
    with Broker(tmp_path / "broker", tls=True) as b:
        sub = Subscriber(b, ["rkpipe/+/events/#"])
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


def _crossing(seq: int) -> Message:
    """A frame of cam0 with one line crossing, id ``cam0:<seq>:door:<seq>``."""
    msg = Message("cam0", seq)
    msg.meta["events"] = [
        line_crossing_event(msg, "door", "in", seq, 0, (1, 2), {"in": seq, "out": 0})
    ]
    return msg


@pytest.mark.integration
def test_what_is_undelivered_at_the_end_is_reported_and_kept_in_the_spool(
    tmp_path: Path, broker: Broker, caplog: pytest.LogCaptureFixture
) -> None:
    """The broker goes away for good before the end: the sink counts and says how many
    messages it could not deliver; with a spool they wait on disk and go at the next start."""
    sub = Subscriber(broker, ["rkpipe/+/events/#"], client_id="end-sub", persistent=True)
    runtime = InlineRuntime()
    drops = runtime.drops
    ctx = Context(stage="mqtt", graph_dir=tmp_path, runtime=runtime)
    opts = {"host": broker.host, "port": broker.port, "flush_timeout_s": 0.5}
    sink = MqttSink(**opts)
    sink.setup(ctx)
    for seq in range(10):
        sink.process(_crossing(seq))
    assert poll_for(lambda: len(sub.ids()) == 10, timeout=5)
    broker.stop()
    for seq in range(10, 20):
        sink.process(_crossing(seq))
    sink.end_stream("cam0")
    sink.close()
    assert drops == {"mqtt_undelivered": 11}  # 10 events and cam0's offline status
    assert f"11 messages not delivered to broker {broker.address} (lost)" in caplog.text

    broker.start()
    spooled = MqttSink(**opts, spool_dir="spool")
    spooled.setup(ctx)
    broker.stop()
    for seq in range(20, 30):
        spooled.process(_crossing(seq))
    spooled.close()
    spool = tmp_path / "spool" / "mqtt.jsonl"
    # 10 events and cam0's online and offline status (this sink never reached the broker)
    assert f"12 messages not delivered to broker {broker.address} (kept in {spool})" in caplog.text
    broker.start()
    again = MqttSink(**{**opts, "flush_timeout_s": 5}, spool_dir="spool")
    again.setup(ctx)
    again.close()  # it got no frames: only what the spool held goes out
    want = {f"cam0:{seq}:door:{seq}" for seq in [*range(10), *range(20, 30)]}
    assert poll_for(lambda: set(sub.ids()) >= want, timeout=5)
    sub.close()
    assert set(sub.ids()) == want
    assert not spool.exists()


SINK_ALONE = """
import sys, time
from pipeline import Context, Message
from stages.sinks.mqtt.stage import MqttSink
sink = MqttSink(host="127.0.0.1", port=int(sys.argv[1]), client_id="will-test")
sink.setup(Context(stage="mqtt"))
sink.process(Message("cam0", 0))
print("ready", flush=True)
time.sleep(60)
"""


@pytest.mark.integration
def test_last_will_marks_the_pipeline_offline_when_the_sink_is_killed(broker: Broker) -> None:
    sub = Subscriber(broker, ["rkpipe/status", "rkpipe/cam0/status"])
    proc = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(SINK_ALONE), str(broker.port)],
        env=rkpipe_env(),
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        assert poll_for(lambda: sub.on("rkpipe/status") == [b"online"], timeout=5)
        assert poll_for(lambda: len(sub.on("rkpipe/cam0/status")) == 1, timeout=5)
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)
        assert poll_for(lambda: sub.on("rkpipe/status") == [b"online", b"offline"], timeout=5)
    finally:
        proc.kill()
        sub.close()
    assert json.loads(sub.on("rkpipe/cam0/status")[0])["state"] == "online"
