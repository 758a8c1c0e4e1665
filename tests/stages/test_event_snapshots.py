"""Event snapshots: a line crossing or zone event leaves a JPEG of the frame with the object's
box, id and the line or zone drawn on it, and a crop of the object; the event names both
files; retention keeps the newest N and drops old ones; a writer that falls behind drops
and counts; a real run writes them and its event ids carry the run id."""

from __future__ import annotations

import json
import os
import subprocess
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.context import Context, InlineRuntime
from pipeline.detections import Detections
from pipeline.errors import StageSetupError
from pipeline.messages import Message
from pipeline.testing import run_stage
from stages.analytics.event_snapshots import SnapshotWriter, snapshot_path
from stages.event_files import prune
from stages.events import validate_event
from stages.line_crossing.stage import LineCrossing
from stages.synthetic import Scene
from stages.zones.stage import Zones
from support.graph import Graph
from support.mosquitto import Broker, Subscriber, broker_fixture  # noqa: F401  (the fixture)
from support.rkpipe import read_jsonl, run_rkpipe, write_graph

T0 = 1_700_000_000.0
LINE_Y = 270  # people on the easy scene's crosswalk cross it (track 62465 near frame 230)


def scene_frames(n: int) -> list[Message]:
    """The easy street scene, with its true boxes as tracked detections."""
    scene = Scene("easy", 0, 640, 360, 30)
    msgs = []
    for i in range(n):
        truth = scene.truth(i)
        msg = Message("cam0", i, i - 1, t_capture=T0 + i / 30, arrays={"frame": scene.render(i)})
        conf = np.full(len(truth.xyxy), 0.9)
        msg.detections = Detections(truth.xyxy, conf, truth.class_id, truth.track_id)
        msgs.append(msg)
    return msgs


def object_events(out: list[Message]) -> list[dict]:
    found = [e for m in out for e in m.meta.get("events", []) if e["type"] != "counts"]
    for e in found:
        validate_event(e)  # snapshot and snapshot_crop are in the schema
    return found


def jpeg(path: Path) -> np.ndarray:
    img = cv2.imread(str(path))
    assert img is not None, f"{path} is not a readable JPEG"
    return img


def test_a_line_crossing_leaves_an_annotated_jpeg_and_a_crop(tmp_path: Path) -> None:
    msgs = scene_frames(260)
    door = {"cam0": [{"name": "door", "a": [0, LINE_Y], "b": [640, LINE_Y]}]}
    stage = LineCrossing(lines=door, snapshot={"dir": str(tmp_path)}, snapshot_every_s=0)
    [ev] = object_events(run_stage(stage, msgs))
    assert (
        ev["snapshot"]
        == snapshot_path(ev)
        == (f"cam0/2023-11-14/{ev['time'][11:23].replace(':', '')}_line_crossing_door_62465.jpg")
    )
    assert ev["snapshot_crop"] == ev["snapshot"].replace(".jpg", ".crop.jpg")
    full, crop = jpeg(tmp_path / ev["snapshot"]), jpeg(tmp_path / ev["snapshot_crop"])
    raw = msgs[ev["seq"]].frame
    assert full.shape == raw.shape
    dets = msgs[ev["seq"]].detections
    assert dets is not None
    row = int(np.flatnonzero(dets.tracker_id == 62465)[0])
    x1, y1, x2, y2 = (round(float(v)) for v in dets.xyxy[row])
    # the box is drawn round the object, the line across the frame, a caption at the top
    changed = np.abs(full.astype(np.int16) - raw).mean(axis=2) > 40
    assert changed[y2 - 1 : y2 + 2, x1:x2].mean() > 0.5  # the box's lower edge
    assert changed[LINE_Y - 1 : LINE_Y + 2, 20:300].mean() > 0.5  # the line
    assert changed[:12, :200].mean() > 0.3  # the caption
    # the crop is the object with a margin of 16 px here, cut from the unannotated frame
    assert (crop.shape[1], crop.shape[0]) == pytest.approx((x2 - x1 + 32, y2 - y1 + 32), abs=2)
    found = cv2.matchTemplate(raw, crop, cv2.TM_SQDIFF_NORMED)
    err, _, (left, top), _ = cv2.minMaxLoc(found)
    assert err < 0.01 and abs(left - (x1 - 16)) <= 1 and abs(top - (y1 - 16)) <= 1


def zone_msg(seq: int, inside: bool) -> Message:
    msg = Message("cam0", seq, seq - 1, t_capture=T0 + seq / 10, arrays={"frame": grey()})
    boxes = [[40, 20, 60, 60]] if inside else []
    n = len(boxes)
    msg.detections = Detections(
        np.array(boxes, np.float32).reshape(-1, 4), np.full(n, 0.9), np.full(n, 2), np.full(n, 7)
    )
    return msg


def grey() -> np.ndarray:
    return np.full((120, 160, 3), 90, np.uint8)


def test_zone_events_get_snapshots_and_an_object_gone_from_view_no_crop(tmp_path: Path) -> None:
    zone = {"*": [{"name": "curb", "polygon": [[20, 10], [100, 10], [100, 100], [20, 100]]}]}
    stage = Zones(zones=zone, forget_after_s=1.0, snapshot=str(tmp_path), snapshot_every_s=0)
    msgs = [zone_msg(i, inside=i < 5) for i in range(20)]  # then unseen: forgotten after 1 s
    enter, leave = object_events(run_stage(stage, msgs))
    assert (enter["type"], leave["type"]) == ("zone_enter", "zone_exit")
    assert "snapshot_crop" in enter and "snapshot_crop" not in leave  # nothing to cut out
    for ev in (enter, leave):
        assert jpeg(tmp_path / ev["snapshot"]).shape == (120, 160, 3)
    assert jpeg(tmp_path / enter["snapshot_crop"]).shape[:2] == (72, 52)  # 40x20 + 16 px


def test_snapshot_option_forms_and_a_folder_that_cannot_be_written(tmp_path: Path) -> None:
    door = {"*": [{"name": "door", "a": [0, 10], "b": [10, 10]}]}
    assert LineCrossing(lines=door).config.snapshot is None
    assert LineCrossing(lines=door, snapshot=False).config.snapshot is None
    assert LineCrossing(lines=door, snapshot=True).config.snapshot.dir == "out/snapshots"  # type: ignore[union-attr]
    assert LineCrossing(lines=door, snapshot="x").config.snapshot.dir == "x"  # type: ignore[union-attr]
    with pytest.raises(ValueError, match=r"snapshot\.kep"):
        LineCrossing(lines=door, snapshot={"kep": 3})
    (tmp_path / "file").write_text("")
    stage = LineCrossing(lines=door, snapshot=str(tmp_path / "file" / "snaps"))
    with pytest.raises(StageSetupError, match=r"stages\.lines\.snapshot\.dir: cannot write"):
        stage.setup(Context(stage="lines"))


def make_snapshot(root: Path, rel: str, age_s: float = 0.0, crop: bool = True) -> list[Path]:
    files = [root / rel] + ([root / rel.replace(".jpg", ".crop.jpg")] if crop else [])
    for f in files:
        f.parent.mkdir(parents=True, exist_ok=True)
        f.write_bytes(b"jpeg")
        t = time.time() - age_s
        os.utime(f, (t, t))
    return files


def test_retention_keeps_the_newest_and_deletes_old_ones_and_nothing_else(tmp_path: Path) -> None:
    old = make_snapshot(tmp_path, "cam0/2026-01-01/120000.000_zone_enter_curb_1.jpg", 9 * 3600)
    newer = [
        make_snapshot(tmp_path, f"cam{i % 2}/2026-01-02/12000{i}.000_line_crossing_door_{i}.jpg", i)
        for i in range(4)
    ]
    mine = tmp_path / "cam0" / "2026-01-02" / "notes.jpg"  # not named as snapshots are
    mine.write_bytes(b"keep me")
    assert prune(tmp_path, 10, 8 * 3600, ".jpg", ".crop.jpg") == 1  # by age: the 9-hour-old one
    assert not any(f.exists() for f in old) and not old[0].parent.exists()
    assert prune(tmp_path, 2, 0, ".jpg", ".crop.jpg") == 2  # by count: the two oldest of the rest
    assert [all(f.exists() for f in files) for files in newer] == [True, True, False, False]
    assert mine.exists()


def crossings(stage: LineCrossing, objects: range, line: str = "door") -> list[dict]:
    """Each object crosses ``line`` (y = 30) on its own frame; the events, as they left."""
    evs = []
    for tid in objects:
        for step, y in enumerate((20, 40)):
            seq = 2 * tid + step
            msg = Message("cam0", seq, seq - 1, t_capture=T0 + seq, arrays={"frame": grey()})
            box = np.array([[10 + 3 * tid, y - 10, 30 + 3 * tid, y]], np.float32)
            msg.detections = Detections(box, [0.9], [0], [tid + 1])
            stage.process(msg)
            for ev in object_events([msg]):
                if "snapshot" in ev:  # named only once the files are there
                    assert (stage.pictures.root / ev["snapshot"]).is_file()  # type: ignore[union-attr]
                    assert (stage.pictures.root / ev["snapshot_crop"]).is_file()  # type: ignore[union-attr]
                evs.append(ev)
    return evs


def door(name: str = "door") -> dict:
    return {"cam0": [{"name": name, "a": [0, 30], "b": [160, 30]}]}


def test_a_slow_disk_costs_the_stage_wait_s_once_and_leaves_no_file_unnamed(
    tmp_path: Path, monkeypatch
) -> None:
    """The writer hangs on its first snapshot: the stage waits ``wait_s`` for it, then that
    event goes without; while the writer is still stuck, new events go without at once
    (dropped, counted); once it is back, they get snapshots again. The late one's file is
    removed, so no file lacks an event and no event names a missing file."""
    release = threading.Event()
    original = SnapshotWriter._write_shot

    def slow_write(self, frame, shot):  # the disk hangs on the first snapshot
        if shot.track_id == 1:
            release.wait(30)
        original(self, frame, shot)

    monkeypatch.setattr(SnapshotWriter, "_write_shot", slow_write)
    runtime = InlineRuntime()
    stage = LineCrossing(
        lines=door(), snapshot={"dir": str(tmp_path), "wait_s": 0.2}, snapshot_every_s=0
    )
    stage.setup(Context(stage="lines", runtime=runtime))
    started = time.monotonic()
    evs = crossings(stage, range(3))
    assert time.monotonic() - started < 10  # one wait of 0.2 s, not one per event
    assert ["snapshot" in e for e in evs] == [False, False, False]
    release.set()
    assert poll(lambda: stage.pictures.stuck == 0)  # type: ignore[union-attr]
    evs = crossings(stage, range(3, 5))
    assert ["snapshot" in e for e in evs] == [True, True]
    stage.close()
    assert runtime.events == {"snapshots": 2, "snapshots_late": 1, "snapshots_dropped": 2}
    files = sorted(p.relative_to(tmp_path).as_posix() for p in tmp_path.rglob("*.jpg"))
    named = sorted(p for e in evs for p in (e["snapshot"], e["snapshot_crop"]))
    assert files == named and not list(tmp_path.rglob("*.part"))


def test_a_line_name_at_its_longest_gets_its_snapshot_and_a_longer_one_is_refused(
    tmp_path: Path,
) -> None:
    runtime = InlineRuntime()
    name = "entrée_" + "é" * 20  # 48 bytes of UTF-8: the longest a line name may be
    assert len(name.encode()) == 48
    stage = LineCrossing(lines=door(name), snapshot={"dir": str(tmp_path)}, snapshot_every_s=0)
    stage.setup(Context(stage="lines", runtime=runtime))
    evs = crossings(stage, range(2), name)
    stage.close()
    assert all("snapshot" in e for e in evs) and runtime.events == {"snapshots": 2}
    assert all((tmp_path / e["snapshot"]).is_file() for e in evs)
    with pytest.raises(ValidationError, match="48"):
        LineCrossing(lines=door(name + "n"), snapshot={"dir": str(tmp_path)})


@pytest.fixture
def small_disk(tmp_path: Path):
    """A 96 KiB tmpfs mounted on a folder (root only): a disk that fills up."""
    folder = tmp_path / "small"
    folder.mkdir()
    res = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=96k,mode=0700", "tmpfs", str(folder)],
        capture_output=True,
        text=True,
    )
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root): {res.stderr.strip()}")
    try:
        yield folder
    finally:
        subprocess.run(["umount", "-l", str(folder)], check=False)


def test_a_full_disk_is_counted_said_once_and_leaves_no_dangling_snapshot_path(
    small_disk: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Snapshots on a small tmpfs, more than fit: those that fit are written and named; the
    rest fail (ENOSPC), counted as snapshots_failed and said once, and their events name no
    snapshot; no half-written file stays. With room again, snapshots are written again."""
    runtime = InlineRuntime()
    stage = LineCrossing(lines=door(), snapshot={"dir": str(small_disk)}, snapshot_every_s=0)
    stage.setup(Context(stage="lines", runtime=runtime))
    noise = np.random.default_rng(0).integers(0, 255, (120, 160, 3), np.uint8)  # ~30 KiB
    evs = []
    for tid in range(12):
        for step, y in enumerate((20, 40)):
            seq = 2 * tid + step
            msg = Message("cam0", seq, seq - 1, t_capture=T0 + seq, arrays={"frame": noise})
            box = np.array([[10 + 3 * tid, y - 10, 30 + 3 * tid, y]], np.float32)
            msg.detections = Detections(box, [0.9], [0], [tid + 1])
            stage.process(msg)
            evs += object_events([msg])
    counted = dict(runtime.events)
    named = [e for e in evs if "snapshot" in e]
    assert 0 < len(named) < len(evs) == 12
    assert counted == {"snapshots": len(named), "snapshots_failed": len(evs) - len(named)}
    assert all((small_disk / e["snapshot"]).is_file() for e in named)
    assert not list(small_disk.rglob("*.part"))
    said = [r.message for r in caplog.records if "snapshots: cannot write" in r.message]
    assert len(said) == 1 and "No space left on device" in said[0], said
    for e in named:  # room again
        (small_disk / e["snapshot"]).unlink()
        (small_disk / e["snapshot_crop"]).unlink(missing_ok=True)
    more = crossings(stage, range(20, 21))
    stage.close()
    assert ["snapshot" in e for e in more] == [True]


def poll(cond, timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


@pytest.mark.integration
def test_a_real_run_writes_the_snapshots_its_events_name(tmp_path: Path, no_leaks) -> None:
    graph = (
        Graph()
        .source("cam0", uses="synthetic", scene="easy", frames=260)
        .stage("truth", uses="rk_test_overlay:Overlay", inputs=["cam0"], overlays=False)
        .stage(
            "lines",
            uses="line_crossing",
            inputs=["truth"],
            lines={"*": {"name": "door", "a": [0, LINE_Y], "b": [640, LINE_Y]}},
            snapshot={"dir": tmp_path / "snaps", "keep": 50},
        )
        .sink(
            "out",
            uses="jsonl",
            inputs=["lines"],
            path=f"{tmp_path}/{{stream}}.events.jsonl",
            events_only=True,
        )
        .write(tmp_path)
    )
    ids = []
    for run in range(2):
        stats = tmp_path / f"stats{run}.json"
        res = run_rkpipe("run", str(graph), "--stats-out", str(stats))
        assert res.returncode == 0, res.stderr
        crossings = [e for e in read_jsonl(tmp_path / "cam0.events.jsonl") if "line" in e]
        ids.append({e["id"] for e in crossings})
        assert crossings and all((tmp_path / "snaps" / e["snapshot"]).is_file() for e in crossings)
        written = json.loads(stats.read_text())["stages"]["lines"]["events"]
        assert written == {"snapshots": 1}
    # the second run appended its own events: same frames and tracks, other ids
    assert len(ids[0]) == 1 and len(ids[1]) == 2 and ids[0] < ids[1]


@pytest.mark.integration
def test_the_mqtt_sink_reads_every_snapshot_an_event_names(
    tmp_path: Path, broker: Broker, no_leaks
) -> None:
    """A real run, as fast as it goes, with many crossings (19 lines over the street): every
    event's snapshot is on disk when the mqtt sink gets the event, so none is unreadable."""
    lines = [(f"h{y}", [0, y], [640, y]) for y in range(40, 360, 40)]
    lines += [(f"v{x}", [x, 0], [x, 360]) for x in range(40, 640, 60)]
    table = ", ".join(f'{{ name = "{n}", a = {a}, b = {b} }}' for n, a, b in lines)
    graph = write_graph(
        tmp_path,
        f"""
[pipeline]
node = "board1"
[stages.cam0]
uses = "synthetic"
scene = "easy"
frames = 300
[stages.truth]
uses = "rk_test_overlay:Overlay"
inputs = ["cam0"]
overlays = false
[stages.lines]
uses = "line_crossing"
inputs = ["truth"]
snapshot_every_s = 0
snapshot = {{ dir = "{tmp_path}/snaps" }}
lines."*" = [{table}]
[stages.mqtt]
uses = "mqtt"
inputs = ["lines"]
host = "{broker.host}"
port = {broker.port}
snapshot_root = "{tmp_path}/snaps"
state_prefix = ""
[stages.out]
uses = "jsonl"
inputs = ["lines"]
path = "{tmp_path}/events.jsonl"
events_only = true
""",
    )
    sub = Subscriber(broker, ["rkpipe/board1/+/snapshot/#"])
    res = run_rkpipe("run", str(graph), "--stats-out", str(tmp_path / "stats.json"))
    assert res.returncode == 0, res.stderr
    stages = json.loads((tmp_path / "stats.json").read_text())["stages"]
    events = [e for e in read_jsonl(tmp_path / "events.jsonl") if e["type"] == "line_crossing"]
    assert len(events) >= 40
    assert stages["mqtt"]["drops_by_reason"] == {}, res.stderr  # no mqtt_snapshot_unreadable
    assert stages["lines"]["events"] == {"snapshots": len(events)}
    assert all((tmp_path / "snaps" / e["snapshot"]).is_file() for e in events)
    assert poll(lambda: sub.on("rkpipe/board1/cam0/snapshot/line_crossing"))
    sub.close()
