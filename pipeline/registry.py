"""Stages and CLI commands by short name, found through package entry points.

Built-in stages register under ``rkpipe.stages`` (``capture = "stages.capture:Capture"``) and
extra CLI subcommands under ``rkpipe.commands`` (``scene = "stages.synthetic.cli:main"``), so
the runtime never imports a built-in by name and a third-party package can add its own.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from importlib.metadata import entry_points

__all__ = ["COMMANDS_GROUP", "STAGES_GROUP", "command", "commands", "stage_targets"]

STAGES_GROUP = "rkpipe.stages"
COMMANDS_GROUP = "rkpipe.commands"


@cache
def stage_targets() -> dict[str, str]:
    """Short name -> ``"module:Class"`` of every registered stage."""
    return {ep.name: ep.value for ep in entry_points(group=STAGES_GROUP)}


@cache
def commands() -> dict[str, str]:
    """Subcommand name -> ``"module:function"`` of every registered CLI command."""
    return {ep.name: ep.value for ep in entry_points(group=COMMANDS_GROUP)}


def command(name: str) -> Callable[[list[str]], int] | None:
    """The ``main(argv) -> exit status`` of a registered subcommand, or None."""
    for ep in entry_points(group=COMMANDS_GROUP):
        if ep.name == name:
            return ep.load()  # type: ignore[no-any-return,unused-ignore]
    return None
