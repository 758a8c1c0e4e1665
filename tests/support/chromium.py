"""Headless Chromium for tests that check what a person's browser does with rkpipe's output."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from pathlib import Path

__all__ = ["CHROMIUM_FLAGS", "chromium_exe", "dump_dom"]

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_exe() -> str | None:
    exe = shutil.which("chromium") or "/usr/bin/chromium"
    return exe if Path(exe).exists() else None


def dump_dom(exe: str, url: str, profile: Path, *args: str, timeout: float = 60) -> str:
    """The page's DOM after its scripts ran, from a fresh profile; the browser's whole
    process group is killed afterwards so nothing outlives the call."""
    cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", *args, "--dump-dom", url]
    proc = subprocess.Popen(
        cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        out, _ = proc.communicate(timeout=timeout)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    return out.decode()
