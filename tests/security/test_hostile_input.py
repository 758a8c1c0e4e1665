"""A bad message is refused and counted, never a crash: hostile peers on a running
pipeline's sockets (ipc and tcp) and its control channel, a hostile producer feeding a stage,
and a fuzzed envelope decoder. Permissions are the run's own whatever the umask."""

from __future__ import annotations

import contextlib
import json
import os
import random
import socket
import stat
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from pipeline.accounting.envelope import Accounting
from pipeline.errors import TransportError
from pipeline.graph.plan import InstanceSpec
from pipeline.messages import Message
from pipeline.runtime.inputs import Inputs
from pipeline.runtime.ledger import Ledger
from pipeline.transport.codec import MSG, Envelope, decode, encode, packb
from pipeline.transport.framepool import SHM_DIR, FrameLost, FramePool, PoolReader
from support.graph import Graph
from support.rkpipe import poll_for, read_jsonl, start_rkpipe

HOSTILE_HELLOS = [
    b"\xc1garbage",  # not msgpack
    b"\xdb\xff\xff\xff\xf0",  # a string that says it is 4 GB long
    b"\x91" * 200_000 + b"\xc0",  # 200,000 nested lists
    msgpack.packb({"group": 5, "replica": "x", "window": None, "pid": []}),  # wrong types
    msgpack.packb({}),  # missing keys
    msgpack.packb([1, 2, 3]),  # not a map
    b"\0" * (64 << 20),  # a 64 MB frame
    msgpack.packb({"group": "work", "replica": 0, "window": 2, "pid": 1}),  # no token
    msgpack.packb({"group": "work", "replica": 0, "window": 2, "pid": 1, "token": "guess"}),
]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_dir_of(pid: int) -> Path | None:
    found = list(Path("/tmp").glob(f"rkpipe-{pid}x*"))
    return found[0] if found else None


def attack_router(endpoint: str, identity: bytes) -> int:
    """Everything a hostile DEALER can say to a producer; returns the frames it got (none)."""
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IDENTITY, identity)  # a downstream stage's name: a hijack try
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    for payload in HOSTILE_HELLOS:
        sock.send_multipart([b"H", payload])
    sock.send_multipart([b"C999999999"])
    sock.send_multipart([b"Cabc"])
    sock.send_multipart([b"X", b"y", b"z"])
    sock.send(b"")
    got = 0
    deadline = time.monotonic() + 1.5
    while time.monotonic() < deadline:
        if sock.poll(100):
            sock.recv_multipart()
            got += 1
    sock.close()
    return got


def attack_control(endpoint: str) -> None:
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.LINGER, 500)
    sock.connect(endpoint)
    for payload in (
        b"\xc1garbage",
        msgpack.packb([1, 2, 3]),
        msgpack.packb({"instance": "work", "t": "fatal", "error": "pwned"}),  # forged, no token
        msgpack.packb({"instance": "work", "t": "fatal", "error": "pwned", "token": "guess"}),
        msgpack.packb({"instance": "work", "t": "stats", "stats": "text", "token": "guess"}),
        b"\x91" * 100_000 + b"\xc0",
    ):
        sock.send(payload)
    sock.close()


@pytest.mark.integration
def test_hostile_peers_on_every_socket_change_nothing_but_counters(
    tmp_path: Path, no_leaks
) -> None:
    port = free_port()
    graph = (
        Graph("hostile")
        .source("cam0", uses="synthetic", width=64, height=48, fps=40, realtime=True, frames=200)
        .stage(
            "work",
            uses="passthrough",
            inputs=["cam0"],
            endpoint=f"tcp://127.0.0.1:{port}",
            insecure=True,
        )
        .sink("out", uses="jsonl", inputs=["work"], path=tmp_path / "out.jsonl")
        .write(tmp_path)
    )
    stats = tmp_path / "stats.json"
    run = start_rkpipe("run", str(graph), "--no-live", "--stats-out", str(stats))
    try:
        assert poll_for(lambda: (tmp_path / "out.jsonl").exists(), 60)
        run_dir = run_dir_of(run.pid)
        assert run_dir is not None
        got = attack_router(f"ipc://{run_dir}/cam0.sock", b"work")  # ipc, a stage's name
        got += attack_router(f"tcp://127.0.0.1:{port}", b"out")  # tcp
        attack_control(f"ipc://{run_dir}/control.sock")
        _, err = run.communicate(timeout=120)
    finally:
        run.kill()
    assert got == 0  # no frame went to an intruder
    assert run.returncode == 0, err
    assert "Traceback" not in err and "pwned" not in err
    doc = json.loads(stats.read_text())
    assert doc["exact"]
    assert doc["streams"]["cam0"]["sinks"]["out"]["delivered"] == 200
    assert [r["seq"] for r in read_jsonl(tmp_path / "out.jsonl")] == list(range(200))
    assert doc["stages"]["cam0"]["events"]["corrupt"] >= len(HOSTILE_HELLOS)
    assert doc["stages"]["work"]["events"]["corrupt"] >= len(HOSTILE_HELLOS)
    assert doc["control_rejected"] >= 5


# -- a hostile producer, in process ------------------------------------------------------------
def _spec(endpoint: str, run_id: str) -> InstanceSpec:
    return InstanceSpec(
        stage="work", replica=0, replicas=1, uses="passthrough", options={}, cpus=[],
        endpoint="ipc:///unused", inputs=[("cam0", "cam0", endpoint)], outputs={},
        partition=[], is_source=False, pinned=False, on_failure="restart", window=4,
        pool_slots=4, graph_dir="/tmp", run_id=run_id,
    )  # fmt: skip


def _envelope(*parts: bytes, **changes: object) -> list:
    header = ["cam0", 0, -1, 1.0, 1, False, {}, [], Accounting().to_wire()]
    fields = ["stream", "seq", "prev", "t_capture", "t_mono_ns", "more", "meta", "arrays", "acct"]
    for k, v in changes.items():
        header[fields.index(k)] = v
    return [packb([MSG, *header]), *parts]


HOSTILE_ENVELOPES = [
    [b"\xc1"],
    [packb([MSG, "cam0"])],  # too short
    _envelope(seq="7"),  # a text seq
    _envelope(stream="../../etc"),  # not a stream name
    _envelope(acct=[0, [[-5, "x"]], ""]),  # a negative loss
    _envelope(b"ab", arrays=[["frame", "i", "|O", [2], 1]]),  # object dtype
    _envelope(b"x" * 40, arrays=[["frame", "i", "<U10", [1], 1]]),  # strings
    _envelope(b"x" * 10, arrays=[["frame", "i", "|u1", [1000, 1000], 1]]),  # shape > bytes
    _envelope(b"", arrays=[["frame", "i", "|u1", [-1], 1]]),  # a negative size
    _envelope(b"xxxx", arrays=[["frame", "i", "|u1", [4], 9]]),  # a part that is not there
    _envelope(arrays=[["frame", "s", ["../../etc/passwd", 0, 2, "|u1", [10]]]]),
    _envelope(arrays=[["frame", "s", ["rkpipe-otherrun-pool-x-4096", 0, 2, "|u1", [10]]]]),
    _envelope(meta={"x": msgpack.ExtType(1, msgpack.packb(["|O", [1], b"x"]))}),
]


def test_a_hostile_producer_is_refused_message_by_message(tmp_path: Path) -> None:
    """A producer that bound a stage's endpoint first sends bad descriptors, dtypes, shapes,
    names of memory outside this run: each is refused and counted, the good one goes on."""
    run_id = f"{os.getpid()}xfeed0001"
    endpoint = f"ipc://{tmp_path}/cam0.sock"
    ledger = Ledger.create(SHM_DIR / f"rkpipe-{run_id}-ledger-work")
    fake = zmq.Context.instance().socket(zmq.ROUTER)
    fake.bind(endpoint)
    refused: list[str] = []
    try:
        inputs = Inputs(
            _spec(endpoint, run_id),
            PoolReader(prefix=f"rkpipe-{run_id}-"),
            ledger,
            lambda peer, why: refused.append(why),
            lambda reason: None,
        )
        assert fake.poll(5000)
        identity, kind, _ = fake.recv_multipart()
        assert kind == b"H"
        good = Message("cam0", 0, -1, arrays={"frame": np.ones(8, np.uint8)})
        for parts in [*HOSTILE_ENVELOPES, encode(Envelope.message(good))]:
            fake.send_multipart([identity, *parts])
        assert poll_for(lambda: inputs.receive(inputs.inlets[0]) or len(inputs.ready) == 1, 5)
        assert len(refused) == len(HOSTILE_ENVELOPES), refused
        link = inputs.take()
        assert link.d.msg.seq == 0 and link.d.msg.frame is not None
        inputs.close()
    finally:
        fake.close(0)
        ledger.close()
        ledger.path.unlink()


def test_the_decoder_survives_ten_thousand_mutated_envelopes() -> None:
    """Random and mutated envelopes: only TransportError or FrameLost ever leave decode."""
    rng = random.Random(7)
    pool = FramePool(f"rkpipe-{os.getpid()}xfuzz0001-pool-fuzz", 4)
    reader = PoolReader(prefix=f"rkpipe-{os.getpid()}xfuzz0001-")
    pooled = [
        Message("cam0", 3, 2, meta={"a": [1, 2], "b": np.arange(3)}),
        Message("cam0", 4, 3, arrays={"frame": np.zeros((100, 100, 3), np.uint8)}),
    ]
    inline = Message("cam0", 5, 4, arrays={"det": np.ones((5, 4), np.float32)})
    seeds = [*(encode(Envelope.message(m), pool) for m in pooled), encode(Envelope.message(inline))]
    try:
        for _ in range(10_000):
            parts = [bytes(p) for p in rng.choice(seeds)]
            head = bytearray(parts[0])
            for _ in range(rng.randint(1, 8)):
                op = rng.random()
                i = rng.randrange(len(head))
                if op < 0.5:
                    head[i] = rng.randrange(256)
                elif op < 0.75:
                    del head[i : i + rng.randint(1, 8)]
                else:
                    head[i:i] = bytes(rng.randrange(256) for _ in range(rng.randint(1, 8)))
                if not head:
                    head = bytearray(b"\x90")
            parts[0] = bytes(head)
            if rng.random() < 0.2 and len(parts) > 1:
                parts[1] = parts[1][: rng.randrange(len(parts[1]) + 1)]
            with contextlib.suppress(TransportError, FrameLost):
                decode(parts, reader)
    finally:
        reader.close()
        pool.close()


@pytest.mark.integration
def test_a_run_under_umask_000_keeps_its_folder_sockets_and_memory_private(
    tmp_path: Path, no_leaks
) -> None:
    graph = (
        Graph()
        .source("cam0", uses="synthetic", width=64, height=48, fps=20, realtime=True, frames=100000)
        .sink("out", uses="jsonl", inputs=["cam0"], path=tmp_path / "out.jsonl")
        .write(tmp_path)
    )
    run = start_rkpipe("run", str(graph), "--no-live", preexec_fn=lambda: os.umask(0))
    try:
        assert poll_for(lambda: (tmp_path / "out.jsonl").exists(), 60)
        run_dir = run_dir_of(run.pid)
        assert run_dir is not None
        assert stat.S_IMODE(run_dir.stat().st_mode) == 0o700
        socks = list(run_dir.glob("*.sock"))
        assert socks and all(stat.S_IMODE(s.stat().st_mode) == 0o600 for s in socks)
        segments = list(SHM_DIR.glob(f"rkpipe-{run_dir.name[len('rkpipe-') :]}-*"))
        assert segments and all(stat.S_IMODE(s.stat().st_mode) == 0o600 for s in segments)
        run.send_signal(2)
        run.communicate(timeout=60)
    finally:
        run.kill()
