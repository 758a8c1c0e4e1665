"""What ``rkpipe run`` shows while it runs: a table redrawn in place on a terminal, or, when
the output is a log or a pipe, one summary line per interval (``stats_interval_s``) and a
line whenever a stage starts dropping frames for a reason, so a service's journal stays
small (the per-stage figures are in the final summary and on the metrics endpoint).

The table is drawn with ANSI cursor movement only (no curses): each redraw moves up over the
previous table and rewrites just the lines that changed, so nothing flickers, and the last
table stays on screen when the run ends. Messages printed during the run go above it.
"""

from __future__ import annotations

import os
import threading
import time
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TextIO

from ..cpus import format_cpus
from .report import InstanceRow, Snapshot

__all__ = ["DropWatch", "LiveView", "summary_line", "table_lines"]

MAX_WIDTH = 120  # the layout needs 79 columns; wider terminals show the drop reasons inline
# (title, width) of the fixed columns; the rest of the line holds the drop reasons.
COLUMNS = (
    ("stage", 15),
    ("cpus", 5),
    ("in/s", 6),
    ("out/s", 6),
    ("p50ms", 6),
    ("p99ms", 6),
    ("drops", 6),
    ("queue", 5),
    ("cpu%", 5),
    ("rst", 3),
    ("state", 5),
)
_LEFT = {"stage", "cpus", "state"}
_STATE = {"running": "run", "starting": "start", "restarting": "retry", "done": "done"}
_UP, _ERASE_LINE, _ERASE_BELOW, _NEXT = "\x1b[{}F", "\x1b[K", "\x1b[J", "\x1b[E"
_HIDE, _SHOW = "\x1b[?25l", "\x1b[?25h"


def fit(text: str, width: int) -> str:
    """Cut ``text`` to ``width``, keeping a replica suffix (``.2``) so rows stay distinct."""
    if len(text) <= width:
        return text
    _, dot, tail = text.rpartition(".")
    keep = f"{dot}{tail}" if dot and tail.isdigit() and len(tail) < width - 2 else ""
    return text[: width - len(keep) - 1] + "~" + keep


def _rate(v: float) -> str:
    return f"{v:.1f}" if v < 10_000 else f"{v:.0f}"


def _ms(v: float | None) -> str:
    if v is None:
        return "-"
    return f"{v:.2f}" if v < 10 else f"{v:.1f}" if v < 1000 else f"{v:.0f}"


def _ms_unit(v: float | None) -> str:
    return "-" if v is None else f"{_ms(v)}ms"


def _reasons(drops: dict[str, int]) -> str:
    return " ".join(f"{k}={v}" for k, v in sorted(drops.items(), key=lambda kv: -kv[1]))


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}:{m % 60:02d}:{s:02d}" if m >= 60 else f"{m}:{s:02d}"


def _cells(r: InstanceRow) -> list[str]:
    return [
        r.instance,
        format_cpus(r.cpus),
        _rate(r.fps_in),
        _rate(r.fps_out),
        _ms(r.p50_ms),
        _ms(r.p99_ms),
        str(sum(r.drops.values())),
        str(r.queue_depth),
        f"{r.cpu_percent:.0f}",
        str(r.restarts),
        _STATE.get(r.state, r.state),
    ]


def _join(cells: list[str]) -> str:
    """Cells in their columns: names left-aligned, numbers right-aligned."""
    out = []
    for (title, w), cell in zip(COLUMNS, cells, strict=True):
        out.append(fit(cell, w).ljust(w) if title in _LEFT else fit(cell, w).rjust(w))
    return " ".join(out)


def _stream_line(snap: Snapshot, width: int) -> str:
    items = [f"{s} {n} ({snap.stream_fps.get(s, 0.0):.1f}/s)" for s, n in snap.streams.items()]
    if not items:
        return "streams: none at the sinks yet"
    line = "streams:"
    for k, item in enumerate(items):
        more = f"  +{len(items) - k} more"
        if len(line) + 2 + len(item) + (len(more) if k < len(items) - 1 else 0) > width:
            return line + more
        line += ("  " if k else " ") + item
    return line


def table_lines(snap: Snapshot, width: int = 100, height: int = 50) -> list[str]:
    """The table for ``snap``, each line at most ``width`` wide, at most ``height`` lines."""
    status = "finished after" if snap.final else "running" if snap.run_s else "starting"
    head = f"rkpipe {snap.pipeline}  {status} {_clock(snap.run_s)}  sinks {snap.sink_fps:.1f} fps"
    total = sum(snap.streams.values())
    lines = [f"{head}  frames {total}", _stream_line(snap, width)]
    fixed = sum(w for _, w in COLUMNS) + len(COLUMNS) - 1
    room = width - fixed - 1  # for the drop reasons column
    titles = _join([t for t, _ in COLUMNS])
    lines.append(titles + (" drops by reason" if room >= 12 else ""))
    footer = room < 12 and any(r.drops for r in snap.rows)
    rows, fits = snap.rows, height - len(lines) - footer
    if len(rows) > fits:
        rows = rows[: max(0, fits - 1)]  # and a line to say how many are hidden
    for r in rows:
        line = _join(_cells(r))
        lines.append(line + (" " + _reasons(r.drops) if room >= 12 and r.drops else ""))
    if len(rows) < len(snap.rows):
        lines.append(f"... {len(snap.rows) - len(rows)} more instances (enlarge the terminal)")
    if footer:
        dropped = [f"{r.instance} {_reasons(r.drops)}" for r in snap.rows if r.drops]
        lines.append("drops: " + "; ".join(dropped))
    lines += camera_warnings(snap)
    return [line[:width].rstrip() for line in lines]


def camera_warnings(snap: Snapshot) -> list[str]:
    """A line per camera that is not live: its state, since when, why, how often it retried."""
    out = []
    for stream, h in sorted(snap.sources.items()):
        if h.get("state") == "live":
            continue
        since = time.strftime("%H:%M:%S", time.localtime(float(h.get("since", 0))))
        detail = f": {h['detail']}" if h.get("detail") else ""
        out.append(
            f"! {stream} {h.get('state')} since {since}{detail} "
            f"({h.get('reconnects', 0)} reconnects)"
        )
    return out


def summary_line(snap: Snapshot) -> str:
    """One grep-able line for the whole run: ``rkpipe: NAME up H:MM:SS: sinks 29.8 fps;
    streams ...; drops N (reason=n ...); restarts N; busiest STAGE cpu%; cameras ...``."""
    streams = " ".join(f"{s}={n}" for s, n in snap.streams.items()) or "none yet"
    drops: dict[str, int] = {}
    for r in snap.rows:
        for reason, n in r.drops.items():
            drops[reason] = drops.get(reason, 0) + n
    total = sum(drops.values())
    parts = [
        f"rkpipe: {snap.pipeline} up {_clock(snap.run_s)}: sinks {snap.sink_fps:.1f} fps",
        f"streams {streams}",
        f"drops {total}" + (f" ({_reasons(drops)})" if drops else ""),
        f"restarts {sum(r.restarts for r in snap.rows)}",
    ]
    if snap.rows:
        busiest = max(snap.rows, key=lambda r: r.cpu_percent)
        parts.append(f"busiest {busiest.instance} cpu {busiest.cpu_percent:.0f}%")
    odd = [f"{r.instance} {r.state}" for r in snap.rows if r.state in ("restarting", "disabled")]
    if odd:
        parts.append(" ".join(odd))
    if snap.sources:  # the sources that report health: cameras and streams
        live = sum(h.get("state") == "live" for h in snap.sources.values())
        down = [
            f"{s} {h.get('state')}"
            for s, h in sorted(snap.sources.items())
            if h.get("state") != "live"
        ]
        parts.append("cameras: " + ", ".join(([f"{live} live"] if live else []) + down))
    return "; ".join(parts)


class DropWatch:
    """The lines for stages that start dropping frames for a reason: a reason's count that
    rises after ``quiet_s`` without rising (or for the first time) is said once, so a sink
    that begins to fail shows in a log between two summary lines."""

    def __init__(self, quiet_s: float) -> None:
        self.quiet_s = quiet_s
        self._seen: dict[tuple[str, str], tuple[int, float]] = {}  # count, when it last rose

    def lines(self, snap: Snapshot, now: float) -> list[str]:
        out = []
        for r in snap.rows:
            for reason, n in sorted(r.drops.items()):
                count, rose = self._seen.get((r.instance, reason), (0, float("-inf")))
                if n <= count:
                    continue
                if now - rose >= self.quiet_s:
                    out.append(
                        f"rkpipe: {r.instance} is dropping frames: {reason} "
                        f"(+{n - count}, {n} in all)"
                    )
                self._seen[(r.instance, reason)] = (n, now)
        return out


class LiveView:
    """Shows snapshots on ``stream``: the live table when ``live`` (None: when ``stream`` is
    a terminal), else a summary line every ``interval`` seconds and a line when a stage
    starts dropping frames. Safe to call from threads and from signal handlers."""

    def __init__(self, stream: TextIO, live: bool | None = None, interval: float = 60.0) -> None:
        self.stream = stream
        self.live = _isatty(stream) if live is None else live
        self.interval = interval
        self._drops = DropWatch(interval)
        self._drawn: list[str] = []
        self._last: Snapshot | None = None
        self._next_plain = 0.0
        self._lock = threading.Lock()
        self._owner: int | None = None
        self._pending: deque[str] = deque()

    def update(self, snap: Snapshot) -> None:
        """Show ``snap``: redraw the changed lines, or print the lines that are due."""
        with self._holding():
            self._last = snap
            if self.live:
                self._draw(self._table(snap))
                return
            now = time.monotonic()
            lines = self._drops.lines(snap, now) if snap.run_s else []
            if snap.run_s and now >= self._next_plain:
                self._next_plain = now + self.interval
                lines.append(summary_line(snap))
            if lines:
                self._write("".join(f"{line}\n" for line in lines))

    def message(self, line: str) -> None:
        """Print a line of text; on a terminal it goes above the table, which is redrawn."""
        self._pending.append(line)
        if self._owner == threading.get_ident():
            return  # a signal handler interrupted our own drawing: printed when that ends
        with self._holding():
            pass

    def close(self, final: Snapshot) -> None:
        """Leave the final table (whole-run figures) on screen."""
        with self._holding():
            self._last = final
            if self.live:
                self._draw(self._table(final))

    @contextmanager
    def _holding(self) -> Iterator[None]:
        """The lock, and on the way out the messages that came meanwhile."""
        with self._lock:
            self._owner = threading.get_ident()
            try:
                yield
                self._print_pending()
            finally:
                self._owner = None

    def _print_pending(self) -> None:
        lines = []
        while self._pending:
            lines.append(self._pending.popleft())
        if not lines:
            return
        if not self.live or not self._drawn:
            self._write("".join(f"{line}\n" for line in lines))
            return
        up = _UP.format(len(self._drawn)) + _ERASE_BELOW
        self._drawn = []
        self._write(up + "".join(f"{line}\n" for line in lines))
        if self._last is not None:
            self._draw(self._table(self._last))

    def _table(self, snap: Snapshot) -> list[str]:
        width, height = self._size()
        return table_lines(snap, width, height - 1)  # the cursor rests on the line below

    def _size(self) -> tuple[int, int]:
        try:
            cols, rows = os.get_terminal_size(self.stream.fileno())
        except (OSError, ValueError, AttributeError):
            cols, rows = 0, 0
        cols = cols or int(os.environ.get("COLUMNS", 0) or 100)
        return max(min(MAX_WIDTH, cols - 1), 40), rows or 50

    def _draw(self, lines: list[str]) -> None:
        """Rewrite in place the lines that differ from what is on screen."""
        if lines == self._drawn:
            return
        old = self._drawn
        out = [_HIDE, _UP.format(len(old)) if old else ""]
        for i, line in enumerate(lines):
            out.append(_NEXT if i < len(old) and old[i] == line else line + _ERASE_LINE + "\n")
        if len(lines) < len(old):
            out.append(_ERASE_BELOW)
        out.append(_SHOW)
        self._drawn = lines
        self._write("".join(out))

    def _write(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (OSError, ValueError):  # the terminal went away: keep running regardless
            pass


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False
