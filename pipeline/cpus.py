"""CPU sets as people write them: ``"0-3,6"`` <-> {0, 1, 2, 3, 6}; the machine's topology
(which cores are big and which little, from sysfs); and CPUs by name in a graph:
``"big"``, ``"little"``, ``"any"``, or ``"big:2"`` (two big cores, different ones for each
replica and each stage that asks, as far as there are enough)."""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

__all__ = [
    "CPU_NAME",
    "PRESETS",
    "CpuPlacer",
    "Topology",
    "format_cpus",
    "parse_cpus",
    "read_topology",
    "topology_for",
]

#: ``big``, ``little`` or ``any``, optionally ``:N`` cores of that kind per process.
CPU_NAME = re.compile(r"^(big|little|any)(?::([1-9][0-9]*))?$")


def parse_cpus(text: str) -> set[int]:
    """``"0-3,6"`` -> {0, 1, 2, 3, 6}; ValueError for anything else."""
    out: set[int] = set()
    for part in text.split(","):
        lo, _, hi = part.strip().partition("-")
        first, last = int(lo), int(hi or lo)
        if first < 0 or last < first:
            msg = f"bad CPU range {part.strip()!r} (expected e.g. 0-3,6)"
            raise ValueError(msg)
        out.update(range(first, last + 1))
    return out


def format_cpus(cpus: Iterable[int], empty: str = "any") -> str:
    """{4, 5, 6, 7, 9} -> ``"4-7,9"``; nothing -> ``empty``."""
    ordered = sorted(set(cpus))
    if not ordered:
        return empty
    parts: list[str] = []
    start = prev = ordered[0]
    for c in [*ordered[1:], None]:
        if c is not None and c == prev + 1:
            prev = c
            continue
        parts.append(str(start) if start == prev else f"{start}-{prev}")
        if c is not None:
            start = prev = c
    return ",".join(parts)


@dataclass(frozen=True)
class Topology:
    """A machine's CPUs and which of them are big and little. On a machine whose cores are
    all alike, ``big`` and ``little`` are both every core."""

    cpus: tuple[int, ...]
    big: tuple[int, ...]
    little: tuple[int, ...]
    source: str = "uniform"  # how it was learnt, for ``rkpipe graph``

    @classmethod
    def uniform(cls, cpus: Iterable[int], source: str = "uniform") -> Topology:
        ids = tuple(sorted(set(cpus)))
        return cls(ids, ids, ids, source)

    @property
    def mixed(self) -> bool:
        """Whether there are big and little cores."""
        return set(self.big) != set(self.little)

    def kind(self, name: str) -> tuple[int, ...]:
        """The cores a name's kind stands for (``big``, ``little``, ``any``)."""
        return {"big": self.big, "little": self.little}.get(name, self.cpus)

    def describe(self) -> str:
        if not self.mixed:
            return f"{format_cpus(self.cpus)}, all alike ({self.source})"
        big, little = format_cpus(self.big), format_cpus(self.little)
        return f"{format_cpus(self.cpus)}: big {big}, little {little} ({self.source})"

    def check(self, name: str) -> str:
        """Why ``name`` cannot be placed on this machine ("" when it can)."""
        found = CPU_NAME.match(name)
        if found is None:
            return f'expected "big", "little" or "any", or e.g. "big:2", got {name!r}'
        kind = found.group(1)
        have, want = self.kind(kind), int(found.group(2) or 0)
        if want > len(have):
            return (
                f"{name!r} asks for {want} {kind} cores; this machine has {len(have)} "
                f"({self.describe()})"
            )
        return ""


PRESETS = {  # for validating a graph on another machine: rkpipe validate --cpus rk3588
    "rk3588": Topology(tuple(range(8)), (4, 5, 6, 7), (0, 1, 2, 3), "preset rk3588"),
    "rk3588s": Topology(tuple(range(8)), (4, 5, 6, 7), (0, 1, 2, 3), "preset rk3588s"),
    "rk3576": Topology(tuple(range(8)), (4, 5, 6, 7), (0, 1, 2, 3), "preset rk3576"),
}


def topology_for(text: str) -> Topology:
    """A preset by name (``rk3588``) or a CPU list (``0-7``: all alike); ValueError else."""
    if text.lower() in PRESETS:
        return PRESETS[text.lower()]
    try:
        return Topology.uniform(parse_cpus(text), f"--cpus {text}")
    except ValueError:
        presets = ", ".join(PRESETS)
        msg = f"expected CPU ids (e.g. 0-7) or a board ({presets}), got {text!r}"
        raise ValueError(msg) from None


# (file, name, share): a core with at least this share of the best core's figure is big.
# An A55's capacity is ~0.4 of an A76's, but its top clock 0.75-0.8 of it.
_RANKS = [
    ("cpu_capacity", "cpu_capacity", 0.75),
    ("cpufreq/cpuinfo_max_freq", "cpufreq", 0.9),
]


def _read_number(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def read_topology(root: str | Path = "/", allowed: Iterable[int] | None = None) -> Topology:
    """This machine's topology from sysfs under ``root``: cores ranked by ``cpu_capacity``
    (arm64), else by ``cpufreq/cpuinfo_max_freq``; those close to the best are big (an
    RK3588's two A76 clusters differ a little, an x86's favoured cores do too), the rest
    little. ``allowed`` keeps only the CPUs this process may use (default: its affinity,
    when ``root`` is the real one)."""
    base = Path(root) / "sys/devices/system/cpu"
    ids = sorted(int(p.name[3:]) for p in base.glob("cpu[0-9]*") if p.name[3:].isdigit())
    if allowed is None and Path(root) == Path("/"):
        allowed = os.sched_getaffinity(0)
    if allowed is not None:
        ids = [c for c in ids if c in set(allowed)] or sorted(set(allowed))
    for probe, source, share in _RANKS:
        rank = {c: _read_number(base / f"cpu{c}" / probe) for c in ids}
        if ids and all(v is not None for v in rank.values()):
            top = max(v for v in rank.values() if v is not None)
            big = tuple(c for c in ids if (rank[c] or 0) >= share * top)
            little = tuple(c for c in ids if c not in big)
            return Topology(tuple(ids), big, little or big, source if little else "uniform")
    return Topology.uniform(ids, "uniform")


@dataclass
class CpuPlacer:
    """Turns a graph's ``cpus`` into CPU ids per process. ``"big:N"`` takes the next N big
    cores in turn (a cursor per kind, across every stage and replica of the graph), so
    replicas, and stages that ask alike, get different cores while there are enough."""

    topology: Topology
    _cursor: dict[str, int] = field(default_factory=dict)

    def place(self, cpus: str | list[int] | list[list[int]], replica: int) -> list[int]:
        if isinstance(cpus, str):
            return self._by_name(cpus)
        if cpus and isinstance(cpus[0], list):
            return list(cpus[replica])
        return list(cpus)  # type: ignore[arg-type]

    def _by_name(self, name: str) -> list[int]:
        found = CPU_NAME.match(name)
        if found is None:  # validated before: unreachable for a loaded graph
            raise ValueError(self.topology.check(name))
        kind, count = found.group(1), found.group(2)
        have = self.topology.kind(kind)
        if count is None:
            return list(have)
        start = self._cursor.get(kind, 0)
        self._cursor[kind] = start + int(count)
        return sorted({have[(start + i) % len(have)] for i in range(int(count))})
