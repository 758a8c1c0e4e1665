"""The inference stage: ONNX Runtime against a tiny real model, the rknn backend's message off
the board, the simulated NPU's outputs and core sharing, and per-core replicas."""

from __future__ import annotations

import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.errors import ModelError, StageSetupError
from pipeline.messages import Message
from pipeline.stage import Context
from pipeline.testing import run_stage
from stages.infer import Infer
from stages.infer.sim import LOCK_DIR_ENV, SimBackend


@pytest.fixture(autouse=True)
def private_sim_locks(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Simulated cores of this test only, so a benchmark running beside it cannot slow it."""
    monkeypatch.setenv(LOCK_DIR_ENV, str(tmp_path))


def tiny_onnx(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """A real ONNX model: x (1,3,64,64) -> [Conv(x, w, b) 3x3 pad 1, 2 * x]; returns w, b."""
    onnx = pytest.importorskip("onnx", reason="the onnx package builds the test model")
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(1)
    w = rng.normal(0, 0.5, (2, 3, 3, 3)).astype(np.float32)
    b = np.array([0.25, -1.0], np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["x", "w", "b"], ["conv"], pads=[1, 1, 1, 1]),
            helper.make_node("Mul", ["x", "two"], ["double"]),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 64, 64])],
        [
            helper.make_tensor_value_info("conv", TensorProto.FLOAT, [1, 2, 64, 64]),
            helper.make_tensor_value_info("double", TensorProto.FLOAT, [1, 3, 64, 64]),
        ],
        initializer=[
            numpy_helper.from_array(w, "w"),
            numpy_helper.from_array(b, "b"),
            numpy_helper.from_array(np.array(2.0, np.float32), "two"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8  # readable by any onnxruntime we support
    onnx.checker.check_model(model)
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return w, b


def conv3x3(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Conv2d stride 1 pad 1 in numpy, (1,C,H,W) -> (1,K,H,W)."""
    padded = np.pad(x[0], ((0, 0), (1, 1), (1, 1)))
    windows = np.lib.stride_tricks.sliding_window_view(padded, (3, 3), axis=(1, 2))
    return (np.einsum("chwij,kcij->khw", windows, w) + b[:, None, None])[None]


def msg_with(tensor: np.ndarray, seq: int = 0) -> Message:
    return Message(stream="cam", seq=seq, arrays={"tensor": tensor, "frame": np.zeros((4, 4, 3))})


def test_onnx_outputs_match_runtime_and_math(tmp_path: Path) -> None:
    import onnxruntime as ort

    w, b = tiny_onnx(tmp_path / "models" / "tiny.onnx")
    xs = [np.random.default_rng(i).normal(size=(1, 3, 64, 64)).astype(np.float32) for i in (0, 1)]
    stage = Infer(model="models/tiny.onnx")  # relative to the graph file's folder
    out = run_stage(stage, [msg_with(x, i) for i, x in enumerate(xs)], graph_dir=tmp_path)

    session = ort.InferenceSession(str(tmp_path / "models" / "tiny.onnx"))
    assert len(out) == 2
    for msg, x in zip(out, xs, strict=True):
        assert sorted(msg.arrays) == ["frame", "out.0", "out.1"]  # input tensor removed
        direct = session.run(None, {"x": x})
        np.testing.assert_array_equal(msg.arrays["out.0"], direct[0])
        np.testing.assert_array_equal(msg.arrays["out.1"], direct[1])
        np.testing.assert_allclose(msg.arrays["out.0"], conv3x3(x, w, b), rtol=1e-4, atol=1e-4)
        np.testing.assert_array_equal(msg.arrays["out.1"], 2 * x)
        assert msg.meta["infer_ms"] >= 0


def test_onnx_adds_batch_axis_and_rejects_wrong_input(tmp_path: Path) -> None:
    tiny_onnx(tmp_path / "tiny.onnx")
    x = np.ones((3, 64, 64), np.float32)
    (msg,) = run_stage(Infer(model=str(tmp_path / "tiny.onnx"), threads=1), [msg_with(x)])
    assert msg.arrays["out.1"].shape == (1, 3, 64, 64)

    wrong = np.zeros((1, 64, 64, 3), np.uint8)
    with pytest.raises(
        ModelError, match=r"takes float32 \[1,3,64,64\], got uint8 \[1, 64, 64, 3\]"
    ):
        run_stage(Infer(model=str(tmp_path / "tiny.onnx")), [msg_with(wrong)])


def test_missing_model_names_the_file(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match=r"model file .*nowhere\.onnx not found") as err:
        run_stage(Infer(model="nowhere.onnx"), [], graph_dir=tmp_path)
    assert "(stages.Infer.model)" in str(err.value)
    assert "\n" not in str(err.value)


def test_invalid_onnx_model_is_a_model_error(tmp_path: Path) -> None:
    (tmp_path / "junk.onnx").write_bytes(b"not a model at all")
    with pytest.raises(ModelError, match=r"cannot load ONNX model .*junk\.onnx: .+") as err:
        run_stage(Infer(model="junk.onnx"), [], graph_dir=tmp_path)
    assert "\n" not in str(err.value)


def test_missing_input_array_says_what_is_there(tmp_path: Path) -> None:
    stage = Infer(model="sim:yolov8n", sim_ms=0, input="blob")
    with pytest.raises(StageSetupError, match=r"no array 'blob'.*it has: frame, tensor"):
        run_stage(stage, [msg_with(np.zeros((1, 3, 640, 640), np.float32))])


def test_rknn_off_the_board_says_how_to_install(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The RK3588 NPU cannot exist on this machine, so this is the one place absence is
    arranged on purpose: rknnlite is made unimportable (as it is on any x86 host)."""
    monkeypatch.setitem(sys.modules, "rknnlite", None)
    monkeypatch.setitem(sys.modules, "rknnlite.api", None)
    (tmp_path / "yolov8n.rknn").write_bytes(b"\0" * 16)
    with pytest.raises(StageSetupError, match="pip install rknn-toolkit-lite2") as err:
        run_stage(Infer(model="yolov8n.rknn"), [], graph_dir=tmp_path)
    assert "RK3588" in str(err.value) and "librknnrt" in str(err.value)


@pytest.mark.parametrize(
    ("layout", "shapes"),
    [
        ("stock", [(1, 84, 8400)]),
        (
            "split",
            [(1, c, s, s) for s in (80, 40, 20) for c in (64, 80)],
        ),
    ],
)
def test_sim_output_shapes(layout: str, shapes: list[tuple[int, ...]]) -> None:
    stage = Infer(model="sim:yolov8n", sim_ms=1, sim_layout=layout)
    tensors = [np.zeros((1, 3, 640, 640), np.float32), np.zeros((1, 640, 640, 3), np.uint8)]
    out = run_stage(stage, [msg_with(t, i) for i, t in enumerate(tensors)])
    for msg in out:
        got = [msg.arrays[f"out.{i}"] for i in range(len(shapes))]
        assert [a.shape for a in got] == shapes
        assert all(a.dtype == np.float32 for a in got)
        assert "tensor" not in msg.arrays and f"out.{len(shapes)}" not in msg.arrays
        assert msg.meta["infer_ms"] >= 1
    if layout == "stock":  # planted objects: a few confident class scores, the rest background
        scores = out[0].arrays["out.0"][0, 4:].max(axis=0)
        assert 0 < (scores > 0.25).sum() < 100


def _two_calls_at_once(cores: tuple[int, int], service_ms: float) -> float:
    """Seconds for one call on each of two sim instances, started together from two threads."""
    stages = []
    for r, core in enumerate(cores):
        stage = Infer(model="sim:yolov8n", sim_ms=service_ms, npu_core=core)
        stage.setup(Context(stage="infer", replica=r, replicas=2))
        stages.append(stage)
    tensor = np.zeros((1, 3, 640, 640), np.float32)
    start = threading.Barrier(3)

    def call(stage: Infer) -> None:
        start.wait()
        stage.process(msg_with(tensor))

    threads = [threading.Thread(target=call, args=(s,)) for s in stages]
    for t in threads:
        t.start()
    start.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    for s in stages:
        s.close()
    return elapsed


def test_sim_instances_on_one_core_take_turns_and_cores_overlap() -> None:
    """The lock is an flock per open file, so threads here behave as the processes of a run."""
    service = 0.2  # long enough that a busy machine's scheduling delays stay well inside
    same = _two_calls_at_once((0, 0), service * 1000)
    different = _two_calls_at_once((0, 1), service * 1000)
    assert same >= 1.6 * service, f"two calls on one core took {same * 1000:.0f} ms"
    assert different < 1.6 * service, f"two calls on two cores took {different * 1000:.0f} ms"


def test_replica_options_one_process_per_npu_core_entry() -> None:
    config = Infer.Config(model="yolov8n.rknn", npu_cores=[0, 0, 1])
    assert Infer.replica_options(config) == [{"npu_core": 0}, {"npu_core": 0}, {"npu_core": 1}]
    per = Infer.replica_options(Infer.Config(model="sim:yolov8n", npu_cores=[2, 1]))
    assert per == [{"npu_core": 2}, {"npu_core": 1}]
    # every replica's options are valid config
    assert [Infer.Config(model="yolov8n.rknn", **o).npu_core for o in per] == [2, 1]
    assert Infer.replica_options(Infer.Config(model="m.onnx")) is None  # uses `replicas`


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"model": "yolov8n.pt"}, "cannot tell the backend"),
        ({"model": "m.onnx", "npu_cores": [0, 1]}, "use replicas"),
        ({"model": "m.rknn", "npu_cores": [0, 3]}, "cores 0, 1 and 2"),
        ({"model": "sim:x", "npu_cores": [-1]}, "numbered from 0"),
        ({"model": "m.onnx", "threads": 0}, "greater than or equal to 1"),
    ],
)
def test_config_errors(options: dict, message: str) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match=message):
        Infer.Config(**options)


@pytest.mark.parametrize(
    ("hw", "share"), [((640, 640), 1.0), ((384, 640), 0.6), ((320, 320), 0.25)]
)
def test_sim_service_time_scales_with_the_inputs_pixels(
    tmp_path: Path, hw: tuple[int, int], share: float
) -> None:
    """``sim_ms`` is for 640x640; a call on H x W books ``sim_ms * H*W / (640*640)`` on the
    core's timeline: read back from the lock file behind a job already queued, so the figure
    is exact whatever the load."""
    stage = Infer(model="sim:yolov8n", sim_ms=40, sim_layout="split")
    stage.setup(Context(stage="infer"))
    out = stage.process(msg_with(np.zeros((1, *hw, 3), np.uint8)))
    assert out.arrays["out.1"].shape == (1, 80, hw[0] // 8, hw[1] // 8)
    lock = tmp_path / "rkpipe-sim-npu-0.lock"
    busy_until = time.monotonic_ns() + 2 * 10**9  # another instance's job, queued
    lock.write_bytes(busy_until.to_bytes(8, "little"))
    backend = stage.backend
    assert isinstance(backend, SimBackend)
    assert backend._book() - busy_until == round(40e6 * share)
    assert int.from_bytes(lock.read_bytes(), "little") - busy_until == round(40e6 * share)
    stage.close()
