"""Fragmented MP4 written one frame at a time, so a file is playable up to its last frame
whatever happens to the process that writes it.

FFmpeg's MP4 muxer writes the index (``moov``) first with ``empty_moov``, but it holds each
fragment's last sample until the next packet arrives, and PyAV has no call that flushes it.
So FFmpeg writes only the header (``ftyp`` + ``moov``, from the encoder's parameters, in
memory) and this module writes each sample as its own fragment (``moof`` + ``mdat``), in one
``write`` to the file: when ``append`` returns, the frame is in the file, and a process
killed at any moment leaves whole fragments behind. A failed write (a full disk) is cut off
again, so the file stays whole and writing goes on at the next keyframe once space returns.
A cleanly finished file gets its duration written into the header, so players show it
before they have read every fragment.
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

from pipeline.output_files import DEFAULT_MODES, Modes, open_file

__all__ = [
    "FragmentFile",
    "InitSegment",
    "fragment",
    "init_segment",
    "length_prefixed",
    "open_output",
]

_KEY_FLAGS = 0x02000000  # sample_depends_on = 2: an IDR, decodable on its own
_DELTA_FLAGS = 0x01010000  # depends on others; not a sync sample
_TRUN_FLAGS = 0x000001 | 0x000100 | 0x000200 | 0x000400  # offset, duration, size, flags
_BASE_IS_MOOF = 0x020000
_START = re.compile(b"\0\0\1")


def open_output(path: Path, modes: Modes = DEFAULT_MODES) -> int:
    """The one place a video file is opened for writing (created or truncated): never
    through a link at its name, with the stage's file mode (``pipeline.output_files``)."""
    return open_file(path, modes, truncate=True)


def _box(kind: bytes, *payload: bytes) -> bytes:
    body = b"".join(payload)
    return struct.pack(">I4s", 8 + len(body), kind) + body


def _full_box(kind: bytes, version: int, flags: int, *payload: bytes) -> bytes:
    return _box(kind, struct.pack(">I", version << 24 | flags), *payload)


def _boxes(data: bytes, start: int, end: int) -> Iterator[tuple[bytes, int, int]]:
    """The boxes in ``data[start:end]``: (kind, where its payload starts, where it ends)."""
    pos = start
    while pos + 8 <= end:
        size, kind = struct.unpack_from(">I4s", data, pos)
        if size < 8 or pos + size > end:
            return
        yield kind, pos + 8, pos + size
        pos += size


def _find(data: bytes, start: int, end: int, *path: bytes) -> tuple[int, int] | None:
    """The payload span of the first box along ``path`` (e.g. moov, trak, mdia, mdhd)."""
    for kind, s, e in _boxes(data, start, end):
        if kind == path[0]:
            return (s, e) if len(path) == 1 else _find(data, s, e, *path[1:])
    return None


@dataclass(frozen=True)
class InitSegment:
    """An MP4's header for one H.264 track: its bytes and what fragments need from it."""

    data: bytes
    track_id: int
    timescale: int  # the track's ticks per second

    def ticks(self, rate: Fraction) -> int:
        """Ticks of one frame at ``rate`` frames per second."""
        return max(1, round(Fraction(self.timescale) / rate))

    def durations(self) -> list[tuple[int, int, int]]:
        """Where the header keeps durations: (offset, width in bytes, timescale) for mvhd,
        tkhd (both in the movie's timescale) and mdhd (the track's)."""
        d = self.data
        out: list[tuple[int, int, int]] = []
        mvhd = _find(d, 0, len(d), b"moov", b"mvhd")
        tkhd = _find(d, 0, len(d), b"moov", b"trak", b"tkhd")
        mdhd = _find(d, 0, len(d), b"moov", b"trak", b"mdia", b"mdhd")
        if mvhd is None or tkhd is None or mdhd is None:
            return out
        wide = d[mvhd[0]] == 1
        movie_scale = struct.unpack_from(">I", d, mvhd[0] + (20 if wide else 12))[0]
        out.append((mvhd[0] + (24 if wide else 16), 8 if wide else 4, movie_scale))
        wide = d[tkhd[0]] == 1
        out.append((tkhd[0] + (28 if wide else 20), 8 if wide else 4, movie_scale))
        wide = d[mdhd[0]] == 1
        out.append((mdhd[0] + (24 if wide else 16), 8 if wide else 4, self.timescale))
        return out


def init_segment(template: Any, rate: Fraction) -> InitSegment:
    """The header FFmpeg writes for a track like ``template`` (an encoder's PyAV stream,
    after its first packet, when its parameters are known), made in memory."""
    import av

    buf = io.BytesIO()
    flags = "empty_moov+default_base_moof+frag_custom"
    container = av.open(buf, "w", format="mp4", options={"movflags": flags})
    try:
        stream = container.add_stream_from_template(template)
        stream.codec_context.extradata = template.codec_context.extradata  # SPS and PPS
        container.start_encoding()
        data = buf.getvalue()
        if not data:  # this PyAV writes the header with the first packet: give it one
            packet = av.Packet(b"\0\0\0\1\x09\xf0")  # an access unit delimiter
            packet.pts = packet.dts = 0
            packet.time_base = 1 / rate
            packet.stream = stream
            container.mux(packet)
            data = buf.getvalue()
    finally:
        with contextlib.suppress(Exception):  # a trailer into memory: nothing to lose
            container.close()
    end = next((s - 8 for kind, s, _ in _boxes(data, 0, len(data)) if kind == b"moof"), None)
    data = data[:end] if end is not None else data
    tkhd = _find(data, 0, len(data), b"moov", b"trak", b"tkhd")
    mdhd = _find(data, 0, len(data), b"moov", b"trak", b"mdia", b"mdhd")
    if tkhd is None or mdhd is None:
        msg = "FFmpeg wrote an MP4 header without a track"
        raise ValueError(msg)
    wide = data[tkhd[0]] == 1
    track_id = struct.unpack_from(">I", data, tkhd[0] + (20 if wide else 12))[0]
    wide = data[mdhd[0]] == 1
    timescale = struct.unpack_from(">I", data, mdhd[0] + (20 if wide else 12))[0]
    return InitSegment(data, track_id, timescale)


def length_prefixed(annexb: bytes) -> bytes:
    """H.264 NAL units from an encoder's start codes (Annex B) to the 4-byte lengths MP4
    samples hold, as FFmpeg's muxer does."""
    out = []
    for nal in _START.split(annexb):
        nal = nal.rstrip(b"\0")  # a NAL unit never ends in a zero byte: those are padding
        if nal:
            out.append(struct.pack(">I", len(nal)) + nal)
    return b"".join(out)


def fragment(seq: int, track_id: int, time: int, duration: int, sample: bytes, key: bool) -> bytes:
    """One sample as a fragment: ``moof`` (where it starts, how long, how big) + ``mdat``."""
    mfhd = _full_box(b"mfhd", 0, 0, struct.pack(">I", seq))
    tfhd = _full_box(b"tfhd", 0, _BASE_IS_MOOF, struct.pack(">I", track_id))
    tfdt = _full_box(b"tfdt", 1, 0, struct.pack(">Q", time))
    flags = _KEY_FLAGS if key else _DELTA_FLAGS

    def moof(offset: int) -> bytes:
        trun = _full_box(
            b"trun", 0, _TRUN_FLAGS, struct.pack(">IiIII", 1, offset, duration, len(sample), flags)
        )
        return _box(b"moof", mfhd, _box(b"traf", tfhd, tfdt, trun))

    size = len(moof(0))
    return moof(size + 8) + _box(b"mdat", sample)


class FragmentFile:
    """An MP4 file of one H.264 track written a sample at a time (``append``); ``finish``
    writes the duration into its header. Each ``append`` is in the file when it returns."""

    def __init__(self, path: Path, rate: Fraction, modes: Modes = DEFAULT_MODES) -> None:
        self.path = path
        self.rate = rate
        self.fd = open_output(path, modes)
        self.init: InitSegment | None = None
        self.size = 0  # bytes of whole boxes in the file
        self.seq = 0
        self.end = 0  # in ticks: where the last sample written ends
        self.need_key = False  # a sample was lost: only a keyframe may follow

    def append(self, init: InitSegment, pts: int, sample: bytes, key: bool) -> bool:
        """Write one sample (``pts`` in frames); False when it is skipped because the file
        waits for a keyframe. A failed write raises and leaves the file as it was."""
        if self.need_key and not key:
            return False
        ticks = init.ticks(self.rate)
        data = fragment(self.seq + 1, init.track_id, pts * ticks, ticks, sample, key)
        head = init.data if self.size == 0 else b""
        try:
            self._write(head + data)
        except OSError:
            self.need_key = True
            self._cut()
            raise
        self.init = init
        self.size += len(head) + len(data)
        self.seq += 1
        self.end = max(self.end, (pts + 1) * ticks)
        self.need_key = False
        return True

    def _write(self, data: bytes) -> None:
        view = memoryview(data)
        while view:
            view = view[os.write(self.fd, view) :]

    def _cut(self) -> None:
        """Take a half-written fragment off the end again (shrinking needs no space)."""
        with contextlib.suppress(OSError):
            os.ftruncate(self.fd, self.size)
            os.lseek(self.fd, self.size, os.SEEK_SET)

    def finish(self) -> None:
        """Write the duration into the header and close the file."""
        try:
            if self.init is not None and self.end:
                for offset, width, scale in self.init.durations():
                    value = round(Fraction(self.end * scale, self.init.timescale))
                    os.pwrite(self.fd, value.to_bytes(width, "big"), offset)
        finally:
            os.close(self.fd)
