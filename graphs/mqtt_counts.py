#!/usr/bin/env python3
"""Live counts from an rkpipe pipeline's MQTT events: crossings per stream, line and direction,
and zone occupancy; at the end, the retained plain numbers the sink keeps beside the events
(rkpipe/{node}/{stream}/{line}/{direction}/{class}: total since the first run, and
rkpipe/{node}/{stream}/zones/{zone}/{class}: inside now), of every board (node) on the broker
by default (--node for one). An example consumer; it needs only paho-mqtt (pip install
paho-mqtt).

    python graphs/mqtt_counts.py --host broker.local
    RKPIPE_MQTT_PASSWORD=... python graphs/mqtt_counts.py --username viewer --events 100
    python graphs/mqtt_counts.py --timeout 2      # just the retained totals, then exit
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import Counter, defaultdict

import paho.mqtt.client as mqtt


class Counts:
    """Running totals built from events: (stream, line) -> direction -> n, and occupancy."""

    def __init__(self) -> None:
        self.lines: dict[tuple[str, str], Counter] = defaultdict(Counter)
        self.zones: dict[tuple[str, str], int] = defaultdict(int)
        self.events = 0
        self.retained: dict[str, int] = {}  # plain-number topic -> value

    def add(self, ev: dict) -> str | None:
        """Fold one event in; returns the line to print for it, if any."""
        kind, stream = ev.get("type"), ev.get("stream", "?")
        self.events += 1
        if kind == "line_crossing":
            key = (stream, ev["line"])
            self.lines[key][ev["direction"]] += 1
            c = self.lines[key]
            return f"{stream} line {ev['line']}: in {c['in']} out {c['out']}"
        if kind in ("zone_enter", "zone_exit"):
            key = (stream, ev["zone"])
            self.zones[key] = max(0, self.zones[key] + (1 if kind == "zone_enter" else -1))
            return f"{stream} zone {ev['zone']}: occupancy {self.zones[key]}"
        return None

    def table(self) -> list[str]:
        rows = [
            f"{s:<12} line {name:<12} in {c['in']:>6} out {c['out']:>6}"
            for (s, name), c in sorted(self.lines.items())
        ]
        rows += [
            f"{s:<12} zone {name:<12} occupancy {n:>6}"
            for (s, name), n in sorted(self.zones.items())
        ]
        rows += [f"{topic} = {n}" for topic, n in sorted(self.retained.items())]
        return rows


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--host", default="localhost", help="broker host (default: localhost)")
    p.add_argument("--port", type=int, default=1883, help="broker port (default: 1883)")
    p.add_argument("--node", default="+", help="one board's node id (default: every board)")
    p.add_argument("--topic", help="event topic filter (default: rkpipe/NODE/+/events/#)")
    p.add_argument(
        "--status-topic",
        action="append",
        default=None,
        help="status topics to show (default: rkpipe/NODE/status and rkpipe/NODE/+/status)",
    )
    p.add_argument(
        "--totals-topic",
        help="retained plain numbers (default: rkpipe/NODE/+/+/+/+, totals and occupancy)",
    )
    p.add_argument("--username", help="user name; the password comes from $RKPIPE_MQTT_PASSWORD")
    p.add_argument("--events", type=int, metavar="N", help="exit after N events")
    p.add_argument("--timeout", type=float, metavar="S", help="exit after S seconds")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    node = args.node
    args.topic = args.topic or f"rkpipe/{node}/+/events/#"
    args.totals_topic = args.totals_topic or f"rkpipe/{node}/+/+/+/+"
    status_topics = args.status_topic or [f"rkpipe/{node}/status", f"rkpipe/{node}/+/status"]
    counts = Counts()
    refused: list[str] = []
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"rkpipe-counts-{os.getpid()}")
    if args.username:
        client.username_pw_set(args.username, os.environ.get("RKPIPE_MQTT_PASSWORD"))

    def on_connect(c: mqtt.Client, _u: object, _f: object, reason: object, _p: object) -> None:
        if getattr(reason, "is_failure", False):
            refused.append(f"broker {args.host}:{args.port} refused the connection: {reason}")
            c.disconnect()
            return
        c.subscribe([(args.topic, 1), (args.totals_topic, 1), *((t, 1) for t in status_topics)])
        print(f"listening on {args.host}:{args.port} {args.topic}", flush=True)

    def on_message(_c: mqtt.Client, _u: object, msg: mqtt.MQTTMessage) -> None:
        text = msg.payload.decode(errors="replace")
        if any(mqtt.topic_matches_sub(t, msg.topic) for t in status_topics):
            print(f"status {msg.topic}: {text}", flush=True)  # online / offline
            return
        if mqtt.topic_matches_sub(args.totals_topic, msg.topic) and text.isdigit():
            counts.retained[msg.topic] = int(text)
            return
        try:
            line = counts.add(json.loads(text))
        except (ValueError, KeyError, AttributeError):
            print(f"not an rkpipe event on {msg.topic}: {text[:80]!r}", file=sys.stderr)
            return
        if line:
            print(line, flush=True)

    client.on_connect, client.on_message = on_connect, on_message
    try:
        client.connect(args.host, args.port)
    except OSError as exc:
        print(f"cannot reach broker {args.host}:{args.port}: {exc}", file=sys.stderr)
        return 1
    client.loop_start()
    deadline = time.monotonic() + args.timeout if args.timeout else None
    try:
        while (
            not refused
            and (args.events is None or counts.events < args.events)
            and (deadline is None or time.monotonic() < deadline)
        ):
            time.sleep(0.05)
    except KeyboardInterrupt:
        pass
    client.disconnect()
    client.loop_stop()
    if refused:
        print(refused[0], file=sys.stderr)
        return 1
    print(f"final counts ({counts.events} events):")
    for row in counts.table():
        print(f"  {row}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
