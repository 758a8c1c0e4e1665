"""Real IP cameras for tests: H.264 clips of the synthetic street scene (``rkpipe scene`` +
ffmpeg's libx264), served over RTSP by GStreamer's RTSP server (``rtsp_camera.py``, run by
the system Python, which has the ``gi`` bindings), and the frames each clip decodes to, so
a test can tell which clip and which frame a captured image is."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

from support.rkpipe import ROOT

__all__ = ["RtspCamera", "clip_frames", "free_port", "h264_clip", "match_frame", "rtsp_ready"]

SYSTEM_PYTHON = "/usr/bin/python3"
SERVER = Path(__file__).with_name("rtsp_camera.py")
THUMB = (80, 45)  # frames are compared at this size


def rtsp_ready() -> str:
    """Why RTSP tests cannot run here ("" when they can)."""
    if shutil.which("ffmpeg") is None:
        return "needs ffmpeg (apt install ffmpeg)"
    probe = "import gi; gi.require_version('GstRtspServer', '1.0')"
    try:
        ok = subprocess.run([SYSTEM_PYTHON, "-c", probe], capture_output=True, timeout=30)
    except OSError:
        return f"needs {SYSTEM_PYTHON} with python3-gi"
    if ok.returncode != 0:
        return "needs python3-gi and gir1.2-gst-rtsp-server-1.0"
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def h264_clip(out: Path, seed: int, frames: int, size: tuple[int, int], fps: int) -> Path:
    """A street scene rendered by ``rkpipe scene`` and re-encoded to H.264 (as cameras send:
    a keyframe every second, no B-frames)."""
    raw = out.with_suffix(".scene.mp4")
    scene = [sys.executable, "-m", "pipeline.cli", "scene", str(raw), "--seed", str(seed)]
    scene += ["--frames", str(frames), "--width", str(size[0]), "--height", str(size[1])]
    subprocess.run([*scene, "--fps", str(fps)], check=True, capture_output=True, cwd=ROOT)
    encode = ["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", "-i", str(raw)]
    encode += ["-c:v", "libx264", "-preset", "veryfast", "-g", str(fps), "-bf", "0"]
    subprocess.run([*encode, "-pix_fmt", "yuv420p", str(out)], check=True)
    raw.unlink()
    return out


def clip_frames(clip: Path) -> np.ndarray:
    """Every frame of ``clip`` as decoded here, shrunk to THUMB, as (N, h, w, 3) int16."""
    cap = cv2.VideoCapture(str(clip))
    out = []
    while True:
        ok, img = cap.read()
        if not ok:
            break
        out.append(cv2.resize(img, THUMB, interpolation=cv2.INTER_AREA))
    cap.release()
    return np.asarray(out, np.int16)


def match_frame(img: np.ndarray, refs: np.ndarray) -> tuple[int, float]:
    """The index of the reference frame ``img`` looks most like, and the mean absolute
    difference to it (grey levels; decoders and colour conversions differ by a few)."""
    small = cv2.resize(img, THUMB, interpolation=cv2.INTER_AREA).astype(np.int16)
    errors = np.abs(refs - small).mean(axis=(1, 2, 3))
    best = int(np.argmin(errors))
    return best, float(errors[best])


class RtspCamera:
    """A camera at ``url`` serving ``clip`` from its start to each viewer; ``kill`` cuts it
    like a power loss, ``start`` brings it back on the same port."""

    def __init__(
        self, clip: Path, path: str = "/cam", user: str = "", password: str = "",
        digest: bool = False,
    ) -> None:  # fmt: skip
        self.clip, self.path, self.user, self.password = clip, path, user, password
        self.digest = digest
        self.port = free_port()
        self.proc: subprocess.Popen[str] | None = None
        self.start()

    @property
    def url(self) -> str:
        auth = f"{self.user}:{self.password}@" if self.user else ""
        return f"rtsp://{auth}127.0.0.1:{self.port}{self.path}"

    def start(self) -> None:
        cmd = [SYSTEM_PYTHON, str(SERVER), str(self.clip), "--port", str(self.port)]
        cmd += ["--path", self.path]
        if self.user:
            cmd += ["--user", self.user, "--password", self.password]
            cmd += ["--digest"] if self.digest else []
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line.startswith("ready"):
            self.kill()
            raise RuntimeError(f"the RTSP server did not start: {line!r}")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            if self.proc.stdout is not None:
                self.proc.stdout.close()
            self.proc = None
