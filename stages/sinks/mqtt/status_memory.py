"""The camera topics a sink ever set, kept in its state folder, so a start after a hard kill
puts right what the killed run left: a retained ``online`` (and its fps) of a camera that is no
longer running, or no longer in the graph. A clean stop sets them itself; a SIGKILL, a power
cut or an OOM kill cannot, and only the pipeline's Last Will says so meanwhile.

The file (``cameras.<instance>.json``: a stream's file has no dot in its name) maps each topic
to the value it takes when nobody is there to keep it (``offline``, ``0.0``); it is rewritten
in one step (``pipeline.output_files``) only when a topic is new, so it costs nothing per frame.
"""

from __future__ import annotations

import json
import logging
import threading
from pathlib import Path

from pipeline.output_files import DEFAULT_MODES, Modes, make_folder, write_replacing

__all__ = ["StatusMemory"]


class StatusMemory:
    """topic -> its value when the camera is gone, loaded from and kept in ``path`` (None:
    nothing is kept, e.g. the folder cannot be made)."""

    def __init__(
        self, path: Path | None, log: logging.Logger, modes: Modes = DEFAULT_MODES
    ) -> None:
        self.path, self.log, self.modes = path, log, modes
        self.lock = threading.Lock()
        self.topics: dict[str, str] = self._load()
        self.warned = False

    def stale(self) -> dict[str, str]:
        """What every topic an earlier run set should say now, before anything of this run."""
        with self.lock:
            return dict(self.topics)

    def remember(self, topic: str, gone: str) -> None:
        """``topic`` is set by this run; once gone it should say ``gone``."""
        with self.lock:
            if self.topics.get(topic) == gone:
                return
            self.topics[topic] = gone
            self._write()

    def _load(self) -> dict[str, str]:
        if self.path is None:
            return {}
        try:
            doc = json.loads(self.path.read_bytes())
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:  # a damaged file loses nothing that counts
            self.log.warning("mqtt: cannot read %s (%s); starting a new one", self.path, exc)
            return {}
        if not isinstance(doc, dict):
            return {}
        return {str(k): str(v) for k, v in doc.items() if isinstance(v, str)}

    def _write(self) -> None:
        if self.path is None:
            return
        data = (json.dumps(self.topics, sort_keys=True, indent=0) + "\n").encode()
        try:
            make_folder(self.path.parent, self.modes)
            write_replacing(self.path, data, self.modes)
        except OSError as exc:
            if not self.warned:
                self.warned = True
                self.log.warning(
                    "mqtt: cannot keep the camera topics in %s (%s): after a hard kill, a "
                    "camera's retained status may say online until it runs again",
                    self.path,
                    exc.strerror or type(exc).__name__,
                )
