"""A background ``rkpipe run`` for tests that change it while it runs (reloads, the control
API, MQTT commands): its log goes to a file read as it grows, its JSONL sink is read up to its
last whole line, and it is drained or killed at the end."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from support.rkpipe import poll_for, start_rkpipe

__all__ = ["Running", "running"]


class Running:
    """``rkpipe run GRAPH`` in the graph's folder, with its stats written there."""

    def __init__(self, graph: Path, *extra: str) -> None:
        self.graph = graph
        self.folder = graph.parent
        self.log_path = self.folder / "run.log"
        with self.log_path.open("w") as log:
            self.proc = start_rkpipe(
                "run", str(graph), "--no-live", "--stats-out", str(self.folder / "stats.json"),
                *extra, cwd=self.folder, stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

    def log(self) -> list[str]:
        return self.log_path.read_text().splitlines()

    def said(self, text: str) -> list[str]:
        return [line for line in self.log() if text in line]

    def reload_lines(self) -> list[str]:
        return [line for line in self.log() if line.startswith("rkpipe: reload:")]

    def rows(self) -> list[dict]:
        """The sink's lines so far (one still being written is read next time)."""
        path = self.folder / "out.jsonl"
        text = path.read_text() if path.exists() else ""
        whole = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in whole.splitlines() if line.strip()]

    def wait_for_log(self, text: str, count: int = 1) -> None:
        found = poll_for(lambda: len(self.said(text)) >= count, timeout=90)
        assert found, f"no {text!r} in the log:\n" + "\n".join(self.log())

    def wait_for_rows(self, more: int) -> None:
        n = len(self.rows())
        assert poll_for(lambda: len(self.rows()) >= n + more, timeout=60), "\n".join(self.log())

    def finish(self) -> dict:
        """Drain (SIGTERM), then the run's stats."""
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(timeout=120)
        assert self.proc.returncode == 143, "\n".join(self.log())
        return json.loads((self.folder / "stats.json").read_text())


@contextmanager
def running(graph: Path, *extra: str) -> Iterator[Running]:
    run = Running(graph, *extra)
    try:
        yield run
    finally:
        if run.proc.poll() is None:
            run.proc.kill()
            run.proc.wait()
