"""The control API on the preview's HTTP server, on a real run: read the running graph, change
a stage through the graph file (comments kept, validated first, reloaded by the run), and the
editor's Apply in a real Chromium. A change needs the token, a JSON body and no other origin;
a bad edit answers 4xx with the validator's message and changes nothing."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import threading
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
import pytest

from pipeline.messages import Message
from pipeline.stage import Context
from stages.sinks.preview.stage import PreviewSink
from support.browser import Browser
from support.graph import Graph
from support.rkpipe import poll_for, start_rkpipe

TOKEN = "api-token-31415"
COMMENT = "# the door of the shop: left to right is in"


def ask(url: str, method: str = "GET", body: object = None, **headers: str) -> tuple[int, dict]:
    """One request; its status and JSON answer (errors included)."""
    data = json.dumps(body).encode() if body is not None else None
    if data is not None:
        headers.setdefault("Content-Type", "application/json")
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=20) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as err:
        text = err.read()
        try:
            return err.code, json.loads(text)
        except json.JSONDecodeError:
            return err.code, {"text": text.decode(errors="replace")}


def _graph(tmp_path: Path) -> Path:
    door = [{"name": "door", "a": [0.5, 0], "b": [0.5, 1], "relative": True}]
    path = (
        Graph("shop", stats_interval_s=1)
        .source("cam0", uses="synthetic", scene="easy", live=True, fps=15)
        .stage("truth", uses="rk_test_overlay:Overlay", inputs=["cam0"], fps=15, overlays=False)
        .stage("count", uses="line_crossing", inputs=["truth"], lines={"*": door})
        .sink("view", uses="preview", inputs=["count"], port=0, token=TOKEN)
        .sink("out", uses="jsonl", inputs=["count"], path=tmp_path / "out.jsonl")
        .write(tmp_path)
    )
    text = path.read_text().replace("[stages.count]", f"{COMMENT}\n[stages.count]")
    path.write_text(text)
    return path


@pytest.mark.integration
@pytest.mark.slow
def test_a_running_graph_is_read_and_changed_through_its_file(
    tmp_path: Path, browser: Browser, no_leaks
) -> None:
    graph = _graph(tmp_path)
    stats = tmp_path / "stats.json"
    run = start_rkpipe("run", str(graph), "--stats-out", str(stats), stdout=subprocess.DEVNULL)
    log: list[str] = []
    threading.Thread(target=lambda: log.extend(run.stderr), daemon=True).start()
    try:
        assert poll_for(lambda: any("preview at http://" in x for x in log), 60), log
        url = re.search(r"http://127\.0\.0\.1:\d+/", "".join(log)).group(0)  # type: ignore[union-attr]
        bearer = {"Authorization": f"Bearer {TOKEN}"}
        stage = f"{url}api/stages/count"
        original = graph.read_text()

        assert ask(f"{url}api/graph")[0] == 401
        code, seen = ask(f"{url}api/graph", **bearer)
        assert code == 200 and seen["path"] == str(graph)
        assert seen["text"] == original.replace(TOKEN, "***")  # secrets masked
        assert seen["stages"]["count"]["uses"] == "line_crossing"

        def live() -> dict:
            return ask(f"{url}api/stats", **bearer)[1]

        assert ask(f"{url}api/stats")[0] == 401  # reading follows the preview's token rule
        assert poll_for(lambda: live().get("streams", {}).get("cam0", {}).get("delivered"), 30)
        rows = {r["instance"]: r for r in live()["stages"]}
        assert set(rows) == {"cam0", "truth", "count", "view", "out"}
        assert rows["count"]["frames_in"] > 0 and rows["count"]["state"] == "running"

        conf = {"lines": {"*": [{"name": "door", "a": [0.4, 0], "b": [0.4, 1]}]}}
        assert ask(stage, "PATCH", conf)[0] == 401  # no token
        assert ask(stage, "PATCH", conf, Origin="http://evil.example", **bearer)[0] == 403
        assert ask(stage, "PATCH", conf, **{"Sec-Fetch-Site": "cross-site"}, **bearer)[0] == 403
        assert ask(stage, "PATCH", conf, **{"Content-Type": "text/plain"}, **bearer)[0] == 415
        code, bad = ask(stage, "PATCH", {"colour": "red"}, **bearer)
        assert code == 400 and any("colour" in p for p in bad["problems"]), bad
        code, bad = ask(stage, "PATCH", {"inputs": ["nope"]}, **bearer)
        assert code == 400 and any("nope" in p for p in bad["problems"]), bad
        assert ask(f"{url}api/stages/cam0", "DELETE", **bearer)[0] == 400  # truth needs it
        assert ask(f"{url}api/stages/nope", "PATCH", {"conf": 1}, **bearer)[0] == 404
        assert graph.read_text() == original  # nothing of that changed the file

        browser.open(f"{url}?token={TOKEN}")  # the page's cookie carries the token
        card = "document.querySelector('[data-stream=cam0]')"
        assert poll_for(lambda: browser.js(f"{card}?.querySelector('img').naturalWidth > 0"), 30)
        box = browser.js(f"{card}.querySelector('svg').getBoundingClientRect().toJSON()")
        browser.js(f"{card}.querySelector('button[data-act=line]').click()")
        for fx, fy in ((0.25, 0.1), (0.25, 0.9)):
            browser.click(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
        browser.js(f"{card}.querySelector('.apply input').value = 'entrance'")
        browser.js(f"{card}.querySelector('button[data-act=apply]').click()")
        said = f"{card}.querySelector('.apply .said').textContent"
        assert poll_for(lambda: "applied" in browser.js(said), 20), browser.js(said)
        assert browser.js(said).startswith("applied to count (in place)")

        text = graph.read_text()
        assert COMMENT in text and text.index("[stages.truth]") < text.index("[stages.count]")
        line = re.search(r'cam0 = \[\{ ?name = "entrance", a = \[([\d.]+), ([\d.]+)\]', text)
        assert line and np.allclose([float(v) for v in line.groups()], [0.25, 0.1], atol=0.02)
        assert '"*" = [{ name = "door"' in text  # the other cameras keep the door
        assert poll_for(lambda: any("reload" in x and "count" in x for x in log), 30), log

        # a camera added with the stage that reads it, then removed: both while it runs
        cam1 = {"uses": "synthetic", "scene": "easy", "live": True, "fps": 15, "readers": ["truth"]}
        code, did = ask(f"{url}api/stages/cam1", "PUT", cam1, **bearer)
        assert code == 200 and did["added"] == ["cam1"] and did["restart"] == [], did
        assert 'inputs = ["cam0", "cam1"]' in graph.read_text()
        rows = tmp_path / "out.jsonl"
        assert poll_for(lambda: '"stream":"cam1"' in rows.read_text(), 60), "".join(log)
        code, did = ask(f"{url}api/stages/cam1", "DELETE", **bearer)
        assert code == 200 and did["removed"] == ["cam1"] and did["restart"] == [], did
        assert poll_for(lambda: any("cam1 stopped; its stream ended" in x for x in log), 60), log
        assert "cam1" not in graph.read_text() and COMMENT in graph.read_text()
    finally:
        run.send_signal(signal.SIGINT)
        try:
            run.wait(timeout=60)
        finally:
            run.kill()
    assert run.returncode in (0, 130), "".join(log)
    final = json.loads(stats.read_text())
    assert final["exact"] and sorted(final["streams"]) == ["cam0", "cam1"], "".join(log)


def test_a_preview_without_a_token_takes_no_change(tmp_path: Path) -> None:
    """On localhost a preview may go without a token, but then nothing can change the graph
    through it: a local stranger could otherwise point a sink at any file the run may write."""
    view = PreviewSink(port=0)
    view.setup(Context(stage="view"))
    try:
        view.process(Message("cam0", 0, arrays={"frame": np.zeros((36, 64, 3), np.uint8)}))
        base = f"http://127.0.0.1:{view.port}"
        code, answer = ask(f"{base}/api/stages/count", "PATCH", {"conf": 0.5})
        assert code == 403 and "token" in answer["error"]
        assert ask(f"{base}/api/stages/count", "DELETE")[0] == 403
        assert ask(f"{base}/api/graph")[0] == 404  # not part of a run with a graph file
    finally:
        view.close()


def test_a_change_body_has_a_length_and_a_limit(tmp_path: Path) -> None:
    view = PreviewSink(port=0, token=TOKEN)
    view.setup(Context(stage="view"))
    try:

        def raw(request: bytes) -> bytes:
            with socket.create_connection(("127.0.0.1", view.port), timeout=10) as s:
                s.sendall(request)
                return s.recv(200)

        head = f"PATCH /api/stages/x HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}"
        assert raw(f"{head}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()).startswith(
            b"HTTP/1.1 411"
        )
        assert raw(f"{head}\r\nContent-Length: 999999\r\n\r\n".encode()).startswith(b"HTTP/1.1 413")
        body = b'{"conf": 0.5}'
        typed = f"{head}\r\nContent-Type: application/json\r\nContent-Length: {len(body)}"
        answer = raw(f"{typed}\r\n\r\n".encode() + body)
        assert answer.startswith(b"HTTP/1.1 404")  # read whole; no graph file outside a run
    finally:
        view.close()
