"""The docs stay true to the code: the stage reference is the stages' own schemas, every link
in README.md and docs/ leads somewhere, and the README's graph is the shipped one."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import pytest

from pipeline.catalog import MARKDOWN_COMMAND, markdown
from support.rkpipe import ROOT, run_rkpipe

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

DOCS = sorted((ROOT / "docs").glob("*.md"))
PAGES = [ROOT / "README.md", *DOCS]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_stage_reference_is_generated_from_the_stages() -> None:
    shipped = (ROOT / "docs" / "stages.md").read_text()
    assert shipped == markdown(), f"docs/stages.md is out of date: run `{MARKDOWN_COMMAND}`"


def test_stages_markdown_command_prints_the_reference() -> None:
    res = run_rkpipe("stages", "--markdown")
    assert res.returncode == 0, res.stderr
    assert res.stdout == markdown()
    assert "| `conf` |" in res.stdout.split("## yolov8_decode", 1)[1]  # an option, as a row


def _anchors(page: Path) -> set[str]:
    """GitHub's anchors for a page's headings: lower case, punctuation out, spaces to '-'."""
    heads = re.findall(r"^#+ (.+)$", page.read_text(), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in heads}


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_link_leads_to_a_file_and_heading(page: Path) -> None:
    text = re.sub(r"```.*?```", "", page.read_text(), flags=re.S)  # code is not a link
    for target in LINK.findall(text):
        if re.match(r"[a-z]+:", target):  # http://, mailto: ...
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        assert dest.exists(), f"{page.name}: link to {target!r}: no such file"
        if anchor:
            assert anchor in _anchors(dest), f"{page.name}: link to {target!r}: no such heading"


def test_readme_lists_every_page_in_docs() -> None:
    readme = (ROOT / "README.md").read_text()
    assert [p.name for p in DOCS if f"(docs/{p.name})" not in readme] == []


def test_readme_graph_is_the_headline_graph_in_short() -> None:
    readme = (ROOT / "README.md").read_text()
    block = re.search(r"## One graph\n.*?```toml\n(.*?)```", readme, re.S)
    assert block, "no toml block under '## One graph' in README.md"
    shown = tomllib.loads(block.group(1))
    shipped = tomllib.loads((ROOT / "graphs" / "two_streams.toml").read_text())
    assert shown["pipeline"].items() <= shipped["pipeline"].items()
    for name, table in shown["stages"].items():
        assert table.items() <= shipped["stages"][name].items(), name
