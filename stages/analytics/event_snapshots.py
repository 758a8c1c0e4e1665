"""Event snapshots: a JPEG of the frame at each line crossing or zone event (the object's box,
its track id and the line or zone drawn on it) and a crop of the object, for a person to look
at later. The event gets ``snapshot`` (and ``snapshot_crop``): paths relative to the
snapshots folder, ``{stream}/{YYYY-MM-DD}/{HHMMSS.mmm}_{type}_{line or zone}_{track}.jpg``
(UTC, the event's capture time), the crop beside it as ``....crop.jpg``.

An event names its files only once they are on disk, so a sink that reads them (the mqtt
sink publishes the bytes) never meets a missing file, and no event names a file that will not
appear. The frame is copied (its shared-memory slot is reused once the message moves on) and
encoded and written by one background thread, while the stage waits for it, up to ``wait_s``:
a slow disk costs the stage at most that, once. A snapshot not written by then is given up
(``snapshots_late``; the writer then removes what it wrote), and while the writer is still
busy with one, new events go without (``snapshots_dropped``), so a stuck disk never holds the
pipeline. A write that fails (a full disk, a name the file system refuses) is counted as
``snapshots_failed`` and said once per cause. Files appear atomically (written aside to a new
file made exclusively, then renamed: ``pipeline.output_files``, so a link planted at a name is
replaced, never written through), with the stage's ``file_mode`` (0640, folders 0750, by
default). Retention keeps the newest ``keep`` snapshots in the folder and deletes those older
than ``max_age_h``, at the start, every few seconds while writing, and at the end.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import tempfile
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from pipeline.detections import Detections
from pipeline.errors import StageSetupError
from pipeline.messages import Message
from pipeline.output_files import (
    DEFAULT_MODES,
    Modes,
    folder_problem,
    make_folder,
    write_aside,
)
from stages.event_files import event_file, prune
from stages.sinks.annotate import annotate_event

__all__ = ["SnapshotOptions", "SnapshotWriter", "snapshot_path"]

SNAPSHOT_DIR = "out/snapshots"  # where snapshots go, and where sinks look for them

_CROP = ".crop.jpg"


class SnapshotOptions(BaseModel):
    """The ``snapshot`` option of line_crossing and zones: ``true``, a folder, or a table."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    dir: str = Field(SNAPSHOT_DIR, description="folder (relative: the working directory)")
    crop: bool = Field(True, description="also save a crop of the object")
    quality: int = Field(85, ge=1, le=100, description="JPEG quality")
    keep: int = Field(1000, ge=1, description="newest snapshots kept in the folder")
    max_age_h: float = Field(168.0, ge=0, description="older ones are deleted; 0: no limit")
    pending: int = Field(8, ge=1, description="frames waiting to be written; more: dropped")
    wait_s: float = Field(
        2.0, ge=0, description="longest the stage waits for a snapshot; later: none"
    )


def snapshot_path(event: Mapping[str, Any]) -> str:
    """Where ``event``'s snapshot goes, relative to the snapshots folder."""
    return event_file(event, ".jpg")


def _crop_path(path: str) -> str:
    return path[: -len(".jpg")] + _CROP


def _caption(ev: Mapping[str, Any]) -> str:
    what = {
        "line_crossing": f"crossed {ev.get('line')} ({ev.get('direction')})",
        "zone_enter": f"entered {ev.get('zone')}",
        "zone_exit": f"left {ev.get('zone')} after {ev.get('dwell_s', 0):.1f}s",
    }.get(ev["type"], ev["type"])
    return f"{ev['stream']}  {ev['time']}  {ev['class_name']} #{ev['track_id']} {what}"


QUEUED, WRITTEN, FAILED, LATE = "queued", "written", "failed", "late"


@dataclass
class _Shot:
    """One event's picture: what to draw, where to write it, and how far it got."""

    event: dict[str, Any]  # named its files once they are written
    path: str
    crop: str | None
    box: list[float] | None
    caption: str
    label: str
    track_id: int
    overlay: dict[str, Any]  # {"lines": {name: ...}} or {"zones": {name: ...}}
    state: str = QUEUED  # -> WRITTEN or FAILED by the writer, or LATE by the stage


class SnapshotWriter:
    """Writes event snapshots from a background thread; ``capture`` and ``settle`` on the
    stage's thread."""

    prune_every_s = 5.0

    def __init__(
        self,
        options: SnapshotOptions,
        where: str,
        log: logging.Logger,
        modes: Modes = DEFAULT_MODES,
    ) -> None:
        self.options = options
        self.root = Path(options.dir)
        self.log = log
        self.modes = modes
        _check_writable(self.root, where, modes)
        self.queue: queue.Queue[tuple[np.ndarray, list[_Shot]] | None] = queue.Queue(
            options.pending
        )
        self.cond = threading.Condition()  # guards each shot's state and the counts
        self.written = self.dropped = self.failed = self.late = 0
        self.stuck = 0  # shots given up that the writer has not yet passed
        self.causes: set[str] = set()  # failures said so far
        self._reported = (0, 0, 0, 0)
        self._next_prune = 0.0
        self._thread = threading.Thread(target=self._run, name="snapshots", daemon=True)
        self._thread.start()

    def capture(
        self,
        msg: Message,
        det: Detections,
        events: Iterable[dict[str, Any]],
        overlay_key: str,
        overlay: Mapping[str, Any],
    ) -> list[_Shot]:
        """Queue a snapshot of ``msg``'s frame for each object event; follow with ``settle``
        before the events move on. Drop and count them while the writer is behind."""
        targets = [ev for ev in events if "track_id" in ev]
        if not targets or msg.frame is None:
            return []
        with self.cond:
            behind = self.stuck > 0
        if behind or self.queue.full():  # only this thread adds, so the put cannot block
            if not self.dropped:
                self.log.warning("snapshots: the writer is behind; dropping (counted)")
            self.dropped += len(targets)
            return []
        shots = [self._shot(ev, det, overlay_key, overlay) for ev in targets]
        self.queue.put_nowait((np.array(msg.frame, copy=True), shots))
        return shots

    def settle(self, shots: list[_Shot]) -> None:
        """Wait up to ``wait_s`` for ``shots``; each event written names its files, the others
        name none (a shot still unwritten is given up: the writer will not leave its file)."""
        deadline = time.monotonic() + self.options.wait_s
        with self.cond:
            while any(s.state == QUEUED for s in shots):
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
            for shot in shots:
                if shot.state == WRITTEN:
                    shot.event["snapshot"] = shot.path
                    if shot.crop is not None:
                        shot.event["snapshot_crop"] = shot.crop
                elif shot.state == QUEUED:
                    shot.state = LATE
                    self.late += 1
                    self.stuck += 1
                    if self.late == 1:
                        self.log.warning(
                            "snapshots: a write took longer than %gs; that event goes without, "
                            "and events go without until the writer is back (counted)",
                            self.options.wait_s,
                        )

    def _shot(
        self, ev: dict[str, Any], det: Detections, key: str, overlay: Mapping[str, Any]
    ) -> _Shot:
        rows = np.flatnonzero(det.tracker_id == ev["track_id"])
        box = det.xyxy[rows[0]].tolist() if len(rows) else None
        path = snapshot_path(ev)
        crop = _crop_path(path) if self.options.crop and box is not None else None
        name = str(ev.get("line") or ev.get("zone"))
        item = {name: overlay[name]} if name in overlay else {}
        label = f"{ev['class_name']} #{ev['track_id']}"
        return _Shot(ev, path, crop, box, _caption(ev), label, ev["track_id"], {key: item})

    def counts(self) -> dict[str, int]:
        """What changed since the last call: snapshots written, dropped, failed, late."""
        with self.cond:
            now = (self.written, self.dropped, self.failed, self.late)
        delta = [a - b for a, b in zip(now, self._reported, strict=True)]
        self._reported = now
        names = ("snapshots", "snapshots_dropped", "snapshots_failed", "snapshots_late")
        return {k: n for k, n in zip(names, delta, strict=True) if n}

    def close(self, timeout_s: float = 10.0) -> None:
        """Write what is queued, prune, and stop the thread."""
        self.queue.put(None)
        self._thread.join(timeout_s)

    # -- the writer thread -------------------------------------------------------------------
    def _run(self) -> None:
        self._prune()
        while (job := self.queue.get()) is not None:
            frame, shots = job
            for shot in shots:
                self._write_shot(frame, shot)
            if time.monotonic() >= self._next_prune:
                self._prune()
        self._prune()

    def _write_shot(self, frame: np.ndarray, shot: _Shot) -> None:
        if self._given_up(shot):
            return
        files: list[tuple[Path, Path]] = []  # (written aside, its name)
        try:
            img = annotate_event(
                frame, shot.caption, shot.box, shot.label, shot.track_id, **shot.overlay
            )
            if shot.crop is not None and shot.box is not None:
                files.append(self._write(shot.crop, _crop(frame, shot.box)))
            files.append(self._write(shot.path, img))
        except (OSError, ValueError, cv2.error) as exc:  # the thread goes on, whatever failed
            _remove(aside for aside, _ in files)
            self._failed(shot, exc)
            return
        with self.cond:  # the stage's ``settle`` sees it written, or it gave up: no file
            if shot.state == QUEUED:
                try:
                    for aside, path in files:  # the crop first: the main file says "done"
                        os.replace(aside, path)
                    shot.state = WRITTEN
                    self.written += 1
                except OSError as exc:
                    _remove([aside for aside, _ in files] + [path for _, path in files])
                    self._failed(shot, exc)
            else:
                _remove(aside for aside, _ in files)
                self.stuck -= 1
            self.cond.notify_all()

    def _given_up(self, shot: _Shot) -> bool:
        with self.cond:
            if shot.state != LATE:
                return False
            self.stuck -= 1
            return True

    def _failed(self, shot: _Shot, exc: Exception) -> None:
        """Count a snapshot that cannot be written; say each cause once."""
        cause = _cause(exc)
        with self.cond:
            if shot.state == LATE:
                self.stuck -= 1
            else:
                shot.state = FAILED
            self.failed += 1
            first = cause not in self.causes
            self.causes.add(cause)
            self.cond.notify_all()
        if first:
            self.log.warning(
                "snapshots: cannot write %s: %s (said once; the rest that fail so are counted "
                "as snapshots_failed, and their events name no snapshot)",
                self.root / shot.path,
                cause,
            )

    def _write(self, rel: str, img: np.ndarray) -> tuple[Path, Path]:
        """Encode and write ``img`` aside; returns (that file, the name it is to get)."""
        quality = [cv2.IMWRITE_JPEG_QUALITY, self.options.quality]
        ok, data = cv2.imencode(".jpg", img, quality)
        if not ok:
            raise OSError(f"JPEG encoding failed for a {img.shape} image")
        path = self.root / rel
        make_folder(path.parent, self.modes)
        return write_aside(path, data.tobytes(), self.modes), path

    def _prune(self) -> None:
        self._next_prune = time.monotonic() + self.prune_every_s
        try:
            prune(self.root, self.options.keep, self.options.max_age_h * 3600, ".jpg", _CROP)
        except OSError as exc:
            self.log.warning("snapshots: cannot prune %s: %s", self.root, exc)


def _cause(exc: Exception) -> str:
    """What went wrong, without the file name (one cause for every file it hits)."""
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


def _remove(paths: Iterable[Path]) -> None:
    for path in paths:
        with contextlib.suppress(OSError):
            path.unlink(missing_ok=True)


def _crop(frame: np.ndarray, box: list[float]) -> np.ndarray:
    """The object with a margin of a fifth of its size (at least 16 px) on every side."""
    x1, y1, x2, y2 = box
    mx, my = max(16.0, 0.2 * (x2 - x1)), max(16.0, 0.2 * (y2 - y1))
    h, w = frame.shape[:2]
    left, top = int(max(0, x1 - mx)), int(max(0, y1 - my))
    right, bottom = int(min(w, x2 + mx)), int(min(h, y2 + my))
    return frame[top : max(bottom, top + 1), left : max(right, left + 1)]


def _check_writable(folder: Path, where: str, modes: Modes) -> None:
    why = folder_problem(folder)
    if why is not None:
        raise StageSetupError(f"{where}.snapshot.dir: {why}")
    try:
        make_folder(folder, modes)
        fd, name = tempfile.mkstemp(prefix=".probe-", dir=folder)
        os.close(fd)
        os.unlink(name)
    except OSError as exc:
        msg = f"{where}.snapshot.dir: cannot write to folder {folder}: {exc.strerror or exc}"
        raise StageSetupError(msg) from None
