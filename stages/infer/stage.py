"""The inference stage: feed one tensor of each message to a model, attach the outputs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator, model_validator

from pipeline.doctor import Check, DoctorContext
from pipeline.errors import StageSetupError
from pipeline.keys import META_INFER_MS, META_QUANT, TENSOR, output_key
from pipeline.messages import Message
from pipeline.stage import Context, Stage, StageConfig
from stages.infer.backend import Backend

__all__ = ["Infer"]

SIM_PREFIX = "sim:"
NPU_BACKENDS = ("rknn", "sim")


class InferConfig(StageConfig):
    model: str = Field(
        description="model file (relative to the graph file), or sim:<name> for the sim"
    )
    backend: Literal["auto", "onnx", "rknn", "sim"] = Field(
        "auto", description="auto: by the model name (.onnx, .rknn, sim:)"
    )
    npu_cores: list[int] = Field(
        default_factory=lambda: [0],
        min_length=1,
        description="rknn/sim: one process per entry, on that NPU core; cores may repeat",
    )
    npu_core: int | None = Field(
        None, ge=0, description="set per process by the supervisor from npu_cores"
    )
    threads: int | None = Field(
        None, ge=1, description="onnx: intra-op threads (default: the stage's cpus, or 1)"
    )
    input: str = Field(TENSOR, description="the message array to feed the model")
    sim_ms: float = Field(
        20.5,
        ge=0,
        description="sim: service time per call in ms at 640x640; other inputs take it "
        "scaled by their pixels (an estimate: board_check.py measures the real ratio)",
    )
    sim_layout: Literal["stock", "split"] = Field(
        "stock", description="sim: one (1,84,8400) output, or the six split-head outputs"
    )

    @field_validator("model")
    @classmethod
    def _model_file_exists(cls, model: str, info: ValidationInfo) -> str:
        """When validating a graph, a model file that is not there is a graph error."""
        graph_dir = (info.context or {}).get("graph_dir")
        if graph_dir is None or model.lower().startswith(SIM_PREFIX):
            return model
        path = (Path(graph_dir) / Path(model).expanduser()).resolve()
        if not path.is_file():
            raise ValueError(f"model file {path} not found")
        return model

    @field_validator("npu_cores")
    @classmethod
    def _cores_non_negative(cls, cores: list[int]) -> list[int]:
        if any(c < 0 for c in cores):
            raise ValueError(f"NPU cores are numbered from 0, got {cores}")
        return cores

    @model_validator(mode="after")
    def _backend_fits(self) -> InferConfig:
        backend = self.resolved_backend  # raises ValueError for an unknown model kind
        if backend == "rknn" and any(c > 2 for c in self.npu_cores):
            raise ValueError(f"the RK3588 NPU has cores 0, 1 and 2, got {self.npu_cores}")
        if backend == "onnx" and "npu_cores" in self.model_fields_set:
            raise ValueError("npu_cores is for the rknn and sim backends; use replicas")
        return self

    @property
    def resolved_backend(self) -> str:
        """The backend that runs: ``backend``, or for auto, the one the model name says."""
        if self.backend != "auto":
            return self.backend
        name = self.model.lower()
        if name.startswith(SIM_PREFIX):
            return "sim"
        if name.endswith(".rknn"):
            return "rknn"
        if name.endswith(".onnx"):
            return "onnx"
        raise ValueError(
            f"cannot tell the backend of model {self.model!r}: "
            'use a .onnx or .rknn file, sim:<name>, or set backend = "onnx"|"rknn"|"sim"'
        )


class Infer(Stage[InferConfig]):
    """Run ``model`` on ``msg.arrays[input]``; outputs go to ``out.0``, ``out.1``, ... in the
    model's output order, the input tensor is removed, and ``meta["infer_ms"]`` is the time
    the backend call took (including any wait for a shared NPU core).

    Backends (``backend = "auto"`` picks by the model name): ``.onnx`` -> ONNX Runtime on the
    CPU, ``.rknn`` -> rknnlite on the RK3588 NPU, ``sim:<name>`` -> a simulated NPU with a set
    service time (benchmarks only). On the NPU backends there is one process per entry of
    ``npu_cores``, and a core may repeat (2-3 instances per core keep it busy); for ONNX use
    the common ``replicas`` option instead.
    """

    layout_options = ("npu_cores",)

    @property
    def overlap(self) -> int:  # type: ignore[override]
        """NPU backends (and the sim) queue the next input at the device while one runs, so
        the core never idles between messages; ONNX on the CPU gains nothing from it."""
        return 0 if self.config.resolved_backend == "onnx" else 2

    @classmethod
    def replica_options(cls, config: StageConfig) -> list[dict[str, Any]] | None:
        """One process per ``npu_cores`` entry on the NPU backends; ONNX uses ``replicas``."""
        assert isinstance(config, InferConfig)
        if config.resolved_backend not in NPU_BACKENDS:
            return None
        return [{"npu_core": core} for core in config.npu_cores]

    @classmethod
    def input_size(cls, config: StageConfig, graph_dir: Path) -> tuple[int, int] | None:
        """The model's input (width, height), for the letterbox that feeds this stage: the
        ONNX input shape, the .rknn sidecar's, or a ``sim:NAME-WxH`` name's; None where the
        model does not say (a plain ``sim:NAME`` takes any size)."""
        assert isinstance(config, InferConfig)
        from stages.infer.input_size import model_input_size

        path = (graph_dir / Path(config.model).expanduser()).resolve()
        return model_input_size(config.model, config.resolved_backend, path)

    @classmethod
    def plan(cls, name: str, graph: Any, board_report: Path | None) -> list[str]:
        """The capacity plan on an NPU backend (``stages.infer.capacity``): a summary line,
        then the figures and, when it does not fit, what would."""
        from stages.infer.capacity import capacity_plan, plan_lines

        plan = capacity_plan(graph, name, board_report)
        return [] if plan is None else [plan.summary(), *plan_lines(plan)]

    @classmethod
    def frame_bytes(cls, config: StageConfig) -> int:
        """About YOLOv8's outputs at 640: 84 x 8400 float32."""
        return 84 * 8400 * 4

    @classmethod
    def doctor(cls, config: StageConfig, ctx: DoctorContext) -> list[Check]:
        """The model loads here (on the board: on the NPU, and the runtime can read it)."""
        assert isinstance(config, InferConfig)
        from stages.infer.doctor import model_checks

        path = (ctx.graph_dir / Path(config.model).expanduser()).resolve()
        return model_checks(config.model, config.resolved_backend, path, ctx)

    def setup(self, ctx: Context) -> None:
        cfg = self.config
        assert isinstance(cfg, self.Config)
        self.name = ctx.stage
        where = f"stages.{ctx.stage}.model"
        backend = cfg.resolved_backend
        core = cfg.npu_core if cfg.npu_core is not None else cfg.npu_cores[0]
        # Backends are imported here, in the stage's process, so each run loads only its own.
        self.backend: Backend
        if backend == "sim":
            from stages.infer.sim import SimBackend

            self.backend = SimBackend(cfg.sim_ms, core, cfg.sim_layout)
        elif backend == "onnx":
            from stages.infer.onnx import OnnxBackend

            threads = cfg.threads or len(ctx.cpus) or 1
            self.backend = OnnxBackend(ctx.resolve_path(cfg.model), threads, where, ctx.alloc)
        else:
            from stages.infer.rknn import RknnBackend

            self.backend = RknnBackend(ctx.resolve_path(cfg.model), core, where)
        on = f" on npu core {core}" if backend in NPU_BACKENDS else ""
        ctx.log.info("%s: %s backend, model %s%s", ctx.instance, backend, cfg.model, on)

    def process(self, msg: Message) -> Message:
        key = self.config.input
        x = msg.arrays.pop(key, None)  # not needed downstream: do not ship it on
        if x is None:
            raise StageSetupError(
                f"message has no array {key!r} to infer on (stages.{self.name}.input); "
                f"it has: {', '.join(sorted(msg.arrays)) or 'none'}"
            )
        t0 = time.perf_counter()
        outputs = self.backend.run(x)
        msg.meta[META_INFER_MS] = round((time.perf_counter() - t0) * 1000, 3)
        quant = getattr(self.backend, "quant", None)
        if quant is not None:  # raw int8 outputs: decode dequantizes only what it keeps
            msg.meta[META_QUANT] = quant
        for i, out in enumerate(outputs):
            msg.arrays[output_key(i)] = out
        return msg

    def close(self) -> None:
        backend = getattr(self, "backend", None)
        if backend is not None:
            backend.close()
