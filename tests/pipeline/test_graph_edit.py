"""Changing a graph through its file (what the control API does): an edit keeps the user's
comments, key order and layout; it is validated in full before anything is written, so a bad
edit leaves the file as it was and says why, file:line; a good one replaces the file in one
step, keeps its mode, and asks the run to reload (SIGHUP to its supervisor)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import GraphError
from pipeline.graph.edit import EditError, add_stage, patch_stage, remove_stage
from pipeline.graph.graph_file import GraphFile
from support.rkpipe import poll_for

GRAPH = """\
# counting people at the door
[pipeline]
name = "door"   # the node's name in MQTT

[stages.cam0]
uses = "synthetic"
frames = 30    # a short clip
live = false

[stages.count]
uses = "line_crossing"
inputs = ["cam0"]
# the door's threshold, left to right is "in"
lines."*" = [{ name = "door", a = [0.5, 0], b = [0.5, 1], relative = true }]

[stages.out]
uses = "jsonl"
inputs = ["count"]
path = "out.jsonl"
"""


def test_a_patch_changes_only_what_it_names_and_keeps_comments_and_order() -> None:
    line = [{"name": "door", "a": [0.4, 0], "b": [0.4, 1], "relative": True}]
    new = patch_stage(GRAPH, "count", {"lines": {"cam0": line}})
    new = patch_stage(new, "cam0", {"frames": 60, "live": None})
    assert "# counting people at the door" in new
    assert '# the door\'s threshold, left to right is "in"' in new
    assert 'name = "door"   # the node\'s name in MQTT' in new
    assert "frames = 60    # a short clip" in new  # the comment of the replaced line stays
    assert "live" not in new.split("[stages.count]")[0]
    assert new.index('lines."*"') < new.index("lines.cam0")  # the old line, then the new
    order = [ln.split("=")[0].strip() for ln in new.splitlines() if "=" in ln]
    assert order[:4] == ["name", "uses", "frames", "uses"]


def test_a_stage_is_added_after_the_others_and_removed_whole() -> None:
    added = add_stage(GRAPH, "cam1", {"uses": "synthetic", "frames": 30})
    assert added.startswith(GRAPH)
    assert added.rstrip().endswith('[stages.cam1]\nuses = "synthetic"\nframes = 30')
    assert "[stages.cam0]" not in remove_stage(GRAPH, "cam0")
    assert remove_stage(added, "cam1").rstrip() == GRAPH.rstrip()


@pytest.mark.parametrize(
    ("edit", "status"),
    [
        (lambda t: patch_stage(t, "nope", {"conf": 1}), 404),
        (lambda t: add_stage(t, "cam0", {"uses": "synthetic"}), 409),
        (lambda t: add_stage(t, "cam9", {"frames": 3}), 400),
        (lambda t: remove_stage(t, "nope"), 404),
        (lambda t: patch_stage(t, "cam0", {"frames": [1, {"a": object()}]}), 400),
    ],
    ids=["patch-unknown", "add-existing", "add-without-uses", "remove-unknown", "not-toml"],
)
def test_an_edit_that_cannot_be_made_says_why_with_its_status(edit, status: int) -> None:
    with pytest.raises(EditError) as err:
        edit(GRAPH)
    assert err.value.status == status


def _graph(tmp_path: Path) -> Path:
    path = tmp_path / "door.toml"
    path.write_text(GRAPH)
    path.chmod(0o640)
    return path


@pytest.mark.parametrize(
    ("patch", "said"),
    [
        ({"inputs": ["cam9"]}, "cam9"),  # an input that does not exist
        ({"colour": "red"}, "colour"),  # an unknown key
        ({"lines": {"cam0": [{"name": "door", "a": [0.5, 0]}]}}, "lines"),  # half a line
    ],
    ids=["missing-input", "unknown-key", "bad-line"],
)
def test_a_bad_edit_changes_nothing_and_says_why(tmp_path: Path, patch: dict, said: str) -> None:
    path = _graph(tmp_path)
    with pytest.raises(GraphError) as err:
        GraphFile(path, None).change(lambda t: patch_stage(t, "count", patch))
    assert path.read_text() == GRAPH
    assert any(str(path) in p and said in p for p in err.value.problems), err.value.problems
    assert sorted(p.name for p in tmp_path.iterdir()) == ["door.toml"]  # no temporary left


def test_removing_the_only_input_of_a_stage_changes_nothing(tmp_path: Path) -> None:
    """A removed stage leaves its readers' inputs too; one left reading nothing is refused."""
    path = _graph(tmp_path)
    with pytest.raises(GraphError, match=r"stages\.count\.inputs"):
        GraphFile(path, None).change(lambda t: remove_stage(t, "cam0"))
    assert path.read_text() == GRAPH


def test_a_good_edit_is_written_whole_with_its_mode_and_the_run_asked_to_reload(
    tmp_path: Path,
) -> None:
    path = _graph(tmp_path)
    heard = tmp_path / "heard"
    code = (
        "import signal, sys, time, pathlib\n"
        f"signal.signal(signal.SIGHUP, lambda *_: pathlib.Path({str(heard)!r}).touch())\n"
        "print('ready', flush=True)\n"
        "time.sleep(30)\n"
    )
    supervisor = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
    try:
        assert supervisor.stdout is not None and supervisor.stdout.readline() == b"ready\n"
        line = [{"name": "door", "a": [0.4, 0], "b": [0.4, 1], "relative": True}]
        applied = GraphFile(path, supervisor.pid).change(
            lambda t: patch_stage(t, "count", {"lines": {"*": line}})
        )
        assert applied.in_place == ["count"] and applied.restart == [] and applied.reloaded
        assert "a = [0.4, 0]" in path.read_text()
        assert "# the door's threshold" in path.read_text()
        assert path.stat().st_mode & 0o777 == 0o640
        assert poll_for(heard.exists, 10), "the run was not asked to reload"
    finally:
        supervisor.kill()
        supervisor.wait()


def test_a_new_source_and_its_reader_are_one_edit_a_run_applies(tmp_path: Path) -> None:
    path = _graph(tmp_path)
    applied = GraphFile(path, None).change(
        lambda t: add_stage(t, "cam1", {"uses": "synthetic", "frames": 30}, readers=["count"])
    )
    assert applied.added == ["cam1"] and applied.restart == [], applied
    assert not applied.reloaded  # no run to tell
    text = path.read_text()
    assert "[stages.cam1]" in text and 'inputs = ["cam0", "cam1"]' in text
    applied = GraphFile(path, None).change(lambda t: remove_stage(t, "cam1"))
    assert applied.removed == ["cam1"] and applied.restart == [], applied
    assert path.read_text().rstrip() == GRAPH.rstrip()  # back as it was, comments and all


def test_a_new_stage_between_others_is_named_as_a_change_beyond_options(tmp_path: Path) -> None:
    path = _graph(tmp_path)
    applied = GraphFile(path, None).change(
        lambda t: add_stage(t, "more", {"uses": "passthrough", "inputs": ["count"]})
    )
    assert any("more" in line for line in applied.restart), applied


def test_no_change_writes_nothing(tmp_path: Path) -> None:
    path = _graph(tmp_path)
    before = path.stat().st_mtime_ns
    applied = GraphFile(path, os.getpid()).change(lambda t: t)  # SIGHUP would end this test
    assert applied.in_place == [] and not applied.reloaded
    assert path.stat().st_mtime_ns == before
    assert signal.getsignal(signal.SIGHUP) in (signal.SIG_DFL, None)
