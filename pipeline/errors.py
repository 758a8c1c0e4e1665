"""One exception hierarchy for rkpipe, and its exit statuses; user errors print as one line,
never a traceback."""

from __future__ import annotations

__all__ = [
    "EXIT_FAILED",
    "EXIT_INTERRUPTED",
    "EXIT_INVALID",
    "EXIT_OK",
    "EXIT_SETUP",
    "EXIT_TERMINATED",
    "GraphError",
    "ModelError",
    "RkpipeError",
    "ShmError",
    "SourceError",
    "StageSetupError",
    "TransportError",
]


EXIT_OK = 0  # the run finished
EXIT_FAILED = 1  # a stage failed for good (or any other error)
EXIT_INVALID = 2  # the graph file (or a command line) is invalid
EXIT_SETUP = 3  # a stage process could not set up (bad model, dead camera): not retried
EXIT_INTERRUPTED = 130  # stopped by SIGINT (Ctrl-C), after draining
EXIT_TERMINATED = 143  # stopped by SIGTERM, after draining


class RkpipeError(Exception):
    """Base of every error rkpipe reports to a user; its message is the whole story."""

    exit_code = EXIT_FAILED


class GraphError(RkpipeError):
    """A graph file is invalid. Holds every problem found, so all are reported at once."""

    exit_code = EXIT_INVALID

    def __init__(self, problems: list[str] | str) -> None:
        self.problems = [problems] if isinstance(problems, str) else list(problems)
        super().__init__("\n".join(self.problems))


class StageSetupError(RkpipeError):
    """A stage could not start for a reason restarting will not fix (bad model, bad device)."""

    exit_code = EXIT_SETUP


class ModelError(StageSetupError):
    """A model file is missing, unreadable, or of a layout rkpipe cannot use."""


class SourceError(StageSetupError):
    """A video source cannot be opened (missing file, camera absent, bad URL)."""


class ShmError(StageSetupError):
    """/dev/shm has no room for the run's frame pools. Before the run it is exit status 2, as
    for an invalid graph: the graph or the machine must change first; in a stage process it is
    a setup error, never retried (a restart finds no more room)."""

    exit_code = EXIT_INVALID


class TransportError(RkpipeError):
    """A message could not be encoded, decoded, or delivered."""
