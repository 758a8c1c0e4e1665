"""Where a stream's line totals live between runs: ``<stream>.json`` holds one snapshot line
(``{"run_id", "base", "run", "zones"}``) followed by one line per changed total of the run
(``{"l": line, "d": direction, "c": class, "n": total}``). A change costs one appended line,
written before the total is published, so a killed process never published a total the next
run does not know; the file is rewritten in one step (snapshot only) now and then, never
through a link (``pipeline.output_files``)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, BinaryIO

from pipeline.output_files import DEFAULT_MODES, Modes, make_folder, open_file, write_replacing

__all__ = ["TotalsFile"]

MAX_NOTES = 1000  # changes appended before the snapshot is rewritten


class TotalsFile:
    """Load, rewrite and append to one stream's totals file; with no ``path`` (the folder
    cannot be made) nothing is kept."""

    def __init__(self, path: Path | None, modes: Modes = DEFAULT_MODES) -> None:
        self.path = path
        self.modes = modes
        self.notes = 0
        self.file: BinaryIO | None = None

    def load(self) -> dict[str, Any]:
        """The snapshot with the appended changes applied ({} when there is no file); a line
        cut short by a crash is skipped."""
        if self.path is None:
            return {}
        try:
            lines = self.path.read_bytes().splitlines()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ValueError(f"mqtt: cannot read the totals in {self.path} ({exc})") from None
        try:
            doc = json.loads(lines[0]) if lines else {}
        except ValueError:
            msg = f"mqtt: the totals in {self.path} are damaged; move the file away to start at 0"
            raise ValueError(msg) from None
        if not isinstance(doc, dict):
            return {}
        run = doc.setdefault("run", {})
        for line in lines[1:]:
            try:
                n = json.loads(line)
                by = run.setdefault(n["l"], {}).setdefault(n["d"], {})
                by[n["c"]] = int(n["n"])
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
        return doc

    def write(self, doc: dict[str, Any]) -> None:
        """Replace the file by the snapshot ``doc``, in one step."""
        self.close()
        if self.path is None:
            return
        make_folder(self.path.parent, self.modes)
        write_replacing(self.path, (json.dumps(doc, sort_keys=True) + "\n").encode(), self.modes)
        self.notes = 0

    def note(self, line: str, direction: str, cls: str, n: int) -> None:
        """Append one changed total of this run (after a snapshot was written)."""
        if self.path is None:
            return
        if self.file is None:
            self.file = os.fdopen(open_file(self.path, self.modes, append=True), "ab")
        rec = {"l": line, "d": direction, "c": cls, "n": n}
        self.file.write((json.dumps(rec, separators=(",", ":")) + "\n").encode())
        self.file.flush()
        self.notes += 1

    def close(self) -> None:
        if self.file is not None:
            self.file.close()
            self.file = None
