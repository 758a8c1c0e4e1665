"""Calibration frames for INT8 quantization, letterboxed exactly as the pipeline's preprocess.

From ``--calib DIR`` (every image in it, sorted by name) or, without one, frames of rkpipe's
synthetic street scenes. Each frame is written twice: a lossless PNG for the toolkit's
dataset list (it reads images as RGB) and an RGB uint8 (H, W, 3) .npy for the simulator and
the checks. The set remembers each frame's file and letterbox geometry, so labels next to
the images can be mapped into the model input.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from pipeline.errors import RkpipeError
from stages.letterbox.geometry import LetterboxGeometry, letterbox_geometry, letterbox_into

__all__ = ["IMAGE_SUFFIXES", "CalibrationSet", "UsageError", "scene_frames", "write_calibration"]

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


class UsageError(RkpipeError):
    """A bad command line, or a --calib folder whose contents cannot be used."""

    exit_code = 2


@dataclass(frozen=True)
class CalibrationSet:
    """The toolkit's dataset list, and per frame (same order) its RGB array (.npy) and PNG,
    the image file it came from (None for a scene frame) and its letterbox geometry."""

    dataset: Path
    arrays: list[Path]
    pngs: list[Path]
    files: list[Path | None]
    geometries: list[LetterboxGeometry]
    source: str  # what the frames are, for the summary

    def images(self, count: int) -> list[np.ndarray]:
        """The first ``count`` letterboxed RGB frames."""
        return [np.load(p) for p in self.arrays[:count]]


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


def _dir_frames(folder: Path, limit: int) -> list[tuple[Path | None, np.ndarray]]:
    """Up to ``limit`` images of ``folder`` with their files, sorted by name; a clear error
    when none load."""
    if not folder.is_dir():
        raise UsageError(f"--calib {folder}: not a folder of images")
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    loaded = ((p, cv2.imread(str(p))) for p in files[:limit])
    frames: list[tuple[Path | None, np.ndarray]] = [(p, f) for p, f in loaded if f is not None]
    if not frames:
        kinds = "/".join(IMAGE_SUFFIXES)
        raise UsageError(f"--calib {folder}: no readable images ({kinds}) in it")
    return frames


def write_calibration(
    workdir: Path, hw: tuple[int, int], calib: Path | None, count: int
) -> CalibrationSet:
    """Letterbox the calibration frames into ``workdir`` and write the dataset list."""
    frames: list[tuple[Path | None, np.ndarray]]
    if calib:
        frames = _dir_frames(calib, count)
        source = f"{len(frames)} images from {calib}"
    else:
        frames = [(None, f) for f in scene_frames(count)]
        source = f"{count} synthetic scene frames"
    workdir.mkdir(parents=True, exist_ok=True)
    pngs, arrays, geometries = [], [], []
    for i, (_, frame) in enumerate(frames):
        rgb = letterbox_rgb(frame, hw)
        png, npy = workdir / f"calib{i:04d}.png", workdir / f"calib{i:04d}.npy"
        cv2.imwrite(str(png), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        np.save(npy, rgb)
        pngs.append(png)
        arrays.append(npy)
        geometries.append(letterbox_geometry(frame.shape[:2], hw))
    dataset = workdir / "dataset.txt"
    dataset.write_text("".join(f"{p}\n" for p in pngs))
    files = [f for f, _ in frames]
    return CalibrationSet(dataset, arrays, pngs, files, geometries, source)
