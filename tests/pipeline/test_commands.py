"""The small commands a newcomer meets first: ``rkpipe --version``, ``rkpipe stages`` (text and
a JSON Schema that every shipped graph passes), ``rkpipe scene --help`` in plain words, and
``rkpipe deploy`` (a systemd unit that ``systemd-analyze verify`` accepts, a Dockerfile checked
statically: docker cannot build here)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from importlib.metadata import version
from pathlib import Path

import dockerfile
import jsonschema
import pytest

from pipeline.catalog import graph_schema
from pipeline.deploy.cli import template
from pipeline.registry import stage_targets
from support.rkpipe import ROOT, run_rkpipe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib


def test_version_and_help_name_every_command() -> None:
    res = run_rkpipe("--version")
    assert res.returncode == 0 and res.stdout.strip() == f"rkpipe {version('rkpipe')}"
    help_text = run_rkpipe("--help").stdout
    for command in ("run", "validate", "graph", "stages", "deploy", "scene", "export"):
        assert re.search(rf"^\s+{command}\s+\S", help_text, re.M), command


def test_scene_help_has_no_restructuredtext_marks() -> None:
    res = run_rkpipe("scene", "--help")
    assert res.returncode == 0 and "synthetic street clip" in res.stdout
    assert "``" not in res.stdout and "::" not in res.stdout


def test_stages_lists_every_builtin_with_its_options() -> None:
    res = run_rkpipe("stages")
    assert res.returncode == 0, res.stderr
    heads = re.findall(r"^(\w+) \((source|stage)\): ", res.stdout, re.M)
    assert sorted(name for name, _ in heads) == sorted(stage_targets())
    assert ("capture", "source") in heads and ("bytetrack", "stage") in heads
    one = run_rkpipe("stages", "line_crossing").stdout
    assert one.startswith("line_crossing (stage): Count crossings of msg.detections")
    assert re.search(r"^  margin +number, default 3\.0\n +hysteresis band", one, re.M)
    assert re.search(r"^  lines +table, required$", one, re.M)
    assert "snapshot " in one and "``" not in one
    bad = run_rkpipe("stages", "line_crosing")
    assert bad.returncode == 2 and bad.stderr.startswith("rkpipe stages: no built-in")


def graph_files() -> list[Path]:
    return sorted((ROOT / "graphs").glob("*.toml"))


def test_json_schema_is_valid_and_every_shipped_graph_passes_it() -> None:
    res = run_rkpipe("stages", "--json-schema")
    schema = json.loads(res.stdout)
    assert schema == json.loads(json.dumps(graph_schema()))
    jsonschema.Draft202012Validator.check_schema(schema)
    validator = jsonschema.Draft202012Validator(schema)
    assert graph_files()
    for path in graph_files():
        errors = [e.message for e in validator.iter_errors(tomllib.loads(path.read_text()))]
        assert errors == [], path.name


@pytest.mark.parametrize(
    ("table", "where"),
    [
        ({"uses": "bytetrack", "trak_thresh": 0.5}, "trak_thresh"),  # a typo
        ({"uses": "video", "crf": 99}, "crf"),  # out of range
        ({"uses": "line_crossing", "lines": {"*": {"name": "d", "a": [0, 1]}}}, "lines"),
        ({"uses": "zones", "zones": {}, "snapshot": {"kep": 3}}, "snapshot"),
    ],
)
def test_json_schema_catches_what_the_loader_does(table: dict, where: str) -> None:
    validator = jsonschema.Draft202012Validator(graph_schema())
    errors = list(validator.iter_errors({"stages": {"x": table}}))
    assert errors and where in json.dumps([[*e.absolute_path, e.message] for e in errors])


def test_json_schema_takes_the_shorthands_and_environment_strings() -> None:
    validator = jsonschema.Draft202012Validator(graph_schema())
    door = {"name": "door", "a": [0, 1], "b": [5, 1]}
    graph = {
        "pipeline": {"window": "${WINDOW:-2}"},
        "stages": {
            "lines": {"uses": "line_crossing", "lines": {"cam0": door}, "snapshot": True},
            "out": {"uses": "jsonl", "enabled": "${USE_JSONL:-false}", "keep": 3},
        },
    }
    assert [e.message for e in validator.iter_errors(graph)] == []


# -- rkpipe deploy -------------------------------------------------------------------------
def test_deploy_systemd_writes_a_unit_systemd_accepts(tmp_path: Path) -> None:
    graph = ROOT / "graphs" / "two_streams.toml"
    args = ("deploy", "systemd", str(graph), "--workdir", str(tmp_path), "-o", str(tmp_path))
    res = run_rkpipe(*args)
    assert res.returncode == 0, res.stderr
    assert "systemctl enable --now rkpipe" in res.stdout
    unit = (tmp_path / "rkpipe.service").read_text()
    for line in (
        "User=rkpipe",
        f"WorkingDirectory={tmp_path}",
        "EnvironmentFile=-/etc/rkpipe/rkpipe.env",
        f'run "{graph}" --no-live',
        "Restart=on-failure",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "WantedBy=multi-user.target",
    ):
        assert line in unit
    env = tmp_path / "rkpipe.env"
    assert env.stat().st_mode & 0o777 == 0o600 and "RKPIPE_MQTT_PORT=1883\n" in env.read_text()
    env.write_text("RKPIPE_CAM0=rtsp://real:secret@cam/1\n")
    assert run_rkpipe(*args).returncode == 0
    assert "secret" in env.read_text()  # a second run never overwrites the passwords
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed here (the unit was written and read)")
    check = subprocess.run(
        [analyze, "verify", str(tmp_path / "rkpipe.service")], capture_output=True, text=True
    )
    assert check.returncode == 0 and check.stdout + check.stderr == "", check.stderr


def test_deploy_systemd_with_a_missing_graph_is_one_line(tmp_path: Path) -> None:
    res = run_rkpipe("deploy", "systemd", str(tmp_path / "nope.toml"), "-o", str(tmp_path))
    assert res.returncode == 2 and res.stderr.strip() == (
        f"rkpipe deploy: graph {tmp_path / 'nope.toml'} not found"
    )


def test_deploy_docker_writes_the_shipped_dockerfile(tmp_path: Path) -> None:
    res = run_rkpipe("deploy", "docker", "-o", str(tmp_path))
    assert res.returncode == 0, res.stderr
    assert "--ipc=host" in res.stdout and "/dev/rknpu" in res.stdout
    for name in ("Dockerfile", "Dockerfile.dockerignore"):
        assert (tmp_path / name).read_text() == template(name)
    env = (tmp_path / "rkpipe.env").read_text()  # what the image's graph reads
    assert "\nRKPIPE_DECODER=auto\n" in env and "\nRKPIPE_MQTT_HA=false\n" in env


def test_dockerfile_builds_from_the_repository_for_both_architectures() -> None:
    """What a build would need, checked without docker: Docker's own parser reads it; the
    base is the official Python image (published for linux/amd64 and linux/arm64) at a
    version the package supports; every COPY source is in the build context and not
    ignored; it runs as an unprivileged user; the default graph and extras exist."""
    path = ROOT / "pipeline" / "deploy" / "Dockerfile"
    commands = dockerfile.parse_file(str(path))
    (base,) = [c.value[0] for c in commands if c.cmd == "FROM"]
    m = re.fullmatch(r"python:(3\.\d+)-slim-(bookworm|trixie)", base)
    assert m, base
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    least = re.search(r"3\.(\d+)", project["requires-python"])
    assert least and int(m[1].split(".")[1]) >= int(least[1])
    ignored = [
        line.strip().removeprefix("**/")
        for line in (path.parent / "Dockerfile.dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copies = [c.value[:-1] for c in commands if c.cmd == "COPY"]
    for src in (s for srcs in copies for s in srcs):
        assert (ROOT / src).exists(), src
        assert src not in ignored, src
    assert {".venv", ".git", "out"} <= set(ignored)
    users = [c.value[0] for c in commands if c.cmd == "USER"]
    assert users and users[-1] not in ("root", "0")
    entry = [c for c in commands if c.cmd in ("ENTRYPOINT", "CMD")]
    assert [c.value for c in entry] == [
        ("rkpipe",),
        ("run", "graphs/two_streams.toml", "--no-live"),
    ]
    assert (ROOT / "graphs" / "two_streams.toml").is_file()
    (extras,) = [c.value[0] for c in commands if c.cmd == "ARG" and c.value[0].startswith("EX")]
    for extra in extras.split("=", 1)[1].split(","):
        assert extra in project["optional-dependencies"]
    assert "rknn" in project["optional-dependencies"]  # the board's --build-arg
