"""What a reload would apply: a stage's changed options alone are applied in place; any other
change (a stage added or removed, replicas, links, settings) is named as needing a restart."""

from __future__ import annotations

from pathlib import Path

from pipeline.graph.diff import diff_graphs
from pipeline.graph.load import load_graph
from support.graph import Graph


def _graph(folder: Path, conf: float = 0.25, replicas: int = 1, extra: bool = False):
    g = Graph("diffed").source("cam0", uses="synthetic", frames=10)
    if extra:
        g = g.source("cam1", uses="synthetic", frames=10)
    g = g.stage("decode", uses="yolov8_decode", inputs=["cam0"], conf=conf, replicas=replicas)
    g = g.sink("out", uses="passthrough", inputs=["decode"])
    folder.mkdir(exist_ok=True)
    return load_graph(g.write(folder))


def test_changed_options_alone_are_applied_in_place(tmp_path: Path) -> None:
    d = diff_graphs(_graph(tmp_path / "a"), _graph(tmp_path / "b", conf=0.6))
    assert d.options == {"decode": {"conf": 0.6}}
    assert d.restart == []


def test_the_same_graph_is_no_change(tmp_path: Path) -> None:
    assert diff_graphs(_graph(tmp_path / "a"), _graph(tmp_path / "b")).empty


def test_replicas_and_a_new_source_need_a_restart(tmp_path: Path) -> None:
    d = diff_graphs(_graph(tmp_path / "a"), _graph(tmp_path / "b", replicas=2, extra=True))
    assert d.options == {}
    assert d.restart == ["stage 'cam1' added", "stage 'decode': replicas changed"]
