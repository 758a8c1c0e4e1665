"""What the supervisor leaves a running stage process at a reload, read back as written: new
inputs (a source added) with its sources and certificates; anything else is refused with a
reason, never half read."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from pipeline.runtime import reconfigure

INPUTS = [("cam0", "cam0", "ipc:///run/cam0.sock"), ("cam2", "cam2", "tcp://10.0.0.2:5600")]


def test_new_inputs_come_back_as_they_were_written(tmp_path: Path) -> None:
    assert reconfigure.read_inputs(tmp_path, "pre") is None  # none left: nothing to connect
    reconfigure.write_inputs(tmp_path, "pre", INPUTS, ["cam0", "cam2"], {"cam2": "/k/cam2.key"})
    assert reconfigure.read_inputs(tmp_path, "pre") == (
        INPUTS,
        ["cam0", "cam2"],
        {"cam2": "/k/cam2.key"},
        [],  # no producer that ended runs again
    )
    reconfigure.write_inputs(tmp_path, "post", INPUTS, [], renewed=["npu.2"])
    assert reconfigure.read_inputs(tmp_path, "post") == (INPUTS, [], {}, ["npu.2"])
    assert oct(reconfigure.inputs_path(tmp_path, "pre").parent.stat().st_mode & 0o777) == "0o700"


@pytest.mark.parametrize(
    "data",
    [[], {"inputs": [["cam0", "cam0"]], "sources": []}, {"inputs": [], "sources": "cam0"},
     {"inputs": [], "sources": [], "curve": ["x"]}],
    ids=["not-a-table", "short-input", "sources-not-a-list", "curve-not-a-table"],
)  # fmt: skip
def test_a_file_that_is_not_what_was_written_is_refused(tmp_path: Path, data: object) -> None:
    path = reconfigure.inputs_path(tmp_path, "pre")
    path.parent.mkdir()
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError):
        reconfigure.read_inputs(tmp_path, "pre")
