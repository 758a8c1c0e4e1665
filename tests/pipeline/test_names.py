"""Names a graph gives become files, sockets, segments, topic levels and Home Assistant ids:
each is checked when the graph is loaded, and one that would be cut, would take two topic
levels, would share a file, topic or sensor with another, or is taken by the run itself is
refused there, with the file, the key, the limit and the fix."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from pipeline.errors import GraphError
from pipeline.graph.load import load_graph
from pipeline.names import (
    MAX_LABEL_BYTES,
    MAX_PIPELINE_NAME,
    MAX_STAGE_NAME,
    fold,
    label_problem,
    longest_uses,
)
from pipeline.supervise.runs import RUN_DIR_ROOT
from stages.event_files import event_file
from stages.line_crossing.stage import LineCrossing
from stages.sinks.mqtt.topics import clean_id, level
from support.graph import graph_file
from support.rkpipe import run_rkpipe

CAM = {"uses": "synthetic", "frames": 3}


def line(name: str) -> dict[str, Any]:
    return {"name": name, "a": [0, 30], "b": [60, 30]}


def lines_stage(table: dict[str, Any], **more: Any) -> dict[str, Any]:
    return {"uses": "line_crossing", "inputs": ["cam0"], "lines": table, **more}


def zones_stage(name: str) -> dict[str, Any]:
    zone = {"name": name, "polygon": [[0, 0], [40, 0], [40, 40]]}
    return {"uses": "zones", "inputs": ["cam0"], "zones": {"cam0": zone}}


P = "p" * (MAX_PIPELINE_NAME + 1)
S = "s" * (MAX_STAGE_NAME + 1)
L = "l" * (MAX_LABEL_BYTES + 1)
E = "é" * (MAX_LABEL_BYTES // 2 + 1)  # few characters, too many bytes

# case -> (pipeline settings, stages, fragments the message must hold)
REFUSED: dict[str, tuple[dict | None, dict[str, dict], list[str]]] = {
    "pipeline name too long": (
        {"name": P},
        {"cam0": CAM},
        [":2 pipeline.name:", f"1-{MAX_PIPELINE_NAME} letters, digits, _ or -"],
    ),
    "pipeline name with a slash": ({"name": "a/b"}, {"cam0": CAM}, ["pipeline.name", "'a/b'"]),
    "pipeline name with a space": ({"name": "my pipe"}, {"cam0": CAM}, ["pipeline.name"]),
    "empty pipeline name": ({"name": ""}, {"cam0": CAM}, ["pipeline.name", "use 1-48"]),
    "stage name too long": (None, {"cam0": CAM, S: CAM}, [f"stages.{S}:", "1-64"]),
    "stage named control": (
        None,
        {"cam0": CAM, "control": {"uses": "passthrough", "inputs": ["cam0"]}},
        ['stages.control: stage name "control" is taken by', "control.sock", "rename"],
    ),
    "stage named Control": (None, {"Control": CAM}, ["stages.Control:", "control.sock"]),
    "stage named run": (None, {"run": CAM}, ["stages.run:", "ledger-run"]),
    "stages apart only in case": (
        None,
        {"cam0": CAM, "CAM0": CAM},
        ['stage names "cam0" and "CAM0" differ only in case', "rename one"],
    ),
    "line name too long": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam0": line(L)})},
        ["stages.l.lines.cam0.0.name:", f"is {len(L)} bytes: use 1-{MAX_LABEL_BYTES} (UTF-8)"],
    ),
    "line name too many bytes": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam0": line(E)})},
        [f"is {len(E.encode())} bytes: use 1-{MAX_LABEL_BYTES} (UTF-8)"],
    ),
    "line name with a slash": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam0": line("a/b")})},
        ["line name 'a/b' holds '/', the topic level separator", "use another character"],
    ),
    "line name +": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam0": line("+")})},
        ["holds '+', an MQTT wildcard"],
    ),
    "line name with #": (
        None,
        {"cam0": CAM, "l": lines_stage({"*": line("door #2")})},
        ['stages.l.lines."*".0.name:', "holds '#', an MQTT wildcard"],
    ),
    "line name with NUL": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam0": line("a\x00b")})},
        ["holds '\\x00', a control or invisible character"],
    ),
    "line name with a newline": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam0": line("a\nb")})},
        ["holds '\\n', a control or invisible character"],
    ),
    "line name with a noncharacter": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam0": line("a\ufffeb")})},
        ["holds '\\ufffe', a control or invisible character"],
    ),
    "line name with a zero-width joiner": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam0": line("a\u200db")})},
        ["holds '\\u200d', a control or invisible character"],
    ),
    "line name starting with $": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam0": line("$SYS")})},
        ["starts with $, which begins the broker's own topics"],
    ),
    "line name with a space at its end": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam0": line("door ")})},
        ["starts or ends with a space"],
    ),
    "line named zones": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam0": line("Zones")})},
        ["would share the mqtt sink's zone totals {state_prefix}/zones/<zone>/<class>"],
    ),
    "line named zone": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam0": line("zone")})},
        ["the Home Assistant ids of zone sensors"],
    ),
    "lines a b and a_b": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam0": [line("a b"), line("a_b")]})},
        ["line names 'a b' and 'a_b' of stream 'cam0' differ only in case, spaces or punct"],
    ),
    "lines for all streams that clash": (
        None,
        {"cam0": CAM, "l": lines_stage({"*": [line("Door"), line("door")], "cam0": line("x")})},
        ["line names 'Door' and 'door' of all streams"],
    ),
    "lines a.b and a-b-b": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam0": [line("a.b"), line("A:b")]})},
        ["line names 'a.b' and 'A:b'"],
    ),
    "lines of a stream that is no stream name": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam 0": line("door")})},
        ["stream 'cam 0' is not allowed", 'name a source stage, or "*"'],
    ),
    "zone name with a slash": (
        None,
        {"cam0": CAM, "z": zones_stage("lot/a")},
        ["stages.z.zones.cam0.0.name:", "zone name 'lot/a' holds '/'"],
    ),
    "zone name too long": (None, {"cam0": CAM, "z": zones_stage(L)}, ["zone name", "use 1-48"]),
    "class name with a wildcard": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam0": line("d")}, names=["person", "car+"])},
        ["stages.l.names:", "class name 1 'car+' holds '+'"],
    ),
    "class names apart only in case": (
        None,
        {"cam0": CAM, "l": lines_stage({"cam0": line("d")}, names=["car", "Car"])},
        ["class names 'car' and 'Car' differ only in case"],
    ),
    "class name too long": (
        None,
        {"cam0": CAM, "z": {**zones_stage("z"), "names": [L]}},
        ["stages.z.names:", "class name 0", "use 1-48"],
    ),
    "stream file name too long": (
        None,
        {
            "c" * MAX_STAGE_NAME: CAM,
            "out": {"uses": "jsonl", "inputs": ["c" * 64], "path": "{stream}" + "x" * 192},
        },
        ["stages.out.path: for stream 'cccc", "past the 255 a file name allows"],
    ),
}


@pytest.mark.parametrize("case", sorted(REFUSED))
def test_a_name_that_cannot_be_used_as_it_is_is_refused(case: str, tmp_path: Path) -> None:
    pipeline, stages, fragments = REFUSED[case]
    path = graph_file(tmp_path, stages, pipeline)
    with pytest.raises(GraphError) as info:
        load_graph(path)
    text = str(info.value)
    assert str(path) in text
    for fragment in fragments:
        assert fragment in text, f"{fragment!r} not in:\n{text}"


def test_names_at_every_limit_and_at_the_edge_of_the_characters_are_fine(tmp_path: Path) -> None:
    cam = "c-_" + "9" * (MAX_STAGE_NAME - 3)
    head = "Ünïcode dœr.x-y_z (2) "
    label = head + "a" * (MAX_LABEL_BYTES - len(head.encode()))
    assert len(label.encode()) == MAX_LABEL_BYTES
    stages = {
        cam: CAM,
        "l": {
            "uses": "line_crossing",
            "inputs": [cam],
            "lines": {cam: line(label), "*": line("Door 2")},
            "names": ["person", label],
            "classes": [label],
        },
    }
    graph = load_graph(graph_file(tmp_path, stages, {"name": "P_-" + "q" * 45}))
    assert graph.settings.name == "P_-" + "q" * 45
    assert label_problem(label, "line name", "line") is None


def test_the_limits_fit_every_use_of_a_name() -> None:
    """The longest file name, socket path, segment and HA entity id each limit makes fit."""
    uses = longest_uses(f"{RUN_DIR_ROOT}/rkpipe-4194304x00000000")
    for use, (text, limit) in uses.items():
        assert len(text.encode()) <= limit, f"{use}: {len(text.encode())} > {limit}: {text}"
    assert "socket path" in uses and "HA entity id" in uses and "snapshot part file" in uses


def test_fold_is_what_ids_and_file_names_keep() -> None:
    assert fold("A b") == fold("a_b") == fold("a.b") == fold("a  b") == "a_b"
    assert fold("a-b") != fold("a_b")
    assert fold("ß") == fold("é") == "_"  # both "_" in an HA id, though "ß" casefolds to "ss"


def test_a_stage_named_control_is_refused_before_the_run_starts(tmp_path: Path) -> None:
    """It used to take the supervisor's control socket and hang the run."""
    stages = {"cam0": CAM, "control": {"uses": "passthrough", "inputs": ["cam0"]}}
    res = run_rkpipe("run", str(graph_file(tmp_path, stages)), timeout=60)
    assert res.returncode == 2, res.stderr
    assert "Traceback" not in res.stderr
    assert 'stage name "control" is taken by the supervisor\'s control socket' in res.stderr


def test_a_socket_path_past_its_limit_says_so(tmp_path: Path) -> None:
    """With a long TMPDIR, a long stage name would make a socket path the kernel refuses."""
    tmp = tmp_path / ("t" * 40)
    tmp.mkdir()
    stages = {"c" * 60: CAM}
    res = run_rkpipe("validate", str(graph_file(tmp_path, stages)), env={"TMPDIR": str(tmp)})
    assert res.returncode == 2, res.stderr
    assert "past the 107 a Unix socket path allows" in res.stderr
    assert "shorter TMPDIR" in res.stderr


# -- the invariant, over many names ------------------------------------------------------------
# characters the rules allow, with those the mappings turn into "_" (or fold) among them
_ALPHABET = st.sampled_from(list("aAbB01_-. ()éÉßİ"))
_NAMES = st.lists(st.text(_ALPHABET, min_size=1, max_size=4), min_size=2, max_size=4, unique=True)


@settings(max_examples=400, deadline=None)
@given(_NAMES)
def test_names_a_stream_accepts_have_a_topic_level_an_id_and_a_file_each(names: list[str]) -> None:
    """Whatever a stream's line names are, once the graph accepts them each is one topic level
    as it is, and no two share a Home Assistant id or a snapshot file (also on a case-blind
    file system), through the real functions the sinks and the snapshot writer use."""
    table = {"cam0": [line(n) for n in names]}
    try:
        LineCrossing.Config(lines=table)
    except ValidationError:
        return
    for name in names:
        assert level(name) == name and "/" not in name
    ids = {clean_id(f"cam0_{n}_in_person") for n in names}
    event = {"t_capture": 1.7e9, "type": "line_crossing", "stream": "cam0", "track_id": 7}
    files = {event_file({**event, "line": n}, ".jpg").lower() for n in names}
    assert len(ids) == len(files) == len(set(names))
