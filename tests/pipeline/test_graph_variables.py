"""The environment variables a graph reads: an empty one gets the default as in the shell,
the list of them (with defaults and keys) that ``rkpipe deploy systemd`` writes into the
service's environment file, and the table in docs/graphs.md of those the shipped graphs read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from pipeline.errors import GraphError
from pipeline.graph.load import load_graph
from pipeline.graph.variables import Variable, graph_variables, variable_value
from support.rkpipe import ROOT, run_rkpipe, write_graph

GRAPH = """
[stages.cam0]
uses = "synthetic"
fps = "${RKPIPE_T_FPS:-12.5}"
[stages.out]
uses = "jsonl"
inputs = ["cam0"]
path = "${RKPIPE_T_DIR}/e.jsonl"
keep = "${RKPIPE_T_KEEP:-1}"
"""


@pytest.mark.parametrize(
    ("value", "default", "expected"),
    [
        (None, "d", "d"),  # unset: the default
        ("", "d", "d"),  # empty: the default too (${VAR:-d} in the shell)
        ("x", "d", "x"),
        (None, None, None),  # unset without a default: the caller's error
        ("", None, ""),  # ${VAR} of an empty VAR: empty, as in the shell
        ("", "", ""),
    ],
)
def test_a_variable_stands_for_what_the_shell_gives(
    value: str | None, default: str | None, expected: str | None
) -> None:
    env = {} if value is None else {"V": value}
    assert variable_value("V", default, env) == expected


def test_an_empty_variable_in_a_graph_gets_its_default(tmp_path: Path, monkeypatch) -> None:
    graph = write_graph(tmp_path, GRAPH)
    monkeypatch.setenv("RKPIPE_T_FPS", "")  # RKPIPE_T_FPS= in an env file
    monkeypatch.setenv("RKPIPE_T_DIR", "/data")
    assert load_graph(graph).stages["cam0"].config.fps == 12.5
    monkeypatch.delenv("RKPIPE_T_DIR")
    with pytest.raises(GraphError, match="environment variable RKPIPE_T_DIR is not set"):
        load_graph(graph)


def test_the_shipped_graph_runs_with_empty_variables_as_with_none() -> None:
    """The env file rkpipe deploy writes may leave a camera empty: that is the default."""
    empty = {v.name: "" for v in graph_variables(ROOT / "graphs" / "two_streams.toml")}
    res = run_rkpipe("validate", str(ROOT / "graphs" / "two_streams.toml"), env=empty)
    assert res.returncode == 0, res.stderr


def test_a_graphs_variables_are_listed_with_defaults_and_keys(tmp_path: Path) -> None:
    graph = write_graph(tmp_path, GRAPH + 'name = "${RKPIPE_T_DIR}-${RKPIPE_T_FPS:-9}"\n')
    assert graph_variables(graph) == [
        Variable("RKPIPE_T_FPS", "12.5", ("stages.cam0.fps", "stages.out.name")),
        Variable("RKPIPE_T_DIR", None, ("stages.out.path", "stages.out.name")),
        Variable("RKPIPE_T_KEEP", "1", ("stages.out.keep",)),
    ]


def env_assignments(text: str) -> dict[str, str]:
    return dict(
        line.split("=", 1) for line in text.splitlines() if line and not line.startswith("#")
    )


@pytest.mark.parametrize("name", ["two_streams", "one_stream", "three_npu_cores"])
def test_deploy_writes_the_variables_the_graph_reads_with_their_defaults(
    name: str, tmp_path: Path
) -> None:
    graph = ROOT / "graphs" / f"{name}.toml"
    res = run_rkpipe("deploy", "systemd", str(graph), "-o", str(tmp_path))
    assert res.returncode == 0, res.stderr
    written = env_assignments((tmp_path / "rkpipe.env").read_text())
    assert written == {v.name: v.default for v in graph_variables(graph)}
    res = run_rkpipe("validate", str(graph), env=written)  # the file as systemd reads it
    assert res.returncode == 0, res.stderr


def test_deploy_leaves_a_variable_without_default_for_the_user_to_set(tmp_path: Path) -> None:
    graph = write_graph(tmp_path, GRAPH)
    res = run_rkpipe("deploy", "systemd", str(graph), "-o", str(tmp_path))
    assert res.returncode == 0, res.stderr
    text = (tmp_path / "rkpipe.env").read_text()
    assert env_assignments(text) == {"RKPIPE_T_FPS": "12.5", "RKPIPE_T_KEEP": "1"}
    assert "# required (the graph has no default): RKPIPE_T_DIR=...\n#RKPIPE_T_DIR=\n" in text
    assert "# stages.out.path\n" in text


def test_the_docs_list_every_variable_the_shipped_graphs_read() -> None:
    """A row per variable: its default, and which graphs read it, as the graphs say."""
    rows = re.findall(
        r"^\| `(RKPIPE_\w+)` \| (`[^`]*`|\(empty\)) \| ([\w, ]+) \|",
        (ROOT / "docs" / "graphs.md").read_text(),
        re.M,
    )
    table = {
        name: ("" if default == "(empty)" else default.strip("`"), set(graphs.split(", ")))
        for name, default, graphs in rows
    }
    read: dict[str, tuple[str, set[str]]] = {}
    for graph in sorted((ROOT / "graphs").glob("*.toml")):
        for v in graph_variables(graph):
            default = v.default or ""
            read.setdefault(v.name, (default, set()))[1].add(graph.stem)
            assert read[v.name][0] == default, f"{v.name}: defaults differ between graphs"
    assert table == read
