"""Why a network stream does not open, asked of the camera itself: for the OpenCV path
(whose FFmpeg says nothing) and ``rkpipe doctor``, in the same one-line words the decoder
processes give (``connection refused: camera off or wrong port``, ``404 Not Found: no such
stream path on the camera``, ``401 Unauthorized: wrong user or password``).

The host's port is tried first; then an RTSP camera is sent a DESCRIBE for the stream (with
the URL's user and password, Basic or Digest as the camera asks), an HTTP one a GET, and
only the status line of the answer is read.
"""

from __future__ import annotations

import base64
import hashlib
import re
import socket
import urllib.error
import urllib.request
from http import HTTPStatus
from urllib.parse import unquote, urlsplit, urlunsplit

from pipeline.secrets import mask
from stages.capture.decoder_errors import explain
from stages.capture.opener import tcp_answer

__all__ = ["stream_status", "why_not_open"]

NO_USER = "401 Unauthorized: the camera wants a user and password (rtsp://user:password@host/...)"
_HEAD_LIMIT = 16_384  # bytes of an answer's head read at most


def why_not_open(url: str, timeout: float = 2.0) -> str:
    """One line for why ``url`` does not open, or ``""`` when the camera answers and
    serves the stream (the reader then could not decode it)."""
    if urlsplit(url).scheme.lower() in ("udp", "srt"):
        return ""  # not over TCP: nothing to ask
    answer = tcp_answer(url, timeout)
    if answer:
        return explain([answer]) or answer
    try:
        code = stream_status(url, timeout)
    except (OSError, ValueError):
        return ""  # it answers on its port but not as we asked: the reader's problem
    if code is None or 200 <= code < 300:
        return ""
    if code == 401 and urlsplit(url).username is None:
        return NO_USER
    try:
        phrase = HTTPStatus(code).phrase
    except ValueError:
        phrase = "error"
    return explain([f"{code} {phrase}"]) or f"the camera answered {code} {phrase}"


def stream_status(url: str, timeout: float = 2.0) -> int | None:
    """The status code the camera answers a request for the stream with (RTSP DESCRIBE,
    HTTP GET), or None for a scheme it cannot be asked that way."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "rtsp":
        return _rtsp_status(url, timeout)
    if scheme in ("http", "https"):
        return _http_status(url, timeout)
    return None


def _without_user(url: str) -> str:
    parts = urlsplit(url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, ""))


def _http_status(url: str, timeout: float) -> int:
    parts = urlsplit(url)
    bare = _without_user(url)
    handlers: list[urllib.request.BaseHandler] = []
    if parts.username is not None:
        users = urllib.request.HTTPPasswordMgrWithDefaultRealm()
        users.add_password(None, bare, unquote(parts.username), unquote(parts.password or ""))
        handlers += [
            urllib.request.HTTPBasicAuthHandler(users),
            urllib.request.HTTPDigestAuthHandler(users),
        ]
    opener = urllib.request.build_opener(*handlers)
    try:
        with opener.open(urllib.request.Request(bare, method="GET"), timeout=timeout) as r:
            return int(r.status)  # a stream answers its head and goes on: not read further
    except urllib.error.HTTPError as exc:
        return int(exc.code)


def _rtsp_status(url: str, timeout: float) -> int:
    """DESCRIBE the stream; on a 401 with the URL's credentials, once more with them."""
    parts = urlsplit(url)
    bare = _without_user(url)
    port = parts.port or 554
    with socket.create_connection((parts.hostname or "", port), timeout=timeout) as sock:
        sock.settimeout(timeout)
        code, head = _describe(sock, bare, 1, "")
        if code != 401 or parts.username is None:
            return code
        challenge = _header(head, "WWW-Authenticate")
        auth = _authorization(
            challenge, unquote(parts.username), unquote(parts.password or ""), bare
        )
        if not auth:
            return code
        code, _ = _describe(sock, bare, 2, auth)
        return code


def _describe(sock: socket.socket, url: str, cseq: int, auth: str) -> tuple[int, str]:
    lines = [f"DESCRIBE {url} RTSP/1.0", f"CSeq: {cseq}", "Accept: application/sdp"]
    lines += [f"Authorization: {auth}"] if auth else []
    sock.sendall(("\r\n".join([*lines, "User-Agent: rkpipe", "", ""])).encode())
    head, early = _read_head(sock)
    found = re.match(r"RTSP/\d\.\d (\d{3})", head)
    if found is None:
        msg = f"not an RTSP answer: {mask(head[:80])!r}"
        raise ValueError(msg)
    body = min(int(_header(head, "Content-Length") or 0), _HEAD_LIMIT)
    _read_exactly(sock, body - early)  # the rest of its body: the next answer is its own
    return int(found[1]), head


def _read_head(sock: socket.socket) -> tuple[str, int]:
    """An answer's head, and how many bytes of its body came with it."""
    data = b""
    while b"\r\n\r\n" not in data and len(data) < _HEAD_LIMIT:
        chunk = sock.recv(4096)
        if not chunk:
            break
        data += chunk
    head, _, rest = data.partition(b"\r\n\r\n")
    return head.decode("latin-1"), len(rest)


def _read_exactly(sock: socket.socket, n: int) -> None:
    while n > 0:
        chunk = sock.recv(min(n, 4096))
        if not chunk:
            return
        n -= len(chunk)


def _header(head: str, name: str) -> str:
    for line in head.split("\r\n")[1:]:
        key, _, value = line.partition(":")
        if key.strip().lower() == name.lower():
            return value.strip()
    return ""


def _authorization(challenge: str, user: str, password: str, url: str) -> str:
    """The Authorization header answering a Basic or Digest challenge ("" for others)."""
    kind, _, rest = challenge.partition(" ")
    if kind.lower() == "basic":
        return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()
    if kind.lower() != "digest":
        return ""
    params = dict(re.findall(r'(\w+)="?([^",]*)"?', rest))
    realm, nonce = params.get("realm", ""), params.get("nonce", "")

    def md5(text: str) -> str:
        return hashlib.md5(text.encode(), usedforsecurity=False).hexdigest()

    ha1, ha2 = md5(f"{user}:{realm}:{password}"), md5(f"DESCRIBE:{url}")
    fields = f'username="{user}", realm="{realm}", nonce="{nonce}", uri="{url}"'
    if "auth" in params.get("qop", "").split(","):
        cnonce, nc = md5(nonce)[:16], "00000001"
        response = md5(f"{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}")
        return f'Digest {fields}, qop=auth, nc={nc}, cnonce="{cnonce}", response="{response}"'
    return f'Digest {fields}, response="{md5(f"{ha1}:{nonce}:{ha2}")}"'
