"""Wire format: a msgpack header frame, then one raw frame per inline array. Never pickle.

Header: [kind, stream, seq, prev, t_capture, t_mono_ns, more, meta, arrays]. Each array is
described as [name, "i", dtype, shape, part] (inline: bytes in multipart frame ``part``) or
[name, "s", slotref] (in a producer's shared-memory pool). numpy values inside ``meta`` are
carried as a msgpack extension (dtype, shape, bytes).
"""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np

from ..errors import TransportError
from ..messages import Message
from .framepool import FramePool, PoolReader, SlotRef

__all__ = [
    "END",
    "EOS",
    "INLINE_MAX",
    "MSG",
    "SKIP",
    "Decoded",
    "decode",
    "encode",
    "encode_control",
    "packb",
    "unpackb",
]

MSG, SKIP, END, EOS = 0, 1, 2, 3  # message, dropped-by-a-stage marker, stream end, producer end
INLINE_MAX = 32 * 1024  # arrays up to this size travel inline; larger ones in shared memory
_EXT_NDARRAY = 1


def _default(obj: Any) -> Any:
    if isinstance(obj, np.ndarray):
        arr = np.ascontiguousarray(obj)
        return msgpack.ExtType(
            _EXT_NDARRAY, msgpack.packb([arr.dtype.str, list(arr.shape), arr.tobytes()])
        )
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, (set, frozenset)):
        return list(obj)
    msg = f"cannot send a {type(obj).__name__} in message metadata (use plain data or numpy)"
    raise TypeError(msg)


def _ext_hook(code: int, data: bytes) -> Any:
    if code == _EXT_NDARRAY:
        dtype, shape, raw = msgpack.unpackb(data)
        return np.frombuffer(raw, np.dtype(dtype)).reshape(shape)
    return msgpack.ExtType(code, data)


def packb(obj: Any) -> bytes:
    """msgpack with numpy support; raises TypeError for anything else that is not plain data."""
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def unpackb(data: bytes) -> Any:
    return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False)


def encode(
    msg: Message,
    kind: int = MSG,
    more: bool = False,
    pool: FramePool | None = None,
    reader: PoolReader | None = None,
    inline_all: bool = False,
) -> list:
    """Turn a message into multipart frames. Arrays received from shared memory are forwarded
    by reference; new large arrays go into ``pool`` (or inline if there is none or the link
    crosses hosts, ``inline_all``)."""
    descs: list = []
    parts: list = [b""]
    for name, arr in msg.arrays.items():
        ref = None if inline_all else _shared_ref(arr, pool, reader)
        if ref is not None:
            descs.append([name, "s", ref.to_wire()])
            continue
        arr = np.ascontiguousarray(arr)
        descs.append([name, "i", arr.dtype.str, list(arr.shape), len(parts)])
        parts.append(arr.data if arr.nbytes else b"")
    try:
        parts[0] = packb(
            [
                kind,
                msg.stream,
                msg.seq,
                msg.prev,
                msg.t_capture,
                msg.t_mono_ns,
                more,
                msg.meta,
                descs,
            ]
        )
    except TypeError as exc:
        raise TransportError(f"stream {msg.stream} seq {msg.seq}: {exc}") from exc
    return parts


def _shared_ref(
    arr: np.ndarray, pool: FramePool | None, reader: PoolReader | None
) -> SlotRef | None:
    if reader is not None:
        ref = reader.ref_of(arr)
        if ref is not None:
            return ref
    if pool is None:
        return None
    if pool.owns(arr):
        return pool.publish(arr)
    if arr.nbytes > INLINE_MAX:
        return pool.put(arr)
    return None


def encode_control(
    kind: int, stream: str = "", seq: int = -1, prev: int = -1, more: bool = False
) -> list:
    """A marker with no payload: SKIP (a stage dropped this seq), END (stream over), EOS."""
    return [packb([kind, stream, seq, prev, 0.0, 0, more, {}, []])]


class Decoded:
    """A received envelope: its kind, the message, and the shared-memory refs it uses."""

    __slots__ = ("kind", "more", "msg", "refs")

    def __init__(self, kind: int, more: bool, msg: Message, refs: list[SlotRef]) -> None:
        self.kind = kind
        self.more = more
        self.msg = msg
        self.refs = refs


def decode(parts: list, reader: PoolReader | None) -> Decoded:
    """Rebuild a message from frames. Shared-memory arrays become read-only views; raises
    FrameLost if one was overwritten, TransportError if the envelope is malformed."""
    try:
        kind, stream, seq, prev, t_cap, t_mono, more, meta, descs = unpackb(parts[0])
    except Exception as exc:
        raise TransportError(f"malformed envelope: {exc}") from exc
    arrays: dict[str, np.ndarray] = {}
    refs: list[SlotRef] = []
    for desc in descs:
        name, where = desc[0], desc[1]
        if where == "s":
            ref = SlotRef.from_wire(desc[2])
            if reader is None:
                raise TransportError(f"array {name!r} is in shared memory but no reader is set")
            arrays[name] = reader.view(ref)
            refs.append(ref)
        else:
            buf = parts[desc[4]]
            arr = np.frombuffer(buf, np.dtype(desc[2])).reshape(desc[3])
            arrays[name] = arr
    msg = Message(stream, seq, prev, t_cap, t_mono, meta, arrays)
    return Decoded(kind, more, msg, refs)
