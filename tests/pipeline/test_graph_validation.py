"""Graph files are validated before any process starts; each error names file, line, stage,
key and what was expected, exits with status 2 and prints no traceback."""

from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.errors import GraphError, StageSetupError
from pipeline.graph.load import load_graph
from pipeline.outputs import prepare_outputs
from stages.sinks.jsonl import JsonlSink
from stages.sinks.mqtt import MqttSink
from support.rkpipe import read_jsonl, run_rkpipe

INVALID = Path(__file__).parent / "graphs" / "invalid"

# file in tests/graphs/invalid -> fragments the message must contain
CASES = {
    "syntax_error.toml": ["syntax_error.toml", "TOML syntax error", "line 4"],
    "unknown_uses.toml": [
        "unknown_uses.toml:6",
        "stages.pre.uses",
        'unknown stage "passthrugh"',
        'did you mean "passthrough"',
    ],
    "unknown_input.toml": [
        "unknown_input.toml:8",
        "stages.out.inputs",
        'unknown stage "cam"',
        'did you mean "cam0"',
    ],
    "cycle.toml": ["stages.", "cycle:", "a -> b -> a"],
    "unknown_option.toml": ["unknown_option.toml:5", "stages.cam0.fsp", "unknown option"],
    "mistyped_option.toml": [
        "mistyped_option.toml:5",
        "stages.cam0.fps",
        "expected a valid number",
        "'fast'",
    ],
    "out_of_range.toml": ["stages.cam0.width", "greater than or equal to 16", "got 4"],
    "missing_cpu.toml": [
        "missing_cpu.toml:5",
        "stages.cam0.cpus",
        "CPU [4096] not present on this machine",
    ],
    "bad_module.toml": [
        "stages.pre.uses",
        'cannot import "no_such_module_xyz"',
        "ModuleNotFoundError",
    ],
    "bad_file.toml": ["stages.pre.uses", 'stage file "missing_stage.py" not found'],
    "broken_file.toml": ["stages.pre.uses", 'cannot import "broken_stage.py"', "ZeroDivisionError"],
    "no_class.toml": ["stages.pre.uses", "has no class", "Nope"],
    "source_with_inputs.toml": ["stages.cam1.inputs", "is a source and takes no inputs"],
    "no_inputs.toml": ["stages.pre.inputs", "expected a list of stage names"],
    "unknown_table.toml": ["unknown_table.toml:1", "stagez", "unknown table"],
    "bad_pipeline_setting.toml": ["pipeline.window", "greater than or equal to 1"],
    "replicated_sink.toml": ["stages.out.replicas", "keeps per-stream state"],
    "replicas_and_npu_cores.toml": ["stages.npu.replicas", "sets its own processes", "npu_cores"],
    "unset_env.toml": [
        "unset_env.toml:6",
        "stages.out.path",
        "environment variable RKPIPE_TEST_UNSET_VAR is not set",
    ],
    "disabled_input.toml": ["stages.out.inputs", 'stage "pre" is disabled'],
    "bad_stage_name.toml": [
        "bad_stage_name.toml:5",
        'stages."../../x"',
        "stage name '../../x' is not allowed: use 1-64 letters, digits, _ or -",
    ],
    "long_stage_name.toml": ["long_stage_name.toml:4", "is not allowed: use 1-64 letters"],
    "reserved_stage_name.toml": [
        "reserved_stage_name.toml:5 stages.control:",
        "is taken by the supervisor's control socket <run folder>/control.sock; rename",
    ],
    "line_name_two_levels.toml": [
        "line_name_two_levels.toml:8 stages.lines.lines.cam0.0.name:",
        "line name 'gate/north' holds '/', the topic level separator",
    ],
    "names_that_collide.toml": [
        "names_that_collide.toml:8 stages.lines.lines:",
        "line names 'front door' and 'Front_Door' of stream 'cam0' differ only in case",
    ],
    "unwritable_output.toml": [
        "unwritable_output.toml:8",
        "stages.out.path: cannot write '/proc/rkpipe-nowhere/events.jsonl'",
        "cannot write in folder /proc (to make /proc/rkpipe-nowhere)",
    ],
    "bad_output_template.toml": [
        "bad_output_template.toml:7",
        "stages.out.path: 'out/{camera}.mp4': only {stream} may be used in a path",
    ],
    "misspelt_option.toml": [
        'misspelt_option.toml:6 stages.post.input: unknown option; did you mean "inputs"?',
        "misspelt_option.toml:11 stages.lines.lines.cam0.0.revelative: unknown option; "
        'did you mean "relative"?',
        "misspelt_option.toml:12 stages.lines.snapshot_evry_s: unknown option; "
        'did you mean "snapshot_every_s"?',
    ],
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_invalid_graph_reports_clear_error(name: str) -> None:
    with pytest.raises(GraphError) as info:
        load_graph(INVALID / name)
    text = str(info.value)
    for fragment in CASES[name]:
        assert fragment in text, f"{fragment!r} not in:\n{text}"


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(GraphError) as info:
        load_graph(INVALID / "many_errors.toml")
    assert len(info.value.problems) == 3, info.value.problems


def test_missing_graph_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(GraphError, match=r"nope\.toml: graph file not found"):
        load_graph(tmp_path / "nope.toml")


@pytest.mark.parametrize("command", ["validate", "run", "graph"])
@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("unknown_option.toml", 'stages.cam0.fsp: unknown option; did you mean "fps"?'),
        ("bad_stage_name.toml", "stage name '../../x' is not allowed"),
        ("reserved_stage_name.toml", 'stage name "control" is taken'),
        ("line_name_two_levels.toml", "holds '/', the topic level separator"),
        ("unwritable_output.toml", "stages.out.path: cannot write"),
    ],
)
def test_cli_exits_2_without_traceback(command: str, name: str, says: str) -> None:
    res = run_rkpipe(command, str(INVALID / name))
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert says in res.stderr
    assert not Path("/x.sock").exists()


def test_output_folders_that_can_be_made_are_fine(tmp_path: Path) -> None:
    """A folder that does not exist yet is made at setup; validation makes nothing."""
    graph = tmp_path / "g.toml"
    graph.write_text(
        '[stages.cam0]\nuses = "synthetic"\nframes = 3\n'
        '[stages.out]\nuses = "jsonl"\ninputs = ["cam0"]\n'
        f'path = "{tmp_path}/a/b/{{stream}}.jsonl"\n'
        '[stages.video]\nuses = "video"\ninputs = ["cam0"]\n'
        f'path = "{tmp_path}/v/{{stream}}/x.mp4"\n'
    )
    assert run_rkpipe("validate", str(graph)).returncode == 0
    assert not (tmp_path / "a").exists()
    res = run_rkpipe("run", str(graph))
    assert res.returncode == 0, res.stderr
    assert len(read_jsonl(tmp_path / "a" / "b" / "cam0.jsonl")) == 3
    assert (tmp_path / "v" / "cam0" / "x.mp4").stat().st_size > 0
    assert not list(tmp_path.glob("**/.rkpipe-probe-*"))


def test_output_checked_again_at_setup(tmp_path: Path) -> None:
    """What changed between validation and a stage's start (here: a file now stands where
    the folder should be) is one clear setup error naming the stage and key."""
    (tmp_path / "spool").write_text("not a folder")
    config = MqttSink.Config(spool_dir=str(tmp_path / "spool"))
    with pytest.raises(
        StageSetupError, match=r"stages\.m\.spool_dir: cannot write '.*spool': .* is not a folder"
    ):
        prepare_outputs(config, "m", tmp_path)
    config = JsonlSink.Config(path=str(tmp_path / "new" / "{stream}" / "e.jsonl"))
    prepare_outputs(config, "out", tmp_path)
    assert (tmp_path / "new").is_dir() and not list((tmp_path / "new").iterdir())


def test_stats_out_that_cannot_be_written_fails_before_the_run(tmp_path: Path) -> None:
    graph = tmp_path / "g.toml"
    graph.write_text(
        '[stages.cam0]\nuses = "synthetic"\n[stages.out]\nuses = "passthrough"\ninputs = ["cam0"]\n'
    )
    res = run_rkpipe("run", str(graph), "--stats-out", "/proc/rkpipe-nowhere/stats.json")
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "--stats-out: cannot write /proc/rkpipe-nowhere/stats.json" in res.stderr
    assert "processes running" not in res.stderr


def test_validate_for_another_machine_cpus() -> None:
    res = run_rkpipe("validate", "--cpus", "0-4096", str(INVALID / "missing_cpu.toml"))
    assert res.returncode == 0, res.stderr


def test_cli_help_for_each_command() -> None:
    for command in ("run", "validate", "graph"):
        res = run_rkpipe(command, "--help")
        assert res.returncode == 0 and "usage: rkpipe" in res.stdout


def test_environment_variables_fill_values_and_defaults(tmp_path: Path, monkeypatch) -> None:
    """Per-site values (a broker host, a camera URL) come from the environment."""
    graph = tmp_path / "g.toml"
    graph.write_text(
        '[pipeline]\nwindow = "${RKPIPE_T_WINDOW}"\n'
        '[stages.cam0]\nuses = "synthetic"\nfps = "${RKPIPE_T_FPS:-12.5}"\n'
        '[stages.out]\nuses = "jsonl"\ninputs = ["cam0"]\npath = "${RKPIPE_T_DIR}/e.jsonl"\n'
    )
    monkeypatch.setenv("RKPIPE_T_WINDOW", "3")
    monkeypatch.setenv("RKPIPE_T_DIR", "/data")
    g = load_graph(graph)
    assert g.settings.window == 3
    assert g.stages["cam0"].config.fps == 12.5
    assert g.stages["out"].config.path == "/data/e.jsonl"


def test_disabled_stage_is_validated_but_left_out(tmp_path: Path) -> None:
    graph = tmp_path / "g.toml"
    body = '[stages.cam0]\nuses = "synthetic"\n[stages.out]\nuses = "jsonl"\ninputs = ["cam0"]\n'
    graph.write_text(body + '[stages.extra]\nuses = "jsonl"\ninputs = ["cam0"]\nenabled = false\n')
    assert set(load_graph(graph).stages) == {"cam0", "out"}
    graph.write_text(
        body + '[stages.extra]\nuses = "jsonl"\ninputs = ["cam0"]\nenabled = false\nflush = 1\n'
    )
    with pytest.raises(GraphError, match=r"stages\.extra\.flush: unknown option"):
        load_graph(graph)


def test_missing_model_file_is_a_graph_error_at_its_key(tmp_path: Path) -> None:
    graph = tmp_path / "g.toml"
    graph.write_text(
        '[stages.cam0]\nuses = "synthetic"\n'
        '[stages.det]\nuses = "infer"\ninputs = ["cam0"]\nmodel = "models/nope.onnx"\n'
    )
    res = run_rkpipe("validate", str(graph))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert f"g.toml:6 stages.det.model: model file {tmp_path}/models/nope.onnx not found" in (
        res.stderr
    )
