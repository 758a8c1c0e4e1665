"""rknnlite on the RK3588 NPU: one runtime bound to one NPU core.

This needs the board: Rockchip's ``rknn-toolkit-lite2`` wheel (``rknnlite.api.RKNNLite``)
and the ``librknnrt.so`` runtime it loads. It cannot run on x86, so the code stays close to
the documented API: ``load_rknn`` -> ``init_runtime(core_mask=...)`` -> ``inference`` ->
``release``, each returning 0 on success (``inference`` returns the outputs, None on error).
A model made by ``rkpipe export`` has a sidecar JSON beside it; when the board's librknnrt
is older than the toolkit that built the model, the backend says so in the log.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.errors import ModelError, StageSetupError
from stages.infer.backend import first_line, require_model_file
from stages.infer.rknn_sidecar import read_sidecar, version_warning

__all__ = ["INSTALL_HINT", "RknnBackend"]

INSTALL_HINT = (
    "backend 'rknn' needs an RK3588 board with rknnlite: pip install rknn-toolkit-lite2 "
    "and install Rockchip's librknnrt.so (e.g. /usr/lib/librknnrt.so); "
    'elsewhere use an .onnx model or backend = "sim"'
)


class RknnBackend:
    """An RKNNLite runtime pinned to NPU core ``core`` (0, 1 or 2)."""

    def __init__(self, path: Path, core: int, where: str) -> None:
        try:
            from rknnlite.api import RKNNLite
        except (ImportError, OSError) as exc:  # no wheel, or the wheel without librknnrt
            raise StageSetupError(f"{INSTALL_HINT} ({first_line(exc)})") from None
        require_model_file(path, where)
        masks = [RKNNLite.NPU_CORE_0, RKNNLite.NPU_CORE_1, RKNNLite.NPU_CORE_2]
        if not 0 <= core < len(masks):
            raise StageSetupError(f"NPU core {core} does not exist: the RK3588 has cores 0-2")
        self.path = path
        self.checked = False
        self.rknn: Any = RKNNLite(verbose=False)
        # Each step returns 0 on success; anything else stops the run with the step named.
        ret = self.rknn.load_rknn(str(path))
        if ret != 0:
            self.close()
            built = (read_sidecar(path) or {}).get("toolkit_version")
            hint = (
                f"it was built by rknn-toolkit2 {built}, so librknnrt must be {built} or newer"
                if built
                else "is it an .rknn model built for rk3588 by a toolkit version matching "
                "librknnrt?"
            )
            raise ModelError(f"rknn load_rknn({path}) failed (code {ret}): {hint}")
        ret = self.rknn.init_runtime(core_mask=masks[core])
        if ret != 0:
            self.close()
            raise ModelError(
                f"rknn init_runtime(core_mask=NPU_CORE_{core}) failed (code {ret}) for {path}: "
                "check librknnrt.so and the NPU driver"
            )
        self._check_runtime()

    def _check_runtime(self) -> None:
        """Warn when the model's toolkit (from its sidecar) is newer than librknnrt."""
        sidecar = read_sidecar(self.path)
        if sidecar is None:
            return
        log = logging.getLogger("rkpipe")
        try:
            sdk = str(self.rknn.get_sdk_version())
        except Exception as exc:  # an older rknnlite without it, or a runtime that fails it
            log.warning("rknn: cannot read librknnrt's version (%s)", first_line(exc))
            return
        warning = version_warning(sidecar, sdk)
        if warning:
            log.warning("rknn: %s", warning)

    def run(self, x: np.ndarray) -> list[np.ndarray]:
        # rknnlite takes NHWC uint8 (the model's mean/std normalisation is built in).
        if x.ndim == 3:
            x = x[None]
        if not self.checked:
            if x.dtype != np.uint8 or x.ndim != 4 or x.shape[-1] != 3:
                raise ModelError(
                    f"rknn model {self.path.name} takes NHWC uint8 [1,H,W,3], "
                    f"got {x.dtype.name} {list(x.shape)}: check the preprocess stage"
                )
            self.checked = True
        outputs = self.rknn.inference(inputs=[np.ascontiguousarray(x)])
        if outputs is None:
            raise ModelError(f"rknn inference failed for {self.path.name} (see rknnlite's log)")
        return list(outputs)

    def close(self) -> None:
        if getattr(self, "rknn", None) is not None:
            self.rknn.release()
            self.rknn = None
