"""Names of every allowed length keep the books exact, end to end: a stage or stream name
becomes part of ledger keys (``pipeline.accounting.keys``), which are never cut to fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.accounting.keys import KEY_BYTES, NAME_MAX, check_names, longest_key
from pipeline.names import MAX_PIPELINE_NAME
from support.rkpipe import read_jsonl, run_rkpipe, write_graph

pytestmark = pytest.mark.integration


def test_the_longest_names_make_keys_that_fit_the_ledger() -> None:
    assert longest_key() <= KEY_BYTES
    assert check_names(["a" * NAME_MAX, "b" * NAME_MAX]) == []
    assert check_names(["a" * (NAME_MAX + 1)])  # past the graph's rule: refused


def _names(n: int) -> tuple[str, str, str]:
    """A source, a middle stage and a sink whose names are ``n`` characters long."""
    return ("c" * n), ("m" * (n - 1) + "x")[:n], ("s" * (n - 1) + "k")[:n]


@pytest.mark.parametrize("n", [1, 30, 46, 50, 60, 63, NAME_MAX])
def test_names_of_any_allowed_length_are_exact_through_a_crash_and_a_restart(
    tmp_path: Path, n: int, no_leaks
) -> None:
    src, mid, sink = _names(n)
    graph = write_graph(
        tmp_path,
        f"""
[pipeline]
name = "{"p" * min(n, MAX_PIPELINE_NAME)}"
[stages.{src}]
uses = "synthetic"
frames = 40
[stages.{mid}]
uses = "rk_test_stages:CrashOnSeq"
inputs = ["{src}"]
seq = 12
replicas = 2
[stages.{sink}]
uses = "jsonl"
inputs = ["{mid}"]
path = "{tmp_path}/out.jsonl"
""",
    )
    res = run_rkpipe("run", str(graph), "--stats-out", str(tmp_path / "stats.json"))
    assert res.returncode == 0, res.stderr
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["exact"], res.stderr
    account = stats["streams"][src]["sinks"][sink]
    seqs = [r["seq"] for r in read_jsonl(tmp_path / "out.jsonl")]
    assert seqs == sorted(set(seqs))  # in order, none twice
    assert account["delivered"] == len(seqs)
    assert account["delivered"] + account["dropped"] == 40
    assert set(account["dropped_by_reason"]) <= {f"crashed@{mid}"}
