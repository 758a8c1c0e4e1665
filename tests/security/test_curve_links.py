"""A tcp:// link can be encrypted and its producer proven with CurveZMQ keys from the graph."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
import zmq
import zmq.auth

from support.graph import Graph
from support.rkpipe import poll_for, read_jsonl, run_rkpipe, start_rkpipe


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def curve_graph(tmp_path: Path, port: int | None, key: str, frames: int = 60) -> Graph:
    """A paced source -> a stage whose output is a CurveZMQ link on ``port`` (none: no
    endpoint) with the secret key file ``key`` -> JSONL."""
    link = {"endpoint": f"tcp://127.0.0.1:{port}"} if port is not None else {}
    return (
        Graph()
        .source("cam0", uses="synthetic", width=64, height=48, fps=30, realtime=True, frames=frames)
        .stage("work", uses="passthrough", inputs=["cam0"], **link, curve_key_file=key)
        .sink("out", uses="jsonl", inputs=["work"], path=tmp_path / "out.jsonl")
    )


@pytest.mark.integration
def test_a_curve_link_carries_every_frame_and_a_plain_peer_gets_nothing(
    tmp_path: Path, no_leaks
) -> None:
    _, secret = zmq.auth.create_certificates(str(tmp_path), "link")
    Path(secret).chmod(0o600)
    port = free_port()
    graph = curve_graph(tmp_path, port, Path(secret).name, frames=90).write(tmp_path)
    stats = tmp_path / "stats.json"
    run = start_rkpipe("run", str(graph), "--no-live", "--stats-out", str(stats))
    try:
        assert poll_for(lambda: (tmp_path / "out.jsonl").exists(), 60)
        plain = zmq.Context.instance().socket(zmq.DEALER)  # no keys: the handshake fails
        plain.setsockopt(zmq.LINGER, 0)
        plain.connect(f"tcp://127.0.0.1:{port}")
        plain.send_multipart([b"H", b"hello"])
        got = 0
        deadline = time.monotonic() + 1.0
        while time.monotonic() < deadline:
            if plain.poll(100):
                plain.recv_multipart()
                got += 1
        plain.close()
        _, err = run.communicate(timeout=90)
    finally:
        run.kill()
    assert got == 0
    assert run.returncode == 0, err
    assert [r["seq"] for r in read_jsonl(tmp_path / "out.jsonl")] == list(range(90))
    assert json.loads(stats.read_text())["exact"]


@pytest.mark.parametrize(
    ("endpoint", "key", "says"),
    [
        (None, "link.key_secret", "set endpoint"),
        ("tcp://127.0.0.1:5999", "missing.key_secret", "cannot read a ZeroMQ certificate"),
        ("tcp://127.0.0.1:5999", "link.key", "has no secret key"),
    ],
)
def test_a_curve_key_mistake_is_a_graph_error(
    tmp_path: Path, endpoint: str | None, key: str, says: str
) -> None:
    zmq.auth.create_certificates(str(tmp_path), "link")
    graph = curve_graph(tmp_path, None if endpoint is None else 5999, key)
    res = run_rkpipe("validate", str(graph.write(tmp_path)))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "stages.work.curve_key_file" in res.stderr and says in res.stderr
