"""One exception hierarchy for rkpipe; user errors print as one line, never a traceback."""

from __future__ import annotations

__all__ = [
    "GraphError",
    "ModelError",
    "RkpipeError",
    "SourceError",
    "StageSetupError",
    "TransportError",
]


class RkpipeError(Exception):
    """Base of every error rkpipe reports to a user; its message is the whole story."""

    exit_code = 1


class GraphError(RkpipeError):
    """A graph file is invalid. Holds every problem found, so all are reported at once."""

    exit_code = 2

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class StageSetupError(RkpipeError):
    """A stage could not start for a reason restarting will not fix (bad model, bad device)."""

    exit_code = 3


class ModelError(StageSetupError):
    """A model file is missing, unreadable, or of a layout rkpipe cannot use."""


class SourceError(StageSetupError):
    """A video source cannot be opened (missing file, camera absent, bad URL)."""


class TransportError(RkpipeError):
    """A message could not be encoded, decoded, or delivered."""
