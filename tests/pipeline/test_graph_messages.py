"""Errors in rkpipe's words: a wrong value in any option of the shipped graphs gets a line
without the validation library's phrasing, a point with too many or too few values says
so, and a model's error names its path once."""

from __future__ import annotations

import copy
import re
import sys
from pathlib import Path

import pytest
import tomlkit

from pipeline.errors import GraphError, ModelError
from pipeline.graph.load import load_graph
from pipeline.testing import run_stage
from stages.infer.stage import Infer
from support.rkpipe import ROOT, write_graph

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

LIBRARY_WORDS = re.compile(
    r"after validation|Input should|Value error|Field required|unable to|should have|"
    r"Tuple|Dictionary|fractional part"
)
WRONG = [[1, 2, 3], "x", -1, {"q": 1}, [], [[1, 2, 3]], 1.5, True]


def problems(graph: Path) -> list[str]:
    try:
        load_graph(graph)
    except GraphError as exc:
        return str(exc).splitlines()
    return []


@pytest.mark.parametrize("name", ["two_streams", "one_stream"])
def test_a_wrong_value_anywhere_in_a_shipped_graph_is_said_in_rkpipes_words(
    name: str, tmp_path: Path
) -> None:
    (tmp_path / "models").symlink_to(ROOT / "models")
    (tmp_path / "graphs").mkdir()
    graph = tmp_path / "graphs" / "g.toml"
    base = tomllib.loads((ROOT / "graphs" / f"{name}.toml").read_text())
    seen = 0
    for stage, table in base["stages"].items():
        for key in [k for k in table if k != "uses"]:
            for value in WRONG:
                wrong = copy.deepcopy(base)
                wrong["stages"][stage][key] = value
                graph.write_text(tomlkit.dumps(wrong))
                for line in problems(graph):
                    seen += 1
                    assert not LIBRARY_WORDS.search(line), line
                    assert line.count(", got ") <= 1, line
    assert seen > 100  # most wrong values were refused


LINE = '[stages.cam0]\nuses = "synthetic"\n[stages.a]\nuses = "line_crossing"\ninputs = ["cam0"]\n'


@pytest.mark.parametrize(
    ("point", "said"),
    [
        ("[1500, 900, 3]", "stages.a.lines.cam0.0.a: expected 2 values, got 3: [1500, 900, 3]"),
        ("[1500]", "stages.a.lines.cam0.0.a: expected more values (item 2 is missing), got [1500]"),
    ],
)
def test_a_point_with_the_wrong_number_of_values_says_how_many(
    point: str, said: str, tmp_path: Path
) -> None:
    graph = write_graph(tmp_path, f'{LINE}lines.cam0 = {{ name = "d", a = {point}, b = [5, 1] }}\n')
    (line,) = problems(graph)
    assert line.endswith(said), line


def test_a_lines_too_few_points_and_wrong_kinds_are_plain_words(tmp_path: Path) -> None:
    graph = write_graph(tmp_path, f"{LINE}lines.cam0 = []\nsnapshot_every_s = 1.5\nmargin = true\n")
    lines = problems(graph)
    assert any("no lines given" in line for line in lines), lines
    graph = write_graph(tmp_path, LINE + 'lines.cam0 = { name = "d", a = [0, 1], b = [5, 1] }\n'
                        'classes = 3\n[stages.a.snapshot]\ncrop = "maybe"\n')  # fmt: skip
    lines = problems(graph)
    assert any(line.endswith("stages.a.snapshot.crop: expected true or false, got 'maybe'")
               for line in lines), lines  # fmt: skip


def test_a_missing_model_names_its_path_once(tmp_path: Path) -> None:
    graph = write_graph(
        tmp_path,
        '[stages.cam0]\nuses = "synthetic"\n[stages.det]\nuses = "infer"\ninputs = ["cam0"]\n'
        'model = "models/nope.onnx"\n',
    )
    (line,) = problems(graph)
    assert line.endswith(f"stages.det.model: model file {tmp_path}/models/nope.onnx not found")
    assert line.count("nope.onnx") == 1


def test_a_model_onnx_runtime_cannot_read_names_its_path_once(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all")
    with pytest.raises(ModelError) as err:
        run_stage(Infer(model="junk.onnx"), [], graph_dir=tmp_path)
    text = str(err.value)
    assert text.count("junk.onnx") == 1 and "[ONNXRuntimeError]" not in text, text
    assert text.endswith(": Protobuf parsing failed (INVALID_PROTOBUF: not an ONNX file, or a "
                         "damaged one)"), text  # fmt: skip
