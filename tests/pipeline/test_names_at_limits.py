"""A run in which every name is as long as the rules allow and uses the characters at their
edge (capitals, ``_``, ``-``, ``.``, spaces, brackets, accents), through jsonl, a real
mosquitto (events, retained totals, Home Assistant discovery) and event snapshots: every
output is written and readable, and each topic and file is where the names say."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import pytest

from pipeline.names import MAX_LABEL_BYTES, MAX_PIPELINE_NAME, MAX_STAGE_NAME
from pipeline.node import MAX_NODE
from stages.classes import COCO_NAMES
from support.graph import graph_file
from support.mosquitto import Broker, Subscriber, broker_fixture  # noqa: F401  (the fixture)
from support.rkpipe import poll_for, read_jsonl, run_rkpipe


def longest(head: str, limit: int, pad: str = "x") -> str:
    """``head`` padded to exactly ``limit`` UTF-8 bytes."""
    return head + pad * (limit - len(head.encode()))


PIPELINE = longest("P_-", MAX_PIPELINE_NAME, "q")
NODE = longest("N-_", MAX_NODE, "n")
CAM = longest("C-_", MAX_STAGE_NAME, "9")
STAGES = {k: longest(k, MAX_STAGE_NAME, k[0].lower()) for k in ("T", "L", "J", "M")}
LINE = longest("Ünïcode dœr.x-y_z (2) ", MAX_LABEL_BYTES)
PERSON = longest("Pérsön ~ walking: ", MAX_LABEL_BYTES, "w")
LINE_Y = 270  # people on the easy scene's crosswalk cross it (track 62465 near frame 230)


def graph(folder: Path, broker: Broker) -> Path:
    truth, lines, jsonl, mqtt = STAGES.values()
    stages = {
        CAM: {"uses": "synthetic", "scene": "easy", "frames": 260},
        truth: {"uses": "rk_test_overlay:Overlay", "inputs": [CAM], "overlays": False},
        lines: {
            "uses": "line_crossing",
            "inputs": [truth],
            "lines": {CAM: {"name": LINE, "a": [0, LINE_Y], "b": [640, LINE_Y]}},
            "names": [PERSON, *COCO_NAMES[1:]],
            "classes": [PERSON],
            "snapshot": {"dir": str(folder / "snaps")},
            "snapshot_every_s": 0,
        },
        jsonl: {
            "uses": "jsonl",
            "inputs": [lines],
            "path": str(folder / "{stream}.jsonl"),
            "events_only": True,
        },
        mqtt: {
            "uses": "mqtt",
            "inputs": [lines],
            "host": broker.host,
            "port": broker.port,
            "topic": "rkpipe/{pipeline}/{stream}/{line}/{type}",
            "ha_discovery": True,
            "state_dir": str(folder / "state"),
            "snapshot_root": str(folder / "snaps"),
        },
    }
    return graph_file(folder, stages, {"name": PIPELINE, "node": NODE})


@pytest.mark.integration
def test_a_run_with_every_name_at_its_limit_writes_every_output(
    tmp_path: Path, broker: Broker, no_leaks
) -> None:
    sub = Subscriber(broker, ["#"])
    try:
        res = run_rkpipe("run", str(graph(tmp_path, broker)), "--stats-out", str(tmp_path / "s"))
        assert res.returncode == 0, res.stderr
        assert "NOT exact" not in res.stderr, res.stderr

        # jsonl: the stream's file, the names as given
        crossings = [e for e in read_jsonl(tmp_path / f"{CAM}.jsonl") if "line" in e]
        assert crossings, res.stderr
        for ev in crossings:
            assert (ev["stream"], ev["line"], ev["class_name"]) == (CAM, LINE, PERSON)

        # snapshots: under the stream's folder, a JPEG and its crop that OpenCV reads
        for ev in crossings:
            assert ev["snapshot"].startswith(f"{CAM}/"), ev["snapshot"]
            for key in ("snapshot", "snapshot_crop"):
                path = tmp_path / "snaps" / ev[key]
                assert len(path.name.encode()) <= 255
                assert cv2.imread(str(path)) is not None, path

        # mqtt: the events on the topic the names make, each once
        topic = f"rkpipe/{PIPELINE}/{CAM}/{LINE}/line_crossing"
        ids = {ev["id"] for ev in crossings}
        assert poll_for(lambda: {json.loads(p)["id"] for p in sub.on(topic)} == ids, 10), sorted(
            {t for t, _, _ in sub.messages}
        )
        # the retained totals, one topic level per name
        total = f"rkpipe/{NODE}/{CAM}/{LINE}/{crossings[-1]['direction']}/{PERSON}"
        assert poll_for(lambda: sub.latest().get(total) == str(len(crossings)).encode(), 10)
        # Home Assistant: one sensor per total, each with its own unique id
        configs = [
            json.loads(p)
            for t, p, _ in sub.messages
            if t.startswith("homeassistant/sensor/") and t.endswith("/config") and p
        ]
        ours = [c for c in configs if c["state_topic"] == total]
        assert len(ours) == 1, configs
        assert len({c["unique_id"] for c in configs}) == len({c["state_topic"] for c in configs})
        assert ours[0]["device"]["identifiers"][0].startswith(f"rkpipe-{PIPELINE}-")
        assert NODE in ours[0]["device"]["identifiers"][0]
        # the totals kept for the next run, in the pipeline's state folder
        state = tmp_path / "state" / PIPELINE / f"{CAM}.json"
        assert LINE in json.loads(state.read_text().splitlines()[0])["run"]
        # the event snapshot: JPEG bytes on the snapshot topic, or (while the sink may still
        # read a snapshot before its writer is done) counted as unreadable
        jpeg = sub.latest().get(f"rkpipe/{NODE}/{CAM}/snapshot/line_crossing")
        sink = json.loads((tmp_path / "s").read_text())["stages"][STAGES["M"]]
        unreadable = sink["drops_by_reason"].get("mqtt_snapshot_unreadable", 0)
        assert (jpeg is not None and jpeg[:2] == b"\xff\xd8") or unreadable, sink
    finally:
        sub.close()
