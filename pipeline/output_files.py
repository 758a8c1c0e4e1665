"""Files a run writes for people (recordings, snapshots, crops, clips, event lines, state):
kept to the user and its group whatever the umask, and never written through a link.

- **Modes.** Files are 0640 and the folders made for them 0750 by default; a stage's
  ``file_mode`` (e.g. ``"0644"`` to share recordings with another service) sets both, a
  folder getting ``x`` wherever its files have ``r``. The mode is set with ``fchmod`` on the
  open file, so the umask neither widens nor narrows it.
- **Links.** A file is opened with ``O_NOFOLLOW`` (a link at its name is refused) and must be
  a regular file with no other hard link, or a character device such as ``/dev/null`` (only
  root makes those); a FIFO or a socket is refused, never waited on. A file replaced in one
  step is written to a new temporary file made exclusively (``O_EXCL | O_NOFOLLOW``) in the
  same folder, then renamed over the name: a rename replaces a link planted there, it never
  writes through it.
- **Folders.** An output folder that other users may write (``o+w``) is refused: anyone could
  plant a link or swap a file in it. A sticky folder above it (``/tmp``) is fine, since only
  a file's owner may rename it there; as the output folder itself only where a caller says so
  (``--stats-out``, a report of the run's numbers).
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, BinaryIO

from pydantic import BeforeValidator, Field

__all__ = [
    "DEFAULT_FILE_MODE",
    "DEFAULT_MODES",
    "PRIVATE",
    "FileMode",
    "Modes",
    "UnsafeOutput",
    "create_new",
    "fd_path",
    "file_mode_field",
    "folder_problem",
    "make_folder",
    "named",
    "open_file",
    "parse_file_mode",
    "replacing",
    "write_aside",
    "write_replacing",
]

DEFAULT_FILE_MODE = "0640"


class UnsafeOutput(OSError):
    """An output rkpipe will not write: a link or a non-regular file at its name, or a folder
    other users may write. An OSError, so a sink that meets one counts the frame lost."""


def parse_file_mode(text: str) -> int:
    """The mode of ``"0640"`` (or ``"640"``, ``"0o640"``); ValueError saying what is allowed:
    read and write for the owner, no execute bits, no write for others."""
    digits = text.strip().lower().removeprefix("0o")
    if not digits or any(c not in "01234567" for c in digits) or int(digits, 8) > 0o777:
        msg = f'expected an octal file mode such as "0640" or "0644", got {text!r}'
        raise ValueError(msg)
    mode = int(digits, 8)
    if mode & 0o600 != 0o600:
        raise ValueError(f"{text!r}: the owner must be able to read and write (0600 at least)")
    if mode & 0o111:
        raise ValueError(f"{text!r}: files rkpipe writes are not programs; drop the x bits")
    if mode & 0o002:
        raise ValueError(f"{text!r}: files others may write could be changed by anyone")
    return mode


def _file_mode(value: object) -> str:
    if not isinstance(value, str):  # TOML's 0o640 and 640 arrive as the same kind: ints
        msg = f'write the mode as a string, e.g. file_mode = "0640", not {value!r}'
        raise ValueError(msg)
    return f"{parse_file_mode(value):04o}"


#: A stage option holding a file mode, checked and written as four octal digits.
FileMode = Annotated[str, BeforeValidator(_file_mode)]


def file_mode_field() -> Any:
    """The ``file_mode`` option of a stage that writes files (its default and description)."""
    desc = 'files it writes ("0644": readable by all); folders get x where files have r'
    return Field(DEFAULT_FILE_MODE, description=desc)


@dataclass(frozen=True)
class Modes:
    """The mode of the files a writer makes, and of the folders it makes for them."""

    file: int = 0o640

    @property
    def folder(self) -> int:
        return self.file | ((self.file & 0o444) >> 2)

    @classmethod
    def of(cls, text: str) -> Modes:
        """From a ``file_mode`` option."""
        return cls(parse_file_mode(text))


DEFAULT_MODES = Modes()  # 0640 files, 0750 folders
PRIVATE = Modes(0o600)  # the owner only (write-ahead spool, a file for passwords)


def _others_write(st: os.stat_result) -> bool:
    return bool(st.st_mode & stat.S_IWOTH)


def _sticky(st: os.stat_result) -> bool:
    return bool(st.st_mode & stat.S_ISVTX)


def folder_problem(folder: Path, sticky_ok: bool = False) -> str | None:
    """Why files must not be written in ``folder`` (None: they may): it, or a folder above it
    that is not sticky, can be written by other users. A folder not made yet is judged by
    those above it (it will be made ours)."""
    folder = Path(os.path.abspath(folder))
    own = True  # the folder the files go in, if it exists
    for level in (folder, *folder.parents):
        try:
            st = level.stat()
        except FileNotFoundError:
            own = False
            continue
        except OSError:
            return None  # cannot look: the write itself will say why
        allowed = _sticky(st) and (sticky_ok or not own)  # only owners rename files there
        if _others_write(st) and not allowed:
            mode = f"{stat.S_IMODE(st.st_mode):04o}"
            fix = f"chmod o-w {level}" if not _sticky(st) else f"mkdir -m 750 {level}/<yours>"
            return (
                f"folder {level} can be written by other users (mode {mode}), who could plant "
                f"a link there or replace a file; use a folder of your own ({fix})"
            )
        own = False
    return None


def make_folder(folder: Path, modes: Modes = DEFAULT_MODES, sticky_ok: bool = False) -> None:
    """Make ``folder`` and the folders above it that are missing, each ``modes.folder``
    whatever the umask; a folder that exists and others may write raises UnsafeOutput
    (``sticky_ok``: unless it is sticky, as ``/tmp``)."""
    try:
        st = os.stat(folder)
    except FileNotFoundError:
        if folder.parent != folder:
            make_folder(folder.parent, modes, sticky_ok=True)  # above: only owners rename
        try:
            os.mkdir(folder, modes.folder)
        except FileExistsError:  # made meanwhile (another stage); judged below
            pass
        else:
            os.chmod(folder, modes.folder)
            return
        st = os.stat(folder)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(errno.ENOTDIR, "not a folder", str(folder))
    if _others_write(st) and not (sticky_ok and _sticky(st)):
        why = folder_problem(folder, sticky_ok) or f"folder {folder} is writable by others"
        raise UnsafeOutput(why)


def _refuse(path: Path, exc: OSError) -> OSError:
    """The error for an open of ``path`` that failed with ``exc``: clear for a link."""
    if exc.errno == errno.ELOOP:
        why = "is a symbolic link; rkpipe does not write through links (remove it)"
        return UnsafeOutput(f"{path} {why}")
    if exc.errno == errno.ENXIO:  # a FIFO with no reader, or a socket
        return UnsafeOutput(f"{path} is not a regular file; remove it")
    return exc


def _checked(fd: int, path: Path, modes: Modes) -> os.stat_result:
    """``fd``'s status if it is a regular file of one link (set to ``modes.file``) or a
    character device (/dev/null, /dev/full: only root can make one), set blocking."""
    st = os.fstat(fd)
    why = None
    if stat.S_ISCHR(st.st_mode):
        pass
    elif not stat.S_ISREG(st.st_mode):
        why = "is not a regular file; remove it"
    elif st.st_nlink > 1:
        why = "has other hard links (writing it would change them too); remove it"
    if why is not None:
        os.close(fd)
        raise UnsafeOutput(f"{path} {why}")
    fcntl.fcntl(fd, fcntl.F_SETFL, fcntl.fcntl(fd, fcntl.F_GETFL) & ~os.O_NONBLOCK)
    mine = stat.S_ISREG(st.st_mode) and st.st_uid == os.geteuid()
    if mine and stat.S_IMODE(st.st_mode) != modes.file:
        os.fchmod(fd, modes.file)
    return st


def open_file(
    path: Path,
    modes: Modes = DEFAULT_MODES,
    *,
    append: bool = False,
    read: bool = False,
    truncate: bool = False,
) -> int:
    """A descriptor for writing ``path`` (made if missing), never through a link at its
    name; the file is set to ``modes.file``. ``append``: every write goes to the end;
    ``read``: readable too; ``truncate``: emptied once it is known to be a regular file."""
    flags = os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK  # a FIFO never blocks
    flags |= (os.O_RDWR if read else os.O_WRONLY) | (os.O_APPEND if append else 0)
    try:
        fd = os.open(path, flags, modes.file)
    except OSError as exc:
        raise _refuse(path, exc) from None
    st = _checked(fd, path, modes)
    if truncate and stat.S_ISREG(st.st_mode):
        os.ftruncate(fd, 0)
    return fd


def create_new(path: Path, modes: Modes = DEFAULT_MODES) -> int | None:
    """A descriptor of ``path`` made now (``modes.file``), or None when something is there
    already, a link included (what is there is left alone)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        fd = os.open(path, flags, modes.file)
    except FileExistsError:
        return None
    os.fchmod(fd, modes.file)
    return fd


@contextlib.contextmanager
def replacing(
    path: Path,
    modes: Modes = DEFAULT_MODES,
    sync: bool = False,
) -> Iterator[BinaryIO]:
    """A new file to write; when the block ends it replaces ``path`` in one step (readers
    see the old file or the new, never half). Made exclusively beside ``path``, so a link
    planted at either name is never written through; an error leaves ``path`` as it was."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, modes.file)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            if sync:
                os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def write_aside(path: Path, data: bytes, modes: Modes = DEFAULT_MODES) -> Path:
    """Write ``data`` to a new file made exclusively beside ``path`` (never through a link)
    and return its name, for a writer that renames it to ``path`` later, with others."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".part", dir=path.parent)
    try:
        os.fchmod(fd, modes.file)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return Path(tmp)


def write_replacing(
    path: Path, data: bytes, modes: Modes = DEFAULT_MODES, sync: bool = False
) -> None:
    """Replace ``path`` by ``data`` in one step (see :func:`replacing`)."""
    with replacing(path, modes, sync) as f:
        f.write(data)


def fd_path(fd: int) -> str:
    """A name that opens the file ``fd`` is open on, whatever is at its path now: for
    libraries that take a file name (FFmpeg, OpenCV), so their open cannot be redirected."""
    return f"/proc/self/fd/{fd}"


@contextlib.contextmanager
def named(fd: int, suffix: str) -> Iterator[str]:
    """A name ending in ``suffix`` for the file ``fd`` is open on, valid inside the block:
    a link to :func:`fd_path` in a folder of this process's own (0700), for a library that
    chooses a file's format by its name."""
    folder = tempfile.mkdtemp(prefix="rkpipe-name-")
    name = os.path.join(folder, f"file{suffix}")
    try:
        os.symlink(fd_path(fd), name)
        yield name
    finally:
        with contextlib.suppress(OSError):
            os.unlink(name)
        os.rmdir(folder)
