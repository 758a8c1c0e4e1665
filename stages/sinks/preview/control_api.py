"""The preview's control API: read the running graph, and change it through its file.

    GET    /api/graph              {"path", "text", "stages"} (secrets masked)
    PATCH  /api/stages/<name>      a JSON merge patch of the stage's table (null removes a key)
    PUT    /api/stages/<name>      a new stage's whole table ({"uses", "inputs", options...}),
                                   and "readers": stages that read it from now on
    DELETE /api/stages/<name>      remove a stage, and it from its readers' inputs (a source:
                                   its stream ends)

Every change goes the way an edited file goes: validated in full first, written back to the
graph file with the user's comments kept, then reloaded by the run (``GraphFile``). A change
needs the preview's token whatever the address (a local stranger could otherwise point a sink
at any file the run may write), a JSON body, and no other origin: a web page elsewhere cannot
make a browser send one (CSRF), and a bad edit answers 4xx with the validator's message.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

from pipeline.errors import GraphError
from pipeline.graph.edit import EditError, add_stage, patch_stage, remove_stage
from pipeline.graph.graph_file import GraphFile
from pipeline.graph.load import tomllib
from pipeline.secrets import mask

__all__ = ["CHANGE_METHODS", "MAX_BODY", "ControlApi"]

CHANGE_METHODS = ("PATCH", "PUT", "DELETE")
MAX_BODY = 64 * 1024  # bytes of a change's JSON body
_JSON_TYPES = ("application/json", "application/merge-patch+json")

Answer = tuple[int, dict[str, Any]]


class ControlApi:
    """The graph file of the run this preview is part of (from its environment)."""

    def __init__(self, graph_file: GraphFile | None) -> None:
        self.file = graph_file

    @classmethod
    def of_this_run(cls) -> ControlApi:
        return cls(GraphFile.of_this_run())  # None: not in a run (a test's inline stage)

    def graph(self) -> Answer:
        if self.file is None:
            return 404, {"error": "this preview is not part of a run with a graph file"}
        try:
            text = self.file.read()
        except EditError as exc:
            return exc.status, {"error": str(exc)}
        try:
            stages = tomllib.loads(text).get("stages", {})
        except tomllib.TOMLDecodeError as exc:
            stages = {"error": f"not valid TOML: {exc}"}
        return 200, {"path": str(self.file.path), "text": mask(text), "stages": _masked(stages)}

    def change(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> Answer:
        """One change request (already past the Host and token checks)."""
        if self.file is None:
            return 404, {"error": "this preview is not part of a run with a graph file"}
        if not path.startswith("/api/stages/") or not (name := path[len("/api/stages/") :]):
            return 404, {"error": f"no such endpoint: {method} {path[:100]}"}
        if (why := cross_origin(headers)) is not None:
            return 403, {"error": why}
        value: Any = None
        if method != "DELETE":
            ctype = headers.get("Content-Type", "").split(";")[0].strip().lower()
            if ctype not in _JSON_TYPES:
                return 415, {"error": "a change is a JSON body (Content-Type: application/json)"}
            try:
                value = json.loads(body)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                return 400, {"error": f"the body is not JSON: {exc}"}
            if not isinstance(value, dict):
                return 400, {"error": "the body is a JSON object (the stage's keys)"}
        try:
            if method == "PATCH":
                applied = self.file.change(lambda t: patch_stage(t, name, value))
            elif method == "PUT":
                table = {k: v for k, v in value.items() if k != "readers"}
                readers = value.get("readers", [])
                if not isinstance(readers, list) or not all(isinstance(r, str) for r in readers):
                    return 400, {"error": "readers: a list of stage names"}
                applied = self.file.change(lambda t: add_stage(t, name, table, readers))
            else:
                applied = self.file.change(lambda t: remove_stage(t, name))
        except EditError as exc:
            return exc.status, {"error": str(exc)}
        except GraphError as exc:  # the validator's messages: nothing was changed
            return 400, {"error": "the graph would not be valid; nothing changed",
                         "problems": [mask(p) for p in exc.problems]}  # fmt: skip
        return 200, applied.to_json()


def cross_origin(headers: Mapping[str, str]) -> str | None:
    """Why a change request comes from another site, or None: a browser names the page's
    origin (``Origin``, ``Sec-Fetch-Site``); a script such as curl names none."""
    site = headers.get("Sec-Fetch-Site", "").lower()
    if site and site not in ("same-origin", "none"):
        return f"a change from another site ({site}) is refused"
    origin = headers.get("Origin")
    if origin is None:
        return None
    host = headers.get("Host", "").lower()
    parts = urlsplit(origin.lower())
    if origin == "null" or parts.netloc != host:
        return "a change from another origin is refused"
    return None


def _masked(value: Any) -> Any:
    if isinstance(value, str):
        return mask(value)
    if isinstance(value, dict):
        return {k: _masked(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_masked(v) for v in value]
    return value
