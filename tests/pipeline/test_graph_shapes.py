"""A stream's line in a graph file, by name (what an MQTT ``.../lines/<line>/set`` changes):
the stage that counts it is found, the stream gets its own list with that line moved and its
other lines as they were, the other streams keep the ``"*"`` list and the user's comments
stay; a stream, a line or a stage that is not there says so, and changes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.graph.edit import EditError
from pipeline.graph.load import load_graph, tomllib
from pipeline.graph.shapes import change_shape

GRAPH = """\
[pipeline]
name = "shop"

[stages.cam0]
uses = "synthetic"
frames = 30

[stages.cam1]
uses = "synthetic"
frames = 30

[stages.cam2]
uses = "synthetic"
frames = 30

[stages.count]
uses = "line_crossing"
inputs = ["cam0", "cam1"]
# the door's threshold, left to right is "in"
lines."*" = [
  { name = "door", a = [0.5, 0], b = [0.5, 1], relative = true },  # the shop's door
  { name = "till", a = [0.1, 0], b = [0.1, 1], relative = true },
]
lines.cam1 = { name = "gate", a = [10, 0], b = [10, 40] }

[stages.out]
uses = "jsonl"
inputs = ["count", "cam2"]
path = "out.jsonl"
"""


@pytest.fixture(name="graph")
def graph_fixture(tmp_path: Path) -> Path:
    path = tmp_path / "graph.toml"
    path.write_text(GRAPH)
    return path


def lines_of(text: str, stream: str) -> list[dict]:
    lines = tomllib.loads(text)["stages"]["count"]["lines"]
    own = lines.get(stream, lines["*"])
    return [own] if isinstance(own, dict) else own


def test_a_moved_line_gets_its_stream_its_own_list_and_keeps_the_rest(graph: Path) -> None:
    done = change_shape(GRAPH, graph, "lines", "cam0", "door", {"a": [0.4, 0], "b": [0.4, 1]})
    assert done.stage == "count"
    assert lines_of(done.text, "cam0") == [
        {"name": "door", "a": [0.4, 0], "b": [0.4, 1], "relative": True},
        {"name": "till", "a": [0.1, 0], "b": [0.1, 1], "relative": True},
    ]
    assert lines_of(done.text, "*") == lines_of(GRAPH, "*")  # the other streams keep theirs
    assert lines_of(done.text, "cam1") == lines_of(GRAPH, "cam1")
    assert '# the door\'s threshold, left to right is "in"' in done.text
    assert "# the shop's door" in done.text
    load_graph(graph, text=done.text)  # still a valid graph

    again = change_shape(done.text, graph, "lines", "cam1", "gate", {"b": [20, 40]})
    assert lines_of(again.text, "cam1") == [{"name": "gate", "a": [10, 0], "b": [20, 40]}]
    assert lines_of(again.text, "cam0") == lines_of(done.text, "cam0")


@pytest.mark.parametrize(
    ("stream", "line", "says"),
    [
        ("cam9", "door", "no stream named 'cam9'; streams are: cam0, cam1, cam2"),
        ("count", "door", "no stream named 'count'"),
        ("cam0", "gate", "stream 'cam0' has no line named 'gate'; its lines are: door, till"),
        ("cam1", "door", "stream 'cam1' has no line named 'door'; its lines are: gate"),
        ("cam2", "door", "stream 'cam2' has no line named 'door'"),  # no stage counts cam2
    ],
)
def test_a_stream_or_line_not_there_is_404(graph: Path, stream: str, line: str, says: str) -> None:
    with pytest.raises(EditError) as err:
        change_shape(GRAPH, graph, "lines", stream, line, {"a": [0.2, 0]})
    assert err.value.status == 404
    assert str(err.value).startswith(says)


def test_a_line_two_stages_count_or_a_broken_file_is_409(graph: Path) -> None:
    twice = GRAPH.replace(
        "[stages.out]",
        '[stages.count2]\nuses = "line_crossing"\ninputs = ["count"]\n'
        'lines.cam0 = { name = "door", a = [1, 0], b = [1, 40] }\n\n[stages.out]',
    )
    with pytest.raises(EditError) as err:
        change_shape(twice, graph, "lines", "cam0", "door", {"a": [0.2, 0]})
    assert err.value.status == 409 and "more than one stage (count, count2)" in str(err.value)

    broken = GRAPH.replace('inputs = ["count", "cam2"]', 'inputs = ["nope"]')
    with pytest.raises(EditError) as err:
        change_shape(broken, graph, "lines", "cam0", "door", {"a": [0.2, 0]})
    assert err.value.status == 409 and "not valid as it is" in str(err.value)
    assert 'unknown stage "nope"' in str(err.value)
