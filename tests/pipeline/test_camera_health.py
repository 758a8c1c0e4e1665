"""Camera health a person sees: the live view, the metrics, the run summary and stats, and
an exit status for a camera that stays down."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.stats.live_view import summary_line, table_lines
from pipeline.stats.prometheus import SnapshotCollector
from pipeline.stats.report import Snapshot
from support.graph import Graph
from support.rkpipe import run_rkpipe


def snapshot_with(sources: dict) -> Snapshot:
    return Snapshot("p", 5.0, [], {}, {}, sources=sources)


DOWN = {"state": "down", "detail": "connection refused", "since": time.time(), "reconnects": 3}
LIVE = {"state": "live", "detail": "", "since": time.time(), "reconnects": 1}


def test_the_live_view_warns_of_a_camera_that_is_not_live() -> None:
    snap = snapshot_with({"cam0": DOWN, "cam1": LIVE})
    table = table_lines(snap, width=120)
    assert any(
        line.startswith("! cam0 down since") and "connection refused" in line for line in table
    )
    assert not any("cam1" in line and line.startswith("!") for line in table)
    assert summary_line(snap).endswith("; cameras: 1 live, cam0 down")


def test_metrics_say_which_sources_are_up_and_how_often_they_reconnected() -> None:
    collector = SnapshotCollector()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    collector.update(snapshot_with({"cam0": DOWN, "cam1": LIVE}))
    samples = {
        (s.name, s.labels.get("stream")): s.value
        for fam in text_string_to_metric_families(generate_latest(registry).decode())
        for s in fam.samples
    }
    assert samples[("rkpipe_source_up", "cam0")] == 0
    assert samples[("rkpipe_source_up", "cam1")] == 1
    assert samples[("rkpipe_source_reconnects_total", "cam0")] == 3


@pytest.mark.integration
def test_a_lost_camera_is_counted_in_the_summary_and_the_stats(tmp_path: Path, no_leaks) -> None:
    graph = (
        Graph()
        .source(
            "cam0", uses="rk_test_stages:FlakyCamera", frames=60, outage_at=20, outage_s=1.0, fps=30
        )
        .sink("out", uses="jsonl", inputs=["cam0"], path=tmp_path / "out.jsonl")
        .write(tmp_path)
    )
    res = run_rkpipe("run", str(graph), "--stats-out", str(tmp_path / "stats.json"))
    assert res.returncode == 0, res.stderr
    health = json.loads((tmp_path / "stats.json").read_text())["health"]["cam0"]
    assert health["outages"] == 1 and health["reconnects"] == 1 and health["state"] == "live"
    assert 1.0 <= health["down_s"] < 30
    assert "rkpipe: cam0 was down " in res.stderr and " in 1 outage" in res.stderr
    said = [ln for ln in res.stderr.splitlines() if re.match(r"rkpipe: cam0 (live|reconn)", ln)]
    assert said[0] == "rkpipe: cam0 reconnecting: stream lost", res.stderr  # once each
    assert len(said) == 2 and re.fullmatch(r"rkpipe: cam0 live again after [\d.]+ s", said[1])


@pytest.mark.integration
def test_a_camera_down_past_fail_on_source_down_s_ends_the_run_with_an_error(
    tmp_path: Path, no_leaks
) -> None:
    graph = (
        Graph(fail_on_source_down_s=2)
        .source("cam0", uses="rk_test_stages:DownCamera", seconds=120)
        .sink("out", uses="jsonl", inputs=["cam0"], path=tmp_path / "out.jsonl")
        .write(tmp_path)
    )
    t0 = time.monotonic()
    res = run_rkpipe("run", str(graph), "--stats-out", str(tmp_path / "stats.json"), timeout=120)
    assert res.returncode == 1
    assert time.monotonic() - t0 < 90  # it did not wait for the camera's 120 s
    errors = [line for line in res.stderr.splitlines() if line.startswith("rkpipe: error:")]
    assert len(errors) == 1 and "cam0: camera down for" in errors[0], res.stderr
    assert "down-Pw-31" not in res.stderr  # the URL's password never shows
    health = json.loads((tmp_path / "stats.json").read_text())["health"]["cam0"]
    assert health["outages"] == 1 and health["state"] == "down"
