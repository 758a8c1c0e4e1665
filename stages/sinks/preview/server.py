"""The preview's HTTP server: routes, who may ask, and a bounded set of connection threads.

    GET /                       the page (no external assets)
    GET /api/status             {"pipeline", "stage", "time", "streams", "health", "events"}
    GET /api/stats              the run's live figures per stage instance and stream
    GET /stream/<name>.mjpg     multipart/x-mixed-replace JPEG stream, at most max_fps
    GET /snapshot/<name>.jpg    the newest frame
    GET /events/<path>.jpg      an event's snapshot, from the folder event paths are relative to
    GET /api/graph, PATCH|PUT|DELETE /api/stages/<name>: the control API (``control_api``)

HEAD works on each. A request must name this machine in its Host header (localhost, an IP
address, this host's name or one of ``allowed_hosts``), so a web page elsewhere cannot read
the cameras by DNS rebinding; with a ``token`` it must also carry the token (``?token=``,
``Authorization: Bearer``, or the cookie set when the page was opened with ``?token=``).

A stranger cannot stall it: one thread reads every connection's request head without
blocking, with a total deadline per request (``HEAD_TIMEOUT_S``, not per read) and a size
limit (``MAX_HEAD``; a change's JSON body, at most ``MAX_BODY``, is read the same way), and
at most ``PENDING_PER_ADDRESS`` heads in reading per client address
(a new one past that closes that address's oldest). Only a complete request takes one of the
``max_clients`` connection threads (each MJPEG viewer holds one), whose first work is the
Host and token check; past that a request gets 503 at once instead of a thread. Each
connection carries one request. Request lines are logged (masked) only at debug level.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import queue
import select
import selectors
import socket
import stat
import threading
import time
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

from pipeline.httpguard import bearer, host_names, host_part, known_host, token_matches
from pipeline.secrets import mask, shorten
from stages.sinks.preview.control_api import CHANGE_METHODS, MAX_BODY

if TYPE_CHECKING:
    from stages.sinks.preview.stage import PreviewSink

__all__ = ["BOUNDARY", "PreviewServer", "host_names"]  # host_names: from pipeline.httpguard

BOUNDARY = "rkpipe-frame"
COOKIE = "rkpipe_preview"  # the cookie is COOKIE_<port>: cookies ignore ports, previews don't
HEAD_TIMEOUT_S = 5.0  # a request's line and headers must all come within this
MAX_HEAD = 16 * 1024  # bytes of request line and headers
PENDING_PER_ADDRESS = 16  # request heads in reading per client address
MAX_PENDING = 512  # request heads in reading in all
_UNKNOWN_HOST = b"unknown host name; add it to allowed_hosts in the preview stage's options\n"
_NEEDS_TOKEN = b"this preview needs its token: open it as http://HOST:PORT/?token=...\n"
_CHANGES_NEED_TOKEN = (
    "changes need the preview's token: set token in the preview stage's options "
    '(token = "${RKPIPE_PREVIEW_TOKEN}") and send it (Authorization: Bearer ...)'
)
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"X-Content-Type-Options: nosniff\r\nRetry-After: 2\r\nContent-Length: 41\r\n"
    b"Connection: close\r\n\r\npreview busy: too many viewers; try later\n"
)


def _plain(code: int, reason: str, text: str) -> bytes:
    """A whole short answer, sent by the reading thread itself before closing."""
    body = text.encode()
    return (
        f"HTTP/1.1 {code} {reason}\r\nContent-Type: text/plain; charset=utf-8\r\n"
        f"X-Content-Type-Options: nosniff\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    ).encode() + body


class _Handler(BaseHTTPRequestHandler):
    """One connection's requests; ``server.sink`` holds the hub and settings."""

    server: PreviewServer  # type: ignore[assignment]
    timeout = 10  # a viewer that takes no data for this long is dropped
    protocol_version = "HTTP/1.1"
    head_only = False

    def __init__(
        self, sock: socket.socket, address: Any, server: PreviewServer, head: bytes, body: bytes
    ):
        self.head, self.body = head, body  # read whole by the server's reading thread
        super().__init__(sock, address, server)  # type: ignore[arg-type]

    def setup(self) -> None:
        super().setup()
        self.rfile = io.BytesIO(self.head)  # one request per connection; the body is read
        self.close_connection = True

    def do_PATCH(self) -> None:
        self._change()

    def do_PUT(self) -> None:
        self._change()

    def do_DELETE(self) -> None:
        self._change()

    def _change(self) -> None:
        """A change through the control API: the Host and token checks first; a preview
        without a token takes no change at all."""
        url = urlsplit(self.path)
        if not self._allowed(url.query, unquote(url.path)):
            return
        sink = self.server.sink
        if not sink.config.token:
            return self._json(403, {"error": _CHANGES_NEED_TOKEN})
        headers = {k: v for k, v in self.headers.items()}
        code, answer = sink.control.change(self.command, unquote(url.path), headers, self.body)
        if code == 200:
            sink.ctx.log.warning("preview: %s %s: %s", self.command, url.path, answer)
        self._json(code, answer)

    def _json(self, code: int, value: Any) -> None:
        self._send(code, "application/json", json.dumps(value).encode())

    def do_GET(self) -> None:
        self.head_only = False
        self._route()

    def do_HEAD(self) -> None:
        self.head_only = True
        self._route()

    def _route(self) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        sink = self.server.sink
        try:
            if not self._allowed(url.query, path):
                return
            if "\x00" in path:  # no file or stream is named so; the OS would refuse it
                return self._send(400, "text/plain; charset=utf-8", b"bad path\n")
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", sink.page)
            elif path == "/api/status":
                self._send(200, "application/json", json.dumps(sink.status()).encode())
            elif path == "/api/stats":
                self._send(200, "application/json", json.dumps(sink.stats()).encode())
            elif path == "/api/graph":
                self._json(*sink.control.graph())
            elif path.startswith("/snapshot/") and path.endswith(".jpg"):
                shot = sink.hub.jpeg(path[len("/snapshot/") : -4])
                if shot is None:
                    return self._not_found(path)
                self._send(200, "image/jpeg", shot[1])
            elif path.startswith("/stream/") and path.endswith(".mjpg"):
                self._mjpeg(path[len("/stream/") : -5])
            elif path.startswith("/events/"):
                self._event_snapshot(path[len("/events/") :])
            else:
                self._not_found(path)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the viewer went away or stalled

    # -- who may ask ------------------------------------------------------------------------
    def _allowed(self, query: str, path: str) -> bool:
        """Host header and token checks; answers the request itself when they fail."""
        sink = self.server.sink
        if not known_host(host_part(self.headers.get("Host", "")), sink.allowed_hosts):
            self._send(403, "text/plain; charset=utf-8", _UNKNOWN_HOST)
            return False
        token = sink.config.token
        if not token:
            return True
        if token_matches(parse_qs(query).get("token", [None])[0], token):
            if path in ("/", "/index.html"):  # keep it in a cookie, out of the address bar
                self.send_response(303)
                self.send_header("Location", "/")
                cookie = f"{self.server.cookie}={token}; Path=/; HttpOnly; SameSite=Strict"
                self.send_header("Set-Cookie", cookie)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
            return True
        if any(token_matches(c, token) for c in self._credentials()):
            return True
        self._send(401, "text/plain; charset=utf-8", _NEEDS_TOKEN)
        return False

    def _credentials(self) -> list[str]:
        """Tokens offered by header or cookie."""
        found = []
        if (given := bearer(self.headers.get("Authorization", ""))) is not None:
            found.append(given)
        try:
            jar = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return found
        if self.server.cookie in jar:
            found.append(jar[self.server.cookie].value)
        return found

    # -- answers ----------------------------------------------------------------------------
    def end_headers(self) -> None:
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        super().end_headers()

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        if not self.head_only:
            self.wfile.write(body)

    def _not_found(self, path: str) -> None:
        names = ", ".join(self.server.sink.hub.status()) or "none yet"
        shown = quote(path[:200], safe="/._-")
        self._send(
            404, "text/plain; charset=utf-8", f"not found: {shown}; streams: {names}\n".encode()
        )

    def _event_snapshot(self, relative: str) -> None:
        """An event's JPEG, only from inside the snapshot folder."""
        root = self.server.sink.snapshot_root
        path = (root / relative).resolve()
        if path.suffix.lower() not in (".jpg", ".jpeg") or not path.is_relative_to(root):
            return self._not_found("/events/" + relative)
        data = _read_regular(path)
        if data is None:  # gone, unreadable, or a FIFO or device that would block a thread
            return self._not_found("/events/" + relative)
        self._send(200, "image/jpeg", data)

    def _mjpeg(self, stream: str) -> None:
        hub, gap = self.server.sink.hub, 1.0 / self.server.sink.config.max_fps
        if hub.jpeg(stream) is None:
            return self._not_found(f"/stream/{stream}.mjpg")
        self.close_connection = True
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace; boundary={BOUNDARY}")
        self.send_header("Cache-Control", "no-store")
        self.send_header("Connection", "close")
        self.end_headers()
        if self.head_only:
            return
        version, due = 0, 0.0
        while (newest := hub.wait_newer(stream, version, 1.0)) is not None:
            if newest == version:  # no new frame: free the thread if the viewer left
                if self._viewer_left():
                    return
                continue
            time.sleep(max(0.0, due - time.monotonic()))  # at most max_fps for this viewer
            if (shot := hub.jpeg(stream)) is None:
                return
            version, data = shot
            head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}"
            self.wfile.write(head.encode() + b"\r\n\r\n" + data + b"\r\n")
            self.wfile.flush()
            due = max(due + gap, time.monotonic())

    def _viewer_left(self) -> bool:
        """Whether the viewer closed its end (found without waiting)."""
        readable, _, _ = select.select([self.connection], [], [], 0)
        try:
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def log_message(self, format: str, *args: Any) -> None:
        log = self.server.sink.ctx.log
        if log.isEnabledFor(logging.DEBUG):  # masking costs: only for a line that is shown
            log.debug("%s", mask(shorten("http: " + format % args)))


def _body_length(head: bytes) -> int | None:
    """The length of the body a request head announces: 0 for GET and HEAD, which take
    none; None where a change gives no Content-Length (chunked bodies are not taken)."""
    method = head.split(b" ", 1)[0].decode("ascii", "replace")
    if method not in CHANGE_METHODS:
        return 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            text = value.strip()
            return int(text) if text.isdigit() and len(text) < 12 else None
        if name.strip().lower() == b"transfer-encoding":
            return None
    return 0 if method == "DELETE" else None


def _read_regular(path: Path) -> bytes | None:
    """The bytes of ``path`` if it is a regular file (opened without blocking: a FIFO named
    ``*.jpg`` must not hold a thread), else None."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        try:
            return f.read()
        except OSError:
            return None


@dataclass
class _Pending:
    """A connection whose request head is still coming."""

    sock: socket.socket
    address: Any
    deadline: float
    head: bytearray = field(default_factory=bytearray)
    head_end: int = -1  # where the body starts, once the head is whole
    length: int = 0  # the body's length (Content-Length)


class PreviewServer:
    """Reads request heads in one thread (see the module's doc), then serves each complete
    request on one of ``max_clients`` threads started once; a complete request that finds
    them all busy is answered 503 by the reading thread."""

    def __init__(self, address: tuple[str, int], sink: PreviewSink, max_clients: int) -> None:
        family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        try:
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            self.listener.bind(address)
            self.listener.listen(128)
        except OSError:
            self.listener.close()
            raise
        self.listener.setblocking(False)
        self.server_address = self.listener.getsockname()
        self.cookie = f"{COOKIE}_{self.server_address[1]}"
        self.sink = sink
        self.jobs: queue.SimpleQueue[tuple[socket.socket, Any, bytes, bytes] | None] = (
            queue.SimpleQueue()
        )
        self.free = threading.Semaphore(max_clients)
        self.pending: dict[int, _Pending] = {}  # by file descriptor, oldest first
        self.selector = selectors.DefaultSelector()
        self.selector.register(self.listener, selectors.EVENT_READ)
        self._stop = threading.Event()
        self._stopped = threading.Event()
        self.workers = [
            threading.Thread(target=self._work, name=f"preview-{i}", daemon=True)
            for i in range(max_clients)
        ]
        for w in self.workers:
            w.start()

    # -- the reading thread -----------------------------------------------------------------
    def serve_forever(self, poll_interval: float = 0.2) -> None:
        """Accept connections and read their request heads until ``shutdown``."""
        try:
            while not self._stop.is_set():
                for key, _ in self.selector.select(self._wait(poll_interval)):
                    if key.fileobj is self.listener:
                        self._accept()
                    else:
                        self._read(key.fd)
                self._expire()
        finally:
            self._stopped.set()

    def _wait(self, poll_interval: float) -> float:
        first = next(iter(self.pending.values()), None)  # the oldest has the first deadline
        left = poll_interval if first is None else first.deadline - time.monotonic()
        return max(0.0, min(poll_interval, left))

    def _accept(self) -> None:
        while True:
            try:
                sock, address = self.listener.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # out of file descriptors, a connection reset before accept
                return
            sock.setblocking(False)
            mine = [fd for fd, p in self.pending.items() if p.address[0] == address[0]]
            if len(mine) >= PENDING_PER_ADDRESS:
                self._evict(mine)  # that address's oldest unfinished head
            elif len(self.pending) >= MAX_PENDING:
                self._evict(list(self.pending))
            pending = _Pending(sock, address, time.monotonic() + HEAD_TIMEOUT_S)
            self.pending[sock.fileno()] = pending
            self.selector.register(sock, selectors.EVENT_READ)

    def _evict(self, oldest_first: list[int]) -> None:
        """Make room for one more head: drop the oldest one still unfinished, reading each
        first (a complete request that came in the same burst is served, not dropped)."""
        for fd in oldest_first:
            self._read(fd)
            if fd in self.pending:
                return self._drop(fd)

    def _read(self, fd: int) -> None:
        pending = self.pending.get(fd)
        if pending is None:
            return
        try:
            chunk = pending.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            return self._drop(fd)
        start = max(0, len(pending.head) - 3)
        pending.head += chunk
        if pending.head_end < 0:
            end = pending.head.find(b"\r\n\r\n", start)
            if end < 0 and len(pending.head) > MAX_HEAD:
                return self._drop(fd, _plain(431, "Request Header Fields Too Large", "too long\n"))
            if end < 0:
                return
            pending.head_end = end + 4
            length = _body_length(bytes(pending.head[: pending.head_end]))
            if length is None:
                return self._drop(
                    fd, _plain(411, "Length Required", "a body needs Content-Length\n")
                )
            if length > MAX_BODY:
                return self._drop(fd, _plain(413, "Content Too Large", "the body is too long\n"))
            pending.length = length
        if len(pending.head) >= pending.head_end + pending.length:
            self._forget(fd)
            cut, n = pending.head_end, pending.length
            head, body = bytes(pending.head[:cut]), bytes(pending.head[cut : cut + n])
            self._dispatch(pending.sock, pending.address, head, body)

    def _expire(self) -> None:
        now = time.monotonic()
        late = [fd for fd, p in self.pending.items() if p.deadline <= now]
        for fd in late:
            self._drop(fd, _plain(408, "Request Timeout", "the request took too long\n"))

    def _forget(self, fd: int) -> None:
        pending = self.pending.pop(fd)
        self.selector.unregister(pending.sock)

    def _drop(self, fd: int, answer: bytes = b"") -> None:
        pending = self.pending[fd]
        self._forget(fd)
        with contextlib.suppress(OSError):
            if answer:
                pending.sock.send(answer)  # best effort: it is non-blocking
        pending.sock.close()

    def _dispatch(self, sock: socket.socket, address: Any, head: bytes, body: bytes) -> None:
        if not self.free.acquire(blocking=False):
            with contextlib.suppress(OSError):
                sock.send(_BUSY)
            sock.close()
            return
        sock.setblocking(True)
        self.jobs.put((sock, address, head, body))

    # -- the connection threads -------------------------------------------------------------
    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            sock, address, head, body = job
            try:
                _Handler(sock, address, self, head, body)
            except Exception:  # a broken request must not take the thread with it
                self.sink.ctx.log.debug("preview: request from %s failed", address, exc_info=True)
            finally:
                self.free.release()  # first: the client may ask again as soon as it sees EOF
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()

    def shutdown(self) -> None:
        """Stop ``serve_forever`` and wait until it has."""
        self._stop.set()
        self._stopped.wait(5.0)

    def server_close(self) -> None:
        """Close the listener and every connection still reading; end the threads."""
        for fd in list(self.pending):
            self._drop(fd)
        self.selector.close()
        self.listener.close()
        for _ in self.workers:
            self.jobs.put(None)
