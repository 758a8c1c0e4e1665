"""A stranger's attacks on an HTTP endpoint, and a legitimate client beside them: slowloris
(sockets that drip a request head a byte at a time), a 60 kB request line with no spaces,
and a poller that counts how many of its requests were answered."""

from __future__ import annotations

import contextlib
import http.client
import socket
import threading
import time
from dataclasses import dataclass, field

__all__ = ["Attack", "Poller"]


@dataclass
class Attack:
    """Slowloris on ``sockets`` connections (reopened when the server drops one) and a
    ``line_kb`` kB request line with no spaces (a bad request, which the server logs) sent
    on a fresh connection every ``line_every_s``."""

    port: int
    sockets: int = 40
    drip_s: float = 1.0
    line_kb: int = 60
    line_every_s: float = 0.5
    stop: threading.Event = field(default_factory=threading.Event)
    threads: list[threading.Thread] = field(default_factory=list)

    def start(self) -> Attack:
        self.threads = [threading.Thread(target=self._long_lines, daemon=True)]
        if self.sockets:
            self.threads.append(threading.Thread(target=self._loris, daemon=True))
        for t in self.threads:
            t.start()
        return self

    def _open(self) -> socket.socket | None:
        try:
            s = socket.create_connection(("127.0.0.1", self.port), timeout=2)
            s.sendall(b"GET /api/status HTTP/1.1\r\n")
            return s
        except OSError:
            return None

    def _loris(self) -> None:
        socks = [self._open() for _ in range(self.sockets)]
        while not self.stop.wait(self.drip_s):
            for i, s in enumerate(socks):
                try:
                    if s is None:
                        raise OSError
                    s.sendall(b"X")  # one byte of a header that never ends
                except OSError:
                    if s is not None:
                        s.close()
                    socks[i] = self._open()
        for s in socks:
            if s is not None:
                s.close()

    def _long_lines(self) -> None:
        line = b"GET/" + b"A" * (self.line_kb * 1000) + b"\r\n\r\n"  # no spaces: a 400
        while not self.stop.wait(self.line_every_s):
            with (
                contextlib.suppress(OSError),
                socket.create_connection(("127.0.0.1", self.port), timeout=5) as s,
            ):
                s.sendall(line)
                s.recv(1024)

    def end(self) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


@dataclass
class Poller:
    """A legitimate viewer asking ``path`` every ``every_s``: ``answered`` of ``tries``
    got 200 within ``timeout_s``."""

    port: int
    path: str = "/api/status"
    every_s: float = 0.5
    timeout_s: float = 5.0
    tries: int = 0
    answered: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def start(self) -> Poller:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        while not self.stop.wait(self.every_s):
            self.tries += 1
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout_s)
            try:
                conn.request("GET", self.path)
                if conn.getresponse().status == 200:
                    self.answered += 1
            except OSError:
                pass
            finally:
                conn.close()

    def end(self) -> None:
        self.stop.set()
        if self.thread is not None:
            self.thread.join(self.timeout_s + 5)
        time.sleep(0)
