"""The node id: which board a run is on, in every MQTT topic, client id, Home Assistant id
and metric of the run, so that boards running the same graph against one broker (or one
Prometheus) never collide. ``node`` in ``[pipeline]``; by default the host name."""

from __future__ import annotations

import re
import socket

__all__ = ["MAX_NODE", "check_node", "default_node"]

MAX_NODE = 64  # characters
_SAFE = re.compile(r"[A-Za-z0-9_-]+")


def default_node() -> str:
    """The host's short name made safe for one topic level and for Home Assistant ids (a
    character outside letters, digits, ``_`` and ``-`` becomes ``_``)."""
    host = socket.gethostname().split(".")[0]
    return re.sub(r"[^A-Za-z0-9_-]", "_", host)[:MAX_NODE] or "node"


def check_node(value: str) -> str:
    """``value`` if it can be a node id, else ValueError saying what one may hold."""
    if not _SAFE.fullmatch(value) or len(value) > MAX_NODE:
        msg = (
            f"a node id is one MQTT topic level and part of Home Assistant ids: letters, "
            f"digits, _ and - only, at most {MAX_NODE} characters; got {value!r}"
        )
        raise ValueError(msg)
    return value
