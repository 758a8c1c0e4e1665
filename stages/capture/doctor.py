"""What ``rkpipe doctor GRAPH`` checks of a capture stage: which decoder a network stream
would get on this machine, whether the camera answers and serves the stream (in the words
a failing decoder uses), and the size its frames take."""

from __future__ import annotations

from pipeline.doctor import Check, DoctorContext
from pipeline.errors import StageSetupError
from stages.capture.config import CaptureConfig
from stages.capture.decoders import choose_decoder
from stages.capture.opener import Kind, parse_source
from stages.capture.probe import why_not_open
from stages.synthetic.scene import parse_scene_uri

__all__ = ["capture_checks", "capture_frame_bytes"]

FULL_HD = (1920, 1080)  # a camera or file of unknown size is counted as 1080p


def capture_frame_bytes(cfg: CaptureConfig) -> int:
    """``resize``, else a scene's own size, else 1080p."""
    spec = parse_source(cfg.source)
    if cfg.resize is not None:
        w, h = cfg.resize
    elif spec.kind is Kind.SCENE:
        p = parse_scene_uri(str(spec.target))
        w, h = p.get("width", 640), p.get("height", 360)
    else:
        w, h = FULL_HD
    return w * h * 3


def capture_checks(cfg: CaptureConfig, ctx: DoctorContext) -> list[Check]:
    spec = parse_source(cfg.source)
    if spec.kind is not Kind.NETWORK:
        return []
    try:
        choice = choose_decoder(cfg.decoder, cfg.hwaccel, cfg.ffmpeg_path)
        why = f" ({choice.why})" if cfg.decoder == "auto" else ""
        checks = [Check("decoder", "ok", f"{choice.describe()}{why}")]
    except StageSetupError as exc:
        checks = [Check("decoder", "fail", str(exc))]
    answer = why_not_open(str(spec.target), 2.0)
    if answer:
        fix = _FIXES.get(
            answer[:3], "check the camera's address and port, that it is on, and the network"
        )
        checks.append(Check("camera", "fail", f"{spec.describe()}: {answer}", fix))
    else:
        checks.append(Check("camera", "ok", f"{spec.describe()} answers"))
    return checks


_FIXES = {  # a camera that answers with an error: the URL's fault, not the network's
    "401": "put the camera's user and password in the URL: rtsp://user:password@host/path",
    "403": "give this user the right to view the stream, in the camera's settings",
    "404": "check the stream's path in the URL (the camera's manual or its web page names it)",
}
