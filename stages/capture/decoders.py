"""Which decoder reads a network stream (``decoder = "auto"``: the best one this machine
has), and a stream read through a decoder process, restarted on every open."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from pipeline.errors import StageSetupError
from pipeline.secrets import mask
from pipeline.stage import Context
from pipeline.video_tools import ffmpeg_hwaccels, gst_has
from stages.capture.decoder_errors import explain
from stages.capture.decoder_ffmpeg import FfmpegOptions, ffmpeg_argv, ffmpeg_list, ffmpeg_size
from stages.capture.decoder_gstreamer import (
    GstOptions,
    gst_argv,
    gst_description,
    gst_fed_argv,
    gst_size,
)
from stages.capture.decoder_process import DecoderProcess
from stages.capture.opencv_stream import Grab
from stages.capture.opener import tcp_answer

__all__ = ["Choice", "DecoderStream", "choose_decoder", "decoder_stream"]

GST_INSTALL = (
    "install GStreamer: apt install gstreamer1.0-tools gstreamer1.0-plugins-base "
    "gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-libav "
    "(and gstreamer1.0-rockchip for mppvideodec on an RK3588)"
)


@dataclass(frozen=True)
class Choice:
    """The decoder that reads a stream: ``opencv``, ``ffmpeg`` (with ``hwaccel``) or
    ``gstreamer`` (``hwaccel`` ``rkmpp``: mppvideodec), and why it was chosen."""

    decoder: str
    hwaccel: str = "none"
    why: str = "as the graph says"

    def describe(self) -> str:
        if self.decoder == "opencv":
            return "OpenCV (software)"
        if self.decoder == "gstreamer":
            return "GStreamer " + ("mppvideodec" if self.hwaccel == "rkmpp" else "decodebin")
        return f"ffmpeg -hwaccel {self.hwaccel}" if self.hwaccel != "none" else "ffmpeg (software)"


def choose_decoder(decoder: str, hwaccel: str, ffmpeg_path: str) -> Choice:
    """Resolve ``decoder``/``hwaccel`` on this machine; StageSetupError when the one asked
    for is not installed. ``auto``: a hardware decoder first (ffmpeg with rkmpp, GStreamer
    with mppvideodec), then ffmpeg, then GStreamer, then OpenCV: a decoder process says why
    a camera fails, and its death never takes the stage with it."""
    if decoder == "auto":
        return _auto(ffmpeg_path)
    if decoder == "ffmpeg":
        if shutil.which(ffmpeg_path) is None:
            msg = f"ffmpeg not found ({ffmpeg_path!r}): apt install ffmpeg, or set ffmpeg_path"
            raise StageSetupError(msg)
        have = ffmpeg_hwaccels(ffmpeg_path)
        if hwaccel == "auto":
            return Choice("ffmpeg", "rkmpp" if "rkmpp" in have else "none")
        if hwaccel != "none" and hwaccel not in have:
            msg = f"this ffmpeg ({ffmpeg_path}) has no {hwaccel} decoding (it has: "
            msg += f'{", ".join(sorted(have)) or "none"}); use hwaccel = "none" or another ffmpeg'
            raise StageSetupError(msg)
        return Choice("ffmpeg", hwaccel)
    if decoder == "gstreamer":
        if not gst_has("decodebin"):
            raise StageSetupError(f"GStreamer (gst-launch-1.0, decodebin) not found: {GST_INSTALL}")
        mpp = gst_has("mppvideodec")
        if hwaccel == "rkmpp" and not mpp:
            raise StageSetupError(f"GStreamer has no mppvideodec: {GST_INSTALL}")
        return Choice("gstreamer", "rkmpp" if mpp and hwaccel != "none" else "none")
    return Choice("opencv")


def _auto(ffmpeg_path: str) -> Choice:
    has_ffmpeg = shutil.which(ffmpeg_path) is not None
    if has_ffmpeg and "rkmpp" in ffmpeg_hwaccels(ffmpeg_path):
        return Choice("ffmpeg", "rkmpp", "auto: ffmpeg has the RK3588 decoder")
    if gst_has("mppvideodec"):
        return Choice("gstreamer", "rkmpp", "auto: GStreamer has mppvideodec")
    if has_ffmpeg:
        return Choice("ffmpeg", "none", "auto: no hardware decoder; ffmpeg is installed")
    if gst_has("decodebin"):
        return Choice("gstreamer", "none", "auto: no hardware decoder or ffmpeg; GStreamer is")
    return Choice("opencv", "none", "auto: neither ffmpeg nor GStreamer is installed")


_VAGUE = "cannot connect"


class DecoderStream:
    """``open`` / ``grab`` / ``close`` over a decoder process: each open starts a new one and
    waits for its frame size; each grab reads one frame straight into a new slot."""

    def __init__(
        self,
        url: str,
        argv_for: Callable[[int, int], list[str]],
        parse_size: Callable[[str], tuple[int, int] | None],
        ctx: Context,
        open_timeout_s: float,
        read_timeout_s: float,
        feed: bytes = b"",
    ) -> None:
        self.url, self.argv_for, self.parse_size, self.ctx = url, argv_for, parse_size, ctx
        self.feed = feed  # what the decoder reads from a pipe: the URL, where it is secret
        self.open_timeout_s, self.read_timeout_s = open_timeout_s, read_timeout_s
        self.proc: DecoderProcess | None = None
        self.error = ""
        self._spare: np.ndarray | None = None  # a slot allocated for a read that failed

    def open(self) -> bool:
        self.close()
        try:
            proc = DecoderProcess(self.argv_for, self.parse_size, self.feed)
        except OSError as exc:
            self.error = f"cannot start the decoder: {exc.strerror or exc}"
            return False
        if proc.wait_size(self.open_timeout_s) is None:
            self.error = proc.error()
            if self.error.startswith(_VAGUE):  # GStreamer does not say why: ask the host
                self.error = explain([tcp_answer(self.url, 0.5)]) or self.error
            proc.close()
            return False
        self.proc = proc
        return True

    def grab(self) -> Grab | None:
        assert self.proc is not None and self.proc.size is not None
        w, h = self.proc.size
        out = self._spare
        if out is None or out.shape != (h, w, 3):
            out = self.ctx.alloc((h, w, 3), np.uint8)
        ok = self.proc.read_frame(out, self.read_timeout_s)
        t, mono = time.time(), time.monotonic_ns()
        if not ok:
            self._spare = out
            self.error = self.proc.error()
            return None
        self._spare = None
        return out, t, mono

    def close(self) -> None:
        if self.proc is not None:
            self.proc.close()
            self.proc = None


def decoder_stream(
    choice: Choice,
    url: str,
    ctx: Context,
    *,
    ffmpeg_path: str,
    rtsp_transport: str,
    resize: tuple[int, int] | None,
    fps: float | None,
    open_timeout_s: float,
    read_timeout_s: float,
) -> DecoderStream:
    """The stream for an ffmpeg or GStreamer ``choice``. A URL with a secret in it goes to
    the decoder through a pipe, never on its command line (see each decoder's module)."""
    secret = mask(url) != url
    if choice.decoder == "ffmpeg":
        fo = FfmpegOptions(ffmpeg_path, choice.hwaccel, rtsp_transport, resize, fps)
        if secret:
            return DecoderStream(
                url, lambda fd, feed_fd: ffmpeg_argv(url, fo, fd, feed_fd), ffmpeg_size, ctx,
                open_timeout_s, read_timeout_s, ffmpeg_list(url, fo),
            )  # fmt: skip
        return DecoderStream(
            url, lambda fd, _: ffmpeg_argv(url, fo, fd), ffmpeg_size, ctx, open_timeout_s,
            read_timeout_s,
        )  # fmt: skip
    go = GstOptions(choice.hwaccel == "rkmpp", rtsp_transport, resize, fps)
    if secret:
        return DecoderStream(
            url, lambda fd, feed_fd: gst_fed_argv(go, fd, feed_fd), gst_size, ctx,
            open_timeout_s, read_timeout_s, gst_description(url, go).encode(),
        )  # fmt: skip
    return DecoderStream(
        url, lambda fd, _: gst_argv(url, go, fd), gst_size, ctx, open_timeout_s, read_timeout_s
    )
