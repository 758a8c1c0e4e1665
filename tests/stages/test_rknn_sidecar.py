"""The sidecar JSON beside an exported .rknn, and the rknn backend's runtime-version warning.

librknnrt only exists on an RK3588 board, so the version logic is tested with version
strings in the exact forms the runtime prints; the backend test replaces rknnlite with a
stand-in (stated in the test) because the real one cannot load off the board. The same
check against the real runtime is the ``board`` test.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
import types
from pathlib import Path

import pytest

from stages.infer.rknn import RknnBackend
from stages.infer.rknn_sidecar import (
    read_sidecar,
    runtime_version,
    sidecar_path,
    version_warning,
    write_sidecar,
)
from support.rkpipe import ROOT

SDK_OLD = """==============================================
RKNN VERSION:
  API: 2.3.0 (c949ad889d build@2024-11-07T11:35:33)
  DRV: rknn_server: 2.3.0 (e80ac5c build@2024-11-07T12:52:53)
  DRV: rknnrt: 2.3.0 (c949ad889d@2024-11-07T11:35:33)
=============================================="""
SDK_NEW = "DRV: rknnrt: 2.5.0b3 (1b2c3d4e@2025-06-01T10:00:00)"
RUNTIME_LOG = "I RKNN: [10:12:01.000] RKNN Runtime Information, librknnrt version: 2.6.1 (abc@x)"


def test_runtime_version_is_read_from_the_forms_the_runtime_prints():
    assert runtime_version(SDK_OLD) == (2, 3, 0)
    assert runtime_version(SDK_NEW) == (2, 5, 0)
    assert runtime_version(RUNTIME_LOG) == (2, 6, 1)
    assert runtime_version("API: 2.3.0 (no runtime line)") is None


def test_an_older_runtime_than_the_toolkit_is_warned_about(tmp_path):
    model = tmp_path / "m.rknn"
    model.write_bytes(b"rknn")
    write_sidecar(model, {"toolkit_version": "2.5.0", "target": "rk3588"})
    side = read_sidecar(model)
    assert side is not None and side["rknn"] == "m.rknn" and side["schema"] == "rkpipe.rknn/1"
    warning = version_warning(side, SDK_OLD)
    assert warning is not None
    assert "rknn-toolkit2 2.5.0" in warning and "librknnrt is 2.3.0" in warning
    assert version_warning(side, SDK_NEW) is None  # same release (a beta of it) is fine
    assert version_warning(side, RUNTIME_LOG) is None  # newer runtime is fine
    assert version_warning(side, "garbled") is None  # unknown: say nothing rather than guess
    assert version_warning({"toolkit_version": "unknown"}, SDK_OLD) is None


def test_no_or_foreign_sidecar_reads_as_none(tmp_path):
    model = tmp_path / "m.rknn"
    assert read_sidecar(model) is None
    sidecar_path(model).write_text('{"schema": "something else"}')
    assert read_sidecar(model) is None
    sidecar_path(model).write_text("not json")
    assert read_sidecar(model) is None


def _fake_rknnlite(monkeypatch: pytest.MonkeyPatch, sdk: str) -> None:
    """A stand-in for rknnlite: librknnrt cannot load off an RK3588, so this replaces the
    module with one whose calls succeed and whose runtime reports ``sdk``."""

    class RKNNLite:
        NPU_CORE_0, NPU_CORE_1, NPU_CORE_2 = 1, 2, 4

        def __init__(self, verbose: bool = False) -> None:
            pass

        def load_rknn(self, path: str) -> int:
            return 0

        def init_runtime(self, core_mask: int) -> int:
            return 0

        def get_sdk_version(self) -> str:
            return sdk

        def release(self) -> None:
            pass

    api = types.ModuleType("rknnlite.api")
    api.RKNNLite = RKNNLite  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rknnlite", types.ModuleType("rknnlite"))
    monkeypatch.setitem(sys.modules, "rknnlite.api", api)


@pytest.mark.parametrize(("sdk", "warned"), [(SDK_OLD, True), (SDK_NEW, False)])
def test_rknn_backend_warns_when_the_board_runtime_is_older(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, sdk, warned
):
    _fake_rknnlite(monkeypatch, sdk)
    model = tmp_path / "m.rknn"
    model.write_bytes(b"rknn")
    write_sidecar(model, {"toolkit_version": "2.5.0"})
    with caplog.at_level(logging.WARNING, logger="rkpipe"):
        backend = RknnBackend(model, 0, "stages.npu.model")
        backend.close()
    said = [r.getMessage() for r in caplog.records if "librknnrt" in r.getMessage()]
    assert bool(said) == warned, said


@pytest.mark.board
@pytest.mark.skipif(
    importlib.util.find_spec("rknnlite") is None,
    reason="needs an RK3588 board with rknn-toolkit-lite2 and librknnrt (pytest -m board)",
)
def test_on_the_board_the_default_model_loads_and_its_runtime_is_compared(caplog):
    model = ROOT / "models" / "rkpipe-yolov8n.rknn"
    with caplog.at_level(logging.WARNING, logger="rkpipe"):
        backend = RknnBackend(model, 0, "stages.npu.model")
    try:
        sdk = str(backend.rknn.get_sdk_version())
        side = read_sidecar(model)
        assert runtime_version(sdk) is not None, sdk
        expected = version_warning(side, sdk) if side else None
        said = [r.getMessage() for r in caplog.records if "librknnrt" in r.getMessage()]
        assert bool(said) == bool(expected)
    finally:
        backend.close()
