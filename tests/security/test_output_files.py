"""Files a run writes for people (recordings, clips, snapshots, crops, event lines, mqtt
state and spool, --stats-out, rkpipe deploy) are 0640 in 0750 folders whatever the umask, or
the stage's ``file_mode``; a link planted at a writer's name or at its temporary name is
never written through; a folder other users may write is refused with the fix."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.context import Context, InlineRuntime
from pipeline.deploy.cli import main as deploy
from pipeline.detections import Detections
from pipeline.errors import GraphError, StageSetupError
from pipeline.graph.load import load_graph
from pipeline.messages import Message
from pipeline.output_files import (
    Modes,
    UnsafeOutput,
    folder_problem,
    make_folder,
    open_file,
    replacing,
)
from pipeline.testing import run_stage
from stages.analytics.event_snapshots import snapshot_path
from stages.event_files import event_file
from stages.line_crossing.stage import LineCrossing
from stages.sinks.jsonl import JsonlSink, RotatingFile
from stages.sinks.mqtt import MqttSink
from stages.sinks.mqtt.spool import Spool
from stages.sinks.mqtt.state_topics import StreamState
from stages.sinks.mqtt.totals_file import TotalsFile
from stages.sinks.video import VideoSink
from support.mosquitto import Broker, broker_fixture  # noqa: F401  (the fixture)
from support.mqtt_graph import graph_text
from support.rkpipe import read_jsonl, run_rkpipe, start_rkpipe, write_graph

PRECIOUS = b"someone else's file\n"
T0 = 1_700_000_000.0


@contextlib.contextmanager
def umask(mask: int) -> Iterator[None]:
    old = os.umask(mask)
    try:
        yield
    finally:
        os.umask(old)


def plant(link: Path) -> Path:
    """A symbolic link at ``link`` to a file of someone else's; returns that file."""
    link.parent.mkdir(parents=True, exist_ok=True)
    target = link.with_name(f"target-{link.name}")
    target.write_bytes(PRECIOUS)
    link.symlink_to(target)
    return target


def mode(path: Path) -> int:
    return stat.S_IMODE(path.lstat().st_mode)


def regular(path: Path) -> bool:
    return stat.S_ISREG(path.lstat().st_mode)


# -- the rules ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("given", "kept"), [("0640", "0640"), ("644", "0644"), ("0o600", "0600"), ("0660", "0660")]
)
def test_file_mode_takes_octal_text(given: str, kept: str) -> None:
    assert JsonlSink.Config(file_mode=given).file_mode == kept


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("0666", "others may write"),
        ("0755", "not programs"),
        ("0440", "owner must be able to read and write"),
        ("0o1640", "octal file mode"),
        ("rw-r-----", "octal file mode"),
        ("0648", "octal file mode"),
        (640, "as a string"),
    ],
)
def test_a_bad_file_mode_is_refused_saying_why(given: object, says: str) -> None:
    with pytest.raises(ValidationError, match=says):
        JsonlSink.Config(file_mode=given)


@pytest.mark.parametrize(
    ("file", "folder"), [(0o640, 0o750), (0o644, 0o755), (0o600, 0o700), (0o660, 0o770)]
)
def test_folders_get_x_where_their_files_have_r(file: int, folder: int) -> None:
    assert Modes(file).folder == folder


@pytest.mark.parametrize("mask", [0o000, 0o022, 0o077])
def test_modes_are_exact_whatever_the_umask(tmp_path: Path, mask: int) -> None:
    with umask(mask):
        make_folder(tmp_path / "a" / "b", Modes())
        os.close(open_file(tmp_path / "a" / "b" / "f", Modes(), append=True))
        with replacing(tmp_path / "a" / "r") as f:
            f.write(b"x")
        make_folder(tmp_path / "s" / "t", Modes(0o644))
        os.close(open_file(tmp_path / "s" / "t" / "f", Modes(0o644)))
    assert [mode(tmp_path / p) for p in ("a", "a/b", "a/b/f", "a/r")] == [
        0o750,
        0o750,
        0o640,
        0o640,
    ]
    assert [mode(tmp_path / p) for p in ("s", "s/t", "s/t/f")] == [0o755, 0o755, 0o644]
    old = tmp_path / "old"
    old.write_bytes(b"")
    old.chmod(0o666)  # left by an earlier run under umask 000
    os.close(open_file(old, Modes(), append=True))
    assert mode(old) == 0o640


def test_open_refuses_a_link_a_fifo_and_a_hard_link(tmp_path: Path) -> None:
    target = plant(tmp_path / "d" / "link")
    with pytest.raises(UnsafeOutput, match="link is a symbolic link; rkpipe does not write"):
        open_file(tmp_path / "d" / "link", append=True)
    dangling = tmp_path / "d" / "dangling"
    dangling.symlink_to(tmp_path / "made-through-the-link")
    with pytest.raises(UnsafeOutput, match="symbolic link"):
        open_file(dangling)
    assert not (tmp_path / "made-through-the-link").exists()
    os.mkfifo(tmp_path / "d" / "fifo.jpg")
    t0 = time.monotonic()
    with pytest.raises(UnsafeOutput, match="not a regular file"):
        open_file(tmp_path / "d" / "fifo.jpg")  # no reader: refused, not waited on
    with pytest.raises(UnsafeOutput, match="not a regular file"):
        open_file(tmp_path / "d" / "fifo.jpg", read=True)  # O_RDWR opens a FIFO at once
    assert time.monotonic() - t0 < 30
    os.close(open_file(Path("/dev/null"), append=True, truncate=True))  # a device: only root
    assert mode(Path("/dev/null")) == 0o666  # makes one; written to, never changed
    os.link(target, tmp_path / "d" / "hard")
    with pytest.raises(UnsafeOutput, match="other hard links"):
        open_file(tmp_path / "d" / "hard", truncate=True)
    assert target.read_bytes() == PRECIOUS


def test_a_folder_others_may_write_is_refused_unless_sticky_above(tmp_path: Path) -> None:
    open_ = tmp_path / "open"
    open_.mkdir()
    open_.chmod(0o777)
    why = folder_problem(open_)
    assert why is not None and f"folder {open_} can be written by other users (mode 0777)" in why
    assert f"chmod o-w {open_}" in why
    assert folder_problem(open_ / "below" / "deeper") is not None  # made under it: refused too
    with pytest.raises(UnsafeOutput, match="can be written by other users"):
        make_folder(open_)
    sticky = tmp_path / "sticky"
    sticky.mkdir()
    sticky.chmod(0o1777)  # as /tmp
    assert folder_problem(sticky / "mine") is None  # a folder of our own in it is fine
    make_folder(sticky / "mine")
    assert folder_problem(sticky / "mine") is None
    assert "mkdir -m 750" in (folder_problem(sticky) or "")  # files right in it: not for stages
    assert folder_problem(sticky, sticky_ok=True) is None  # --stats-out
    group = tmp_path / "group"
    group.mkdir()
    group.chmod(0o770)  # shared with a group on purpose: allowed
    assert folder_problem(group) is None


def test_file_mode_is_kept_by_every_writer_whatever_the_umask(tmp_path: Path) -> None:
    with umask(0o077):
        run_stage(
            VideoSink(path=str(tmp_path / "rec" / "{stream}.mp4"), file_mode="0644"), frame_msgs(2)
        )
        door = {"cam0": [{"name": "door", "a": [0, 30], "b": [160, 30]}]}
        snaps = tmp_path / "snaps"
        lines = LineCrossing(lines=door, snapshot=str(snaps), snapshot_every_s=0, file_mode="0644")
        run_stage(lines, crossing_frames())
        state = StreamState(tmp_path / "state" / "cam0.json", "r", Modes.of("0644"))
        state.file.write({"run_id": "r"})
        state.file.note("door", "in", "person", 1)
    files = [p for p in tmp_path.rglob("*") if p.is_file()]
    assert len(files) == 4  # a recording, a snapshot, its crop, the totals
    assert {str(p.relative_to(tmp_path)): oct(mode(p)) for p in files} == {
        str(p.relative_to(tmp_path)): oct(0o644) for p in files
    }
    assert all(mode(p) == 0o755 for p in tmp_path.rglob("*") if p.is_dir())


# -- each writer, links planted at its names ----------------------------------------------


def frame_msgs(n: int, stream: str = "cam0") -> list[Message]:
    return [
        Message(stream, i, i - 1, t_capture=T0 + i, arrays={"frame": np.zeros((48, 64, 3), "u1")})
        for i in range(n)
    ]


def test_jsonl_refuses_a_link_at_its_file_and_rotation_replaces_links(tmp_path: Path) -> None:
    target = plant(tmp_path / "out" / "cam0.jsonl")
    sink = JsonlSink(path=str(tmp_path / "out" / "{stream}.jsonl"))
    with pytest.raises(UnsafeOutput, match=r"cam0\.jsonl is a symbolic link"):
        run_stage(sink, frame_msgs(1))
    assert target.read_bytes() == PRECIOUS
    rotated = tmp_path / "rot" / "e.jsonl"
    old = plant(rotated.with_name("e.jsonl.1"))
    f = RotatingFile(rotated, max_bytes=10)
    f.write(["a" * 8])
    f.write(["b" * 8])  # moves e.jsonl over the link at e.jsonl.1
    f.close()
    assert old.read_bytes() == PRECIOUS
    assert rotated.with_name("e.jsonl.1").read_text() == "a" * 8 + "\n"
    assert regular(rotated.with_name("e.jsonl.1")) and mode(rotated) == 0o640


@pytest.mark.parametrize("codec", ["h264", "mp4v"])
def test_a_recording_is_never_written_through_a_link(tmp_path: Path, codec: str) -> None:
    target = plant(tmp_path / "rec" / "cam0.mp4")
    sink = VideoSink(path=str(tmp_path / "rec" / "{stream}.mp4"), codec=codec)
    with pytest.raises(StageSetupError, match=r"stages\.\w+\.path: .*cam0\.mp4 is a symbolic"):
        run_stage(sink, frame_msgs(1))
    assert target.read_bytes() == PRECIOUS


def test_an_event_clip_is_never_written_through_a_link(tmp_path: Path) -> None:
    ev = {"type": "line_crossing", "line": "door", "track_id": 7, "stream": "cam0"}
    msgs = frame_msgs(8)
    ev["t_capture"] = msgs[3].t_capture
    msgs[3].meta["events"] = [ev]
    target = plant(tmp_path / "clips" / event_file(ev, ".mp4"))
    sink = VideoSink(path=str(tmp_path / "{stream}.mp4"), clips={"dir": str(tmp_path / "clips")})
    with pytest.raises(UnsafeOutput, match="symbolic link"):  # at the sink: a frame counted lost
        run_stage(sink, msgs)
    assert target.read_bytes() == PRECIOUS


def crossing_frames() -> list[Message]:
    """One object crossing y=30 between frames 0 and 1."""
    out = []
    for seq, y in enumerate((20, 40)):
        frame = np.full((120, 160, 3), 90, np.uint8)
        msg = Message("cam0", seq, seq - 1, t_capture=T0 + seq, arrays={"frame": frame})
        msg.detections = Detections(np.array([[10, y - 10, 40, y]], np.float32), [0.9], [0], [1])
        out.append(msg)
    return out


def test_snapshots_and_crops_replace_links_and_never_write_through_them(tmp_path: Path) -> None:
    ev = {
        "type": "line_crossing",
        "line": "door",
        "track_id": 1,
        "stream": "cam0",
        "t_capture": T0 + 1,
    }
    shot = tmp_path / "snaps" / snapshot_path(ev)
    crop = shot.with_name(shot.name.replace(".jpg", ".crop.jpg"))
    names = [shot, crop, shot.with_name(f".{shot.name}.part"), crop.with_name(f".{crop.name}.part")]
    targets = [plant(p) for p in names]
    runtime = InlineRuntime()
    door = {"cam0": [{"name": "door", "a": [0, 30], "b": [160, 30]}]}
    stage = LineCrossing(lines=door, snapshot={"dir": str(tmp_path / "snaps")}, snapshot_every_s=0)
    stage.setup(Context(stage="lines", runtime=runtime))
    for msg in crossing_frames():
        stage.process(msg)
    stage.close()
    assert runtime.events == {"snapshots": 1}
    assert [t.read_bytes() for t in targets] == [PRECIOUS] * 4
    assert regular(shot) and regular(crop) and shot.read_bytes()[:2] == b"\xff\xd8"
    assert mode(shot) == mode(crop) == 0o640


def test_mqtt_totals_replace_links_and_refuse_one_at_the_file_they_append_to(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "p" / "cam0.json"
    targets = [plant(path), plant(path.with_suffix(".tmp"))]
    totals = TotalsFile(path)
    totals.write({"run_id": "r", "base": {}, "run": {}})
    assert [t.read_bytes() for t in targets] == [PRECIOUS] * 2
    assert regular(path) and mode(path) == 0o640 and json.loads(path.read_text())["run_id"] == "r"
    path.unlink()
    target = plant(path)
    with pytest.raises(UnsafeOutput, match="symbolic link"):
        totals.note("door", "in", "person", 1)
    assert target.read_bytes() == PRECIOUS


def test_the_mqtt_spool_never_writes_through_links(tmp_path: Path) -> None:
    path = tmp_path / "spool" / "mqtt.jsonl"
    targets = [plant(path), plant(path.with_suffix(".tmp"))]
    spool = Spool(path, 1 << 20)
    spool.close(1)
    assert [t.read_bytes() for t in targets] == [PRECIOUS] * 2
    assert regular(path) and mode(path) == mode(path.with_suffix(".acked")) == 0o600
    path.with_suffix(".acked").unlink()
    target = plant(path.with_suffix(".acked"))
    with pytest.raises(StageSetupError, match=r"mqtt: spool: .*mqtt\.acked is a symbolic link"):
        Spool(path, 1 << 20)
    assert target.read_bytes() == PRECIOUS


def test_deploy_writes_no_file_through_a_link_and_refuses_an_open_folder(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    graph = write_graph(tmp_path, "[stages.a]\nuses = 'synthetic'\n")
    out = tmp_path / "unit"
    targets = [plant(out / "rkpipe.service"), plant(out / "Dockerfile")]
    env = out / "rkpipe.env"
    env.symlink_to(tmp_path / "env-made-through-the-link")
    with umask(0):
        assert deploy(["systemd", str(graph), "-o", str(out)]) == 0
        assert deploy(["docker", "-o", str(out)]) == 0
    assert [t.read_bytes() for t in targets] == [PRECIOUS] * 2
    assert not (tmp_path / "env-made-through-the-link").exists()  # there already: left alone
    assert mode(out / "rkpipe.service") == mode(out / "Dockerfile") == 0o644
    fresh = tmp_path / "fresh"
    with umask(0):
        assert deploy(["systemd", str(graph), "-o", str(fresh)]) == 0
    assert mode(fresh) == 0o755 and mode(fresh / "rkpipe.env") == 0o600
    open_ = tmp_path / "open"
    open_.mkdir()
    open_.chmod(0o777)
    capsys.readouterr()
    assert deploy(["docker", "-o", str(open_)]) == 2
    assert f"--out: folder {open_} can be written by other users" in capsys.readouterr().err
    assert not (open_ / "Dockerfile").exists()


# -- refused at validate or setup ---------------------------------------------------------


def open_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "open"
    folder.mkdir(exist_ok=True)
    folder.chmod(0o777)
    return folder


def test_an_output_in_a_folder_others_may_write_fails_validation(tmp_path: Path) -> None:
    folder = open_folder(tmp_path)
    graph = write_graph(
        tmp_path,
        f"""
[stages.cam0]
uses = "synthetic"
[stages.out]
uses = "jsonl"
inputs = ["cam0"]
path = "{folder}/{{stream}}.jsonl"
[stages.rec]
uses = "video"
inputs = ["cam0"]
path = "{folder}/rec/{{stream}}.mp4"
""",
    )
    with pytest.raises(GraphError) as err:
        load_graph(graph)
    text = str(err.value)
    assert "stages.out.path" in text and "stages.rec.path" in text
    assert f"folder {folder} can be written by other users (mode 0777)" in text
    assert f"chmod o-w {folder}" in text


def test_snapshots_and_mqtt_state_in_an_open_folder_fail_at_setup(tmp_path: Path) -> None:
    folder = open_folder(tmp_path)
    stage = LineCrossing(lines={"*": {"name": "d", "a": [0, 1], "b": [9, 1]}}, snapshot=str(folder))
    with pytest.raises(
        StageSetupError, match=r"stages\.lines\.snapshot\.dir: folder .* other users"
    ):
        stage.setup(Context(stage="lines"))
    video = VideoSink(path=str(tmp_path / "v.mp4"), clips={"dir": str(folder / "clips")})
    with pytest.raises(StageSetupError, match=r"stages\.video\.clips\.dir: folder .* other"):
        video.setup(Context(stage="video"))
    sink = MqttSink(host="127.0.0.1", port=1, state_dir=str(folder))
    with pytest.raises(StageSetupError, match=r"stages\.mqtt\.state_dir: folder .* other users"):
        sink.setup(Context(stage="mqtt"))


def test_stats_out_in_an_open_folder_is_refused_before_the_run(tmp_path: Path) -> None:
    folder = open_folder(tmp_path)
    graph = write_graph(tmp_path, '[stages.cam0]\nuses = "synthetic"\nframes = 2\n')
    res = run_rkpipe("run", str(graph), "--stats-out", str(folder / "s.json"), timeout=60)
    assert res.returncode == 2
    assert f"--stats-out: cannot write {folder}/s.json: folder {folder} can be" in res.stderr
    assert "Traceback" not in res.stderr


# -- real runs ----------------------------------------------------------------------------


@pytest.mark.integration
def test_a_link_at_a_jsonl_file_is_counted_and_stats_out_replaces_its_link(
    tmp_path: Path, no_leaks
) -> None:
    events = tmp_path / "out" / "cam0.jsonl"
    stats = tmp_path / "stats.json"
    targets = [plant(events), plant(stats)]
    graph = write_graph(
        tmp_path,
        f"""
[stages.cam0]
uses = "synthetic"
width = 64
height = 48
frames = 5
[stages.out]
uses = "jsonl"
inputs = ["cam0"]
path = "{tmp_path}/out/{{stream}}.jsonl"
""",
    )
    res = run_rkpipe("run", str(graph), "--stats-out", str(stats))
    assert "cam0.jsonl is a symbolic link; rkpipe does not write through links" in res.stderr
    assert "Traceback" not in res.stderr
    assert [t.read_bytes() for t in targets] == [PRECIOUS] * 2
    assert regular(stats) and mode(stats) == 0o640
    assert json.loads(stats.read_text())["stages"]["out"]["drops"] == 5


@pytest.mark.integration
@pytest.mark.parametrize("mask", [0o022, 0o000])
def test_every_output_of_a_real_run_is_0640_in_0750_folders(
    tmp_path: Path, mask: int, no_leaks
) -> None:
    out = tmp_path / "out"
    graph = write_graph(
        tmp_path,
        f"""
[stages.cam0]
uses = "synthetic"
scene = "easy"
frames = 260
[stages.truth]
uses = "rk_test_overlay:Overlay"
inputs = ["cam0"]
overlays = false
[stages.lines]
uses = "line_crossing"
inputs = ["truth"]
lines."*" = {{ name = "door", a = [0, 270], b = [640, 270] }}
snapshot = "{out}/snapshots"
[stages.video]
uses = "video"
inputs = ["lines"]
path = "{out}/rec/{{stream}}.mp4"
annotate = false
clips = {{ dir = "{out}/clips", before_s = 1, after_s = 1 }}
[stages.events]
uses = "jsonl"
inputs = ["lines"]
path = "{out}/events/{{stream}}.jsonl"
events_only = true
[stages.shared]
uses = "jsonl"
inputs = ["lines"]
path = "{tmp_path}/shared/{{stream}}.jsonl"
events_only = true
file_mode = "0644"
""",
    )
    run = start_rkpipe(
        "run", str(graph), "--stats-out", f"{out}/stats/s.json", preexec_fn=lambda: os.umask(mask)
    )
    _, err = run.communicate(timeout=300)
    assert run.returncode == 0, err
    [ev] = [e for e in read_jsonl(out / "events" / "cam0.jsonl") if e["type"] == "line_crossing"]
    snaps = out / "snapshots"
    made = {
        "recording": out / "rec" / "cam0.mp4",
        "clip": out / "clips" / event_file(ev, ".mp4"),
        "snapshot": snaps / ev["snapshot"],
        "crop": snaps / ev["snapshot_crop"],
        "events": out / "events" / "cam0.jsonl",
        "stats": out / "stats" / "s.json",
    }
    assert {k: oct(mode(p)) for k, p in made.items()} == dict.fromkeys(made, oct(0o640))
    folders = [out, *(p for p in out.rglob("*") if p.is_dir())]
    assert len(folders) >= 8  # rec, clips/cam0/<day>, snapshots/cam0/<day>, events, stats...
    assert {str(p.relative_to(out)): oct(mode(p)) for p in folders} == {
        str(p.relative_to(out)): oct(0o750) for p in folders
    }
    assert all(mode(p) == 0o640 for p in out.rglob("*") if p.is_file())
    shared = tmp_path / "shared"
    assert mode(shared) == 0o755 and mode(shared / "cam0.jsonl") == 0o644


def test_doctor_json_replaces_a_link_and_never_writes_through_it(tmp_path: Path) -> None:
    report = tmp_path / "doctor.json"
    target = plant(report)
    (tmp_path / "box").mkdir()
    res = run_rkpipe("doctor", "--root", str(tmp_path / "box"), "--json", str(report))
    assert "Traceback" not in res.stderr
    assert target.read_bytes() == PRECIOUS
    assert regular(report) and mode(report) == 0o640 and json.loads(report.read_text())


@pytest.mark.parametrize("mask", [0o000, 0o022])
def test_mqtt_totals_and_spool_keep_their_modes_whatever_the_umask(
    tmp_path: Path, mask: int
) -> None:
    with umask(mask):
        totals = TotalsFile(tmp_path / "state" / "p" / "cam0.json")
        totals.write({"run_id": "r"})
        totals.note("door", "in", "person", 1)
        totals.close()
        spool = Spool(tmp_path / "spool" / "mqtt.jsonl", 1 << 20)
        spool.close(1)
    assert [mode(tmp_path / p) for p in ("state", "state/p", "state/p/cam0.json")] == [
        0o750,
        0o750,
        0o640,
    ]
    assert [mode(tmp_path / p) for p in ("spool", "spool/mqtt.jsonl", "spool/mqtt.acked")] == [
        0o700,
        0o600,
        0o600,
    ]


@pytest.mark.integration
def test_a_real_mqtt_run_under_umask_000_keeps_its_state_private(
    tmp_path: Path, broker: Broker, no_leaks
) -> None:
    text = graph_text(broker, 6, spool_dir="spool", state_dir="state", file_mode="0640")
    run = start_rkpipe(
        "run", str(write_graph(tmp_path, text)), cwd=tmp_path, preexec_fn=lambda: os.umask(0)
    )
    _, err = run.communicate(timeout=120)
    assert run.returncode == 0, err
    made = [tmp_path / p for p in ("spool", "state", "state/mqtt_test")]
    assert [mode(p) for p in made] == [0o750] * 3
    totals = sorted((tmp_path / "state" / "mqtt_test").glob("*.json"))
    assert [p.name for p in totals] == ["cam0.json", "cam1.json", "cameras.mqtt.json"]
    assert all(mode(p) == 0o640 for p in totals)
