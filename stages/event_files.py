"""Files made for events (snapshots, clips): where they go and how long they stay.

An event's file is ``{stream}/{YYYY-MM-DD}/{HHMMSS.mmm}_{type}_{line or zone}_{track}{ext}``
under its folder (UTC capture time), so a folder sorts by day and time and a person can tell
what each file shows. Names are made safe for any file system and bounded (``safe_name``): a
long line or zone name keeps a readable head and a short hash of the whole, so it never makes a
name the file system refuses. ``prune`` keeps the newest N and deletes those past an age, touching
only files named this way.
"""

from __future__ import annotations

import contextlib
import hashlib
import re
import time
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

__all__ = ["MAX_NAME", "event_file", "prune", "safe_name"]

MAX_NAME = 120  # characters of a name made here; file systems allow 255 bytes
_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_name(text: str, limit: int = MAX_NAME, exact: bool = False) -> str:
    """``text`` as one file name of at most ``limit`` ASCII characters: unsafe characters
    become ``_``; a longer one keeps its head and a hash of the whole ``text`` (two names
    that differ only past the head stay apart). ``exact``: every name that had to change
    gets the hash, so two names never share a file (``a/b`` and ``a_b``)."""
    name = _UNSAFE.sub("_", text).strip("._") or "_"
    if len(name) <= limit and (name == text or not exact):
        return name
    digest = hashlib.sha256(text.encode()).hexdigest()[:10]
    return f"{name[: limit - len(digest) - 1]}~{digest}"


def event_file(event: Mapping[str, Any], ext: str) -> str:
    """Where a file of ``event`` goes, relative to its folder (``ext``: ".jpg", ".mp4")."""
    t = datetime.fromtimestamp(float(event["t_capture"]), timezone.utc)
    what = event.get("line") or event.get("zone") or ""
    stem = f"{t:%H%M%S}.{t.microsecond // 1000:03d}_{event['type']}_{what}_{event['track_id']}"
    return f"{safe_name(event['stream'])}/{t:%Y-%m-%d}/{safe_name(stem)}{ext}"


def prune(root: Path, keep: int, max_age_s: float, ext: str, companion: str = "") -> int:
    """Delete event files (``ext``) under ``root`` past the newest ``keep`` or older than
    ``max_age_s`` (0: no age limit); a file ending in ``companion`` (a snapshot's
    ``.crop.jpg``) goes with its main file. Returns how many were deleted."""
    ours = re.compile(rf"^\d{{6}}\.\d{{3}}_.+{re.escape(ext)}$")
    groups: dict[Path, list[Path]] = {}
    for day in root.glob("*/????-??-??"):
        for f in day.iterdir():
            if ours.match(f.name):
                main = f.with_name(f.name.replace(companion, ext)) if companion else f
                groups.setdefault(main, []).append(f)
    aged = sorted(((_mtime(files), files) for files in groups.values()), reverse=True)
    cutoff = time.time() - max_age_s if max_age_s > 0 else float("-inf")
    doomed = [files for i, (t, files) in enumerate(aged) if i >= keep or t < cutoff]
    for files in doomed:
        for f in files:
            f.unlink(missing_ok=True)
    for day in {f.parent for files in doomed for f in files}:
        with contextlib.suppress(OSError):  # only when empty
            day.rmdir()
    return len(doomed)


def _mtime(files: list[Path]) -> float:
    try:
        return max(f.stat().st_mtime for f in files)
    except OSError:  # deleted meanwhile (another stage pruning the same folder)
        return float("-inf")
