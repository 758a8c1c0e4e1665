"""The typed envelope header: what a stage sends is what the next one reads back, each kind,
with arrays inline or in shared memory and the accounting intact; the wire stays the
10-field msgpack list, and a malformed one is a TransportError."""

from __future__ import annotations

import os

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.accounting.envelope import END, EOS, MSG, SKIP, Accounting, Envelope, Kind
from pipeline.errors import TransportError
from pipeline.messages import Message
from pipeline.transport.codec import INLINE_MAX, decode, encode, packb, unpackb
from pipeline.transport.framepool import FrameLost, FramePool, PoolReader

LOSSES = Accounting(4, [(3, "crashed@work"), (1, "overwritten@relay")], "")


@pytest.fixture
def pool():
    p = FramePool(f"rkpipe-{os.getpid()}xenvelope-pool-unit", slots=4)
    yield p
    p.close()


@pytest.fixture
def reader():
    r = PoolReader(prefix=f"rkpipe-{os.getpid()}xenvelope-")
    yield r
    r.close()


def _same_message(got: Message, sent: Message) -> None:
    assert (got.stream, got.seq, got.prev) == (sent.stream, sent.seq, sent.prev)
    assert (got.t_capture, got.t_mono_ns) == (sent.t_capture, sent.t_mono_ns)
    assert got.arrays.keys() == sent.arrays.keys()
    for name, arr in sent.arrays.items():
        assert got.arrays[name].dtype == arr.dtype
        np.testing.assert_array_equal(got.arrays[name], arr)


def test_a_message_comes_back_with_its_arrays_inline_and_its_losses(
    reader: PoolReader,
) -> None:
    det = np.arange(20, dtype=np.float32).reshape(5, 4)
    msg = Message("cam0", 9, 7, 12.5, 1234, {"label": "car"}, {"det": det, "empty": det[:0]})
    got = decode(encode(Envelope.message(msg, more=True, acct=LOSSES)), reader)
    assert (got.kind, got.more, got.acct, got.refs) == (MSG, True, LOSSES, [])
    assert got.msg.meta == {"label": "car"}
    _same_message(got.msg, msg)


def test_a_large_array_goes_by_shared_memory_and_its_slot_is_named(
    pool: FramePool, reader: PoolReader
) -> None:
    frame = np.random.default_rng(1).integers(0, 255, (240, 320, 3), np.uint8)
    msg = Message("cam0", 3, 2, arrays={"frame": frame, "det": np.ones((2, 4), np.float32)})
    parts = encode(Envelope.message(msg, acct=Accounting(1)), pool)
    assert sum(len(bytes(p)) for p in parts) < INLINE_MAX  # the frame is not on the wire
    got = decode(parts, reader)
    assert got.kind == MSG and got.acct == Accounting(1)
    assert len(got.refs) == 1 and reader.is_current(got.refs[0])
    _same_message(got.msg, msg)


@pytest.mark.parametrize(
    "env",
    [
        Envelope.skip("cam0", 5, 4, Accounting(2, [(1, "crashed@a")], "filtered@b"), t_mono_ns=77),
        Envelope.skip("cam0", 6, 5, Accounting(0, [], "behind@b"), more=True),
        Envelope.end("cam0", 10, 9, Accounting(3)),
        Envelope.eos(),
    ],
    ids=["skip", "skip-more", "end", "eos"],
)
def test_each_marker_comes_back_as_it_was_sent(env: Envelope) -> None:
    got = decode(encode(env), None)
    assert (got.kind, got.more, got.acct, got.refs) == (env.kind, env.more, env.acct, [])
    assert type(got.kind) is Kind
    _same_message(got.msg, env.msg)
    assert got.msg.meta == {} and got.msg.arrays == {}


def test_the_header_on_the_wire_is_the_ten_field_list() -> None:
    """What a peer of an older build (or a hostile one) sees: [kind, stream, seq, prev,
    t_capture, t_mono_ns, more, meta, arrays, acct], acct as [source_drops, lost, skip]."""
    msg = Message("cam0", 9, 7, 12.5, 1234, {"n": 1}, {"det": np.zeros(2, np.uint8)})
    parts = encode(Envelope.message(msg, acct=LOSSES))
    assert unpackb(parts[0]) == [
        0,
        "cam0",
        9,
        7,
        12.5,
        1234,
        False,
        {"n": 1},
        [["det", "i", "|u1", [2], 1]],
        [4, [[3, "crashed@work"], [1, "overwritten@relay"]], ""],
    ]
    skip = Envelope.skip("cam0", 5, 4, Accounting(0, [], "filtered@b"), t_mono_ns=8)
    assert encode(skip) == [packb([1, "cam0", 5, 4, 0.0, 8, False, {}, [], [0, [], "filtered@b"]])]
    assert encode(Envelope.eos()) == [packb([3, "", -1, -1, 0.0, 0, False, {}, [], [0, [], ""]])]


def test_an_overwritten_slot_leaves_the_frame_s_place_as_a_skip(
    pool: FramePool, reader: PoolReader
) -> None:
    msg = Message("cam0", 8, 6, arrays={"frame": np.full((200, 200, 3), 1, np.uint8)})
    parts = encode(Envelope.message(msg, more=True, acct=LOSSES), pool)
    for i in range(4):  # the ring comes round and rewrites the slot
        pool.put(np.full((200, 200, 3), 2 + i, np.uint8))
    with pytest.raises(FrameLost) as lost:
        decode(parts, reader)
    link = lost.value.link
    assert link is not None and link.kind == SKIP and link.more
    assert (link.msg.stream, link.msg.seq, link.msg.prev) == ("cam0", 8, 6)
    assert link.acct == LOSSES


@pytest.mark.parametrize(
    "header",
    [
        [MSG, "cam0", 0, -1, 0.0, 0, False, {}, []],  # nine fields
        [7, "cam0", 0, -1, 0.0, 0, False, {}, [], [0, [], ""]],  # no such kind
        [END, "cam0", 0, -1, 0.0, 0, False, {}, [], [0, [], "x", 1]],  # acct of four
        [SKIP, "cam0", 0, -1, 0.0, 0, False, {}, [], ["1", [], ""]],  # text source_drops
        [SKIP, "cam0", 0, -1, 0.0, 0, False, {}, [], [0, [[1, 2]], ""]],  # a loss without reason
        [EOS, "", -1, -1, 0.0, 0, 1, {}, [], [0, [], ""]],  # more is not a bool
    ],
    ids=["short", "kind", "acct-size", "drops-type", "loss-reason", "more-type"],
)
def test_a_malformed_header_is_a_transport_error(header: list) -> None:
    with pytest.raises(TransportError):
        decode([packb(header)], None)


reasons = st.text(st.characters(codec="utf-8"), max_size=32)  # bounded() keeps these as they are
accountings = st.builds(
    Accounting,
    st.integers(0, 2**40),
    st.lists(st.tuples(st.integers(0, 2**40 - 1), reasons), max_size=8),
    reasons,
)
streams = st.text("abcXYZ019_-", min_size=1, max_size=64)
seqs = st.integers(-(2**63), 2**63 - 1)


@settings(max_examples=300, deadline=None)
@given(
    kind=st.sampled_from([MSG, SKIP, END]),
    stream=streams,
    seq=seqs,
    prev=seqs,
    t_capture=st.floats(allow_nan=False),
    t_mono_ns=seqs,
    more=st.booleans(),
    acct=accountings,
    meta=st.dictionaries(st.text(max_size=8), seqs | st.text(max_size=8), max_size=4),
)
def test_any_header_and_accounting_come_back_the_same(
    kind: Kind,
    stream: str,
    seq: int,
    prev: int,
    t_capture: float,
    t_mono_ns: int,
    more: bool,
    acct: Accounting,
    meta: dict,
) -> None:
    msg = Message(stream, seq, prev, t_capture, t_mono_ns, meta)
    meta_wire = unpackb(packb(meta))  # as msgpack gives plain data back
    got = decode(encode(Envelope(kind, msg, more, acct)), None)
    assert (got.kind, got.more, got.acct) == (kind, more, acct)
    assert got.msg.meta == meta_wire
    _same_message(got.msg, msg)
