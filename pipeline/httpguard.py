"""Who may ask an HTTP endpoint of a run (the preview, the metrics): the Host header must name
this machine, so a web page elsewhere cannot read it by DNS rebinding, and a token, where one
is set, must come with the request (compared in constant time)."""

from __future__ import annotations

import hmac
import ipaddress
import socket

__all__ = ["bearer", "host_names", "host_part", "is_loopback", "known_host", "token_matches"]


def is_loopback(host: str) -> bool:
    """Whether listening on ``host`` keeps the server on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def host_names() -> set[str]:
    """Names this machine answers to, besides localhost and IP addresses."""
    names = {socket.gethostname().lower(), socket.getfqdn().lower()}
    return names | {f"{n.split('.')[0]}.local" for n in names}


def host_part(header: str) -> str:
    """``name:port`` / ``[v6]:port`` -> the name or address alone, lower case."""
    host = header.strip().lower()
    if host.startswith("["):
        return host[1 : host.find("]")] if "]" in host else host
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host


def known_host(host: str, allowed: set[str]) -> bool:
    """Whether a request's Host (``host_part``) names this machine: one of ``allowed``
    (``*``: any), a ``.localhost`` name, or an IP address (which no attacker can rebind)."""
    if host in allowed or "*" in allowed or host.endswith(".localhost"):
        return True
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def bearer(authorization: str) -> str | None:
    """The token of an ``Authorization: Bearer TOKEN`` header, if that is what it holds."""
    if authorization[:7].lower() == "bearer ":
        return authorization[7:].strip()
    return None


def token_matches(given: str | None, token: str) -> bool:
    """Whether ``given`` is ``token``, compared in constant time."""
    return given is not None and hmac.compare_digest(given.encode(), token.encode())
