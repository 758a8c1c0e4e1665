"""Find the line of a table or key in a TOML file, so errors can say file:line."""

from __future__ import annotations

import re

__all__ = ["KeyLocator"]

_HEADER = re.compile(r"^\s*\[\s*([^\[\]]+?)\s*\]\s*(#.*)?$")


class KeyLocator:
    """Maps ``("stages", "cam0", "conf")`` to a 1-based line number (best effort)."""

    def __init__(self, text: str) -> None:
        self.lines = text.splitlines()
        self.headers: dict[tuple[str, ...], int] = {}
        for no, line in enumerate(self.lines, 1):
            m = _HEADER.match(line)
            if m:
                self.headers.setdefault(_split_key(m.group(1)), no)

    def line(self, *path: str) -> int | None:
        """Line of the deepest part of ``path`` that can be found."""
        for n in range(len(path), 0, -1):
            table, key = tuple(path[: n - 1]), path[n - 1]
            prefix = tuple(path[:n])
            under = [no for h, no in self.headers.items() if h[:n] == prefix]
            if under:
                return min(under)
            start = self.headers.get(table)
            if start is None:
                continue
            found = self._key_in_table(start, key)
            if found:
                return found
        return None

    def _key_in_table(self, start: int, key: str) -> int | None:
        pat = re.compile(rf'^\s*("?){re.escape(key)}\1\s*[.=]')
        for no in range(start + 1, len(self.lines) + 1):
            line = self.lines[no - 1]
            if _HEADER.match(line):
                return None
            if pat.match(line):
                return no
        return None


_KEY_PART = re.compile(r"""\s*("[^"]*"|'[^']*'|[^.]+?)\s*(?:\.|$)""")


def _split_key(text: str) -> tuple[str, ...]:
    """``stages."a.b".x`` -> ("stages", "a.b", "x"): dots inside quotes belong to the key."""
    return tuple(m.group(1).strip("\"'") for m in _KEY_PART.finditer(text.strip()) if m.group(1))
