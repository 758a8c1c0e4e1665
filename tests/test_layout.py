"""Where things live: a built-in named X in a graph is found at stages/X, and the runtime core
depends on no built-in."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from pipeline.registry import stage_targets
from support.rkpipe import ROOT


@pytest.mark.parametrize("name", sorted(stage_targets()))
def test_a_built_in_lives_under_its_short_name(name: str) -> None:
    module = stage_targets()[name].split(":")[0]
    parts = module.split(".")
    assert parts[0] == "stages"
    place = parts[1:3] if parts[1] == "sinks" else parts[1:2]
    assert place[-1] == name, f'"{name}" is registered as {module}, not under stages/.../{name}'
    path = ROOT.joinpath(*parts[:-1], parts[-1])
    assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text())
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return names


def test_the_runtime_core_imports_no_built_in_stage() -> None:
    offenders = {
        str(p.relative_to(ROOT)): sorted(n for n in _imports(p) if n.split(".")[0] == "stages")
        for p in (ROOT / "pipeline").rglob("*.py")
    }
    assert {k: v for k, v in offenders.items() if v} == {}


def test_tests_share_helpers_through_support_not_conftest() -> None:
    users = [
        str(p.relative_to(ROOT))
        for p in (ROOT / "tests").rglob("*.py")
        if "conftest" in _imports(p) or any(n.startswith("conftest.") for n in _imports(p))
    ]
    assert users == []
