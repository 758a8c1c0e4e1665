"""The ``ffmpeg`` decoder: the command that decodes a stream (in hardware where asked) and
writes raw BGR frames of the output size to a pipe, what it can do, and its size line.

On the RK3588 with ffmpeg-rockchip, ``hwaccel = "rkmpp"`` decodes on the VPU into DRM
frames (``-hwaccel rkmpp -hwaccel_output_format drm_prime``) and the RGA scales and converts
them to BGR (``scale_rkrga``), so the CPU only copies finished frames. ``vaapi`` and ``cuda``
decode on a GPU and let ffmpeg download the frames; ``none`` decodes in software.

A URL that carries a secret (a password, a token in its query) never goes on ffmpeg's
command line, which every user of the machine can read (``ps``): ffmpeg reads it from a pipe
instead, as a one-entry ``ffconcat`` list (``-f concat -i pipe:N``) that also carries the
input's own options (``option rtsp_transport tcp``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = ["FfmpegOptions", "ffmpeg_argv", "ffmpeg_list", "ffmpeg_size"]

_OUTPUT_SIZE = re.compile(r"Video: rawvideo\b.*?, (\d{2,5})x(\d{2,5})[ ,]")


@dataclass(frozen=True)
class FfmpegOptions:
    """What the stage asks of ffmpeg."""

    path: str = "ffmpeg"
    hwaccel: str = "none"  # rkmpp, vaapi, cuda or none
    rtsp_transport: str = "tcp"
    resize: tuple[int, int] | None = None
    fps: float | None = None


# what a listed URL may open: the camera's protocols, never a local file or another program
_LISTED_PROTOCOLS = "pipe,rtsp,rtsps,rtp,srtp,udp,tcp,tls,http,https,httpproxy,crypto"


def ffmpeg_argv(url: str, opts: FfmpegOptions, fd: int, list_fd: int | None = None) -> list[str]:
    """The ffmpeg command that decodes ``url`` and writes rawvideo BGR frames to ``fd``; with
    ``list_fd``, the URL is not on the command line but read from that pipe (``ffmpeg_list``)."""
    argv = [opts.path, "-hide_banner", "-nostdin", "-nostats", "-loglevel", "info"]
    if url.lower().startswith("rtsp") and list_fd is None:
        argv += ["-rtsp_transport", opts.rtsp_transport]
    argv += ["-flags", "low_delay"]  # a camera's frames, not a file's
    if list_fd is None:
        argv += ["-fflags", "nobuffer"]
    if opts.hwaccel == "rkmpp":
        argv += ["-hwaccel", "rkmpp", "-hwaccel_output_format", "drm_prime"]
    elif opts.hwaccel in ("vaapi", "cuda"):
        argv += ["-hwaccel", opts.hwaccel]  # frames come back to memory for the filters
    if list_fd is None:
        argv += ["-i", url]
    else:
        argv += ["-f", "concat", "-safe", "0", "-protocol_whitelist", _LISTED_PROTOCOLS]
        argv += ["-i", f"pipe:{list_fd}"]
    argv += ["-map", "0:v:0"]  # the first video track only
    argv += ["-vf", _filters(opts), "-pix_fmt", "bgr24", "-f", "rawvideo", f"pipe:{fd}"]
    return argv


def ffmpeg_list(url: str, opts: FfmpegOptions) -> bytes:
    """The one-entry ffconcat list ffmpeg reads ``url`` and its input options from."""
    quoted = "'" + url.replace("'", "'\\''") + "'"
    lines = ["ffconcat version 1.0", f"file {quoted}", "option fflags nobuffer"]
    if url.lower().startswith("rtsp"):
        lines.append(f"option rtsp_transport {opts.rtsp_transport}")
    return ("\n".join(lines) + "\n").encode()


def _filters(opts: FfmpegOptions) -> str:
    """The filter chain: the fps cap first (it drops frames before any work on them), then
    scaling and BGR conversion (on the RGA for rkmpp)."""
    chain = [f"fps={opts.fps:g}"] if opts.fps else []
    if opts.hwaccel == "rkmpp":
        size = f"w={opts.resize[0]}:h={opts.resize[1]}:" if opts.resize else ""
        chain += [f"scale_rkrga={size}format=bgr24", "hwdownload", "format=bgr24"]
    else:
        if opts.resize:
            chain.append(f"scale={opts.resize[0]}:{opts.resize[1]}:flags=area")
        chain.append("format=bgr24")
    return ",".join(chain)


def ffmpeg_size(line: str) -> tuple[int, int] | None:
    """The output frame size from ffmpeg's ``Stream #0:0: Video: rawvideo ..., WxH`` line."""
    found = _OUTPUT_SIZE.search(line)
    return (int(found.group(1)), int(found.group(2))) if found else None
