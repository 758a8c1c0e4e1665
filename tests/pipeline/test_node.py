"""The node id (``node`` in ``[pipeline]``): the host name by default, made safe for one MQTT
topic level; a node that could add a level or break a Home Assistant id is a graph error."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import GraphError
from pipeline.graph.load import load_graph
from pipeline.node import default_node
from support.rkpipe import write_graph

GRAPH = """
[pipeline]
name = "n"
{node}
[stages.cam0]
uses = "synthetic"
frames = 1
"""


def test_the_default_node_is_the_host_name_made_safe(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("socket.gethostname", lambda: "Board+1/x.lan")
    assert default_node() == "Board_1_x"
    monkeypatch.setattr("socket.gethostname", lambda: "")
    assert default_node() == "node"


def test_node_comes_from_the_graph_or_the_host(tmp_path: Path) -> None:
    assert load_graph(write_graph(tmp_path, GRAPH.format(node=""))).settings.node == default_node()
    named = load_graph(write_graph(tmp_path, GRAPH.format(node='node = "garage-2"')))
    assert named.settings.node == "garage-2"


@pytest.mark.parametrize("bad", ["a/b", "+", "#", "", "x y", "n" * 65])
def test_a_node_that_is_not_one_safe_topic_level_is_refused(tmp_path: Path, bad: str) -> None:
    with pytest.raises(GraphError) as err:
        load_graph(write_graph(tmp_path, GRAPH.format(node=f'node = "{bad}"')))
    text = str(err.value)
    assert "pipeline.node" in text and "letters, digits, _ and - only" in text, text
