"""A tcp:// link is encrypted unless the graph says otherwise, its key is the user's alone, and
a HELLO with the run's token still cannot take a live consumer's place."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import zmq
import zmq.auth

from pipeline.transport.codec import packb
from pipeline.transport.links import CREDIT, HELLO, Outlet
from support.rkpipe import poll_for, run_rkpipe, write_graph

TOKEN = "run-token-1234"


def tcp_graph(tmp_path: Path, extra: str) -> Path:
    return write_graph(
        tmp_path,
        '[stages.cam0]\nuses = "synthetic"\nframes = 5\n'
        '[stages.work]\nuses = "passthrough"\ninputs = ["cam0"]\n'
        f'endpoint = "tcp://127.0.0.1:5998"\n{extra}'
        f'[stages.out]\nuses = "jsonl"\ninputs = ["work"]\npath = "{tmp_path}/o.jsonl"\n',
    )


def test_a_tcp_link_in_clear_is_refused_unless_the_graph_says_insecure(tmp_path: Path) -> None:
    res = run_rkpipe("validate", str(tcp_graph(tmp_path, "")))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "stages.work.endpoint" in res.stderr and "insecure = true" in res.stderr
    res = run_rkpipe("validate", str(tcp_graph(tmp_path, "insecure = true\n")))
    assert res.returncode == 0, res.stderr
    assert "warning: stages.work: the tcp:// link" in res.stderr and "not encrypted" in res.stderr


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o666, 0o604])
def test_a_curve_secret_key_others_can_read_is_refused_with_the_fix(
    tmp_path: Path, mode: int
) -> None:
    _, secret = zmq.auth.create_certificates(str(tmp_path), "link")
    Path(secret).chmod(mode)
    graph = tcp_graph(tmp_path, 'curve_key_file = "link.key_secret"\n')
    res = run_rkpipe("validate", str(graph))
    assert res.returncode == 2 and "Traceback" not in res.stderr
    assert "stages.work.curve_key_file" in res.stderr
    assert f"is mode {mode:o}" in res.stderr and f"chmod 600 {secret}" in res.stderr
    for ok in (0o600, 0o400):
        Path(secret).chmod(ok)
        res = run_rkpipe("validate", str(graph))
        assert res.returncode == 0 and "warning" not in res.stderr, res.stderr


def dealer(endpoint: str, identity: bytes) -> zmq.Socket:
    sock = zmq.Context.instance().socket(zmq.DEALER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.IDENTITY, identity)
    sock.connect(endpoint)
    return sock


def hello(sock: zmq.Socket, pid: int) -> None:
    info = {"group": "out", "replica": 0, "window": 4, "pid": pid, "token": TOKEN}
    sock.send_multipart([HELLO, packb(info)])


def dead_pid() -> int:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return proc.pid


@pytest.mark.parametrize("scheme", ["ipc", "tcp"])
def test_a_hello_with_the_token_does_not_evict_a_live_consumer(tmp_path: Path, scheme) -> None:
    """An intruder who learnt the token says HELLO for the sink's instance, under a new
    identity and under the sink's own identity with another pid: the sink keeps its frames."""
    refused: list[str] = []
    endpoint = f"ipc://{tmp_path}/a.sock" if scheme == "ipc" else "tcp://127.0.0.1:*"
    out = Outlet(endpoint, {"out": ["out"]}, token=TOKEN, on_reject=lambda p, w: refused.append(w))
    endpoint = out.sock.getsockopt_string(zmq.LAST_ENDPOINT)
    out.endpoint = endpoint
    real_id = f"out#{os.getpid()}#aa".encode()
    real = dealer(endpoint, real_id)
    hello(real, os.getpid())
    assert poll_for(lambda: out.poll_credits(10) or out.ready(), 5)
    intruder = dealer(endpoint, b"out#1#bb")  # pid 1 runs
    hello(intruder, 1)
    hello(real, 1)  # the sink's own identity, naming another process
    again = dealer(endpoint, b"out#2#cc")
    hello(again, 2)
    poll_for(lambda: out.poll_credits(10) and False, 1)
    for i in range(8):
        assert poll_for(lambda: out.poll_credits(10) or out.ready(), 5)
        assert out.send([b"frame%d" % i])
        assert real.poll(5000)
        real.recv_multipart()
        real.send(CREDIT)
    for sock in (intruder, again):
        assert not sock.poll(100)  # not one frame
    assert "a hello naming another process for a known identity" in refused
    if scheme == "ipc":
        assert "a hello for an instance whose process is running" in refused
    for sock in (real, intruder, again):
        sock.close()
    out.close()


def test_a_dead_incarnations_place_is_taken_by_its_restart(tmp_path: Path) -> None:
    out = Outlet(f"ipc://{tmp_path}/a.sock", {"out": ["out"]}, token=TOKEN)
    gone = dead_pid()
    old = dealer(out.endpoint, f"out#{gone}#aa".encode())
    hello(old, gone)
    assert poll_for(lambda: out.poll_credits(10) or out.ready(), 5)
    new = dealer(out.endpoint, f"out#{os.getpid()}#bb".encode())
    hello(new, os.getpid())
    assert poll_for(lambda: out.poll_credits(10) or len(out.groups["out"].peers) == 1, 5)
    assert [p.incarnation for p in out.groups["out"].peers.values()] == [os.getpid()]
    old.close()
    new.close()
    out.close()
