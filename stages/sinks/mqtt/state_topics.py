"""Plain retained numbers next to the events, for Home Assistant, Node-RED and scripts:

    {state_prefix}/{line}/{direction}/{class}   crossings since the first run (an integer)
    {state_prefix}/zones/{zone}/{class}         objects inside now (an integer)

Every class a line or zone counts is there, zeros included. Line totals are kept per stream in
``state_dir`` (``<pipeline>/<stream>.json``, :mod:`.totals_file`; a name that is long or not
file-safe gets a readable head and a short hash there), written before they are published, so a
restarted pipeline carries on counting instead of starting from zero (Home Assistant's
``total_increasing`` never sees a total fall); a sink restarted within the same run (same run
id) does not add that run twice. The first ``counts`` event of a stream tells its lines and
zones: those of an earlier run that are gone are removed from the broker (and from Home
Assistant).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from pipeline.output_files import DEFAULT_MODES, Modes
from stages.event_files import safe_name
from stages.sinks.mqtt.discovery import Discovery
from stages.sinks.mqtt.retained import Retained
from stages.sinks.mqtt.topics import level
from stages.sinks.mqtt.totals_file import MAX_NOTES, TotalsFile

__all__ = ["StateTopics", "StreamState"]

DIRECTIONS = ("in", "out")
RESERVED = frozenset(
    {"events", "status", "zones", "snapshot", "fps", "objects"}
)  # levels the sink uses

Totals = dict[str, dict[str, dict[str, int]]]  # line -> direction -> class -> n


class StreamState:
    """One stream's numbers, folded from its events: line totals (earlier runs in ``base``,
    this run in ``run``) and zone occupancy, with what changed since the last ``take``."""

    def __init__(self, path: Path | None, run_id: str, modes: Modes = DEFAULT_MODES) -> None:
        self.run_id = run_id
        self.file = TotalsFile(path, modes)
        doc = self.file.load()
        base, run = _totals(doc.get("base")), _totals(doc.get("run"))
        self.full = doc.get("run_id") != run_id  # a new run: write the merged snapshot first
        if self.full:
            self.base, self.run = _added(base, run), {}
        else:  # this sink restarted: the run's counts carry on
            self.base, self.run = base, run
        self.zones: dict[str, dict[str, int]] = {
            str(z): dict.fromkeys(map(str, classes), 0)
            for z, classes in (doc.get("zones") or {}).items()
            if isinstance(classes, list)
        }
        self.before = (set(self.base) | set(self.run), set(self.zones))  # the last layout
        self.saved_zones = self._zone_layout()
        self.layout_known = False
        self.changed_lines: set[tuple[str, str]] = set()  # (line, class)
        self.changed_zones: set[tuple[str, str]] = set()  # (zone, class)
        self.removed: list[tuple[str, str, list[str]]] = []  # ("line"|"zone", name, classes)
        self.unsaved: set[tuple[str, str, str]] = set()  # (line, direction, class) of ``run``

    # -- folding events ----------------------------------------------------------------------
    def fold(self, ev: Mapping[str, Any]) -> None:
        kind = ev.get("type")
        if kind == "line_crossing" and ev.get("direction") in DIRECTIONS:
            line, cls = str(ev["line"]), str(ev["class_name"])
            by = self._line(line)[ev["direction"]]
            by[cls] = by.get(cls, 0) + 1
            self.unsaved.add((line, ev["direction"], cls))
            self.changed_lines.add((line, cls))
        elif kind in ("zone_enter", "zone_exit"):
            zone, cls = str(ev["zone"]), str(ev["class_name"])
            occ = self.zones.setdefault(zone, {})
            occ[cls] = max(0, occ.get(cls, 0) + (1 if kind == "zone_enter" else -1))
            self.changed_zones.add((zone, cls))
        elif kind == "counts":
            self._fold_counts(ev.get("lines") or {}, ev.get("zones") or {})

    def _fold_counts(self, lines: Mapping[str, Any], zones: Mapping[str, Any]) -> None:
        """A snapshot: the classes it lists (zeros too) and, for lines, never a smaller total
        than the events gave (a restarted counter starts from zero again)."""
        if not self.layout_known:
            self._forget_gone(set(map(str, lines)), set(map(str, zones)))
        for line, dirs in lines.items():
            own = self._line(str(line))
            for d in DIRECTIONS:
                for cls, n in (dirs.get(d) or {}).items():
                    if own[d].get(cls, -1) < int(n):
                        own[d][str(cls)] = int(n)
                        self.unsaved.add((str(line), d, str(cls)))
                    self.changed_lines.add((str(line), str(cls)))
        for zone, body in zones.items():
            occ = self.zones.setdefault(str(zone), {})
            now = {str(c): int(n) for c, n in (body.get("occupancy") or {}).items()}
            for cls in set(occ) | set(now):
                if occ.get(cls) != now.get(cls, 0):
                    occ[cls] = now.get(cls, 0)
                    self.changed_zones.add((str(zone), cls))

    def _forget_gone(self, lines: set[str], zones: set[str]) -> None:
        self.layout_known = True
        for line in sorted(self.before[0] - lines):
            self.removed.append(("line", line, sorted(self.classes(line))))
            self.base.pop(line, None)
            self.run.pop(line, None)
        for zone in sorted(self.before[1] - zones):
            self.removed.append(("zone", zone, sorted(self.zones.pop(zone, {}))))
        self.full = self.full or bool(self.removed)

    def _line(self, line: str) -> dict[str, dict[str, int]]:
        return self.run.setdefault(line, {d: {} for d in DIRECTIONS})

    def _zone_layout(self) -> dict[str, list[str]]:
        return {z: sorted(occ) for z, occ in self.zones.items()}

    # -- reading -----------------------------------------------------------------------------
    def classes(self, line: str) -> set[str]:
        """Every class counted on ``line``, either way, in any run."""
        return {c for t in (self.base, self.run) for by in t.get(line, {}).values() for c in by}

    def total(self, line: str, direction: str, cls: str) -> int:
        return sum(t.get(line, {}).get(direction, {}).get(cls, 0) for t in (self.base, self.run))

    def take(self) -> tuple[list[tuple[str, str]], list[tuple[str, str]], list]:
        """What changed since the last call: (line, class) pairs, (zone, class) pairs, and
        the lines and zones found gone."""
        out = sorted(self.changed_lines), sorted(self.changed_zones), self.removed
        self.changed_lines, self.changed_zones, self.removed = set(), set(), []
        return out

    def save(self) -> None:
        """Put what changed on disk: one line per changed total, or (a new run, a new zone
        layout, lines gone, many lines appended) the whole snapshot in one step."""
        zones = self._zone_layout()
        if self.full or zones != self.saved_zones or self.file.notes >= MAX_NOTES:
            doc = {"run_id": self.run_id, "base": self.base, "run": self.run, "zones": zones}
            self.file.write(doc)
            self.full, self.saved_zones = False, zones
        else:
            for line, d, cls in sorted(self.unsaved):
                self.file.note(line, d, cls, self.run[line][d][cls])
        self.unsaved.clear()


class StateTopics:
    """Every stream's :class:`StreamState`, published as plain retained numbers (and as Home
    Assistant sensors when ``discovery`` is given)."""

    def __init__(
        self,
        folder: Path | None,
        run_id: str,
        retained: Retained,
        discovery: Discovery | None,
        log: logging.Logger,
        modes: Modes = DEFAULT_MODES,
    ) -> None:
        self.folder, self.run_id, self.modes = folder, run_id, modes
        self.retained, self.discovery, self.log = retained, discovery, log
        self.streams: dict[str, StreamState] = {}
        self.warned: set[str] = set()

    def fold(self, stream: str, prefix: str, events: Sequence[Mapping[str, Any]]) -> None:
        """Fold one message's events of ``stream`` in and publish what changed; ``prefix`` is
        the stream's rendered ``state_prefix``."""
        state = self.streams.get(stream)
        if state is None:
            path = (
                None
                if self.folder is None
                else self.folder / f"{safe_name(stream, exact=True)}.json"
            )
            state = self.streams[stream] = StreamState(path, self.run_id, self.modes)
        for ev in events:
            state.fold(ev)
        self._save(state)  # on disk before it is published
        lines, zones, removed = state.take()
        for line, cls in lines:
            self._line(stream, prefix, state, line, cls)
        for zone, cls in zones:
            topic = f"{prefix}/zones/{level(zone)}/{level(cls)}"
            self.retained.set(topic, str(state.zones[zone][cls]))
            if self.discovery is not None:
                self.retained.set(*self.discovery.zone(stream, zone, cls, topic))
        for kind, name, classes in removed:
            self._remove(stream, prefix, kind, name, classes)

    def _save(self, state: StreamState) -> None:
        try:
            state.save()
        except OSError as exc:  # the numbers still go out; only the next run would miss them
            if "save" not in self.warned:
                self.warned.add("save")
                self.log.warning("mqtt: cannot keep the totals in %s: %s", state.file.path, exc)

    def _line(self, stream: str, prefix: str, state: StreamState, line: str, cls: str) -> None:
        if line in RESERVED and line not in self.warned:
            self.warned.add(line)
            self.log.warning(
                "mqtt: a line named %r shares its topic level with the sink's own %s/%s/...",
                line,
                prefix,
                line,
            )
        for d in DIRECTIONS:
            topic = f"{prefix}/{level(line)}/{d}/{level(cls)}"
            self.retained.set(topic, str(state.total(line, d, cls)))
            if self.discovery is not None:
                self.retained.set(*self.discovery.line(stream, line, d, cls, topic))

    def _remove(self, stream: str, prefix: str, kind: str, name: str, classes: list) -> None:
        """Clear the retained numbers (and discovery configs) of a line or zone that is gone."""
        self.log.warning(
            "mqtt: %s %s of stream %s is gone; removing its topics", kind, name, stream
        )
        for cls in classes:
            if kind == "zone":
                self.retained.clear(f"{prefix}/zones/{level(name)}/{level(cls)}")
                if self.discovery is not None:
                    self.retained.clear(self.discovery.topic("sensor", (stream, "zone", name, cls)))
                continue
            for d in DIRECTIONS:
                self.retained.clear(f"{prefix}/{level(name)}/{d}/{level(cls)}")
                if self.discovery is not None:
                    self.retained.clear(self.discovery.topic("sensor", (stream, name, d, cls)))

    def close(self) -> None:
        for state in self.streams.values():
            self._save(state)
            state.file.close()


def _totals(raw: Any) -> Totals:
    """Totals read from disk, keeping only well-formed entries."""
    if not isinstance(raw, dict):
        return {}
    return {
        str(line): {
            d: {str(c): int(n) for c, n in (dirs.get(d) or {}).items() if isinstance(n, int)}
            for d in DIRECTIONS
        }
        for line, dirs in raw.items()
        if isinstance(dirs, dict)
    }


def _added(a: Totals, b: Totals) -> Totals:
    out: Totals = {line: {d: dict(by) for d, by in dirs.items()} for line, dirs in a.items()}
    for line, dirs in b.items():
        own = out.setdefault(line, {d: {} for d in DIRECTIONS})
        for d, by in dirs.items():
            for c, n in by.items():
                own[d][c] = own[d].get(c, 0) + n
    return out
