"""``rkpipe doctor`` on fixture machines (``--root``: the sysfs, procfs and library files an
RK3588 board or an x86 box has, healthy and broken as people report them), and on graphs:
their CPUs, their shared memory, their model, their broker.

The video tools (ffmpeg, GStreamer, OpenCV) are this machine's own, whatever the root."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from pipeline.doctor.check import Check
from pipeline.doctor.cli import run_checks
from pipeline.doctor.npu import required_driver
from support.graph import Graph
from support.machines import rk3588_board, x86_box
from support.mosquitto import Broker, broker_fixture  # noqa: F401  (the broker fixture)
from support.rkpipe import ROOT, run_rkpipe

RKNN_MODEL = ROOT / "models" / "rkpipe-yolov8n.rknn"  # built by rknn-toolkit2 2.5.0
ONNX_MODEL = ROOT / "models" / "rkpipe-yolov8n.onnx"


def by_name(checks: list[Check]) -> dict[str, Check]:
    return {c.name: c for c in checks}


def test_a_healthy_board_passes_with_its_facts_shown(tmp_path: Path) -> None:
    res = run_rkpipe("doctor", "--root", str(rk3588_board(tmp_path)))
    assert res.returncode == 0, res.stdout
    out = res.stdout
    assert f"rkpipe doctor: the machine under {tmp_path}" in out
    for line in (
        "ok    SoC",
        "Rockchip RK3588 (radxa,rock-5b)",
        "0-7: big 4-7, little 0-3 (cpu_capacity)",
        "rknpu 0.9.8",
        "2.3.0 (/usr/lib/librknnrt.so)",
        "librknnrt 2.3.0 = toolkit-lite2 2.3.0",
        "rknpu 0.9.8 >= 0.9.8",
        "NPU load: Core0: 0%, Core1: 0%, Core2: 0%,",
    ):
        assert line in out, line
    assert "FAIL" not in out and "nothing required is missing" in out


def test_an_old_npu_driver_fails_with_the_fix(tmp_path: Path) -> None:
    res = run_rkpipe("doctor", "--root", str(rk3588_board(tmp_path, driver="0.8.2")))
    assert res.returncode == 1
    assert "FAIL  driver for runtime" in res.stdout
    assert "librknnrt 2.3.0 needs rknpu >= 0.9.8; the kernel has 0.8.2" in res.stdout
    assert "fix: run a vendor kernel with a newer rknpu driver" in res.stdout
    assert "1 required check(s) failed" in res.stdout and "Traceback" not in res.stderr


def test_a_runtime_that_does_not_match_the_toolkit_fails(tmp_path: Path) -> None:
    checks = by_name(run_checks(rk3588_board(tmp_path, runtime="1.6.0", toolkit="2.3.0")))
    pair = checks["runtime pair"]
    assert pair.status == "fail"
    assert pair.detail.startswith("rknn-toolkit-lite2 2.3.0 with librknnrt 1.6.0")
    assert "rknpu2/runtime/Linux/librknn_api/aarch64/" in pair.fix
    assert checks["driver for runtime"].detail == "rknpu 0.9.8 >= 0.9.3"


def test_missing_npu_software_is_required(tmp_path: Path) -> None:
    checks = by_name(run_checks(rk3588_board(tmp_path, driver=None, runtime=None, toolkit=None)))
    assert {checks[n].status for n in ("NPU driver", "librknnrt", "rknn-toolkit-lite2")} == {"fail"}


def test_without_debugfs_the_driver_version_comes_from_the_kernel_log(tmp_path: Path) -> None:
    checks = by_name(run_checks(rk3588_board(tmp_path, debugfs=False)))
    assert checks["NPU driver"] == Check("NPU driver", "ok", "rknpu 0.9.8")
    assert checks["NPU load"].status == "warn" and "root" in checks["NPU load"].fix


def test_slow_clocks_and_heat_are_warnings(tmp_path: Path) -> None:
    checks = by_name(run_checks(rk3588_board(tmp_path, governor="ondemand", temp_c=84)))
    governor = checks["CPU governor"]
    assert governor.status == "warn" and "CPUs 0-3 ondemand; CPUs 4-5 ondemand" in governor.detail
    assert "scaling_governor" in governor.fix
    assert checks["NPU governor"].status == "warn" and "fdab0000.npu" in checks["NPU governor"].fix
    assert checks["temperature"].status == "warn" and "84.0 °C" in checks["temperature"].detail


def test_an_x86_box_skips_the_npu_and_warns_of_a_small_shm(tmp_path: Path) -> None:
    checks = by_name(run_checks(x86_box(tmp_path, cpus=4)))
    assert checks["SoC"].status == "info" and checks["NPU"].status == "info"
    assert checks["CPU topology"].detail == "0-3, all alike (uniform)"
    assert checks["/dev/shm"].status == "warn" and checks["/dev/shm"].detail.startswith("64 MB")
    assert "--shm-size" in checks["/dev/shm"].fix
    assert not any(c.status == "fail" for c in checks.values())


def test_required_driver_follows_rockchip_release_notes() -> None:
    assert required_driver("1.6.0") == "0.9.3"
    assert required_driver("2.0.0b0+9bab5682") == "0.9.6"
    assert required_driver("2.2.0") == "0.9.6"
    assert required_driver("2.3.2") == "0.9.8"
    assert required_driver("1.4.0") is None


# -- a graph's needs ---------------------------------------------------------------------------
def doctor_graph(
    cpus: Any = (0,), pre: dict[str, Any] | None = None, mqtt: dict[str, Any] | None = None
) -> Graph:
    """A capture on ``cpus`` into JSONL; with ``pre``, a letterbox with those options; with
    ``mqtt``, an mqtt sink with those."""
    graph = (
        Graph()
        .source("cam0", uses="capture", source="synthetic:street?width=640&height=360", cpus=cpus)
        .sink("out", uses="jsonl", inputs=["cam0"], path="out.jsonl")
    )
    if pre is not None:
        graph.stage("pre", uses="letterbox", inputs=["cam0"], **pre)
    if mqtt is not None:
        graph.sink("mqtt", uses="mqtt", inputs=["cam0"], **mqtt)
    return graph


def test_a_graph_that_wants_cores_the_machine_lacks_fails(tmp_path: Path) -> None:
    graph = doctor_graph(cpus=[6]).write(tmp_path)
    res = run_rkpipe("doctor", "--root", str(x86_box(tmp_path / "box", cpus=4)), str(graph))
    assert res.returncode == 1
    assert "FAIL  graph" in res.stdout and "stages.cam0.cpus: CPU [6] not present" in res.stdout
    named = doctor_graph(cpus="big:2").write(tmp_path, "named.toml")
    ok = run_rkpipe("doctor", "--root", str(rk3588_board(tmp_path / "board")), str(named))
    assert "ok    graph" in ok.stdout, ok.stdout


def test_the_graphs_frame_pools_are_checked_against_dev_shm(tmp_path: Path) -> None:
    graph = doctor_graph(pre={"layout": "nchw_float"}).write(tmp_path)
    checks = by_name(run_checks(x86_box(tmp_path / "small", shm_size="16m"), graph))
    shm = checks["/dev/shm for the graph"]
    assert shm.status == "fail" and shm.detail.endswith("of 16 MB") and "--shm-size" in shm.fix
    roomy = by_name(run_checks(x86_box(tmp_path / "roomy", shm_size="2g"), graph))
    assert roomy["/dev/shm for the graph"].status == "ok"


def model_graph(tmp_path: Path, model: Path) -> Path:
    graph = doctor_graph(pre={"layout": "nhwc_uint8"})
    return graph.stage("npu", uses="infer", inputs=["pre"], model=model).write(tmp_path)


def test_the_model_is_loaded_and_a_broken_one_fails(tmp_path: Path) -> None:
    checks = by_name(run_checks(x86_box(tmp_path / "box"), model_graph(tmp_path, ONNX_MODEL)))
    assert (
        checks["npu: model"].status == "ok"
        and "loads in ONNX Runtime" in checks["npu: model"].detail
    )
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(ONNX_MODEL.read_bytes()[:5000])
    checks = by_name(run_checks(x86_box(tmp_path / "box"), model_graph(tmp_path, broken)))
    assert (
        checks["npu: model"].status == "fail"
        and "broken.onnx does not load" in checks["npu: model"].detail
    )


def test_an_rknn_model_newer_than_the_boards_runtime_fails(tmp_path: Path) -> None:
    graph = model_graph(tmp_path, RKNN_MODEL)
    checks = by_name(run_checks(rk3588_board(tmp_path / "board"), graph))  # librknnrt 2.3.0
    assert (
        checks["npu: model"].detail
        == "rkpipe-yolov8n.rknn: built by rknn-toolkit2 2.5.0 for rk3588"
    )
    newer = checks["npu: model runtime"]
    assert newer.status == "fail" and "this board's librknnrt is 2.3.0" in newer.detail
    current = by_name(
        run_checks(rk3588_board(tmp_path / "new", runtime="2.5.0", toolkit="2.5.0"), graph)
    )
    assert "npu: model runtime" not in current


@pytest.mark.integration
def test_the_graphs_broker_must_answer(tmp_path: Path, broker: Broker) -> None:
    graph = doctor_graph(mqtt={"host": "127.0.0.1", "port": broker.port}).write(tmp_path)
    checks = by_name(run_checks(x86_box(tmp_path / "box"), graph))
    assert checks["mqtt: broker"] == Check("mqtt: broker", "ok", f"127.0.0.1:{broker.port} answers")
    broker.stop()
    res = run_rkpipe(
        "doctor", "--root", str(tmp_path / "box"), str(graph), "--json", str(tmp_path / "d.json")
    )
    assert res.returncode == 1
    assert (
        f"FAIL  mqtt: broker            127.0.0.1:{broker.port}: Connection refused" in res.stdout
    )
    saved = {c["name"]: c for c in json.loads((tmp_path / "d.json").read_text())}
    assert (
        saved["mqtt: broker"]["status"] == "fail"
        and "start the broker" in saved["mqtt: broker"]["fix"]
    )
