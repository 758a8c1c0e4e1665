"""The running graph's file as the one truth a change goes through: an edit is validated in
full first (the same loader as ``rkpipe validate``), then written back atomically, keeping the
user's comments, and the run is asked to reload it (SIGHUP to its supervisor), exactly as if
the user had edited the file. A bad edit changes nothing and says why."""

from __future__ import annotations

import contextlib
import fcntl
import os
import signal
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import GraphError
from ..runtime.child import PARENT_ENV
from ..runtime.job import GRAPH_ENV
from .diff import diff_graphs
from .edit import EditError
from .load import load_graph

__all__ = ["Applied", "GraphFile"]


@dataclass
class Applied:
    """What a change did: ``in_place``: stages whose options change in the running stages;
    ``added`` / ``removed``: sources started or ended in the running run; ``restart``: the
    other changes, one line each; ``reloaded``: the run was asked to."""

    in_place: list[str] = field(default_factory=list)
    restart: list[str] = field(default_factory=list)
    reloaded: bool = False
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "in_place": self.in_place,
            "added": self.added,
            "removed": self.removed,
            "restart": self.restart,
            "reloaded": self.reloaded,
        }


class GraphFile:
    """The graph file at ``path`` of the run whose supervisor is ``supervisor_pid``."""

    def __init__(self, path: Path, supervisor_pid: int | None) -> None:
        self.path = path
        self.supervisor_pid = supervisor_pid

    @classmethod
    def of_this_run(cls) -> GraphFile | None:
        """The graph file of the run this stage process is part of (from the environment its
        supervisor gave it); None outside a run (a test's inline stage)."""
        path, pid = os.environ.get(GRAPH_ENV), os.environ.get(PARENT_ENV, "")
        if not path:
            return None
        return cls(Path(path), int(pid) if pid.isdigit() else None)

    def read(self) -> str:
        try:
            return self.path.read_text()
        except OSError as exc:
            raise EditError(
                f"{self.path}: cannot read the graph file: {exc.strerror}", 409
            ) from None

    def change(self, edit: Callable[[str], str]) -> Applied:
        """Apply ``edit`` (old text -> new text): validated, written, reloaded. Raises
        EditError (status 400/404/409) or GraphError (the validator's messages, file:line)."""
        with self._locked():
            old = self.read()
            new = edit(old)
            if new == old:
                return Applied()
            graph = load_graph(self.path, text=new)  # GraphError: nothing is written
            try:
                before = load_graph(self.path, text=old)
            except GraphError:  # the file was broken already: everything is new
                diff = None
            else:
                diff = diff_graphs(before, graph)
            self._write(new)
        applied = Applied(
            sorted(diff.options) if diff else [],
            list(diff.restart) if diff else ["the graph file was not valid before"],
            added=list(diff.added) if diff else [],
            removed=list(diff.removed) if diff else [],
        )
        applied.reloaded = self._reload()
        return applied

    def _write(self, text: str) -> None:
        """Replace the file in one step (a reader sees the old or the new text, whole), with
        its mode kept."""
        folder = self.path.parent
        try:
            mode = self.path.stat().st_mode & 0o7777
            fd, tmp = tempfile.mkstemp(prefix=f".{self.path.name}.", dir=folder)
        except OSError as exc:
            raise EditError(
                f"{self.path}: cannot write the graph file: {exc.strerror}", 409
            ) from None
        try:
            with os.fdopen(fd, "w") as f:
                f.write(text)
                f.flush()
                os.fsync(f.fileno())
            os.chmod(tmp, mode)
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise EditError(
                f"{self.path}: cannot write the graph file: {exc.strerror}", 409
            ) from None

    def _reload(self) -> bool:
        if not self.supervisor_pid:
            return False
        try:
            os.kill(self.supervisor_pid, signal.SIGHUP)
        except OSError:
            return False
        return True

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """One change at a time, across processes: a lock on the file itself (taken again
        when a change replaced the file while this one waited)."""
        while True:
            try:
                fd = os.open(self.path, os.O_RDONLY | os.O_CLOEXEC)
            except OSError as exc:
                raise EditError(
                    f"{self.path}: cannot open the graph file: {exc.strerror}", 409
                ) from None
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                same = os.stat(self.path).st_ino == os.fstat(fd).st_ino
            except OSError:
                same = False
            if same:
                break
            os.close(fd)
        try:
            yield
        finally:
            os.close(fd)
