"""A stage's sending and receiving sides, joined in one process (no stage processes): credits
bound what is in flight, frames travel by shared-memory reference, accounting rides along,
a re-linked stream arrives in order, and the frame chain finds what was lost."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from pipeline.accounting.envelope import Accounting
from pipeline.graph.plan import InstanceSpec
from pipeline.messages import Message
from pipeline.runtime.inputs import Inputs
from pipeline.runtime.ledger import Ledger
from pipeline.runtime.sender import Sender
from pipeline.transport.framepool import SHM_DIR, FramePool, PoolReader
from support.rkpipe import poll_for


def spec(stage: str, endpoint: str, inputs: list, outputs: dict, run_id: str) -> InstanceSpec:
    return InstanceSpec(
        stage=stage, replica=0, replicas=1, uses="passthrough", options={}, cpus=[],
        endpoint=endpoint, inputs=inputs, outputs=outputs, partition=[], is_source=False,
        pinned=False, on_failure="restart", window=2, pool_slots=8, graph_dir="/tmp",
        run_id=run_id,
    )  # fmt: skip


@pytest.fixture
def link(tmp_path: Path):
    """A producer ``a`` and its consumer ``b``, in this process, over ipc."""
    run_id = f"{os.getpid()}xabc00001"
    endpoint = f"ipc://{tmp_path}/a.sock"
    pool = FramePool(f"rkpipe-{run_id}-pool-a", 8)
    reader = PoolReader(prefix=f"rkpipe-{run_id}-")
    ledger = Ledger.create(SHM_DIR / f"rkpipe-{run_id}-ledger-b")
    out = Sender(spec("a", endpoint, [], {"b": ["b"]}, run_id), pool, PoolReader(), "tok")
    refused: list[str] = []
    ins = Inputs(
        spec("b", "ipc:///unused", [("a", "a", endpoint)], {}, run_id),
        reader, ledger, lambda peer, why: refused.append(why), lambda reason: None, "tok",
    )  # fmt: skip
    yield out, ins, refused
    ins.close()
    out.close()
    reader.close()
    pool.close()
    ledger.close()
    ledger.path.unlink()


def test_credits_bound_the_link_and_frames_go_by_reference(link) -> None:
    out, ins, refused = link
    assert poll_for(lambda: out.poll_credits(10) or out.ready("cam0"), 5)
    frames = []
    for seq in range(2):  # the window: two in flight, then no room
        frame = out.pool.alloc((48, 64, 3), np.uint8)
        frame[:] = seq
        frames.append(frame)
        assert out.ready("cam0")
        out.send(Message("cam0", seq, seq - 1, arrays={"frame": frame}), False, Accounting(0))
    assert not out.ready("cam0")
    assert poll_for(lambda: ins.receive(ins.inlets[0]) or len(ins.ready) == 2, 5)
    first = ins.take()  # its credit goes back
    assert first.d.msg.frame is not None and not first.d.msg.frame.flags.writeable
    assert first.d.refs and int(first.d.msg.frame[0, 0, 0]) == 0
    assert poll_for(lambda: out.poll_credits(10) or out.ready("cam0"), 5)
    assert refused == []


def test_accounting_travels_and_the_chain_counts_a_hole_once(link) -> None:
    """Frames 0 and 1 arrive; 2 and 3 die upstream; 4 says the source dropped frame 3:
    the chain counts frame 2 as lost, and nothing else."""
    out, ins, _ = link
    assert poll_for(lambda: out.poll_credits(10) or out.ready("cam0"), 5)
    sent = [(0, 0), (1, 0), (4, 1)]  # (seq, source drops before it)
    for seq, source_drops in sent:
        assert poll_for(lambda: out.poll_credits(10) or out.ready("cam0"), 5)
        out.send(Message("cam0", seq, seq - 1), False, Accounting(source_drops))
        assert poll_for(lambda: ins.receive(ins.inlets[0]) or len(ins.ready) >= 1, 5)
        link_ = ins.take()
        chain = ins.chain("a", "cam0")
        lost = chain.gap(link_.d)
        chain.advance(link_.d)
        assert lost == (1 if seq == 4 else 0)
        assert link_.d.msg.prev == (1 if seq == 4 else seq - 1)  # re-linked by the producer
