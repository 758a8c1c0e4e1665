"""A decoder process's stderr (ffmpeg or gst-launch) as one line a person can act on:
``401 Unauthorized: wrong user or password``, ``404 Not Found: no such stream path``,
``connection refused: camera off or wrong port``, ``codec not supported: ...``.

Passwords in URLs are masked in whatever is returned, as in every other log line.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

from pipeline.secrets import mask

__all__ = ["explain"]

# (pattern, readable line); the first pattern found in the output wins, so the specific
# causes come before the generic ones. "{0}" is the pattern's first group that matched.
_CAUSES = [
    (r"401 Unauthorized|Unauthorized \(401\)", "401 Unauthorized: wrong user or password"),
    (r"403 Forbidden|Forbidden \(403\)", "403 Forbidden: this user may not view the stream"),
    (r"404 Not Found|Not Found \(404\)", "404 Not Found: no such stream path on the camera"),
    (r"Connection refused", "connection refused: camera off or wrong port"),
    (
        r"Failed to resolve hostname|Name or service not known",
        "host not found: check the camera's address",
    ),
    (r"No route to host|Network is unreachable", "no route to the camera's network"),
    (r"Connection timed out|Operation timed out", "timed out connecting to the camera"),
    (r"Missing decoder: ([^(\n]+(?:\([^)\n]*\))?)", "codec not supported: no decoder for {0}"),
    (
        r"Decoder \(codec (\w+)\) not found|Unknown decoder '([^']+)'",
        "codec not supported: no decoder for {0}",
    ),
    (
        r"Device setup failed for decoder|Device creation failed|No device available",
        "hardware decoding is not available here (the hwaccel's device failed to open)",
    ),
    (r"No such filter: '([^']+)'", "this ffmpeg lacks the filter {0}"),
    (
        r"Connection reset by peer|End of file|Broken pipe|Could not read from resource",
        "the camera closed the stream",
    ),
    (
        r"Could not open resource|Failed to connect",
        "cannot connect: camera off, wrong port or host unreachable",
    ),
    (r"Invalid data found when processing input", "invalid data: not a video stream?"),
]
_PATTERNS = [(re.compile(pattern), readable) for pattern, readable in _CAUSES]


def explain(lines: Iterable[str]) -> str:
    """The one readable line for what went wrong, from the process's last output lines;
    failing a known cause, its last error-looking line (masked), or ``""``."""
    kept = [ln.strip() for ln in lines if ln.strip()]
    text = "\n".join(kept)
    for pattern, readable in _PATTERNS:
        found = pattern.search(text)
        if found is not None:
            group = next((g for g in found.groups() if g), "")
            return readable.format(group.strip())
    for line in reversed(kept):
        if re.search(r"error|fail|invalid|cannot|could not", line, re.IGNORECASE):
            return mask(line)[:200]
    return ""
