"""Calibration frames for INT8 quantization, letterboxed exactly as the pipeline's preprocess.

From ``--calib DIR`` (every image in it, sorted by name) or, without one, frames of rkpipe's
synthetic street scenes. Each frame is written twice: a lossless PNG for the toolkit's
dataset list (it reads images as RGB) and an RGB uint8 (H, W, 3) .npy for the simulator.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import ModelError
from stages.letterbox.geometry import letterbox_geometry, letterbox_into

__all__ = ["IMAGE_SUFFIXES", "CalibrationSet", "scene_frames", "write_calibration"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


@dataclass(frozen=True)
class CalibrationSet:
    """The toolkit's dataset list, and the per-frame RGB arrays (.npy) in the same order."""

    dataset: Path
    arrays: list[Path]
    source: str  # what the frames are, for the summary


def letterbox_rgb(frame: np.ndarray, hw: tuple[int, int]) -> np.ndarray:
    """BGR frame -> (H, W, 3) uint8 RGB model input, as ``letterbox`` (layout nhwc_uint8)."""
    out = np.empty((*hw, 3), np.uint8)
    letterbox_into(frame, out, letterbox_geometry(frame.shape[:2], hw))
    return cv2.cvtColor(out, cv2.COLOR_BGR2RGB)


def scene_frames(count: int) -> list[np.ndarray]:
    """``count`` BGR 640x360 frames from varied synthetic scenes (easy and hard, 4 a scene)."""
    from stages.synthetic.scene import Scene

    frames = []
    for k in range(count):
        scene = Scene("hard" if k % 2 else "easy", seed=3000 + k // 4)
        frames.append(scene.render(30 + (k % 4) * 37))
    return frames


def _dir_frames(folder: Path, limit: int) -> list[np.ndarray]:
    """Up to ``limit`` images of ``folder``, sorted by name; a clear error when none load."""
    if not folder.is_dir():
        raise ModelError(f"--calib {folder}: not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    frames = [f for f in (cv2.imread(str(p)) for p in files[:limit]) if f is not None]
    if not frames:
        kinds = "/".join(IMAGE_SUFFIXES)
        raise ModelError(f"--calib {folder}: no readable images ({kinds}) in it")
    return frames


def write_calibration(
    workdir: Path, hw: tuple[int, int], calib: Path | None, count: int
) -> CalibrationSet:
    """Letterbox the calibration frames into ``workdir`` and write the dataset list."""
    frames = _dir_frames(calib, count) if calib else scene_frames(count)
    source = f"{len(frames)} images from {calib}" if calib else f"{count} synthetic scene frames"
    workdir.mkdir(parents=True, exist_ok=True)
    pngs, arrays = [], []
    for i, frame in enumerate(frames):
        rgb = letterbox_rgb(frame, hw)
        png, npy = workdir / f"calib{i:04d}.png", workdir / f"calib{i:04d}.npy"
        cv2.imwrite(str(png), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        np.save(npy, rgb)
        pngs.append(png)
        arrays.append(npy)
    dataset = workdir / "dataset.txt"
    dataset.write_text("".join(f"{p}\n" for p in pngs))
    return CalibrationSet(dataset, arrays, source)
