"""The preview's HTTP server: routes, who may ask, and a bounded set of connection threads.

    GET /                       the page (no external assets)
    GET /api/status             {"pipeline", "stage", "time", "streams", "health", "events"}
    GET /stream/<name>.mjpg     multipart/x-mixed-replace JPEG stream, at most max_fps
    GET /snapshot/<name>.jpg    the newest frame
    GET /events/<path>.jpg      an event's snapshot, from the folder event paths are relative to

HEAD works on each. A request must name this machine in its Host header (localhost, an IP
address, this host's name or one of ``allowed_hosts``), so a web page elsewhere cannot read
the cameras by DNS rebinding; with a ``token`` it must also carry the token (``?token=``,
``Authorization: Bearer``, or the cookie set when the page was opened with ``?token=``).
At most ``max_clients`` connections are served at once (each MJPEG viewer holds one); past
that a request gets 503 at once instead of a new thread.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import queue
import select
import socket
import threading
import time
from http.cookies import CookieError, SimpleCookie
from http.server import BaseHTTPRequestHandler, HTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

if TYPE_CHECKING:
    from stages.sinks.preview.stage import PreviewSink

__all__ = ["BOUNDARY", "PreviewServer", "host_names"]

BOUNDARY = "rkpipe-frame"
COOKIE = "rkpipe_preview"
_UNKNOWN_HOST = b"unknown host name; add it to allowed_hosts in the preview stage's options\n"
_NEEDS_TOKEN = b"this preview needs its token: open it as http://HOST:PORT/?token=...\n"
_BUSY = (
    b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain; charset=utf-8\r\n"
    b"X-Content-Type-Options: nosniff\r\nRetry-After: 2\r\nContent-Length: 41\r\n"
    b"Connection: close\r\n\r\npreview busy: too many viewers; try later\n"
)


def host_names() -> set[str]:
    """Names this machine answers to, besides localhost and IP addresses."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    return names | {f"{n.split('.')[0]}.local" for n in names}


def _host_part(header: str) -> str:
    """``name:port`` / ``[v6]:port`` -> the name or address alone, lower case."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


class _Handler(BaseHTTPRequestHandler):
    """One connection's requests; ``server.sink`` holds the hub and settings."""

    server: PreviewServer
    timeout = 10  # a viewer that takes no data for this long is dropped
    protocol_version = "HTTP/1.1"
    head_only = False

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
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", sink.page)
            elif path == "/api/status":
                self._send(200, "application/json", json.dumps(sink.status()).encode())
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
        host = _host_part(self.headers.get("Host", ""))
        if not self._known_host(host, sink.allowed_hosts):
            self._send(403, "text/plain; charset=utf-8", _UNKNOWN_HOST)
            return False
        token = sink.config.token
        if not token:
            return True
        given = parse_qs(query).get("token", [None])[0]
        if given is not None and hmac.compare_digest(given.encode(), token.encode()):
            if path in ("/", "/index.html"):  # keep it in a cookie, out of the address bar
                self.send_response(303)
                self.send_header("Location", "/")
                cookie = f"{COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict"
                self.send_header("Set-Cookie", cookie)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return False
            return True
        if any(hmac.compare_digest(c.encode(), token.encode()) for c in self._credentials()):
            return True
        self._send(401, "text/plain; charset=utf-8", _NEEDS_TOKEN)
        return False

    def _known_host(self, host: str, allowed: set[str]) -> bool:
        if host in allowed or "*" in allowed or host.endswith(".localhost"):
            return True
        try:
            ipaddress.ip_address(host)  # an address is not a name an attacker can rebind
        except ValueError:
            return False
        return True

    def _credentials(self) -> list[str]:
        """Tokens offered by header or cookie."""
        found = []
        auth = self.headers.get("Authorization", "")
        if auth.lower().startswith("bearer "):
            found.append(auth[7:].strip())
        try:
            jar = SimpleCookie(self.headers.get("Cookie", ""))
        except CookieError:
            return found
        if COOKIE in jar:
            found.append(jar[COOKIE].value)
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
        try:
            data = path.read_bytes()
        except OSError:
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
        # masked (and cut short) by the stage's log formatter, only if the line is printed
        self.server.sink.ctx.log.debug("http: " + format, *args)


class PreviewServer(HTTPServer):
    """An HTTP server whose connections are served by ``max_clients`` threads started once;
    a connection that finds them all busy is answered 503 by the accepting thread."""

    request_queue_size = 64  # connections waiting to be accepted

    def __init__(self, address: tuple[str, int], sink: PreviewSink, max_clients: int) -> None:
        self.workers: list[threading.Thread] = []  # a failed bind closes before they start
        super().__init__(address, _Handler)
        self.sink = sink
        self.jobs: queue.SimpleQueue[tuple[socket.socket, Any] | None] = queue.SimpleQueue()
        self.free = threading.Semaphore(max_clients)
        self.workers = [
            threading.Thread(target=self._work, name=f"preview-{i}", daemon=True)
            for i in range(max_clients)
        ]
        for w in self.workers:
            w.start()

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.free.acquire(blocking=False):
            try:
                request.settimeout(1.0)
                request.sendall(_BUSY)
            except OSError:
                pass
            self.shutdown_request(request)
            return
        self.jobs.put((request, client_address))

    def _work(self) -> None:
        while (job := self.jobs.get()) is not None:
            request, client_address = job
            try:
                self.finish_request(request, client_address)
            except Exception:  # a broken request must not take the thread with it
                self.handle_error(request, client_address)
            finally:
                self.shutdown_request(request)
                self.free.release()

    def handle_error(self, request: Any, client_address: Any) -> None:
        self.sink.ctx.log.debug("preview: request from %s failed", client_address, exc_info=True)

    def server_close(self) -> None:
        super().server_close()
        for _ in self.workers:
            self.jobs.put(None)
