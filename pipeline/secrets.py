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

import logging
import re
from typing import Any
from urllib.parse import urlsplit

__all__ = [
    "MASK",
    "MIN_LEN",
    "MaskingFormatter",
    "is_secret_name",
    "known",
    "mask",
    "mask_options",
    "mask_url",
    "mask_value",
    "remember",
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
_NOT_SECRET_LAST = frozenset({"env", "file", "path", "dir", "name", "names", "id", "host"})

_known: set[str] = set()


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


# scheme://userinfo@ ; the userinfo is what comes before the last "@" of the authority
_URL = re.compile(r"\b[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
# user:password@host written without a scheme (a mistyped URL): the password goes
_BARE_USERINFO = re.compile(r"(?<![\w.%+-])([\w.%+-]+):([^\s/@'\"]+)@(?=[\w\[])")
# name=value in a query string (also after ";" and "&amp;")
_QUERY = re.compile(r"([?&;])([^=&;#\s'\"]+)=([^&;#\s'\"]*)")
# key='value', 'key': 'value', "key": "value", key=value (a bare value only after "=": after
# "key:" it is prose, as in "stages.m.password: expected a string")
_PAIR = re.compile(
    r"""(?P<q>['"]?)(?P<key>[A-Za-z_][\w.-]*)(?P=q)"""
    r"""(?:(?P<sep>\s*[:=]\s*)(?P<vq>['"])(?P<qv>.*?)(?P=vq)|(?P<eq>\s*=\s*)(?P<bare>[^\s,;'"&)}\]]+))"""
)


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
    value = m.group("qv") if m.group("vq") else m.group("bare")
    if not value or value == MASK or not is_secret_name(m.group("key")):
        return m.group(0)
    quote, sep = m.group("vq") or "", m.group("sep") or m.group("eq")
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


class MaskingFormatter(logging.Formatter):
    """A log formatter whose output (message and traceback alike) goes through :func:`mask`."""

    def format(self, record: logging.LogRecord) -> str:
        return mask(super().format(record))
