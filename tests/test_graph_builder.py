"""The tests' graph builder writes the TOML a person would: same tables, same values."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from pipeline.graph.load import load_graph
from support.graph import Graph, toml_value

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_builder_writes_the_pipeline_and_stage_tables_in_order(tmp_path: Path) -> None:
    path = (
        Graph("two", window=1)
        .source("cam0", uses="synthetic", frames=3, live=True)
        .stage("work", uses="passthrough", inputs=["cam0"], replicas=2, cpus=[[0], [0]])
        .sink("out", uses="jsonl", inputs=["work"], path=tmp_path / "out.jsonl")
        .write(tmp_path)
    )
    assert tomllib.loads(path.read_text()) == {
        "pipeline": {"name": "two", "window": 1},
        "stages": {
            "cam0": {"uses": "synthetic", "frames": 3, "live": True},
            "work": {"uses": "passthrough", "inputs": ["cam0"], "replicas": 2, "cpus": [[0], [0]]},
            "out": {"uses": "jsonl", "inputs": ["work"], "path": f"{tmp_path}/out.jsonl"},
        },
    }
    assert list(load_graph(path).stages) == ["cam0", "work", "out"]


def test_a_graph_without_settings_has_no_pipeline_table() -> None:
    text = Graph().source("cam0", uses="synthetic").text()
    assert "[pipeline]" not in text and tomllib.loads(text) == {
        "stages": {"cam0": {"uses": "synthetic"}}
    }


@pytest.mark.parametrize(
    ("value", "toml"),
    [
        (True, "true"),
        (0.5, "0.5"),
        ('say "hi"\n', r'"say \"hi\"\n"'),
        (Path("/x/y"), '"/x/y"'),
        ([1, [2, 3]], "[1, [2, 3]]"),
        ({"*": {"name": "mid", "a": [0, 60]}}, '{ "*" = { name = "mid", a = [0, 60] } }'),
        ({}, "{}"),
    ],
)
def test_values_are_written_as_toml(value: object, toml: str) -> None:
    assert toml_value(value) == toml
    assert tomllib.loads(f"v = {toml}")["v"] == (str(value) if isinstance(value, Path) else value)


def test_a_stage_named_twice_is_a_mistake_in_the_test() -> None:
    graph = Graph().source("cam0", uses="synthetic")
    with pytest.raises(ValueError, match="'cam0' is already in the graph"):
        graph.source("cam0", uses="synthetic")
