"""Wire format, shared-memory slots and per-stream reordering, tested without processes."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.errors import TransportError
from pipeline.messages import Message
from pipeline.runtime.integrity import died_since
from pipeline.transport.codec import INLINE_MAX, Envelope, decode, encode
from pipeline.transport.framepool import FrameLost, FramePool, PoolReader
from pipeline.transport.reorder import ReorderBuffer


@pytest.fixture
def pool():
    p = FramePool("rkpipe-0x0test-unit", slots=4)
    yield p
    p.close()


def test_large_arrays_travel_by_reference_small_inline(pool: FramePool) -> None:
    frame = np.random.default_rng(0).integers(0, 255, (360, 640, 3), np.uint8)
    small = np.arange(12, dtype=np.float32).reshape(3, 4)
    msg = Message(
        "cam0",
        7,
        6,
        meta={"label": "x", "score": np.float32(0.5), "arr": small},
        arrays={"frame": frame, "det": small},
    )
    parts = encode(Envelope.message(msg), pool=pool)
    assert sum(len(bytes(p)) for p in parts) < INLINE_MAX  # the frame itself is not on the wire
    got = decode(parts, PoolReader()).msg
    assert (got.stream, got.seq, got.prev) == ("cam0", 7, 6)
    np.testing.assert_array_equal(got.frame, frame)
    np.testing.assert_array_equal(got.arrays["det"], small)
    np.testing.assert_array_equal(got.meta["arr"], small)
    assert got.meta["score"] == 0.5
    assert not got.frame.flags.writeable  # consumers cannot scribble on the producer's slot


def test_received_frame_is_forwarded_without_copy(pool: FramePool) -> None:
    frame = pool.alloc((64, 64, 3), np.uint8)
    frame[:] = 9
    reader = PoolReader()
    sent = Envelope.message(Message("s", 0, arrays={"frame": frame}))
    first = decode(encode(sent, pool=pool), reader)
    again = encode(Envelope.message(first.msg), reader=reader)  # a stage with no pool of its own
    second = decode(again, PoolReader())
    assert second.refs == first.refs


def test_overwritten_slot_is_detected_not_used(pool: FramePool) -> None:
    reader = PoolReader()
    msg = Message("s", 0, arrays={"frame": np.full((200, 200, 3), 1, np.uint8)})
    parts = encode(Envelope.message(msg), pool=pool)
    decoded = decode(parts, reader)
    for i in range(4):  # the ring comes round and rewrites slot 0
        pool.put(np.full((200, 200, 3), 2 + i, np.uint8))
    assert not reader.is_current(decoded.refs[0])
    with pytest.raises(FrameLost):
        decode(parts, reader)


def test_pickle_is_never_used_for_unknown_types() -> None:
    with pytest.raises(TransportError, match="cannot send a object"):
        encode(Envelope.message(Message("s", 0, meta={"x": object()})))


def test_malformed_envelope_is_a_transport_error() -> None:
    with pytest.raises(TransportError):
        decode([b"\xc1garbage"], None)


def test_reorder_restores_order_and_respects_gaps() -> None:
    buf: ReorderBuffer[int] = ReorderBuffer(timeout_s=10)
    # the source skipped seq 2 on purpose (camera drop): 3's predecessor is 1
    assert buf.push("a", 1, 0, 1) == []
    assert buf.push("a", 3, 1, 3) == []
    assert buf.push("a", 0, -1, 0) == [0, 1, 3]
    assert buf.gaps == 0


def test_reorder_waits_for_a_slow_frame_until_a_process_died() -> None:
    """A missing frame is given up only once a process of the run died after the frame
    before it was made: a slow replica (start-up, a loaded machine) never loses a frame."""
    now, deaths = [0.0], [0]
    buf: ReorderBuffer[int] = ReorderBuffer(
        timeout_s=1.0, may_give_up=lambda t: deaths[0] >= t, clock=lambda: now[0]
    )
    assert buf.push("a", 0, -1, 0, t_mono_ns=100) == [0]
    assert buf.push("a", 2, 1, 2, t_mono_ns=300) == []  # 1 is missing
    now[0] = 60.0
    assert buf.expire() == []  # a minute late, but nothing died: it may still come
    deaths[0] = 50  # a death before frame 0 was made cannot have taken frame 1
    assert buf.expire() == []
    deaths[0] = 150  # a process died after frame 0: frame 1 may have died with it
    assert buf.expire() == [2]
    assert buf.gaps == 1
    assert buf.push("a", 1, 0, 1) == []  # too late: would break order (counted with its gap)
    assert buf.late == 1


def test_reorder_at_a_stream_start_waits_until_a_process_died() -> None:
    """Before the first frame is released (a replica far slower on its first frame than its
    sibling), the missing first frames are waited for in a run where nothing died, and given
    up once anything died, which may have taken them."""
    now, deaths = [0.0], [0]
    buf: ReorderBuffer[int] = ReorderBuffer(
        timeout_s=1.0, may_give_up=lambda t: died_since(deaths[0], t), clock=lambda: now[0]
    )
    assert buf.push("a", 2, 1, 2, t_mono_ns=300) == []  # 0 and 1 are on the slow replica
    now[0] = 60.0
    assert buf.expire() == []  # nothing died: they may still come
    assert buf.push("a", 0, -1, 0, t_mono_ns=100) == [0]
    assert buf.push("a", 1, 0, 1, t_mono_ns=200) == [1, 2]
    assert buf.gaps == 0
    buf.start("b", -1)  # a restarted consumer: what it waits for may have died with it
    assert buf.push("b", 5, 4, 5, t_mono_ns=900) == []
    deaths[0] = 50
    now[0] = 120.0
    assert buf.expire() == [5]
    assert buf.gaps == 1


def test_reorder_keeps_multi_part_messages_together() -> None:
    buf: ReorderBuffer[str] = ReorderBuffer(timeout_s=10)
    assert buf.push("a", 1, 0, "1a", more=True) == []
    assert buf.push("a", 0, -1, "0") == ["0"]
    assert buf.push("a", 1, 0, "1b") == ["1a", "1b"]


def test_reorder_is_bounded() -> None:
    buf: ReorderBuffer[int] = ReorderBuffer(timeout_s=100, capacity=4)
    out = []
    for seq in range(1, 7):  # seq 0 never comes
        out += buf.push("a", seq, seq - 1, seq)
    assert out == [1, 2, 3, 4, 5, 6]  # gave up on 0 when a fifth message had to wait
    assert len(buf) == 0 and buf.gaps == 1


def test_reorder_takes_a_relinked_stream_in_order() -> None:
    """A link whose predecessor is at or before the last released one is next in order
    (an upstream stage re-linked the stream after frames were lost and counted)."""
    buf: ReorderBuffer[int] = ReorderBuffer(timeout_s=10)
    buf.start("a", 57)
    assert buf.push("a", 70, -1, 70) == [70]
