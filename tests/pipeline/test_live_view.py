"""The live stats view and the Prometheus endpoint: rendering from fixed snapshots, and real
`rkpipe run` processes under a pseudo-terminal, a pipe, and a scraper."""

from __future__ import annotations

import fcntl
import io
import os
import platform
import pty
import re
import select
import shutil
import signal
import socket
import struct
import subprocess
import sys
import termios
import time
import urllib.error
import urllib.request
from importlib.metadata import version
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from pipeline.cpus import format_cpus, parse_cpus
from pipeline.stats.live_view import DropWatch, LiveView, fit, summary_line, table_lines
from pipeline.stats.prometheus import SnapshotCollector
from pipeline.stats.report import InstanceRow, Snapshot, StatsBook
from support.graph import Graph
from support.rkpipe import poll_for, rkpipe_env, run_rkpipe, start_rkpipe

ESC = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")


def snapshot(final: bool = False) -> Snapshot:
    rows = [
        InstanceRow(
            stage="cam0", instance="cam0", cpus=[4], fps_in=30, fps_out=29.5, p50_ms=0.21,
            p99_ms=0.9, frames_in=310, frames_out=300, drops={"live_overflow": 10},
            cpu_percent=12.4,
        ),
        InstanceRow(
            stage="a_rather_long_inference_stage", instance="a_rather_long_inference_stage.1",
            cpus=[4, 5, 6, 7], fps_in=15, fps_out=15, p50_ms=21.3, p99_ms=48.0,
            frames_in=150, frames_out=150, queue_depth=2, cpu_percent=97.0, restarts=1,
        ),
        InstanceRow(
            stage="a_rather_long_inference_stage", instance="a_rather_long_inference_stage.2",
            cpus=[], state="restarting", frames_in=148, frames_out=148,
        ),
        InstanceRow(
            stage="out", instance="out", fps_in=29.5, fps_out=29.5, p50_ms=25.0, p99_ms=60.0,
            frames_in=298, frames_out=298, sink=True, streams_out={"cam0": 298},
            drops={"overwritten": 2},
        ),
    ]  # fmt: skip
    return Snapshot("demo", 75.0, rows, {"cam0": 298}, {"cam0": 29.5}, final)


# -- rendering, no processes ------------------------------------------------------------------
def test_the_summary_is_one_greppable_line_for_the_whole_run() -> None:
    snap = snapshot()
    snap.sources = {
        "cam0": {"state": "live", "detail": ""},
        "cam1": {"state": "down", "detail": "connection refused"},
    }
    line = summary_line(snap)
    assert "\n" not in line
    assert line.startswith("rkpipe: demo up 1:15: sinks 29.5 fps; streams cam0=298; ")
    assert "; drops 12 (live_overflow=10 overwritten=2); restarts 1; " in line
    assert "; busiest a_rather_long_inference_stage.1 cpu 97%; " in line
    assert "a_rather_long_inference_stage.2 restarting" in line
    assert line.endswith("; cameras: 1 live, cam1 down")


def test_view_on_a_pipe_prints_one_summary_line_per_interval() -> None:
    out = io.StringIO()
    view = LiveView(out, live=None, interval=60)  # a StringIO is no terminal
    assert not view.live
    view.update(snapshot())
    view.update(snapshot())  # within the interval: nothing more
    view.message("rkpipe: hello")
    text = out.getvalue()
    assert "\x1b" not in text
    assert text.count("rkpipe: demo up ") == 1 and text.endswith("rkpipe: hello\n")
    assert "rkpipe: stats" not in text  # no line per stage


def test_a_stage_that_starts_dropping_is_said_once_until_it_stops_for_a_while() -> None:
    watch = DropWatch(quiet_s=60)
    snap = snapshot()
    said = watch.lines(snap, now=0.0)
    assert said == [
        "rkpipe: cam0 is dropping frames: live_overflow (+10, 10 in all)",
        "rkpipe: out is dropping frames: overwritten (+2, 2 in all)",
    ]
    assert watch.lines(snap, now=1.0) == []  # nothing new
    snap.rows[3].drops = {"overwritten": 5}
    assert watch.lines(snap, now=30.0) == []  # it goes on dropping: said already
    snap.rows[3].drops = {"overwritten": 6, "mqtt_outbox_full": 1}
    assert watch.lines(snap, now=100.0) == [  # a new reason, and one quiet for 70 s
        "rkpipe: out is dropping frames: mqtt_outbox_full (+1, 1 in all)",
        "rkpipe: out is dropping frames: overwritten (+1, 6 in all)",
    ]


@pytest.mark.parametrize("width", [79, 99, 119])
def test_table_fits_the_width_and_keeps_replicas_apart(width: int) -> None:
    lines = table_lines(snapshot(), width=width)
    assert all(len(line) <= width for line in lines)
    assert lines[0].startswith("rkpipe demo  running 1:15  sinks 29.5 fps")
    assert "cam0 298 (29.5/s)" in lines[1]
    header = lines[2].split()
    assert header[:11] == [
        "stage", "cpus", "in/s", "out/s", "p50ms", "p99ms", "drops", "queue", "cpu%", "rst",
        "state",
    ]  # fmt: skip
    names = [line.split()[0] for line in lines[3:7]]
    assert names[0] == "cam0" and names[3] == "out"
    assert names[1].endswith("~.1") and names[2].endswith("~.2")  # cut, yet distinct
    cam = lines[3].split()
    assert cam[1:11] == ["4", "30.0", "29.5", "0.21", "0.90", "10", "0", "12", "0", "run"]
    assert lines[5].split()[-1] == "retry"
    reasons = "live_overflow=10" in lines[3]
    assert reasons == (width >= 99)  # a column when there is room, else a footer line
    assert ("drops: cam0 live_overflow=10; out overwritten=2" in lines[-1]) == (not reasons)


def test_table_on_a_short_terminal_says_how_many_rows_are_hidden() -> None:
    lines = table_lines(snapshot(), width=100, height=6)
    assert len(lines) <= 6 and lines[-1].startswith("... 2 more instances")


def test_helpers_name_cpus_and_cut_names() -> None:
    assert format_cpus([4, 5, 6, 7, 0]) == "0,4-7" and format_cpus([]) == "any"
    assert parse_cpus("0-3,6") == {0, 1, 2, 3, 6}
    assert fit("short", 10) == "short" and fit("abcdefghijkl", 6) == "abcde~"
    assert fit("inference_stage.12", 10) == "infere~.12"


def test_terminal_view_rewrites_only_what_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "101")
    out = io.StringIO()
    view = LiveView(out, live=True)
    snap = snapshot()
    view.update(snap)
    first = out.getvalue()
    n = len(table_lines(snap, 100))
    assert first.count("\x1b[K\n") == n and "\x1b[F" not in first  # drawn once, no moving up
    out.truncate(0), out.seek(0)
    view.update(snapshot())
    assert out.getvalue() == ""  # same figures: nothing written
    snap.rows[0].fps_out = 31.0
    view.update(snap)
    redraw = out.getvalue()
    assert redraw.startswith(f"\x1b[?25l\x1b[{n}F")  # back to the top of the table
    assert redraw.count("\x1b[K\n") == 1 and "31.0" in redraw  # only the changed row
    assert redraw.count("\x1b[E") == n - 1
    out.truncate(0), out.seek(0)
    view.message("rkpipe: cam0 crashed")
    moved = out.getvalue()
    assert moved.startswith(f"\x1b[{n}F\x1b[Jrkpipe: cam0 crashed\n")  # above a fresh table
    assert moved.count("\x1b[K\n") == n


def test_message_from_a_signal_handler_mid_draw_waits_for_the_draw(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ctrl-C's handler prints through the view, possibly while the view is drawing."""
    monkeypatch.setenv("COLUMNS", "101")

    class Interrupted(io.StringIO):
        view: LiveView | None = None

        def write(self, text: str) -> int:
            if self.view is not None and "\x1b[?25l" in text:  # SIGINT lands mid-draw
                view, self.view = self.view, None
                view.message("rkpipe: SIGINT: draining")
            return super().write(text)

    out = Interrupted()
    view = LiveView(out, live=True)
    out.view = view
    view.update(snapshot())  # would deadlock if the message took the lock again
    text = out.getvalue()
    n = len(table_lines(snapshot(), 100))
    first_table_end = text.index("\x1b[?25h")
    assert text[first_table_end:].startswith(
        f"\x1b[?25h\x1b[{n}F\x1b[Jrkpipe: SIGINT: draining\n"
    )  # after the table, above a fresh one
    assert text.count("rkpipe demo  running") == 2


def test_collector_serves_the_table_figures() -> None:
    collector = SnapshotCollector()
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    before = metric_samples(generate_latest(registry).decode())
    assert [name for name, _ in before] == ["rkpipe_build_info"]  # no snapshot, no figures
    collector.update(snapshot())
    samples = metric_samples(generate_latest(registry).decode())
    cam0 = {"pipeline": "demo", "stage": "cam0", "replica": "0"}
    assert samples[key("rkpipe_frames_out_total", **cam0)] == 300
    assert samples[key("rkpipe_frames_per_second", **cam0, direction="out")] == 29.5
    assert samples[key("rkpipe_drops_total", **cam0, reason="live_overflow")] == 10
    assert samples[key("rkpipe_run_seconds", pipeline="demo")] == 75
    inf1 = {"pipeline": "demo", "stage": "a_rather_long_inference_stage", "replica": "1"}
    assert samples[key("rkpipe_restarts_total", **inf1)] == 1
    assert samples[key("rkpipe_cpu_usage_ratio", **inf1)] == pytest.approx(0.97)
    assert samples[key("rkpipe_queue_depth", **inf1)] == 2
    assert samples[key("rkpipe_stage_up", **{**inf1, "replica": "2"})] == 0
    out = {"pipeline": "demo", "stage": "out", "replica": "0"}
    assert samples[key("rkpipe_sink_frames_total", **out, stream="cam0")] == 298
    (info,) = [dict(labels) for name, labels in samples if name == "rkpipe_build_info"]
    assert info["version"] == version("rkpipe") and info["python"] == platform.python_version()


def test_latency_is_a_histogram_in_seconds() -> None:
    snap = snapshot()
    for ms in (0.5, 3.0, 3.2, 40.0, 700.0, 20_000.0):
        snap.rows[0].latency.add(ms)
    collector = SnapshotCollector()
    collector.update(snap)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    samples = metric_samples(generate_latest(registry).decode())
    cam0 = {"pipeline": "demo", "stage": "cam0", "replica": "0"}
    cumulative = {
        le: samples[key("rkpipe_latency_seconds_bucket", **cam0, le=le)]
        for le in ("0.001", "0.005", "0.05", "1.0", "10.0", "+Inf")
    }
    assert cumulative == {"0.001": 1, "0.005": 3, "0.05": 4, "1.0": 5, "10.0": 5, "+Inf": 6}
    assert samples[key("rkpipe_latency_seconds_count", **cam0)] == 6
    total_s = (0.5 + 3.0 + 3.2 + 40.0 + 700.0 + 20_000.0) / 1000
    assert samples[key("rkpipe_latency_seconds_sum", **cam0)] == pytest.approx(total_s, rel=0.02)


def check_with_promtool(text: bytes) -> None:
    """Prometheus' own linter: counters end in _total, base units, help text, histograms."""
    promtool = shutil.which("promtool")
    if promtool is None:
        pytest.fail("this test needs promtool: apt-get install prometheus")
    res = subprocess.run([promtool, "check", "metrics"], input=text, capture_output=True)
    assert res.returncode == 0, (res.stdout + res.stderr).decode()


def test_exposition_passes_promtool() -> None:
    snap = snapshot()
    snap.rows[3].latency.add(25.0)
    collector = SnapshotCollector()
    collector.update(snap)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    check_with_promtool(generate_latest(registry))


def test_book_rates_come_from_successive_reports_of_one_process() -> None:
    book = StatsBook({"cam0": ["cam0"], "out": ["out"]}, cpus={"cam0": [1]}, sinks={"out"})
    book.update("cam0", 100, report(frames=30, cpu_s=0.5, uptime_s=2.0))
    book.update("out", 101, report(frames=20, cpu_s=0.1, uptime_s=2.0, stream="cam0"))
    book.snapshot("p", 2.0)
    book.update("cam0", 100, report(frames=90, cpu_s=0.8, uptime_s=4.0))
    book.update("out", 101, report(frames=80, cpu_s=0.2, uptime_s=4.0, stream="cam0"))
    snap = book.snapshot("p", 4.0)
    cam = snap.rows[0]
    assert cam.fps_out == pytest.approx(30.0) and cam.cpu_percent == pytest.approx(15.0)
    assert cam.cpus == [1] and cam.frames_out == 90 and not cam.sink
    assert snap.streams == {"cam0": 80} and snap.sink_fps == pytest.approx(30.0)
    # a restarted instance's counters go on (they live in its ledger); its timings and rates
    # start with the new process
    book.restarted("cam0", "cam0")
    book.started("cam0", {"frames_in": 90, "frames_out": 90})
    book.update("cam0", 102, report(frames=100, cpu_s=0.1, uptime_s=1.0))
    cam = book.snapshot("p", 5.0, {"cam0": "running", "out": "done"}).rows[0]
    assert cam.fps_out == pytest.approx(10.0) and cam.frames_out == 100 and cam.restarts == 1
    assert book.snapshot("p", 5.0, {"out": "done"}).rows[1].fps_out == 0  # not running
    final = book.snapshot("p", 5.0, final=True)
    assert final.final and final.rows[0].fps_out == pytest.approx(100 / 5.0)


def report(frames: int, cpu_s: float, uptime_s: float, stream: str = "") -> dict:
    return {
        "frames_in": frames,
        "frames_out": frames,
        "cpu_s": cpu_s,
        "uptime_s": uptime_s,
        "streams_out": {stream: frames} if stream else {},
        "latency": [[100, frames]],
    }


def metric_samples(text: str) -> dict[tuple, float]:
    """Scraped text as {(name, label pairs in any order): value}; the ``node`` label, on every
    series but build info, is left out (test_every_series_carries_the_node checks it)."""
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            labels = {k: v for k, v in s.labels.items() if k != "node"}
            out[(s.name, frozenset(labels.items()))] = s.value
    return out


def test_every_series_carries_the_node() -> None:
    """Boards scraped by one Prometheus stay apart by their node id."""
    collector = SnapshotCollector("board-a")
    collector.update(snapshot())
    registry = CollectorRegistry(auto_describe=False)
    registry.register(collector)
    text = generate_latest(registry).decode()
    samples = [s for f in text_string_to_metric_families(text) for s in f.samples]
    assert len(samples) > 20
    for s in samples:
        want = None if s.name == "rkpipe_build_info" else "board-a"
        assert s.labels.get("node") == want, s


def key(name: str, **labels: str) -> tuple:
    return (name, frozenset(labels.items()))


# -- real runs -------------------------------------------------------------------------------
def live_graph(tmp_path: Path, frames: int = 75, **pipeline: Any) -> Path:
    """Two paced sources: cam0 through a stage that crashes once, cam1 through two replicas;
    each into its own sink (``pipeline``: more ``[pipeline]`` settings)."""
    cam = {"uses": "synthetic", "width": 64, "height": 48, "realtime": True}
    return (
        Graph("livetest", stats_interval_s=0.5, **pipeline)
        .source("cam0", **cam, fps=50, frames=frames)
        .stage("bad", uses="rk_test_stages:CrashOnSeq", inputs=["cam0"], seq=20)
        .sink("out0", uses="jsonl", inputs=["bad"], path=tmp_path / "out0.jsonl")
        .source("cam1", **cam, fps=25, frames=frames // 2, seed=1)
        .stage("work", uses="passthrough", inputs=["cam1"], replicas=2)
        .sink("out1", uses="jsonl", inputs=["work"], path=tmp_path / "out1.jsonl")
        .write(tmp_path)
    )


def run_in_terminal(
    *args: str, cols: int = 100, rows: int = 40, interrupt_at: str = "", status: int = 0
) -> str:
    """Run `rkpipe` with a pseudo-terminal as stdin/stdout/stderr; return all it wrote.
    Once the output shows ``interrupt_at``, send it SIGINT as Ctrl-C would."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", rows, cols, 0, 0))
    proc = start_rkpipe(*args, stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    os.close(slave)
    data, deadline = b"", time.monotonic() + 60
    try:
        while time.monotonic() < deadline:
            if select.select([master], [], [], 0.2)[0]:
                try:
                    chunk = os.read(master, 65536)
                except OSError:  # EIO: every writer closed the terminal
                    break
                if not chunk:
                    break
                data += chunk
                if interrupt_at and interrupt_at.encode() in data:
                    proc.send_signal(signal.SIGINT)
                    interrupt_at = ""
            elif proc.poll() is not None:
                break
        assert proc.wait(timeout=10) == status, data.decode(errors="replace")[-3000:]
    finally:
        proc.kill()
        os.close(master)
    return data.decode(errors="replace")


def screen(text: str) -> list[str]:
    """What a terminal shows after ``text``: the few controls the view uses, applied."""
    lines, row, col = [""], 0, 0
    for token in re.split(r"(\x1b\[[0-9;?]*[A-Za-z]|\r|\n)", text):
        if token == "\r":
            col = 0
        elif token == "\n":
            row += 1
            lines += [""] * (row + 1 - len(lines))
        elif (m := re.fullmatch(r"\x1b\[([0-9]*)([FEKJ])", token)) is not None:
            n, code = int(m[1] or 1), m[2]
            if code in "FE":
                row, col = (max(0, row - n) if code == "F" else row + n), 0
                lines += [""] * (row + 1 - len(lines))
            else:
                lines[row] = lines[row][:col]
                if code == "J":
                    del lines[row + 1 :]
        elif token in ("\x1b[?25l", "\x1b[?25h"):
            pass
        elif token:
            assert "\x1b" not in token, f"unexpected control sequence {token!r}"
            line = lines[row].ljust(col)
            lines[row] = line[:col] + token + line[col + len(token) :]
            col += len(token)
    return lines


@pytest.mark.integration
@pytest.mark.slow
def test_terminal_shows_a_live_table_and_leaves_the_final_one(tmp_path: Path, no_leaks) -> None:
    text = run_in_terminal("run", str(live_graph(tmp_path)), cols=100)
    assert "\x1b[?25l" in text and re.search(r"\x1b\[\d+F", text)  # redrawn in place
    assert text.count("stage           cpus") > 2  # the table was drawn more than once
    assert "rkpipe livetest  running 0:0" in text
    shown = screen(text)
    tables = [i for i, line in enumerate(shown) if line.startswith("stage           cpus")]
    assert len(tables) == 1, "\n".join(shown)  # one table on screen: earlier ones overwritten
    top = tables[0]
    assert shown[top - 2].startswith("rkpipe livetest  finished after 0:0")
    delivered = re.search(r"streams: cam0 (\d+) \([\d.]+/s\)  cam1 37 ", shown[top - 1])
    assert delivered and 70 <= int(delivered[1]) < 75  # the crash lost what it held
    rows = {line.split()[0]: line.split() for line in shown[top + 1 : top + 8]}
    assert set(rows) == {"cam0", "bad", "out0", "cam1", "work.0", "work.1", "out1"}
    assert all(r[10] == "done" for r in rows.values())
    assert rows["bad"][9] == "1" and rows["cam0"][9] == "0"  # the planted crash: one restart
    assert float(rows["cam0"][3]) > 10 and float(rows["out1"][3]) > 5  # frames per second
    assert all(len(line) < 100 for line in shown[top - 2 : top + 8])
    above = "\n".join(shown[: top - 2])
    assert "7 processes running" in above  # messages go above the table ...
    assert "RuntimeError: planted crash" in above  # ... and so does what a stage prints
    assert shown[top + 8].startswith("rkpipe: livetest ran")  # then the summary


@pytest.mark.integration
@pytest.mark.slow
def test_ctrl_c_on_a_terminal_drains_under_the_table(tmp_path: Path, no_leaks) -> None:
    graph = live_graph(tmp_path, frames=100_000)
    text = run_in_terminal("run", str(graph), interrupt_at="streams: cam0 ", status=130)
    shown = screen(text)
    top = next(i for i, line in enumerate(shown) if line.startswith("stage           cpus"))
    assert "rkpipe: SIGINT: draining" in "\n".join(shown[:top])
    assert shown[top - 2].startswith("rkpipe livetest  finished after")
    assert all(line.split()[10] == "done" for line in shown[top + 1 : top + 8])
    assert shown[top + 8].startswith("rkpipe: livetest ran")


@pytest.mark.integration
@pytest.mark.slow
def test_no_live_on_a_terminal_and_a_pipe_give_summary_lines(tmp_path: Path, no_leaks) -> None:
    """One line per interval for the whole run, and the planted crash's restart said once."""
    graph = live_graph(tmp_path, frames=150)
    forced = run_in_terminal("run", str(graph), "--no-live")
    res = run_rkpipe("run", str(graph), "--stats-interval", "1")
    assert res.returncode == 0, res.stderr
    for text in (forced, res.stderr):
        assert not ESC.search(text)
        assert "rkpipe: stats " not in text
        summaries = [ln for ln in text.splitlines() if ln.startswith("rkpipe: livetest up ")]
        assert summaries, text
        assert all(
            re.search(r"sinks [\d.]+ fps; streams .*; drops \d+.*; restarts \d+; busiest ", ln)
            for ln in summaries
        ), summaries
        assert text.count("rkpipe: bad exited with") == 1  # the restart, once
    assert len(summaries) >= 2  # --stats-interval 1: more than one in a run of seconds
    assert any(re.search(r"streams cam0=[1-9]\d* cam1=[1-9]", ln) for ln in summaries)


@pytest.mark.integration
@pytest.mark.slow
def test_prometheus_endpoint_serves_live_figures(tmp_path: Path, no_leaks) -> None:
    graph = live_graph(tmp_path, frames=100_000, prometheus_port=0, node="board-a")
    run = start_rkpipe("run", str(graph))
    try:
        first = run.stderr.readline()  # type: ignore[union-attr]
        m = re.fullmatch(r"rkpipe: metrics at (http://127\.0\.0\.1:(\d+)/metrics)\n", first)
        assert m, first
        url = m[1]
        samples: dict[tuple, float] = {}
        cam0 = {"pipeline": "livetest", "stage": "cam0", "replica": "0"}

        def sink(stage: str, stream: str) -> tuple:
            labels = {"pipeline": "livetest", "stage": stage, "replica": "0", "stream": stream}
            return key("rkpipe_sink_frames_total", **labels)

        def running() -> bool:  # cam0 at speed, and both sinks delivering
            samples.clear()
            samples.update(metric_samples(urllib.request.urlopen(url, timeout=2).read().decode()))
            fast = samples.get(key("rkpipe_frames_per_second", **cam0, direction="out"), 0) > 10
            sinks = samples.get(sink("out0", "cam0"), 0) and samples.get(sink("out1", "cam1"), 0)
            return fast and bool(sinks)

        assert poll_for(running, 60, 0.3)
        check_with_promtool(urllib.request.urlopen(url, timeout=2).read())
        assert samples[key("rkpipe_frames_out_total", **cam0)] > 0
        assert samples[key("rkpipe_cpu_seconds_total", **cam0)] > 0
        assert samples[key("rkpipe_stage_up", **cam0)] == 1
        assert 'node="board-a",pipeline="livetest"' in urllib.request.urlopen(url).read().decode()
        assert samples[key("rkpipe_latency_seconds_count", **cam0)] > 0
        counted = [dict(labels) for name, labels in samples if name == "rkpipe_frames_in_total"]
        assert {c["stage"] for c in counted} == {"cam0", "bad", "out0", "cam1", "work", "out1"}
        assert {c["replica"] for c in counted if c["stage"] == "work"} == {"0", "1"}
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=30)
        assert run.returncode == 130, err
    finally:
        run.kill()
    with pytest.raises(urllib.error.URLError):  # the endpoint ends with the run
        urllib.request.urlopen(url, timeout=2)


@pytest.mark.integration
def test_busy_port_and_missing_package_are_one_clear_line(tmp_path: Path, no_leaks) -> None:
    graph = live_graph(tmp_path)
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        res = run_rkpipe("run", str(graph), "--prometheus", str(port))
    assert res.returncode == 1
    assert f"cannot listen on 127.0.0.1:{port}" in res.stderr and "Traceback" not in res.stderr
    assert "processes running" not in res.stderr  # refused before any stage started
    no_package = (  # how Python behaves when prometheus-client is not installed
        "import sys; sys.modules['prometheus_client'] = None; from pipeline.cli import main; "
        f"sys.exit(main(['run', {str(graph)!r}, '--prometheus', '0']))"
    )
    cmd = [sys.executable, "-c", no_package]
    res = subprocess.run(cmd, env=rkpipe_env(), capture_output=True, text=True, timeout=60)
    assert res.returncode == 1
    assert "pip install 'rkpipe[metrics]'" in res.stderr and "Traceback" not in res.stderr
