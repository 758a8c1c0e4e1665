"""A recording plays in a browser before the whole file has arrived: headless Chromium
fetches it from a server that sends the first part and then stalls (no ranges), and it
starts playing from what it has, knowing the recording's full duration from its header."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from pipeline.messages import Message
from pipeline.stage import Context
from stages.sinks.video import VideoSink
from stages.synthetic import Scene
from support.browser import Browser, chromium_path
from support.rkpipe import poll_for

PAGE = b"""<!doctype html><html><body>
<video id="v" src="/v.mp4" muted playsinline></video>
<script>
const v = document.getElementById("v");
v.addEventListener("canplay", () => v.play(), { once: true });
</script></body></html>"""


def stalling_server(video: bytes, sent: int, release: threading.Event) -> ThreadingHTTPServer:
    """Serves the page, and ``video`` as one response of its full length of which only the
    first ``sent`` bytes come before ``release`` is set."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = PAGE if self.path == "/" else video
            self.send_response(200)
            self.send_header("Content-Type", "text/html" if body is PAGE else "video/mp4")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if body is PAGE:
                self.wfile.write(body)
                return
            self.wfile.write(body[:sent])
            self.wfile.flush()
            release.wait(60)
            self.wfile.write(body[sent:])

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.mark.integration
def test_chromium_plays_a_recording_of_which_it_has_only_the_first_part(tmp_path: Path) -> None:
    exe = chromium_path()
    if exe is None:
        pytest.fail("this test needs Chromium: apt-get install chromium")
    scene = Scene("easy", seed=0)
    sink = VideoSink(path=str(tmp_path / "{stream}.mp4"), annotate=False, fps=30)
    sink.setup(Context(stage="video"))
    for i in range(180):  # 6 s
        sink.process(Message("cam0", i, i - 1, arrays={"frame": scene.render(i)}))
    sink.close()
    video = (tmp_path / "cam0.mp4").read_bytes()
    release = threading.Event()
    server = stalling_server(video, len(video) * 2 // 5, release)  # 40%: about 2.4 s
    browser = Browser(exe, tmp_path / "profile")
    try:
        browser.open(f"http://127.0.0.1:{server.server_address[1]}/")
        playing = poll_for(
            lambda: (browser.js("document.getElementById('v')?.currentTime") or 0) > 1.0, 30
        )
        state = browser.js(
            "(() => { const v = document.getElementById('v'); "
            "return [v.currentTime, v.duration, v.buffered.length ? v.buffered.end(0) : 0]; })()"
        )
    finally:
        release.set()
        browser.close()
        server.shutdown()
    assert playing, f"it did not play from the first part: {state}"
    now, duration, buffered = state
    assert 1.0 < now <= buffered
    assert duration == pytest.approx(6.0, abs=0.05)  # known from the header, before the end
    assert buffered < 5.0  # it played from what it had, not from the whole file
