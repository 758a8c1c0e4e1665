"""Output paths: files and folders a stage writes, marked in its config and checked early.

A config field typed :data:`OutputFile` or :data:`OutputDir` (or :class:`OutputPath` with
its own base) is checked when the graph is validated (its folder exists or can be made, and a
file can be created there) and again in the stage's process before ``setup`` (the folder is
made, with the stage's ``file_mode``: see :mod:`pipeline.output_files`). A path that cannot be
written, or whose folder other users may write, is one clear error before any frame flows,
never a crash an hour into a run or a final event lost at its end. ``{stream}`` in a path is
allowed.
"""

from __future__ import annotations

import os
import tempfile
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel

from .errors import StageSetupError
from .output_files import DEFAULT_FILE_MODE, Modes, UnsafeOutput, folder_problem, make_folder

__all__ = [
    "OutputDir",
    "OutputFile",
    "OutputPath",
    "output_fields",
    "output_problems",
    "prepare_outputs",
    "unwritable",
]


@dataclass(frozen=True)
class OutputPath:
    """Marks a config field as a path the stage writes: a ``"file"`` or a ``"dir"``, relative
    to the working directory (``base="cwd"``) or to the graph file's folder (``"graph"``)."""

    kind: Literal["file", "dir"] = "file"
    base: Literal["cwd", "graph"] = "cwd"

    def resolve(self, value: str, graph_dir: Path) -> Path:
        """``value`` made absolute (``{stream}`` left in: a valid name to check with)."""
        path = Path(value).expanduser()
        return (
            path
            if path.is_absolute()
            else (graph_dir if self.base == "graph" else Path.cwd()) / path
        )


OutputFile = Annotated[str, OutputPath("file")]
OutputDir = Annotated[str, OutputPath("dir")]


def output_fields(model: type[BaseModel]) -> dict[str, OutputPath]:
    """The fields of ``model`` marked as output paths (also inside ``X | None``)."""
    found = {}
    for name, field in model.model_fields.items():
        marks = [m for m in field.metadata if isinstance(m, OutputPath)]
        for arg in typing.get_args(field.annotation):  # Optional[OutputFile]
            marks += [m for m in getattr(arg, "__metadata__", ()) if isinstance(m, OutputPath)]
        if marks:
            found[name] = marks[0]
    return found


def unwritable(path: Path, kind: str = "file") -> str | None:
    """Why ``path`` cannot be written (None: it can). The nearest existing folder is tried
    with a file made and removed at once (permission bits alone do not tell, e.g. for root)."""
    folder = path if kind == "dir" else path.parent
    if path.exists() and (path.is_dir() != (kind == "dir")):
        return f"{path} is {'a folder' if path.is_dir() else 'not a folder'}"
    if kind == "file" and path.is_file() and not os.access(path, os.W_OK):
        return f"{path} is not writable"
    existing = next(p for p in (folder, *folder.parents) if p.exists() or p == p.parent)
    if not existing.is_dir():
        return f"cannot make folder {folder}: {existing} is not a folder"
    try:
        fd, probe = tempfile.mkstemp(prefix=".rkpipe-probe-", dir=existing)
    except OSError as exc:
        need = "" if existing == folder else f" (to make {folder})"
        return f"cannot write in folder {existing}{need}: {exc.strerror or exc}"
    os.close(fd)
    os.unlink(probe)
    return None


def _problems(config: BaseModel, graph_dir: Path, make: bool) -> list[tuple[str, str]]:
    out = []
    for name, mark in output_fields(type(config)).items():
        value = getattr(config, name)
        if not value:
            continue
        template = mark.resolve(str(value), graph_dir)
        try:
            str(template).format(stream="stream")
        except (KeyError, IndexError, ValueError):
            out.append((name, f"{value!r}: only {{stream}} may be used in a path"))
            continue
        modes = Modes.of(getattr(config, "file_mode", DEFAULT_FILE_MODE))
        reason = _make_folder(template, mark.kind, modes) if make else None
        reason = reason or unwritable(template, mark.kind)  # "{stream}" stays in the name
        reason = reason or folder_problem(_fixed_folder(template, mark.kind))
        if reason is not None:
            out.append((name, f"cannot write {value!r}: {reason}"))
    return out


def _fixed_folder(template: Path, kind: str) -> Path:
    """The folder of ``template`` up to the first that depends on ``{stream}``."""
    folder = template if kind == "dir" else template.parent
    return next(p for p in (folder, *folder.parents) if "{" not in str(p))


def _make_folder(template: Path, kind: str, modes: Modes) -> str | None:
    """Make the folders of ``template`` up to the first that depends on ``{stream}``."""
    fixed = _fixed_folder(template, kind)
    try:
        make_folder(fixed, modes)
    except (FileExistsError, NotADirectoryError, UnsafeOutput):  # said below
        return None
    except OSError as exc:
        return f"cannot make folder {fixed}: {exc.strerror or exc}"
    return None


def output_problems(config: BaseModel, graph_dir: Path) -> list[tuple[str, str]]:
    """(field, reason) for each output path of ``config`` that cannot be written; makes
    nothing (for validation)."""
    return _problems(config, graph_dir, make=False)


def prepare_outputs(config: BaseModel, stage: str, graph_dir: Path) -> None:
    """Make the folders of ``config``'s output paths and check they can be written; a
    StageSetupError names the first that cannot."""
    for name, reason in _problems(config, graph_dir, make=True):
        raise StageSetupError(f"stages.{stage}.{name}: {reason}")


def declared_outputs(config: BaseModel, graph_dir: Path) -> list[tuple[str, Path]]:
    """Where a stage's config says it writes: (option, absolute path or ``{stream}``
    template), for the end-of-run summary."""
    return [
        (name, mark.resolve(str(value), graph_dir))
        for name, mark in output_fields(type(config)).items()
        if (value := getattr(config, name))
    ]
