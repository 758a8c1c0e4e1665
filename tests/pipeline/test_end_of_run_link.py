"""A producer's goodbye (EOS) on real ZeroMQ links: it reaches every consumer that is there,
gives up on one that never comes within its timeout, and keeps the producer's heartbeat going
while it waits, so a hung or still-starting consumer never gets the producer killed as silent
(the supervisor would restart it into the same wait, for ever)."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline.transport.codec import EOS, decode
from pipeline.transport.framepool import PoolReader
from pipeline.transport.links import Inlet, Outlet
from support.rkpipe import poll_for

TOKEN = "run-token-eos"


def _outlet(tmp_path: Path) -> Outlet:
    return Outlet(f"ipc://{tmp_path}/pre.sock", {"npu": ["npu.0", "npu.1"]}, token=TOKEN)


def _inlet(tmp_path: Path, instance: str, replica: int) -> Inlet:
    return Inlet(
        f"ipc://{tmp_path}/pre.sock", "pre", instance, "npu", replica, window=2, token=TOKEN
    )


def test_eos_waits_for_a_missing_consumer_with_the_heartbeat_going(tmp_path: Path) -> None:
    out = _outlet(tmp_path)
    here = _inlet(tmp_path, "npu.0", 0)  # npu.1 is hung before it said hello
    try:
        assert poll_for(lambda: (out.poll_credits(10), "npu.0" in _joined(out))[1], 10)
        beats: list[int] = []
        missed = out.broadcast_eos(timeout_s=1.0, meanwhile=lambda: beats.append(1))
        assert missed == ["npu.1"]
        assert len(beats) >= 5, "the producer went silent while it waited"
        reader = PoolReader(prefix=f"rkpipe-eos-test-{os.getpid()}-")
        got: list = []
        assert poll_for(lambda: (got.append(here.recv()), any(got))[1], 10)
        assert decode(next(g for g in got if g), reader).kind == EOS
        reader.close()
    finally:
        here.close()
        out.close()


def test_a_consumer_that_already_finished_is_not_waited_for(tmp_path: Path) -> None:
    out = _outlet(tmp_path)
    here = _inlet(tmp_path, "npu.0", 0)
    try:
        assert poll_for(lambda: (out.poll_credits(10), "npu.0" in _joined(out))[1], 10)
        beats: list[int] = []
        missed = out.broadcast_eos(
            timeout_s=30.0, is_gone=lambda i: i == "npu.1", meanwhile=lambda: beats.append(1)
        )
        assert missed == []  # returned at once: npu.1 ended before this producer started
        assert beats == []
    finally:
        here.close()
        out.close()


def _joined(out: Outlet) -> set[str]:
    return {p.instance for g in out.groups.values() for p in g.peers.values()}
