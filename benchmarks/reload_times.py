"""How long a change takes to reach a running pipeline, and what it costs the streams that did
not change, against the baseline of a restart measured in the same run.

The pipeline: live synthetic 30 fps cameras (640x360) through letterbox, a simulated NPU,
decode, ByteTrack and a counting line into a JSONL sink. While it runs, the graph file is
edited and reloaded (SIGHUP): a camera added (read by ``pre``), the counting line moved, the
added camera removed. It prints, per reload: the time from the signal to the first frame of
the new camera at the sink (or to the first frame counted on the moved line), and, for the
cameras that did not change, their frames lost and their capture-to-sink latency in the
second after the reload against the seconds before it (target: none lost, at most one frame
interval, 33 ms, more). The baseline is what the same change costs without reload: the time
from stopping the run to the first frame of a restarted one.

    python benchmarks/reload_times.py
    python benchmarks/reload_times.py --quick --json reload.json
"""

from __future__ import annotations

import argparse
import json
import re
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from pipeline.graph.edit import add_stage, patch_stage, remove_stage  # noqa: E402
from support.graph import Graph  # noqa: E402
from support.rkpipe import poll_for, start_rkpipe  # noqa: E402

FPS = 30
FRAME_MS = 1000 / FPS
CAM = {"uses": "synthetic", "scene": "easy", "live": True, "fps": FPS}


def graph(folder: Path, cams: int) -> Path:
    g = Graph("reloads", stats_interval_s=0.5)
    names = [f"cam{i}" for i in range(cams)]
    for i, name in enumerate(names):
        g = g.source(name, **CAM, seed=i)
    return (
        g.stage("pre", uses="letterbox", inputs=names)
        .stage("npu", uses="infer", inputs=["pre"], model="sim:yolov8n", sim_ms=10)
        .stage("post", uses="yolov8_decode", inputs=["npu"])
        .stage("track", uses="bytetrack", inputs=["post"])
        .stage(
            "lines",
            uses="line_crossing",
            inputs=["track"],
            lines={"*": {"name": "mid", "a": [0, 180], "b": [640, 180]}},
        )
        .sink("out", uses="jsonl", inputs=["lines"], path=folder / "out.jsonl")
        .write(folder, "reloads.toml")
    )


class Rows:
    """The sink's file, read as it grows (a line half written is read next time)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.rows: list[dict] = []
        self._at = 0

    def read(self) -> list[dict]:
        if self.path.exists():
            with self.path.open("rb") as f:
                f.seek(self._at)
                data = f.read()
            end = data.rfind(b"\n") + 1
            self._at += end
            self.rows += [json.loads(x) for x in data[:end].splitlines() if x.strip()]
        return self.rows

    def first(self, want: Callable[[dict], bool]) -> dict | None:
        return next((r for r in self.read() if want(r)), None)


def at_sink(row: dict) -> float:
    """When a row reached the sink (wall clock): captured, plus its capture-to-sink time."""
    return row["t_capture"] + row["latency_ms"] / 1000


def latencies(rows: list[dict], streams: set[str], start: float, end: float) -> list[float]:
    return [
        r["latency_ms"]
        for r in rows
        if r["stream"] in streams and "frame" in r["arrays"] and start <= r["t_capture"] < end
    ]


def p(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def source_drops(port: int, streams: set[str]) -> int:
    """Frames the ``streams``' sources dropped so far, from the run's metrics."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        text = r.read().decode()
    total = 0.0
    for line in text.splitlines():
        m = re.match(r"rkpipe_drops_total\{(.*)\} ([0-9.e+]+)$", line)
        if m and any(f'stage="{s}"' in m.group(1) for s in streams):
            total += float(m.group(2))
    return int(total)


def reload_run(folder: Path, cams: int, settle_s: float) -> dict:
    path = graph(folder, cams)
    log = (folder / "run.log").open("w")
    port = free_port()
    run = start_rkpipe(
        "run", str(path), "--no-live", "--stats-out", str(folder / "stats.json"),
        "--prometheus", str(port), stderr=log,
    )  # fmt: skip
    rows = Rows(folder / "out.jsonl")
    steady = {f"cam{i}" for i in range(cams)}
    new = f"cam{cams}"
    out: dict = {"reloads": []}
    try:
        assert poll_for(lambda: len(rows.read()) > cams * FPS, 120), "the run did not start"
        time.sleep(settle_s)

        def reload(what: str, edit: Callable[[str], str], arrived: Callable[[dict], bool]) -> None:
            quiet = source_drops(port, steady)  # dropped in the settle time before it
            time.sleep(1.5)
            start = source_drops(port, steady)
            path.write_text(edit(path.read_text()))
            t0 = time.time()
            run.send_signal(signal.SIGHUP)
            assert poll_for(lambda: rows.first(arrived) is not None, 60), f"{what}: nothing came"
            first = rows.first(arrived)
            assert first is not None
            time.sleep(max(0.0, t0 + 1.5 - time.time()))
            after = source_drops(port, steady)
            rows.read()
            before = latencies(rows.rows, steady, t0 - settle_s, t0)
            during = latencies(rows.rows, steady, t0, t0 + 1.0)
            out["reloads"].append(
                {
                    "change": what,
                    "to_effect_ms": (at_sink(first) - t0) * 1000,
                    "steady_p50_before_ms": p(before, 0.5),
                    "steady_p50_during_ms": p(during, 0.5),
                    "steady_max_before_ms": max(before, default=float("nan")),
                    "steady_max_during_ms": max(during, default=float("nan")),
                    "steady_drops_quiet": start - quiet,  # in the 1.5 s before
                    "steady_drops_during": after - start,  # in the 1.5 s from the reload
                }
            )
            time.sleep(settle_s)

        table = {**CAM, "seed": cams}
        reload(
            f"camera {new} added",
            lambda t: add_stage(t, new, table, readers=["pre"]),
            lambda r: r["stream"] == new and "frame" in r["arrays"],
        )
        moved = {"lines": {"*": {"name": "mid", "a": [0, 200], "b": [640, 200]}}}
        reload(
            "line moved",
            lambda t: patch_stage(t, "lines", moved),
            lambda r: r.get("meta", {}).get("lines", {}).get("mid", {}).get("a") == [0.0, 200.0],
        )
        reload(
            f"camera {new} removed",
            lambda t: remove_stage(t, new),
            lambda r: r["stream"] == new and not r["arrays"],  # its final counts: its end
        )
        run.send_signal(signal.SIGTERM)
        t_stop = time.time()
        run.wait(timeout=120)
        log.close()
        stats = json.loads((folder / "stats.json").read_text())
        out["exact"] = stats["exact"]
        out["steady_dropped"] = {
            s: stats["streams"][s]["sinks"]["out"]["dropped_by_reason"] for s in sorted(steady)
        }
        out["restarts"] = sum(st["restarts"] for st in stats["stages"].values())
        # the baseline: the same graph stopped and started again (what a restart costs)
        (folder / "out.jsonl").unlink()
        rows = Rows(folder / "out.jsonl")
        log = (folder / "run2.log").open("w")
        run = start_rkpipe("run", str(path), "--no-live", stderr=log)
        assert poll_for(lambda: bool(rows.read()), 120), "the restarted run did not start"
        first = rows.rows[0]
        out["restart_gap_ms"] = (at_sink(first) - t_stop) * 1000
    finally:
        if run.poll() is None:
            run.send_signal(signal.SIGTERM)
            try:
                run.wait(timeout=60)
            except Exception:
                run.kill()
        log.close()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cams", type=int, default=2, help="cameras that run throughout")
    ap.add_argument("--quick", action="store_true", help="a shorter settle time")
    ap.add_argument("--json", type=Path, help="write the figures here too")
    args = ap.parse_args()
    settle = 1.0 if args.quick else 3.0
    with tempfile.TemporaryDirectory(prefix="rkpipe-reload-") as tmp:
        res = reload_run(Path(tmp), args.cams, settle)
    gap = res["restart_gap_ms"]
    print(f"{args.cams} live {FPS} fps cameras; baseline: a restart stops frames for {gap:.0f} ms")
    print(
        f"{'change':<22} {'to effect':>10} {'vs restart':>10}  steady p50 before/during"
        "   max before/during   drops before/during"
    )
    worst = 0.0
    for r in res["reloads"]:
        extra = r["steady_p50_during_ms"] - r["steady_p50_before_ms"]
        worst = max(worst, extra)
        print(
            f"{r['change']:<22} {r['to_effect_ms']:>8.0f}ms {gap / r['to_effect_ms']:>9.1f}x  "
            f"{r['steady_p50_before_ms']:>8.1f} / {r['steady_p50_during_ms']:<8.1f} ms  "
            f"{r['steady_max_before_ms']:>6.1f} / {r['steady_max_during_ms']:<6.1f} ms  "
            f"{r['steady_drops_quiet']:>5} / {r['steady_drops_during']}"
        )
    lost = sum(r["steady_drops_during"] for r in res["reloads"])
    quiet = sum(r["steady_drops_quiet"] for r in res["reloads"])
    print(
        f"steady cameras: frames dropped in the 1.5 s after each reload {lost}, in the 1.5 s "
        f"before {quiet} (target: no more than before); over the run "
        f"{res['steady_dropped']}; "
        f"extra p50 delay at most {worst:.1f} ms (target {FRAME_MS:.0f}); "
        f"restarts {res['restarts']}; exact {res['exact']}"
    )
    if args.json:
        args.json.write_text(json.dumps(res, indent=1))
    return 0 if res["exact"] else 1


if __name__ == "__main__":
    sys.exit(main())
