"""A decoder process owned by the capture stage (ffmpeg or gst-launch): raw BGR frames come
over a pipe and are read with ``readinto`` straight into the stage's shared-memory slot;
its text output is kept, watched for the frame size, and explained when it fails.

The process dies with the stage even when the stage is SIGKILLed: it is started through a
tiny exec wrapper that arms PR_SET_PDEATHSIG (SIGKILL), checks that its parent is still the
stage (it may have died before the signal was armed), then execs the decoder. The signal
follows the *thread* that started the process, so a decoder started from the stage's
reader thread is also killed when that thread ends; the stage closes it then anyway.
"""

from __future__ import annotations

import fcntl
import os
import select
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.secrets import is_secret_name
from stages.capture.decoder_errors import explain

__all__ = ["DecoderProcess", "decoder_env", "spawn_owned"]

# Run by ``python -I -S -c``: no site, no imports beyond the standard library's core, so it
# costs ~20 ms before the exec. argv: PARENT_PID COMMAND [ARGS...]
_PDEATHSIG_EXEC = """\
import ctypes, os, signal, sys
ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG
if os.getppid() != int(sys.argv[1]):
    os._exit(70)  # the stage died before the signal was armed: nobody would kill us
os.execvp(sys.argv[2], sys.argv[2:])
"""

_F_SETPIPE_SZ = 1031
SizeParser = Callable[[str], "tuple[int, int] | None"]


# what a decoder keeps of the stage's environment: where programs, libraries, plugins and
# devices are, and the locale; never the run's token, its job or a password variable
_KEPT = ("PATH", "HOME", "LANG", "LANGUAGE", "TZ", "TMPDIR", "LD_LIBRARY_PATH", "XDG_RUNTIME_DIR")
_KEPT_PREFIXES = ("LC_", "GST_", "LIBVA_", "VDPAU_", "CUDA_", "NVIDIA_", "MPP_", "RGA_")


def decoder_env(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The minimal environment a decoder runs in (of ``environ``, default this process's)."""
    environ = dict(os.environ if environ is None else environ)
    return {
        k: v
        for k, v in environ.items()
        if (k in _KEPT or k.startswith(_KEPT_PREFIXES)) and not is_secret_name(k)
    }


def spawn_owned(argv: list[str], **popen: object) -> subprocess.Popen[bytes]:
    """Start ``argv`` so that it is SIGKILLed when this process (thread) dies, in the minimal
    environment (``decoder_env``)."""
    wrapper = [sys.executable, "-I", "-S", "-c", _PDEATHSIG_EXEC, str(os.getpid())]
    popen.setdefault("stdin", subprocess.DEVNULL)
    popen.setdefault("env", decoder_env())
    return subprocess.Popen([*wrapper, *argv], **popen)  # type: ignore[call-overload]


def _fed_pipe(data: bytes) -> int:
    """The read end of a pipe that holds ``data`` and then ends (``data`` fits its buffer)."""
    read_fd, write_fd = os.pipe()
    try:
        if len(data) > select.PIPE_BUF * 8:  # a URL and a few options: far below 64 kB
            msg = f"{len(data)} bytes are too many for a decoder's input pipe"
            raise OSError(msg)
        os.write(write_fd, data)
    except OSError:
        os.close(read_fd)
        raise
    finally:
        os.close(write_fd)
    return read_fd


class DecoderProcess:
    """One run of a decoder command. ``argv_for(fd, feed_fd)`` builds the command that
    writes raw frames to file descriptor ``fd`` (``pipe:FD`` for ffmpeg, ``fdsink fd=FD`` for
    GStreamer) and, where ``feed`` is given, reads it from ``feed_fd`` (-1 when not): how a
    secret reaches the decoder without being on its command line. stdout and stderr are read
    as text by a thread, which keeps the last lines and finds the output frame size with
    ``parse_size``."""

    def __init__(
        self, argv_for: Callable[[int, int], list[str]], parse_size: SizeParser, feed: bytes = b""
    ) -> None:
        read_fd, write_fd = os.pipe()
        feed_fd = _fed_pipe(feed) if feed else -1
        try:
            self.proc = spawn_owned(
                argv_for(write_fd, feed_fd),
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                pass_fds=(write_fd,) if feed_fd < 0 else (write_fd, feed_fd),
            )
        except OSError:
            os.close(read_fd)
            raise
        finally:
            os.close(write_fd)
            if feed_fd >= 0:
                os.close(feed_fd)
        self.frames = os.fdopen(read_fd, "rb", buffering=0)
        self._poll = select.poll()
        self._poll.register(read_fd, select.POLLIN)
        self.lines: deque[str] = deque(maxlen=40)
        self.size: tuple[int, int] | None = None
        self.ended = ""  # why reading stopped: "" while frames flow
        self._sized = threading.Event()
        self._parse_size = parse_size
        self._text = threading.Thread(target=self._read_text, name="decoder-log", daemon=True)
        self._text.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read_text(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            line = raw.decode(errors="replace").rstrip()
            self.lines.append(line)
            if self.size is None and (size := self._parse_size(line)) is not None:
                self.size = size
                self._sized.set()
        self._sized.set()  # the process ended (or closed its output): stop waiting

    def wait_size(self, timeout: float) -> tuple[int, int] | None:
        """The output (width, height) once the decoder has opened its input and says so;
        None when it ended first or ``timeout`` passed (``ended`` says which)."""
        self._sized.wait(timeout)
        if self.size is None:
            self.ended = "ended" if self._sized.is_set() else "timed out opening the stream"
        else:
            self._grow_pipe(self.size[0] * self.size[1] * 3)
        return self.size

    def _grow_pipe(self, frame_bytes: int) -> None:
        """Fewer wake-ups per frame: a pipe as big as a frame, up to what the system allows."""
        try:
            limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
            fcntl.fcntl(self.frames.fileno(), _F_SETPIPE_SZ, min(frame_bytes, limit))
        except (OSError, ValueError):
            pass

    def read_frame(self, out: np.ndarray, timeout: float) -> bool:
        """Fill ``out`` (C-contiguous, the frame's size) with the next frame; False when the
        stream ended or no whole frame came within ``timeout`` (``ended`` says which)."""
        view = out.data.cast("B")
        got, n = 0, len(view)
        deadline = time.monotonic() + timeout
        while got < n:
            left = deadline - time.monotonic()
            if left <= 0 or not self._poll.poll(left * 1000):
                self.ended = f"no frame for {timeout:g} s (stalled)"
                return False
            k = self.frames.readinto(view[got:])
            if not k:
                self.ended = "ended"
                return False
            got += k
        return True

    def error(self) -> str:
        """What went wrong, as one readable line (from the decoder's own output when it
        says; else why reading stopped)."""
        code = self.proc.poll()
        why = explain(self.lines)
        if why:
            return why
        if self.ended == "ended" and code not in (None, 0):
            return f"the decoder exited with status {code}"
        return "the camera closed the stream" if self.ended == "ended" else self.ended

    def close(self) -> None:
        """Kill the process and release its pipes (idempotent)."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        self.frames.close()
        self._text.join(timeout=2.0)
        if self.proc.stdout is not None:
            self.proc.stdout.close()
