"""The environment file ``rkpipe deploy systemd`` writes beside the unit: every variable the
graph reads, set to the graph's default, under the key that uses it, so the file a person
edits names exactly what this graph can be told (and nothing it ignores)."""

from __future__ import annotations

from pathlib import Path

from ..graph.variables import graph_variables

__all__ = ["env_file_text"]

CAMERA_EXAMPLE = "rtsp://user:password@camera.lan/stream1, /dev/video0 or a video file"


def env_file_text(graph: Path, header: str) -> str:
    """``header`` (the shipped template's comments), then each variable ``graph`` reads."""
    lines = [header.rstrip("\n"), f"# the variables {graph.name} reads, set to its defaults"]
    for var in graph_variables(graph):
        lines.append("")
        lines.append(f"# {', '.join(var.keys)}")
        if any(key.endswith(".source") for key in var.keys):
            lines.append(f"# e.g. {CAMERA_EXAMPLE}")
        if var.default is None:
            lines.append(f"# required (the graph has no default): {var.name}=...")
            lines.append(f"#{var.name}=")
        else:
            lines.append(f"{var.name}={var.default}")
    return "\n".join(lines) + "\n"
