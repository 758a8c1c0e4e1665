"""CPU sets as people write them: ``"0-3,6"`` <-> {0, 1, 2, 3, 6}."""

from __future__ import annotations

from collections.abc import Iterable

__all__ = ["format_cpus", "parse_cpus"]


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
