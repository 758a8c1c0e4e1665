"""A sink that shows every stream live in a browser: a small HTTP server in a thread of the
sink process (see ``server.py`` for its routes and who may ask), serving a page with each
camera's picture, health and counts, the last events with their snapshots, and an editor
to draw counting lines and zones and copy them into the graph.
"""

from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path
from typing import Any

from pydantic import Field, field_validator, model_validator

from pipeline.errors import StageSetupError
from pipeline.httpguard import is_loopback
from pipeline.messages import Message
from pipeline.secrets import mask, remember
from pipeline.stage import Context, Stage, StageConfig
from stages.analytics.event_snapshots import SNAPSHOT_DIR
from stages.sinks.preview.control_api import ControlApi
from stages.sinks.preview.hub import PreviewHub
from stages.sinks.preview.server import PreviewServer, host_names

__all__ = ["PreviewSink", "PreviewSinkConfig", "is_loopback"]

PAGE = Path(__file__).with_name("page.html")
_TOKEN = re.compile(r"[A-Za-z0-9._~-]{8,}")


class PreviewSinkConfig(StageConfig):
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: every one)")
    port: int = Field(8090, ge=0, le=65535, description="0 picks a free port")
    token: str | None = Field(
        None, description="required of every request; needed when host is not localhost"
    )
    allowed_hosts: list[str] = Field(
        default_factory=list, description="more names the page may be opened by ('*': any)"
    )
    max_clients: int = Field(32, ge=1, le=1024, description="connections served at once")
    quality: int = Field(80, ge=1, le=100, description="JPEG quality")
    max_fps: float = Field(15.0, gt=0, le=120, description="frame rate cap per viewer")
    width: int | None = Field(None, ge=16, description="scale frames down to this width")
    annotate: bool = Field(True, description="draw detections, lines, zones and a header")
    events: int = Field(50, ge=0, le=1000, description="recent events listed")
    snapshot_dir: str = Field(
        SNAPSHOT_DIR, description="the snapshots folder event snapshot paths are relative to"
    )

    @field_validator("token")
    @classmethod
    def _usable_token(cls, value: str | None) -> str | None:
        if not value:
            return None  # token = "${RKPIPE_PREVIEW_TOKEN:-}" unset: none
        if not _TOKEN.fullmatch(value):
            msg = "a token is at least 8 letters, digits or ._~- characters"
            raise ValueError(msg)
        return value

    @model_validator(mode="after")
    def _token_beyond_localhost(self) -> PreviewSinkConfig:
        if not is_loopback(self.host) and self.token is None:
            msg = (
                f"host {self.host!r} lets other machines see the cameras: set a token (from "
                "an environment variable such as ${RKPIPE_PREVIEW_TOKEN}) or listen on 127.0.0.1"
            )
            raise ValueError(msg)
        return self


class PreviewSink(Stage[PreviewSinkConfig]):
    """Serve a live view of every stream at ``http://host:port/`` (port 0: a free one)."""

    replicable = False
    best_effort = True  # a viewer's picture may skip frames; the other sinks may not

    def setup(self, ctx: Context) -> None:
        cfg = self.config
        self.ctx = ctx
        if cfg.token:
            remember(cfg.token)  # request lines are logged at debug level
        self.page = PAGE.read_bytes()
        self.hub = PreviewHub(cfg.quality, cfg.width, cfg.annotate, cfg.events)
        self.allowed_hosts = {"localhost", *host_names(), *(h.lower() for h in cfg.allowed_hosts)}
        self.control = ControlApi.of_this_run()  # the graph file, changed through the API
        self.snapshot_root = Path(cfg.snapshot_dir).expanduser().resolve()
        try:
            self.server = PreviewServer((cfg.host, cfg.port), self, cfg.max_clients)
        except OSError as exc:
            msg = f"stages.{ctx.stage}: cannot listen on {cfg.host}:{cfg.port}: {exc.strerror}"
            msg += "; set port = 0 to pick a free port" if cfg.port else ""
            raise StageSetupError(msg) from None
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.2,), daemon=True)
        self.thread.start()
        shown = socket.gethostname() if cfg.host in ("0.0.0.0", "::", "") else cfg.host
        needs = " (open it with ?token=...)" if cfg.token else ""
        # warning level: the default --log-level hides info, and the user needs this line
        ctx.log.warning("preview at http://%s:%d/%s", shown, self.port, needs)

    def status(self) -> dict[str, Any]:
        """What the page polls: streams, camera health (masked) and recent events."""
        health = {
            stream: {**h, "detail": mask(str(h.get("detail") or ""))}
            for stream, h in self.ctx.source_health().items()
        }
        events = [
            {**ev, "snapshot": "/events/" + ev["snapshot"].lstrip("/")}
            if isinstance(ev.get("snapshot"), str)
            else ev
            for ev in self.hub.recent_events()
        ]
        return {
            "pipeline": self.ctx.pipeline,
            "stage": self.ctx.instance,
            "time": time.time(),
            "streams": self.hub.status(),
            "health": health,
            "events": events,
        }

    def stats(self) -> dict[str, Any]:
        """The run's live figures (what ``rkpipe run`` shows), as of its last stats tick."""
        return {"time": time.time(), **self.ctx.run_stats()}

    def process(self, msg: Message) -> Message:
        self.hub.publish(msg)
        return msg

    def end_stream(self, stream: str) -> None:
        self.hub.end(stream)

    def close(self) -> None:
        self.hub.close()
        self.server.shutdown()
        self.server.server_close()
