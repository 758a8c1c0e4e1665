"""A source read through OpenCV (files, cameras, GStreamer strings, and network streams when
no decoder process is used), decoding straight into shared-memory slots where it can."""

from __future__ import annotations

import time

import cv2
import numpy as np

from pipeline.stage import Context
from stages.capture.opener import Kind, OpenOptions, SourceSpec, open_capture
from stages.capture.probe import why_not_open

__all__ = ["FFMPEG_HINT", "Grab", "OpenCVStream", "as_bgr"]

Grab = tuple[np.ndarray, float, int]  # frame, wall-clock and monotonic time of the grab
FFMPEG_HINT = " (OPENCV_FFMPEG_LOGLEVEL=16 shows FFmpeg's reasons)"


class OpenCVStream:
    """``open`` / ``grab`` / ``close`` over a ``cv2.VideoCapture``; ``error`` says why the
    last open or grab failed, as far as OpenCV tells."""

    def __init__(
        self,
        spec: SourceSpec,
        target: str | int,
        opts: OpenOptions,
        ctx: Context,
        resize: tuple[int, int] | None,
    ) -> None:
        self.spec, self.target, self.opts, self.ctx, self.resize = spec, target, opts, ctx, resize
        self.cap: cv2.VideoCapture | None = None
        self.shape: tuple[int, int, int] | None = None
        self.error = ""
        self._spare: np.ndarray | None = None  # a slot allocated for a read that failed
        self._scratch: np.ndarray | None = None  # decode buffer when resizing

    def open(self) -> bool:
        self.close()
        self.cap = open_capture(self.spec, self.target, self.opts)
        if self.cap is None:
            self.error = self._why_not()
            return False
        w = int(self.cap.get(cv2.CAP_PROP_FRAME_WIDTH))
        h = int(self.cap.get(cv2.CAP_PROP_FRAME_HEIGHT))
        self.shape = (h, w, 3) if w > 0 and h > 0 else None
        self._spare = None
        return True

    def _why_not(self) -> str:
        """Why the open failed, in the decoder processes' words where the camera tells."""
        if self.spec.kind is Kind.NETWORK:
            why = why_not_open(str(self.target), min(2.0, self.opts.open_timeout_s))
            if why:
                return why
            return f"the camera answers, but OpenCV cannot open the stream{FFMPEG_HINT}"
        return f"cannot open it{FFMPEG_HINT}"

    def grab(self) -> Grab | None:
        """Decode the next frame into a shared-memory slot (directly where OpenCV allows:
        the slot is passed as the output image); None when the read fails."""
        assert self.cap is not None
        if self.resize is not None:
            return self._grab_resized(self.resize)
        out = self._spare
        if out is None and self.shape is not None:
            out = self.ctx.alloc(self.shape, np.uint8)
        ok, img = self.cap.read(out) if out is not None else self.cap.read()
        t, mono = time.time(), time.monotonic_ns()
        if not ok or img is None:
            self._spare = out
            self.error = "no frame (stream closed, timed out or undecodable)"
            return None
        self._spare = None
        if img is out:
            return out, t, mono
        bgr = as_bgr(img)  # first frame of a stream of unknown size, or its size changed
        self.shape = bgr.shape
        frame = self.ctx.alloc(bgr.shape, np.uint8)
        frame[...] = bgr
        return frame, t, mono

    def _grab_resized(self, size: tuple[int, int]) -> Grab | None:
        assert self.cap is not None
        ok, img = self.cap.read(self._scratch)
        t, mono = time.time(), time.monotonic_ns()
        if not ok or img is None:
            self.error = "no frame (stream closed, timed out or undecodable)"
            return None
        self._scratch = img
        frame = self.ctx.alloc((size[1], size[0], 3), np.uint8)
        cv2.resize(as_bgr(img), size, dst=frame, interpolation=cv2.INTER_AREA)
        return frame, t, mono

    def close(self) -> None:
        if self.cap is not None:
            self.cap.release()
            self.cap = None


def as_bgr(img: np.ndarray) -> np.ndarray:
    """A decoded image as 3-channel BGR uint8 (cameras may give grey or BGRA)."""
    if img.ndim == 2 or img.shape[2] == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if img.shape[2] == 4:
        return cv2.cvtColor(img, cv2.COLOR_BGRA2BGR)
    return img
