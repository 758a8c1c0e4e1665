"""Secrets kept out of everything a person sees: errors, log lines, printed graphs, the preview.

One function, :func:`mask`, is used wherever user-visible text could hold a secret. It hides

- the values of keys named like a secret (``password``, ``secret``, ``token``, ``api_key``, ...)
  where text shows them as ``key=value``, ``key: value`` or ``'key': 'value'``;
- the user-info of URLs (``rtsp://admin:***@cam``, ``https://***@host``) and the values of
  credential-like query parameters (``?token=***``), also of a URL without its scheme;
- every value remembered with :func:`remember`: the graph loader remembers each value that came
  from a ``${VAR}`` named like a secret (``${MQTT_PASS}``), wherever it turns up later.

A value shorter than :data:`MIN_LEN` characters is not remembered (hiding every ``"ab"`` in a
message would garble it); it is still hidden where it stands as a secret key's value or in a URL.
Stage processes get the remembered values from the supervisor, so their text is masked too.
"""

from __future__ import annotations

import functools
import logging
import re
import sys
import threading
import traceback
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "MASK",
    "MIN_LEN",
    "MaskingFormatter",
    "is_secret_name",
    "known",
    "mask",
    "mask_excepthooks",
    "mask_options",
    "mask_url",
    "mask_value",
    "remember",
    "shorten",
]

MASK = "***"
MIN_LEN = 4

_SECRET_WORDS = frozenset(
    {
        "password", "passwd", "pass", "pwd", "pw", "passphrase", "secret", "token", "key", "apikey",
        "credential", "credentials", "signature", "sig", "auth", "authorization", "cookie",
    }
)  # fmt: skip
# ``password_env`` names a variable and ``keyfile``/``key_path`` a file: not secrets themselves
# and ``KeyError: 'abc'`` names an exception, whose argument is no secret
_NOT_SECRET_LAST = frozenset(
    {"env", "file", "path", "dir", "name", "names", "id", "host", "error", "exception", "warning"}
)

_known: set[str] = set()


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    """Whether a key, variable or query parameter named ``name`` holds a secret:
    ``password``, ``MQTT_PASS``, ``api_key``, ``X-Amz-Signature``; not ``password_env``."""
    spaced = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", name).lower()
    words = [w for w in re.split(r"[^a-z0-9]+", spaced) if w]
    return bool(words) and words[-1] not in _NOT_SECRET_LAST and not _SECRET_WORDS.isdisjoint(words)


def remember(*values: str) -> None:
    """Hide these values wherever they appear in text from now on (in this process)."""
    _known.update(v for v in values if isinstance(v, str) and len(v) >= MIN_LEN)


def known() -> list[str]:
    """The remembered values, to hand on to another process."""
    return sorted(_known)


# Every pattern below is linear in the text it reads (it is run on what strangers send: request
# lines, names, camera errors): a match may only start where a run of its characters starts
# (a look-behind), and each part that could run on is bounded, so no start is tried twice
# over a long run of the same characters.
# scheme://userinfo@ ; the userinfo is what comes before the last "@" of the authority
_URL = re.compile(r"(?<![A-Za-z0-9+.-])[A-Za-z][A-Za-z0-9+.-]{0,31}://[^\s'\"<>]+")
# user:password@host written without a scheme (a mistyped URL): the password goes
_BARE_USERINFO = re.compile(r"(?<![\w.%+-])([\w.%+-]{1,128}):([^\s/@'\":]{1,256})@(?=[\w\[])")
# name=value in a query string (also after ";" and "&amp;")
_QUERY = re.compile(r"([?&;])([^=&;#?\s'\"]{1,128})=([^&;#\s'\"]*)")
# key='value', 'key': 'value', "key": "value", key=value (a bare value only after "=": after
# "key:" it is prose, as in "stages.m.password: expected a string")
_PAIR = re.compile(
    r"""(?<![\w.-])(?P<q>['"]?)(?P<key>(?=[A-Za-z_])(?i:[\w.-]{0,63}?"""
    r"""(?:pas|pw|secret|token|key|sig|auth|cookie|credential)[\w.-]{0,63}))(?P=q)"""
    r"""(?:(?P<sep>\s{0,8}[:=]\s{0,8})(?:'(?P<sq>[^'\n]{0,512})'|"(?P<dq>[^"\n]{0,512})")"""
    r"""|(?P<eq>\s{0,8}=\s{0,8})(?P<bare>[^\s,;'"&)}\]]+))"""
)
#: At most this many characters of one log record are shown (its start and its end).
MAX_SHOWN = 16_384


def mask_url(url: str) -> str:
    """``rtsp://admin:pw@cam/s?token=t`` -> ``rtsp://admin:***@cam/s?token=***``."""
    try:
        parts = urlsplit(url)
    except ValueError:  # e.g. a malformed IPv6 host: mask what looks like credentials
        return _mask_query(_BARE_USERINFO.sub(rf"\1:{MASK}@", url))
    netloc = parts.netloc
    if "@" in netloc:
        userinfo, _, hostport = netloc.rpartition("@")
        user, colon, _password = userinfo.partition(":")
        shown = f"{user}:{MASK}" if colon else MASK
        start = url.index(netloc)
        url = url[:start] + f"{shown}@{hostport}" + url[start + len(netloc) :]
    return _mask_query(url)


def _mask_query(text: str) -> str:
    def sub(m: re.Match[str]) -> str:
        name = m.group(2).removeprefix("amp;")
        if m.group(3) and is_secret_name(name):
            return f"{m.group(1)}{m.group(2)}={MASK}"
        return m.group(0)

    return _QUERY.sub(sub, text)


def _mask_pair(m: re.Match[str]) -> str:
    quote = "'" if m.group("sq") is not None else '"' if m.group("dq") is not None else ""
    value = m.group("sq") if quote == "'" else m.group("dq") if quote else m.group("bare")
    if not value or value == MASK or not is_secret_name(m.group("key")):
        return m.group(0)
    sep = m.group("sep") or m.group("eq")
    return f"{m.group('q')}{m.group('key')}{m.group('q')}{sep}{quote}{MASK}{quote}"


def mask(text: str) -> str:
    """``text`` with every secret it shows replaced by ``***`` (see the module's doc)."""
    if not text:
        return text
    for value in sorted(_known, key=len, reverse=True):
        text = text.replace(value, MASK)
    text = _URL.sub(lambda m: mask_url(m.group(0)), text)
    text = _BARE_USERINFO.sub(rf"\1:{MASK}@", text)
    text = _mask_query(text)
    return _PAIR.sub(_mask_pair, text)


def mask_value(key: str, value: Any) -> Any:
    """A config value fit to show: ``***`` for a secret-named key, masked text otherwise
    (dicts and lists by their own keys and items)."""
    if value is None or value == "":
        return value
    if is_secret_name(key):
        return MASK
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return mask_options(value)
    if isinstance(value, (list, tuple)):
        return type(value)(mask_value(key, v) for v in value)
    return value


def mask_options(options: dict[str, Any]) -> dict[str, Any]:
    """A stage's options (or any mapping) with secrets masked, for printing."""
    return {k: mask_value(str(k), v) for k, v in options.items()}


def shorten(text: str, limit: int = MAX_SHOWN) -> str:
    """``text`` cut to about ``limit`` characters, keeping its start and its end (where a
    traceback says what failed): a stranger's 60 kB request line is not worth a 60 kB log line."""
    if len(text) <= limit:
        return text
    head, tail = limit * 3 // 4, limit // 4
    return f"{text[:head]} ... ({len(text) - head - tail} characters left out) ... {text[-tail:]}"


class MaskingFormatter(logging.Formatter):
    """A log formatter whose output (message and traceback alike) goes through :func:`mask`,
    cut to :data:`MAX_SHOWN` characters first. It runs only for records that are printed."""

    def format(self, record: logging.LogRecord) -> str:
        return mask(shorten(super().format(record)))


def _print_masked(
    kind: type[BaseException], exc: BaseException | None, tb: TracebackType | None, head: str
) -> None:
    text = head + "".join(traceback.format_exception(kind, exc, tb))
    print(mask(shorten(text)), file=sys.stderr, end="", flush=True)


def _thread_hook(args: threading.ExceptHookArgs) -> None:
    if args.exc_type is SystemExit:  # as Python's own hook: a thread may end itself so
        return
    name = args.thread.name if args.thread is not None else "?"
    _print_masked(args.exc_type, args.exc_value, args.exc_traceback, f"Exception in {name}:\n")


def mask_excepthooks() -> None:
    """Print an uncaught exception of this process, in any thread, masked: a stage's reader
    thread that dies quoting its camera URL must not print the password."""
    sys.excepthook = lambda kind, exc, tb: _print_masked(kind, exc, tb, "")
    threading.excepthook = _thread_hook
