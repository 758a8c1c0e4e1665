"""Whether a host answers on a TCP port, as one line a person can act on ("" when it does):
for a camera whose first open hangs, and for ``rkpipe doctor``'s broker and camera checks."""

from __future__ import annotations

import socket

__all__ = ["tcp_answer"]


def tcp_answer(host: str, port: int, timeout: float = 1.0) -> str:
    """``""`` when ``host:port`` accepts a TCP connection within ``timeout``, else why not."""
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except TimeoutError:
        return f"no answer from {host}:{port} within {timeout:g} s"
    except OSError as exc:
        return f"{host}:{port}: {exc.strerror or exc}"
    return ""
