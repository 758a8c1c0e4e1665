"""The metrics endpoint answers only requests that name this machine, and beyond localhost
only with its token."""

from __future__ import annotations

import http.client
from pathlib import Path

import pytest

from pipeline.stats.prometheus import start_metrics
from support.rkpipe import run_rkpipe, write_graph

TOKEN = "metrics-tok-8812"


def get(port: int, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/metrics", headers=headers)
        res = conn.getresponse()
        return res.status, res.read()
    finally:
        conn.close()


def graph(tmp_path: Path, settings: str) -> Path:
    return write_graph(
        tmp_path,
        f"[pipeline]\nprometheus_port = 0\n{settings}"
        '[stages.cam0]\nuses = "synthetic"\nframes = 5\n'
        f'[stages.out]\nuses = "jsonl"\ninputs = ["cam0"]\npath = "{tmp_path}/o.jsonl"\n',
    )


def test_metrics_beyond_localhost_without_a_token_is_a_graph_error(tmp_path: Path) -> None:
    res = run_rkpipe("validate", str(graph(tmp_path, 'prometheus_host = "0.0.0.0"\n')))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "pipeline" in res.stderr and "set prometheus_token" in res.stderr
    with_token = f'prometheus_host = "0.0.0.0"\nprometheus_token = "{TOKEN}"\n'
    res = run_rkpipe("validate", str(graph(tmp_path, with_token)))
    assert res.returncode == 0, res.stderr


@pytest.mark.parametrize("token", [None, TOKEN])
def test_metrics_answer_only_this_machines_names_and_the_token(token: str | None) -> None:
    server = start_metrics("127.0.0.1", 0, token)
    try:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        status, _ = get(server.port, {"Host": "evil.example:9000", **auth})
        assert status == 403  # a page elsewhere, rebinding its name to us
        status, body = get(server.port, {"Host": f"127.0.0.1:{server.port}", **auth})
        assert status == 200 and b"rkpipe_build_info" in body
        status, body = get(server.port, {"Host": "localhost"})
        assert (status, b"rkpipe_build_info" in body) == ((401, False) if token else (200, True))
        status, _ = get(server.port, {"Host": "localhost", "Authorization": "Bearer wrong-123"})
        assert status == (401 if token else 200)
    finally:
        server.stop()
