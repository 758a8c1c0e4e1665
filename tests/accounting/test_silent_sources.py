"""Every run ends with its word: a run in which a camera never sent a frame (it refuses, or
accepts and says nothing) still prints its summary, says why of each camera, and exits
with an error."""

from __future__ import annotations

import json
import socket
import threading
from pathlib import Path

import pytest

from pipeline.errors import EXIT_FAILED
from support.cameras import free_port
from support.rkpipe import run_rkpipe, write_graph

pytestmark = pytest.mark.integration


class SilentServer:
    """A TCP server that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.held.append(conn)

    def close(self) -> None:
        self.sock.close()
        for conn in self.held:
            conn.close()


@pytest.fixture
def silent_server():
    server = SilentServer()
    yield server
    server.close()


@pytest.mark.parametrize("kind", ["refuses", "silent"])
def test_a_camera_that_never_sends_gets_a_summary_and_an_error(
    tmp_path: Path, kind: str, silent_server: SilentServer, no_leaks
) -> None:
    port = free_port() if kind == "refuses" else silent_server.port
    graph = write_graph(
        tmp_path,
        f"""
[pipeline]
name = "never"
[stages.cam0]
uses = "capture"
source = "rtsp://127.0.0.1:{port}/stream"
open_timeout_s = 1
read_timeout_s = 1
backoff_s = 0.2
max_backoff_s = 0.5
[stages.out]
uses = "jsonl"
inputs = ["cam0"]
path = "{tmp_path}/out.jsonl"
""",
    )
    res = run_rkpipe(
        "run", str(graph), "--duration", "3", "--stats-out", str(tmp_path / "s.json"), timeout=120
    )
    assert res.returncode == EXIT_FAILED, res.stderr
    assert "rkpipe: delivery" in res.stderr  # the summary, though no frame moved
    assert "cam0 -> out: produced 0, delivered 0: exact" in res.stderr
    assert "rkpipe: cam0 was never live: " in res.stderr, res.stderr
    errors = [line for line in res.stderr.splitlines() if line.startswith("rkpipe: error:")]
    assert len(errors) == 1 and "cam0: produced no frames" in errors[0], res.stderr
    stats = json.loads((tmp_path / "s.json").read_text())
    assert stats["ran"] and not stats["health"]["cam0"]["ever_live"]
