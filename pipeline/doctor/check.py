"""One line of the doctor's checklist, and what the checks share: the machine's root (a
fixture tree in tests) and the facts found so far (SoC, NPU driver and runtime versions)."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

__all__ = ["Check", "DoctorContext", "Status"]

#: ``fail``: something required is broken (exit status 1); ``warn``: it works, but not as
#: well as it could; ``info``: a fact, or a check that does not apply here.
Status = Literal["ok", "warn", "fail", "info"]


@dataclass(frozen=True)
class Check:
    """What was checked, how it went, what was found, and how to fix it."""

    name: str
    status: Status
    detail: str
    fix: str = ""

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class DoctorContext:
    """Where the machine's files are (``root``: ``/``, or a fixture tree) and what the
    checks have learnt (``facts``: ``soc``, ``npu_driver``, ``librknnrt``, ``toolkit``)."""

    root: Path = Path("/")
    graph_dir: Path = field(default_factory=Path.cwd)
    facts: dict[str, str] = field(default_factory=dict)

    @property
    def real(self) -> bool:
        """Whether this is the machine itself (tools on PATH then speak for it too)."""
        return self.root == Path("/")

    def path(self, path: str) -> Path:
        """``/sys/...`` under the root."""
        return self.root / path.lstrip("/")

    def read(self, path: str) -> str | None:
        """A file's text under the root; None when missing or unreadable (debugfs)."""
        try:
            return self.path(path).read_text(errors="replace")
        except OSError:
            return None

    @property
    def rk3588(self) -> bool:
        return self.facts.get("soc", "").startswith("rk3588")
