"""A sink that writes JSON lines: one per message (stream, seq, timestamps, payload summary),
or with ``events_only`` one per analytics event, with optional size- or time-based rotation.
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import time
from pathlib import Path
from typing import Any

from pydantic import Field

from pipeline.detections import DETECTIONS_PREFIX, Detections
from pipeline.messages import Message
from pipeline.output_files import (
    DEFAULT_MODES,
    FileMode,
    Modes,
    file_mode_field,
    make_folder,
    open_file,
)
from pipeline.outputs import OutputFile
from pipeline.stage import Context, Stage, StageConfig
from stages.classes import class_name

__all__ = ["JsonlSink", "RotatingFile"]


class RotatingFile:
    """An append-only file of lines that moves aside to ``name.1`` (older ones to ``.2`` ...)
    when the next write would pass ``max_bytes`` or it has been open ``max_age_s``; ``keep``
    old files are kept, older ones deleted. Without limits it is a plain appended file. Files
    are ``modes.file`` and never written through a link at their name (``output_files``).

    Each ``write`` is one unbuffered append of whole lines: once it returns they are in the
    file (a process killed right after loses none of them), and a write the disk cannot take
    (full) is undone, so the file never ends in half a line, and raises OSError."""

    def __init__(
        self,
        path: Path,
        max_bytes: int | None = None,
        max_age_s: float | None = None,
        keep: int = 5,
        modes: Modes = DEFAULT_MODES,
    ) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.max_age_s = max_age_s
        self.keep = keep
        self.modes = modes
        make_folder(path.parent, modes)
        self._open()

    def _open(self) -> None:
        self.fd = open_file(self.path, self.modes, append=True)
        self.size = os.fstat(self.fd).st_size
        self.opened = time.monotonic()

    def write(self, lines: list[str]) -> None:
        """Append ``lines`` (no newlines in them) at once, rotating first if it is due."""
        data = "".join(f"{line}\n" for line in lines).encode()
        if self._due(len(data)):
            if self.size:
                self.rotate()
            else:  # nothing to move aside yet: the period starts now
                self.opened = time.monotonic()
        try:
            written = os.write(self.fd, data)
            if written != len(data):
                raise OSError(errno.ENOSPC, f"wrote {written} of {len(data)} bytes")
        except OSError:
            with contextlib.suppress(OSError):  # no half line is left behind
                os.ftruncate(self.fd, self.size)
            raise
        self.size += len(data)

    def _due(self, n: int) -> bool:
        if self.max_bytes is not None and self.size + n > self.max_bytes:
            return True
        return self.max_age_s is not None and time.monotonic() - self.opened >= self.max_age_s

    def rotate(self) -> None:
        """Close the current file, shift ``name.k`` to ``name.k+1`` and start a new one."""
        os.close(self.fd)
        old = [self.path.with_name(f"{self.path.name}.{k}") for k in range(self.keep + 1)]
        old[0] = self.path
        if self.keep == 0:
            self.path.unlink(missing_ok=True)
        for k in range(self.keep, 0, -1):  # .keep-1 -> .keep overwrites the oldest
            if old[k - 1].exists():
                os.replace(old[k - 1], old[k])
        self._open()

    def close(self) -> None:
        if self.fd >= 0:
            os.close(self.fd)
            self.fd = -1


class JsonlSinkConfig(StageConfig):
    path: OutputFile = Field("out/events.jsonl", description="file to append to; {stream} allowed")
    events_only: bool = Field(False, description="one line per meta['events'] entry")
    rotate_mb: float | None = Field(None, gt=0, description="start a new file past this")
    rotate_every_s: float | None = Field(None, gt=0, description="new file this often")
    keep: int = Field(5, ge=0, description="rotated files kept: path.1 (newest) .. path.N")
    file_mode: FileMode = file_mode_field()


class JsonlSink(Stage[JsonlSinkConfig]):
    """Append a JSON line per message to ``path`` (relative paths: the working directory).

    Arrays are summarised by shape and dtype, never dumped; metadata goes in as it is. With
    ``events_only`` each event of ``meta["events"]`` is written as its own line instead.
    """

    replicable = False
    reads_frame = False  # a frame's image is only summarised by its shape

    def setup(self, ctx: Context) -> None:
        self.ctx = ctx
        self.files: dict[Path, RotatingFile] = {}
        mb = self.config.rotate_mb
        self.max_bytes = None if mb is None else max(1, int(mb * 1024 * 1024))
        self.modes = Modes.of(self.config.file_mode)

    def _file(self, stream: str) -> RotatingFile:
        path = Path(self.config.path.format(stream=stream))
        f = self.files.get(path)
        if f is None:
            cfg = self.config
            f = RotatingFile(path, self.max_bytes, cfg.rotate_every_s, cfg.keep, self.modes)
            self.files[path] = f
            if f.size:  # say so: a reader counting lines would otherwise mix two runs
                self.ctx.log.warning(
                    "appending to %s (%s already there from an earlier run)", path, _size(f.size)
                )
        return f

    def process(self, msg: Message) -> Message:
        events_only = self.config.events_only
        records = (msg.meta.get("events") or []) if events_only else [self.record(msg)]
        if not records:
            return msg
        lines = [json.dumps(rec, separators=(",", ":"), default=_plain) for rec in records]
        self._file(msg.stream).write(lines)  # a full disk raises: the frame is counted lost
        return msg

    @staticmethod
    def record(msg: Message) -> dict[str, Any]:
        """One message as JSON: detections listed one object each, other arrays by shape."""
        rec: dict[str, Any] = {
            "stream": msg.stream,
            "seq": msg.seq,
            "t_capture": round(msg.t_capture, 6),
            "latency_ms": round((time.monotonic_ns() - msg.t_mono_ns) / 1e6, 3),
            "meta": msg.meta,
            "arrays": {
                k: [list(v.shape), v.dtype.str]
                for k, v in msg.arrays.items()
                if not k.startswith(DETECTIONS_PREFIX)
            },
        }
        det = msg.detections
        if det is not None:
            rec["detections"] = detection_records(det)
        return rec

    def close(self) -> None:
        for f in self.files.values():
            f.close()


def detection_records(det: Detections) -> list[dict[str, Any]]:
    """Detections as plain objects: box (x1, y1, x2, y2 pixels), score, class, and for
    tracked ones the track id, age (frames) and velocity (px/frame)."""
    velocity = det.data.get("velocity")
    age = det.data.get("age")
    out = []
    for i in range(len(det)):
        cid = int(det.class_id[i])
        rec = {
            "box": [round(float(v), 1) for v in det.xyxy[i]],
            "score": round(float(det.confidence[i]), 3),
            "class_id": cid,
            "class_name": class_name(cid),
        }
        if det.tracker_id[i] >= 0:  # -1: not (yet) tracked
            rec["track_id"] = int(det.tracker_id[i])
            if age is not None:
                rec["age"] = int(age[i])
            if velocity is not None:
                rec["velocity"] = [round(float(v), 2) for v in velocity[i]]
        out.append(rec)
    return out


def _size(n: int) -> str:
    """A byte count for people: 512 bytes, 3.4 kB, 1.2 MB."""
    if n < 1000:
        return f"{n} bytes"
    return f"{n / 1000:.1f} kB" if n < 1_000_000 else f"{n / 1_000_000:.1f} MB"


def _plain(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    return str(obj)
