"""The mqtt sink against a real mosquitto: what the write-ahead spool costs, and what a broker
outage with a SIGKILLed sink loses.

1. Throughput: ``--events`` line-crossing events through an inline sink until the broker
   acknowledged all of them, with the memory outbox and with ``spool_dir`` (every event on disk
   before it is sent), without and with the witness session; the baseline is a bare paho
   client publishing the same payloads at QoS 1 with the same in-flight window, in this run.
2. Outage: ``rkpipe run`` of two paced cameras (3 events a frame) -> mqtt with a spool; the
   broker stops mid-run, the sink is SIGKILLed during the outage, the broker comes back. Prints
   the events sent, spooled at the kill, delivered in the end, missing and counted.
3. Flush past the heartbeat timeout: the broker stops before the streams end; the sink flushes
   for longer than ``heartbeat_timeout_s``. Prints whether it was killed and what it counted.

    python benchmarks/bench_mqtt.py [--events 20000] [--frames 200]
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import paho.mqtt.client as mqtt  # noqa: E402

from pipeline import Context, InlineRuntime, Message  # noqa: E402
from stages.events import line_crossing_event  # noqa: E402
from stages.sinks.mqtt import MqttSink  # noqa: E402
from support.mosquitto import Broker, Subscriber  # noqa: E402
from support.mqtt_graph import all_ids, graph_text, start_run  # noqa: E402
from support.rkpipe import child_pid, poll_for, write_graph  # noqa: E402

INFLIGHT = 100


def messages(n: int) -> list[Message]:
    out = []
    for seq in range(n):
        msg = Message("cam0", seq)
        msg.meta["events"] = [
            line_crossing_event(msg, "door", "in", seq, 0, (1, 2), {"in": seq, "out": 0})
        ]
        out.append(msg)
    return out


def bare_paho(b: Broker, msgs: list[Message]) -> float:
    """Events/s of a plain QoS 1 publisher with the sink's in-flight window."""
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
    client.max_inflight_messages_set(INFLIGHT)
    client.connect(b.host, b.port)
    client.loop_start()
    payloads = [json.dumps(m.meta["events"][0], separators=(",", ":")) for m in msgs]
    t0 = time.perf_counter()
    infos = [client.publish("bench/cam0/events/line_crossing", p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(60)
    took = time.perf_counter() - t0
    client.disconnect()
    client.loop_stop()
    return len(msgs) / took


def sink(b: Broker, msgs: list[Message], folder: Path, **opts: object) -> float:
    """Events/s through an inline mqtt sink until all are acknowledged."""
    s = MqttSink(host=b.host, port=b.port, max_inflight=INFLIGHT, flush_timeout_s=120, **opts)
    s.setup(Context(stage="mqtt", run_id=folder.name, runtime=InlineRuntime()))
    t0 = time.perf_counter()
    for m in msgs:
        s.process(m)
    s.end_stream("cam0")  # waits until the broker acknowledged everything
    took = time.perf_counter() - t0
    s.close()
    return len(msgs) / took


def throughput(n: int, tmp: Path) -> None:
    msgs = messages(n)
    with Broker(tmp / "broker-tp") as b:
        base = bare_paho(b, msgs)
        memory = sink(b, msgs, tmp / "memory", max_queued=n, state_dir=str(tmp / "state-m"))
        bare_spool = sink(
            b,
            msgs,
            tmp / "spool0",
            spool_dir=str(tmp / "spool0"),
            state_dir=str(tmp / "state-s0"),
            witness=False,
        )
        spooled = sink(
            b, msgs, tmp / "spool", spool_dir=str(tmp / "spool"), state_dir=str(tmp / "state-s")
        )
    print(f"throughput, {n} events, QoS 1, {INFLIGHT} in flight:")
    print(f"  bare paho publisher   {base:9.0f} events/s")
    print(f"  sink, memory outbox   {memory:9.0f} events/s  {memory / base:.2f}x bare paho")
    print(
        f"  sink, write-ahead     {bare_spool:9.0f} events/s  {bare_spool / base:.2f}x bare "
        f"paho, {bare_spool / memory:.2f}x memory (witness off)"
    )
    print(
        f"  sink, write-ahead     {spooled:9.0f} events/s  {spooled / base:.2f}x bare paho, "
        f"{spooled / memory:.2f}x memory (with its witness session, the default)"
    )


def _stderr_lines(proc: subprocess.Popen) -> list[str]:
    lines: list[str] = []
    threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True).start()  # type: ignore[arg-type]
    return lines


def outage_with_kill(frames: int, tmp: Path) -> None:
    folder = tmp / "kill"
    folder.mkdir()
    with Broker(folder / "broker") as b:
        sub = Subscriber(b, ["rkpipe/+/+/events/#"], client_id="bench-kill", persistent=True)
        text = graph_text(b, frames, 1, fps=40, spool_dir="spool")
        stats = folder / "stats.json"
        proc = start_run(write_graph(folder, text), "--stats-out", str(stats))
        lines = _stderr_lines(proc)
        poll_for(lambda: len(sub.ids()) >= 60, timeout=30)
        b.stop()
        before = len(set(sub.ids()))
        time.sleep(2.0)
        pid = child_pid(proc, "mqtt")
        subprocess.run(["kill", "-KILL", str(pid)], check=True)
        poll_for(lambda: child_pid(proc, "mqtt") not in (None, pid), timeout=20)
        b.start()
        proc.wait(120)
        want = all_ids(frames, 1)
        poll_for(lambda: set(sub.ids()) >= want, timeout=15)
        got = set(sub.ids())
        sub.close()
    err = "".join(lines)
    spooled = re.search(r"(\d+) messages left unsent by an earlier run", err)
    run = json.loads(stats.read_text())["stages"]
    missing = want - got
    frames_missing = {":".join(e.split(":")[:2]) for e in missing}
    print(f"outage + kill -9 of the sink, spool on, {len(want)} events (2 cameras x {frames}):")
    print(f"  delivered before the outage     {before}")
    print(f"  in the spool at the kill        {spooled.group(1) if spooled else '?'}")
    print(f"  delivered in the end            {len(got)}")
    print(
        f"  missing                         {len(missing)} ({len(frames_missing)} frames in the "
        f"sink's input queue at the kill; runtime drops counted upstream: "
        f"{run['ev']['drops_by_reason']})"
    )
    print(
        f"  counted unsent                  {run['mqtt']['drops_by_reason'].get('mqtt_unsent', 0)}"
    )


def flush_past_heartbeat(frames: int, tmp: Path) -> None:
    folder = tmp / "flush"
    folder.mkdir()
    with Broker(folder / "broker") as b:
        sub = Subscriber(b, ["rkpipe/+/+/events/#"], client_id="bench-flush", persistent=True)
        opts = {"flush_timeout_s": 10}
        text = graph_text(b, frames, 1, fps=40, pipeline={"heartbeat_timeout_s": 4}, **opts)
        stats = folder / "stats.json"
        proc = start_run(write_graph(folder, text), "--stats-out", str(stats))
        lines = _stderr_lines(proc)
        poll_for(lambda: len(sub.ids()) >= 60, timeout=30)
        b.stop()
        proc.wait(120)
        b.start()
        want = all_ids(frames, 1)
        unsent = json.loads(stats.read_text())["stages"]["mqtt"]["drops_by_reason"]
        unsent = unsent.get("mqtt_unsent", 0)
        poll_for(lambda: len(want - set(sub.ids())) <= unsent, timeout=10)
        got = set(sub.ids())
        sub.close()
    err = "".join(lines)
    killed = "silent for" in err
    print(f"flush of 10 s past a 4 s heartbeat timeout, broker away, {len(want)} events:")
    print(f"  sink killed by the supervisor   {'yes' if killed else 'no'}")
    print(f"  delivered                       {len(got)}")
    print(f"  missing                         {len(want - got)}")
    print(f"  counted unsent                  {unsent}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--events", type=int, default=20_000, help="events for the throughput run")
    p.add_argument("--frames", type=int, default=200, help="frames per camera for the outage")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        throughput(args.events, Path(tmp))
        outage_with_kill(args.frames, Path(tmp))
        flush_past_heartbeat(args.frames, Path(tmp))


if __name__ == "__main__":
    main()
