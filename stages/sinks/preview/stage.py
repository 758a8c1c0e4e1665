"""A sink that shows every stream live in a browser: a small HTTP server in a thread of the
sink process, serving a status page, MJPEG streams, snapshots and a JSON status.

The pipeline thread only copies the newest frame in; drawing and JPEG encoding happen on
demand, once per new frame, shared by every viewer. Each viewer takes the newest frame when
it is ready for one, so a slow viewer skips frames and never holds up the pipeline.

    GET /                       the page (no external assets)
    GET /api/status             {"pipeline", "stage", "time", "streams": {name: {...}}}
    GET /stream/<name>.mjpg     multipart/x-mixed-replace JPEG stream, at most max_fps
    GET /snapshot/<name>.jpg    the newest frame
"""

from __future__ import annotations

import json
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import cv2
import numpy as np
from pydantic import Field

from pipeline.errors import StageSetupError
from pipeline.keys import DETECTIONS_PREFIX, FRAME, META_LINES, META_ZONES
from pipeline.messages import Message
from pipeline.stage import Context, Stage, StageConfig
from stages.sinks.annotate import RateMeter, annotate

__all__ = ["PreviewHub", "PreviewSink"]

PAGE = Path(__file__).with_name("page.html")
BOUNDARY = "rkpipe-frame"


class _Feed:
    """The newest frame of one stream, what is drawn on it, and its JPEG once encoded."""

    def __init__(self) -> None:
        self.version = 0
        self.msg: Message | None = None  # a private copy: frame, detections, lines, zones
        self.meter = RateMeter()
        self.frames = 0
        self.t_last = 0.0
        self.ended = False
        self.jpeg: tuple[int, bytes] | None = None
        self.encoding = threading.Lock()


class PreviewHub:
    """Newest frames by stream, shared between the pipeline thread and the HTTP threads."""

    def __init__(self, quality: int = 80, width: int | None = None, draw: bool = True) -> None:
        self.quality, self.width, self.draw = quality, width, draw
        self.cond = threading.Condition()
        self.feeds: dict[str, _Feed] = {}
        self.closed = False

    def publish(self, msg: Message) -> None:
        """Keep a copy of ``msg``'s frame and overlays as the stream's newest frame. A message
        without a frame (a final counts snapshot) only updates the counts of the last one."""
        meta: dict[str, Any] = {k: msg.meta[k] for k in (META_LINES, META_ZONES) if k in msg.meta}
        with self.cond:
            feed = self.feeds.get(msg.stream)
            if msg.frame is None:
                if feed is not None and feed.msg is not None:
                    feed.msg = feed.msg.derive(meta={**feed.msg.meta, **meta})
                    feed.version += 1
                    self.cond.notify_all()
                return
        arrays = {
            k: np.array(v, copy=True)
            for k, v in msg.arrays.items()
            if k.startswith(DETECTIONS_PREFIX)
        }
        arrays[FRAME] = np.array(msg.frame, copy=True)  # outside the lock: the viewers go on
        own = Message(msg.stream, msg.seq, msg.prev, msg.t_capture, msg.t_mono_ns, meta, arrays)
        with self.cond:
            feed = self.feeds.setdefault(msg.stream, _Feed())
            feed.msg, feed.ended = own, False
            feed.version += 1
            feed.frames += 1
            feed.t_last = time.time()
            feed.meter.tick()
            self.cond.notify_all()

    def end(self, stream: str) -> None:
        with self.cond:
            if stream in self.feeds:
                self.feeds[stream].ended = True

    def close(self) -> None:
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_newer(self, stream: str, version: int, timeout: float) -> int | None:
        """The stream's version once it is past ``version`` (or the same after ``timeout``);
        None when the hub is closed or the stream unknown."""
        with self.cond:
            self.cond.wait_for(
                lambda: self.closed or self.feeds[stream].version != version, timeout
            )
            return None if self.closed else self.feeds[stream].version

    def jpeg(self, stream: str) -> tuple[int, bytes] | None:
        """(version, JPEG bytes) of the newest frame, encoded at most once per version."""
        with self.cond:
            feed = self.feeds.get(stream)
            if feed is None or feed.msg is None:
                return None
            version, msg, fps = feed.version, feed.msg, feed.meter.rate()
        with feed.encoding:
            if feed.jpeg is not None and feed.jpeg[0] >= version:
                return feed.jpeg
            frame = msg.frame
            assert frame is not None  # feeds keep only messages with a frame
            img = annotate(frame, msg, fps) if self.draw else frame
            if self.width and img.shape[1] > self.width:
                h = round(img.shape[0] * self.width / img.shape[1])
                img = cv2.resize(img, (self.width, h), interpolation=cv2.INTER_AREA)
            ok, buf = cv2.imencode(".jpg", img, [cv2.IMWRITE_JPEG_QUALITY, self.quality])
            if not ok:
                return None
            feed.jpeg = (version, buf.tobytes())
            return feed.jpeg

    def status(self) -> dict[str, Any]:
        """Per stream: live FPS, last seq, frames seen, line counts and zone occupancy."""
        with self.cond:
            return {name: _stream_status(f) for name, f in sorted(self.feeds.items())}


def _stream_status(feed: _Feed) -> dict[str, Any]:
    msg = feed.msg
    assert msg is not None
    frame = msg.frame
    assert frame is not None  # feeds keep only messages with a frame
    lines = msg.meta.get(META_LINES) or {}
    zones = msg.meta.get(META_ZONES) or {}
    return {
        "fps": round(feed.meter.rate(), 2),
        "seq": msg.seq,
        "frames": feed.frames,
        "objects": len(msg.arrays.get(DETECTIONS_PREFIX + "xyxy", ())),
        "width": int(frame.shape[1]),
        "height": int(frame.shape[0]),
        "age_s": round(time.time() - feed.t_last, 3),
        "ended": feed.ended,
        "lines": {n: {"in": v.get("in", 0), "out": v.get("out", 0)} for n, v in lines.items()},
        "zones": {n: {"occupancy": v.get("occupancy", 0)} for n, v in zones.items()},
    }


class _Handler(BaseHTTPRequestHandler):
    """Routes of the preview server; ``server.sink`` holds the hub and settings."""

    server: _Server
    timeout = 10  # a viewer that takes no data for this long is dropped
    protocol_version = "HTTP/1.1"

    def do_GET(self) -> None:
        path = unquote(urlsplit(self.path).path)
        sink = self.server.sink
        try:
            if path in ("/", "/index.html"):
                self._send(200, "text/html; charset=utf-8", sink.page)
            elif path == "/api/status":
                body = {
                    "pipeline": sink.ctx.pipeline,
                    "stage": sink.ctx.instance,
                    "time": time.time(),
                    "streams": {},
                }
                body["streams"] = sink.hub.status()
                self._send(200, "application/json", json.dumps(body).encode())
            elif path.startswith("/snapshot/") and path.endswith(".jpg"):
                shot = sink.hub.jpeg(path[len("/snapshot/") : -4])
                if shot is None:
                    return self._not_found(path)
                self._send(200, "image/jpeg", shot[1])
            elif path.startswith("/stream/") and path.endswith(".mjpg"):
                self._mjpeg(path[len("/stream/") : -5])
            else:
                self._not_found(path)
        except (BrokenPipeError, ConnectionResetError, TimeoutError):
            self.close_connection = True  # the viewer went away or stalled

    def _send(self, code: int, ctype: str, body: bytes) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _not_found(self, path: str) -> None:
        names = ", ".join(self.server.sink.hub.status()) or "none yet"
        self._send(
            404, "text/plain; charset=utf-8", f"not found: {path}; streams: {names}\n".encode()
        )

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
        version, due = 0, 0.0
        while (newest := hub.wait_newer(stream, version, 1.0)) is not None:
            if newest == version:
                continue
            time.sleep(max(0.0, due - time.monotonic()))  # at most max_fps for this viewer
            if (shot := hub.jpeg(stream)) is None:
                return
            version, data = shot
            head = f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}"
            self.wfile.write(head.encode() + b"\r\n\r\n" + data + b"\r\n")
            self.wfile.flush()
            due = max(due + gap, time.monotonic())

    def log_message(self, format: str, *args: Any) -> None:
        self.server.sink.ctx.log.debug("http: " + format, *args)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    sink: PreviewSink


class PreviewSinkConfig(StageConfig):
    host: str = Field("127.0.0.1", description="address to listen on (0.0.0.0: every one)")
    port: int = Field(8090, ge=0, le=65535, description="0 picks a free port")
    quality: int = Field(80, ge=1, le=100, description="JPEG quality")
    max_fps: float = Field(15.0, gt=0, le=120, description="frame rate cap per viewer")
    width: int | None = Field(None, ge=16, description="scale frames down to this width")
    annotate: bool = Field(True, description="draw detections, lines, zones and a header")


class PreviewSink(Stage[PreviewSinkConfig]):
    """Serve a live view of every stream at ``http://host:port/`` (port 0: a free one)."""

    replicable = False

    def setup(self, ctx: Context) -> None:
        cfg = self.config
        self.ctx = ctx
        self.page = PAGE.read_bytes()
        self.hub = PreviewHub(cfg.quality, cfg.width, cfg.annotate)
        try:
            self.server = _Server((cfg.host, cfg.port), _Handler)
        except OSError as exc:
            msg = f"stages.{ctx.stage}: cannot listen on {cfg.host}:{cfg.port}: {exc.strerror}"
            msg += "; set port = 0 to pick a free port" if cfg.port else ""
            raise StageSetupError(msg) from None
        self.server.sink = self
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, args=(0.2,), daemon=True)
        self.thread.start()
        shown = socket.gethostname() if cfg.host in ("0.0.0.0", "::", "") else cfg.host
        # warning level: the default --log-level hides info, and the user needs this line
        ctx.log.warning("preview at http://%s:%d/", shown, self.port)

    def process(self, msg: Message) -> Message:
        self.hub.publish(msg)
        return msg

    def end_stream(self, stream: str) -> None:
        self.hub.end(stream)

    def close(self) -> None:
        self.hub.close()
        self.server.shutdown()
        self.server.server_close()
