"""Video decoding: ffmpeg (with the RK3588's rkmpp decoder?), GStreamer (with mppvideodec?)
and OpenCV's own backends. The tools are looked up on this machine's PATH."""

from __future__ import annotations

import shutil

from ..video_tools import ffmpeg_hwaccels, ffmpeg_version, gst_has, opencv_backends
from .check import Check, DoctorContext, Status

__all__ = ["video_checks"]

RKMPP_FIX = (
    "install an ffmpeg built with rkmpp and RGA (ffmpeg-rockchip; e.g. jellyfin-ffmpeg 6+ or "
    "the Ubuntu Rockchip images' ffmpeg); until then OpenCV decodes on the CPU"
)


def video_checks(ctx: DoctorContext) -> list[Check]:
    return [_ffmpeg(ctx), _gstreamer(ctx), _opencv()]


def _ffmpeg(ctx: DoctorContext) -> Check:
    version = ffmpeg_version("ffmpeg")
    if not version:
        fix = RKMPP_FIX if ctx.rk3588 else "apt install ffmpeg"
        return Check("ffmpeg", "warn", "not found: cameras are decoded by OpenCV", fix)
    hw = ffmpeg_hwaccels("ffmpeg")
    if "rkmpp" in hw:
        return Check("ffmpeg", "ok", f"{version} with rkmpp: cameras decode on the VPU")
    if ctx.rk3588:
        return Check("ffmpeg", "warn", f"{version} without rkmpp: software decoding", RKMPP_FIX)
    return Check("ffmpeg", "ok", f"{version} (hwaccels: {', '.join(sorted(hw)) or 'none'})")


def _gstreamer(ctx: DoctorContext) -> Check:
    if shutil.which("gst-launch-1.0") is None:
        status: Status = "warn" if ctx.rk3588 else "info"
        return Check(
            "GStreamer", status, "gst-launch-1.0 not found", "apt install gstreamer1.0-tools"
        )
    if gst_has("mppvideodec"):
        return Check("GStreamer", "ok", "gst-launch-1.0 with mppvideodec")
    if ctx.rk3588:
        fix = "apt install gstreamer1.0-rockchip (Rockchip's mpp plugins)"
        return Check("GStreamer", "warn", "no mppvideodec: software decoding", fix)
    return Check("GStreamer", "ok", "gst-launch-1.0 (decodebin)")


def _opencv() -> Check:
    import cv2

    have = opencv_backends()
    said = ", ".join(f"{name} {'yes' if ok else 'no'}" for name, ok in have.items())
    return Check("OpenCV", "info", f"{cv2.__version__}: {said}")
