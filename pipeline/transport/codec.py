"""Wire format: a msgpack header frame, then one raw frame per inline array. Never pickle.

An ``Envelope`` (``pipeline.accounting.envelope``: kind, more, message, accounting) goes as
the header [kind, stream, seq, prev, t_capture, t_mono_ns, more, meta, arrays, acct], a
10-field msgpack list; ``decode`` checks every field and builds the Envelope back. Each array
is described as [name, "i", dtype, shape, part] (inline: bytes in multipart frame ``part``)
or [name, "s", slotref] (in a producer's shared-memory pool). numpy values inside ``meta`` are
carried as a msgpack extension (dtype, shape, bytes). ``acct`` is the envelope's ``Accounting``
(``pipeline.runtime.integrity``): [source drops before this seq, [[n, reason], ...] frames lost
just before this one, the reason of a SKIP marker].

Everything received is checked before use (``decode``): a socket may face a hostile peer, so
a malformed envelope, an array whose shape does not match its bytes, an object or record
dtype, or a shared-memory name outside this run raises TransportError, never anything else.
"""

from __future__ import annotations

import math
import re
from typing import Any

import msgpack
import numpy as np

from ..accounting.envelope import END, EOS, KINDS, MSG, SKIP, Accounting, Envelope, Kind
from ..accounting.keys import bounded
from ..errors import TransportError
from ..messages import Message
from .framepool import FrameLost, FramePool, PoolReader, SlotRef

__all__ = [
    "END",
    "EOS",
    "INLINE_MAX",
    "MSG",
    "SKIP",
    "Envelope",
    "Kind",
    "check_dtype",
    "decode",
    "encode",
    "packb",
    "unpackb",
]

INLINE_MAX = 32 * 1024  # arrays up to this size travel inline; larger ones in shared memory
_EXT_NDARRAY = 1
_MAX_DIMS = 8
_MAX_LOST = 64  # loss annotations one envelope may carry
STREAM_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
_INT64 = (-(2**63), 2**63 - 1)
# msgpack's own limits keep a hostile header from making huge objects before it is checked
_LIMITS = {
    "max_str_len": 1 << 20,
    "max_bin_len": 64 << 20,
    "max_array_len": 1 << 16,
    "max_map_len": 1 << 16,
    "max_ext_len": 64 << 20,
}


_DTYPES: dict[str, np.dtype] = {}  # dtypes checked already (a handful in practice)


def check_dtype(text: Any) -> np.dtype:
    """The dtype named by ``text`` if it is a plain number type (bool, int, uint, float of up
    to 8 bytes); TransportError for anything else (objects, records, strings)."""
    dt = _DTYPES.get(text) if isinstance(text, str) else None
    if dt is not None:
        return dt
    try:
        dt = np.dtype(text) if isinstance(text, str) and len(text) <= 8 else None
    except TypeError:
        dt = None
    if dt is None or dt.kind not in "biuf" or dt.fields is not None or dt.itemsize > 8:
        raise TransportError(f"array dtype {str(text)[:20]!r} is not a plain number type")
    if len(_DTYPES) < 64:
        _DTYPES[text] = dt
    return dt


def _check_shape(shape: Any) -> tuple[int, ...]:
    if not isinstance(shape, (list, tuple)) or len(shape) > _MAX_DIMS:
        raise TransportError(f"array shape {str(shape)[:40]} is not a list of sizes")
    for n in shape:
        if type(n) is not int or not 0 <= n < 1 << 40:
            raise TransportError(f"array shape {str(shape)[:40]} is not a list of sizes")
    return tuple(shape)


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
    if code != _EXT_NDARRAY:
        return msgpack.ExtType(code, data)
    dtype, shape, raw = msgpack.unpackb(data, **_LIMITS)
    dt, shape = check_dtype(dtype), _check_shape(shape)
    if not isinstance(raw, bytes) or math.prod(shape) * dt.itemsize != len(raw):
        raise TransportError("a metadata array's bytes do not match its shape")
    return np.frombuffer(raw, dt).reshape(shape)


def packb(obj: Any) -> bytes:
    """msgpack with numpy support; raises TypeError for anything else that is not plain data."""
    return msgpack.packb(obj, default=_default, use_bin_type=True)


def unpackb(data: Any) -> Any:
    """The object in ``data``; TransportError if it is not valid msgpack of sane size."""
    try:
        return msgpack.unpackb(data, ext_hook=_ext_hook, raw=False, strict_map_key=False, **_LIMITS)
    except TransportError:
        raise
    except Exception as exc:  # every way a hostile payload can fail to parse
        raise TransportError(f"not a valid message ({type(exc).__name__})") from None


def encode(
    env: Envelope,
    pool: FramePool | None = None,
    reader: PoolReader | None = None,
    inline_all: bool = False,
) -> list:
    """Turn an envelope into multipart frames. Arrays received from shared memory are forwarded
    by reference; new large arrays go into ``pool`` (or inline if there is none or the link
    crosses hosts, ``inline_all``)."""
    msg = env.msg
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
    header = [
        env.kind,
        msg.stream,
        msg.seq,
        msg.prev,
        msg.t_capture,
        msg.t_mono_ns,
        env.more,
        msg.meta,
        descs,
        env.acct.to_wire(),
    ]
    try:
        parts[0] = packb(header)
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


_LO, _HI = -(2**63), 2**63 - 1


def _int(value: Any, what: str) -> int:
    if type(value) is not int or not _LO <= value <= _HI:
        raise TransportError(f"{what} is not an integer")
    return value


def _header(parts: list) -> list:
    if not parts:
        raise TransportError("empty envelope")
    header = unpackb(parts[0])
    if not isinstance(header, list) or len(header) != 10:
        raise TransportError("envelope header is not a 10-field list")
    kind, stream, seq, prev, t_cap, t_mono, more, meta, descs, acct = header
    if type(kind) is not int or kind not in (MSG, SKIP, END, EOS):
        raise TransportError(f"unknown envelope kind {str(kind)[:10]!r}")
    if kind != EOS and not (isinstance(stream, str) and STREAM_NAME.fullmatch(stream)):
        raise TransportError("stream name is not [A-Za-z0-9_-]{1,64}")
    if (
        type(seq) is not int
        or type(prev) is not int
        or type(t_mono) is not int
        or not (_LO <= seq <= _HI and _LO <= prev <= _HI and _LO <= t_mono <= _HI)
    ):
        raise TransportError("seq, prev or t_mono_ns is not an integer")
    if not isinstance(t_cap, (int, float)) or not isinstance(more, bool):
        raise TransportError("t_capture or more has the wrong type")
    if not isinstance(meta, dict) or not isinstance(descs, list):
        raise TransportError("meta is not a map or arrays is not a list")
    header[9] = _acct(acct)
    return header


def _acct(acct: Any) -> Accounting:
    if not isinstance(acct, list) or len(acct) != 3:
        raise TransportError("frame accounting is not [source_drops, lost, skip]")
    source_drops, lost, skip = acct
    if not isinstance(lost, list) or len(lost) > _MAX_LOST or not isinstance(skip, str):
        raise TransportError("frame accounting has the wrong types")
    out = []
    for item in lost:
        ok = isinstance(item, list) and len(item) == 2 and isinstance(item[1], str)
        if not ok or type(item[0]) is not int or not 0 <= item[0] < 1 << 40:
            raise TransportError("a loss annotation is not [n, reason]")
        out.append((item[0], bounded(item[1])))
    return Accounting(_int(source_drops, "source_drops"), out, bounded(skip))


def decode(parts: list, reader: PoolReader | None) -> Envelope:
    """Rebuild an envelope from frames after checking every field. Shared-memory arrays become
    read-only views; raises FrameLost if one was overwritten, TransportError if the envelope
    is malformed or names memory that is not this run's."""
    kind, stream, seq, prev, t_cap, t_mono, more, meta, descs, acct = _header(parts)
    arrays: dict[str, np.ndarray] = {}
    refs: list[SlotRef] = []
    for desc in descs:
        if not isinstance(desc, list) or len(desc) < 3 or not isinstance(desc[0], str):
            raise TransportError("array descriptor is not [name, where, ...]")
        name, where = desc[0], desc[1]
        if where == "s" and len(desc) == 3:
            if reader is None:
                raise TransportError(f"array {name!r} is in shared memory but no reader is set")
            ref = _slot_ref(desc[2])
            try:
                arrays[name] = reader.view(ref)
            except FrameLost as exc:  # the frame's place in its stream is still known
                exc.link = Envelope(SKIP, Message(stream, seq, prev), more, acct)
                raise
            refs.append(ref)
        elif where == "i" and len(desc) == 5:
            arrays[name] = _inline(parts, desc)
        else:
            raise TransportError(f"array {name[:40]!r} has an unknown descriptor")
    msg = Message(stream, seq, prev, float(t_cap), t_mono, meta, arrays)
    return Envelope(KINDS[kind], msg, more, acct, refs)


def _inline(parts: list, desc: list) -> np.ndarray:
    _, _, dtype, shape, index = desc
    dt, shape = check_dtype(dtype), _check_shape(shape)
    if type(index) is not int or not 1 <= index < len(parts):
        raise TransportError("inline array names a part that is not there")
    buf = parts[index]
    size = memoryview(buf).nbytes
    if math.prod(shape) * dt.itemsize != size:
        raise TransportError("inline array's bytes do not match its shape")
    return np.frombuffer(buf, dt).reshape(shape)


def _slot_ref(wire: Any) -> SlotRef:
    ok = isinstance(wire, list) and len(wire) == 5 and isinstance(wire[0], str)
    if not ok:
        raise TransportError("shared-memory reference is not [segment, slot, gen, dtype, shape]")
    slot, gen = _int(wire[1], "slot"), _int(wire[2], "generation")
    check_dtype(wire[3])
    return SlotRef(wire[0], slot, gen, wire[3], _check_shape(wire[4]))


__all__ += ["STREAM_NAME", "FrameLost"]
