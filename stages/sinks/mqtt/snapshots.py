"""Event snapshots over MQTT: an analytics stage saves a JPEG for an event and names it in
``event["snapshot"]`` (a path relative to the output folder, ``snapshot_root``); the sink
publishes its bytes, retained, on ``snapshot_topic`` (the latest per stream and event type).

The path comes from another process, so it is held to the output folder, a ``.jpg``/``.jpeg``
name, JPEG bytes and a size bound: an event can never make the sink publish another file.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["MAX_SNAPSHOT_BYTES", "read_snapshot"]

MAX_SNAPSHOT_BYTES = 16 << 20
JPEG_MAGIC = b"\xff\xd8\xff"


def read_snapshot(root: Path, rel: object) -> bytes | str:
    """The JPEG bytes at ``root / rel``, or why they cannot be published."""
    if not isinstance(rel, str) or not rel:
        return "its snapshot field is not a path"
    if Path(rel).suffix.lower() not in (".jpg", ".jpeg"):
        return "its snapshot is not a .jpg file"
    base = root.resolve()
    path = (base / rel).resolve()
    if not path.is_relative_to(base):
        return f"its snapshot lies outside {root}"
    try:
        with path.open("rb") as f:
            if os.fstat(f.fileno()).st_size > MAX_SNAPSHOT_BYTES:
                return f"its snapshot is larger than {MAX_SNAPSHOT_BYTES >> 20} MB"
            data = f.read()
    except OSError as exc:
        return f"its snapshot cannot be read ({exc.strerror or type(exc).__name__})"
    if not data.startswith(JPEG_MAGIC):
        return "its snapshot is not a JPEG"
    return data
