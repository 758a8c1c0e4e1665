"""The capture stage on real video: MP4 files written here, a live MJPEG-over-HTTP stream
served here that drops and comes back, synthetic scenes, and real `rkpipe run` graphs."""

from __future__ import annotations

import contextlib
import inspect
import json
import logging
import os
import re
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import cv2
import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.context import Context, InlineRuntime
from pipeline.errors import SourceError, StageSetupError
from stages.capture import Capture
from stages.capture.decoder_errors import explain
from stages.capture.decoder_ffmpeg import ffmpeg_size
from stages.capture.decoder_gstreamer import gst_size
from stages.capture.opener import Kind, has_gstreamer, parse_source
from stages.capture.reconnect import Backoff
from stages.synthetic import Scene
from support.graph import Graph
from support.rkpipe import poll_for, read_jsonl, run_rkpipe, start_rkpipe

W, H, FPS = 160, 120, 25.0
BITS = 8  # frame index stamped as 8 bars of 20 px in the top half; level in the bottom half


def stamp(i: int, level: int = 0) -> np.ndarray:
    img = np.full((H, W, 3), level, np.uint8)
    img[: H // 2] = 0
    for b in range(BITS):
        if i >> b & 1:
            img[: H // 2, b * W // BITS : (b + 1) * W // BITS] = 255
    return img


def read_stamp(img: np.ndarray) -> dict:
    """The index and level stamped into a frame, at any scale (codec loss allowed)."""
    h, w = img.shape[:2]
    row = img[h // 4]
    bits = [int(row[int((b + 0.5) * w / 8)].mean() > 127) for b in range(8)]
    level = int(np.median(img[3 * h // 4]))
    return {"index": sum(bit << b for b, bit in enumerate(bits)), "level": level}


STAMP_STAGE = f"""
import numpy as np
from pipeline import Stage

{inspect.getsource(read_stamp)}

class ReadStamp(Stage):
    def process(self, msg):
        msg.meta.update(read_stamp(msg.frame))
        return msg
"""


def write_clip(path: Path, frames: int, fps: float = FPS) -> Path:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (W, H))
    assert writer.isOpened()
    for i in range(frames):
        writer.write(stamp(i))
    writer.release()
    return path


def read_all(cap: Capture, tmp_path: Path, limit: int = 1000, resume_seq: int = -1):
    """Set up and read a capture inline; returns (messages, drops and events by reason)."""
    runtime = InlineRuntime()
    ctx = Context(stage="cam0", graph_dir=tmp_path, resume_seq=resume_seq, runtime=runtime)
    cap.stream_id = "cam0"
    cap.setup(ctx)
    out = []
    try:
        while len(out) < limit and (msg := cap.read()) is not None:
            out.append(msg)
    finally:
        cap.close()
    return out, runtime.drops + runtime.events


def capture_graph(tmp_path: Path, **source: Any) -> Graph:
    """capture (with ``source`` options) -> a stage reading each frame's stamp -> JSONL."""
    (tmp_path / "stamp.py").write_text(STAMP_STAGE)
    return (
        Graph("capture")
        .source("cam0", uses="capture", **source)
        .stage("stamp", uses="stamp.py:ReadStamp", inputs=["cam0"])
        .sink("out", uses="jsonl", inputs=["stamp"], path=tmp_path / "out.jsonl")
    )


# -- video files ---------------------------------------------------------------------------
@pytest.mark.integration
def test_file_frames_arrive_once_in_order_with_their_content(tmp_path: Path, no_leaks) -> None:
    write_clip(tmp_path / "clip.mp4", 60)
    graph = capture_graph(tmp_path, source="clip.mp4").write(tmp_path)
    res = run_rkpipe("run", str(graph), "--stats-out", str(tmp_path / "stats.json"))
    assert res.returncode == 0, res.stderr
    rows = read_jsonl(tmp_path / "out.jsonl")
    assert [r["seq"] for r in rows] == list(range(60))
    assert [r["meta"]["index"] for r in rows] == list(range(60))
    assert all(r["arrays"]["frame"] == [[H, W, 3], "|u1"] for r in rows)
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["stages"]["cam0"]["drops"] == 0


@pytest.mark.integration
def test_missing_file_is_a_graph_error_before_anything_starts(tmp_path: Path, no_leaks) -> None:
    graph = capture_graph(tmp_path, source="videos/nope.mp4").write(tmp_path)
    for command in ("validate", "run"):
        res = run_rkpipe(command, str(graph), timeout=60)
        assert res.returncode == 2, res.stderr
        assert f"stages.cam0.source: video file {tmp_path}/videos/nope.mp4 not found" in res.stderr
        assert "Traceback" not in res.stderr


def test_file_removed_after_validation_is_a_clear_setup_error(tmp_path: Path) -> None:
    """The file can still vanish between validation and start: setup says so."""
    stage = Capture(Capture.Config(source="gone.mp4"))
    with pytest.raises(SourceError, match=r"video file .*gone\.mp4 not found"):
        stage.setup(Context(stage="cam0", graph_dir=tmp_path))


def test_a_file_that_is_not_a_video_is_a_setup_error(tmp_path: Path) -> None:
    (tmp_path / "notes.mp4").write_text("not a video")
    with pytest.raises(SourceError, match=r"stages.cam0.source: OpenCV cannot open file notes.mp4"):
        read_all(Capture(source="notes.mp4"), tmp_path)


def test_frames_are_decoded_straight_into_shared_memory(tmp_path: Path, monkeypatch) -> None:
    """OpenCV writes each frame into the pool slot itself: no copy on the way in or out."""
    import stages.capture.opencv_stream as opencv_stream
    from pipeline.transport.framepool import FramePool

    copies = []
    as_bgr = opencv_stream.as_bgr
    monkeypatch.setattr(opencv_stream, "as_bgr", lambda img: copies.append(1) or as_bgr(img))
    write_clip(tmp_path / "clip.mp4", 5)
    pool = FramePool(f"rkpipe-capturetest-{os.getpid()}", 8)
    cap = Capture(source="clip.mp4")
    cap.stream_id = "cam0"
    runtime = InlineRuntime()
    runtime.alloc = pool.alloc  # type: ignore[method-assign]  # frames go to shared memory
    cap.setup(Context(stage="cam0", graph_dir=tmp_path, runtime=runtime))
    msgs = []
    try:
        msgs = [cap.read() for _ in range(5)]
        assert all(pool.owns(m.frame) for m in msgs) and not copies
        assert [read_stamp(m.frame)["index"] for m in msgs] == list(range(5))
    finally:
        cap.close()
        del msgs
        pool.close()


def test_realtime_plays_a_file_at_its_own_frame_rate(tmp_path: Path) -> None:
    write_clip(tmp_path / "clip.mp4", 20, fps=25)
    t0 = time.monotonic()
    msgs, _ = read_all(Capture(source="clip.mp4", realtime=True), tmp_path)
    took = time.monotonic() - t0
    span = msgs[-1].t_capture - msgs[0].t_capture
    assert len(msgs) == 20
    assert 19 / 25 * 0.9 <= span <= 19 / 25 * 3 and took >= 19 / 25 * 0.9
    t0 = time.monotonic()
    read_all(Capture(source="clip.mp4"), tmp_path)
    assert time.monotonic() - t0 < 19 / 25 / 2  # by default as fast as it decodes


def test_resize_scales_frames_at_capture(tmp_path: Path) -> None:
    write_clip(tmp_path / "clip.mp4", 10)
    msgs, _ = read_all(Capture(source="clip.mp4", resize=[80, 60]), tmp_path)
    assert [m.frame.shape for m in msgs] == [(60, 80, 3)] * 10
    assert [read_stamp(m.frame)["index"] for m in msgs] == list(range(10))


def test_loop_replays_a_file_with_seq_still_rising(tmp_path: Path) -> None:
    write_clip(tmp_path / "clip.mp4", 10)
    msgs, _ = read_all(Capture(source="clip.mp4", loop=True), tmp_path, limit=25)
    assert [m.seq for m in msgs] == list(range(25))
    assert [read_stamp(m.frame)["index"] for m in msgs] == [i % 10 for i in range(25)]


@pytest.mark.parametrize(
    ("loop", "resume_seq", "indices"),
    [(False, 41, [42, 43, 44, 45, 46]), (False, 47, [48, 49]), (True, 47, [48, 49, 0, 1, 2])],
)
def test_a_restarted_capture_resumes_after_the_last_frame_sent(
    tmp_path: Path, loop: bool, resume_seq: int, indices: list[int]
) -> None:
    write_clip(tmp_path / "clip.mp4", 50)
    cap = Capture(source="clip.mp4", loop=loop)
    msgs, _ = read_all(cap, tmp_path, limit=5, resume_seq=resume_seq)
    assert [m.seq for m in msgs] == list(range(resume_seq + 1, resume_seq + 1 + len(indices)))
    assert [read_stamp(m.frame)["index"] for m in msgs] == indices


def test_corrupt_frames_are_skipped_and_counted(tmp_path: Path) -> None:
    data = bytearray(write_clip(tmp_path / "clip.mp4", 100).read_bytes())
    mid = len(data) // 2
    data[mid : mid + 2000] = np.random.default_rng(0).integers(0, 256, 2000, np.uint8).tobytes()
    (tmp_path / "bad.mp4").write_bytes(data)
    msgs, drops = read_all(Capture(source="bad.mp4"), tmp_path)
    seqs = [m.seq for m in msgs]
    assert drops["corrupt"] > 0
    assert seqs == sorted(set(seqs)) and set(seqs) <= set(range(100))
    assert len(msgs) + drops["corrupt"] == 100  # every frame delivered or counted
    assert seqs[-1] == 99  # decoding went on after the damage


# -- synthetic scenes and GStreamer ----------------------------------------------------------
def test_scene_uri_renders_the_scene_generator_frames(tmp_path: Path) -> None:
    uri = "synthetic:street?seed=3&preset=hard&width=320&height=180"
    msgs, _ = read_all(Capture(source=uri), tmp_path, limit=3, resume_seq=9)
    scene = Scene("hard", seed=3, width=320, height=180)
    assert [m.seq for m in msgs] == [10, 11, 12]
    for m in msgs:
        assert np.array_equal(m.frame, scene.render(m.seq))
    msgs, _ = read_all(Capture(source=uri, resize=[160, 90]), tmp_path, limit=2)
    assert msgs[1].frame.shape == (90, 160, 3)
    assert not Capture(source=uri).live and Capture(source=uri, live=True).live


def test_scene_too_small_is_a_clear_setup_error(tmp_path: Path) -> None:
    with pytest.raises(
        SourceError, match=r"^stages.cam0.source: scene size must be at least 64x64"
    ):
        read_all(Capture(source="synthetic:street?width=32"), tmp_path)


@pytest.mark.skipif(has_gstreamer(), reason="this OpenCV has GStreamer: the error cannot occur")
def test_gstreamer_pipeline_without_gstreamer_says_how_to_get_it(tmp_path: Path) -> None:
    cap = Capture(source="videotestsrc ! videoconvert ! appsink")
    assert cap.live
    with pytest.raises(StageSetupError) as err:
        read_all(cap, tmp_path)
    text = str(err.value)
    assert "stages.cam0.source is a GStreamer pipeline" in text
    assert "without GStreamer" in text and "python3-opencv" in text and "mppvideodec" in text


# -- options and source kinds ---------------------------------------------------------------
@pytest.mark.parametrize(
    ("source", "kind", "live"),
    [
        ("videos/a.mp4", Kind.FILE, False),
        ("file:///data/a.mp4", Kind.FILE, False),
        ("rtsp://user:pw@cam/1", Kind.NETWORK, True),
        ("rtsp://user:p!w@cam/1", Kind.NETWORK, True),
        ("https://host/live.m3u8", Kind.NETWORK, True),
        ("/dev/video0", Kind.DEVICE, True),
        (0, Kind.DEVICE, True),
        ("gst:v4l2src ! appsink", Kind.GSTREAMER, True),
        ("rtspsrc location=rtsp://cam/1 ! rtph264depay ! appsink", Kind.GSTREAMER, True),
        ("synthetic:street?seed=1", Kind.SCENE, False),
    ],
)
def test_source_kinds_and_their_live_default(source: str | int, kind: Kind, live: bool) -> None:
    assert parse_source(source).kind is kind
    assert Capture(source=source).live is live
    assert Capture(source=source, live=not live).live is not live


@pytest.mark.parametrize(
    ("options", "key", "words"),
    [
        ({"source": "ftp://x/a.mp4"}, "source", "unknown stream scheme 'ftp'"),
        ({"source": "synthetic:street?preset=odd"}, "source", "unknown preset"),
        ({"source": "a.mp4", "width": 640}, "width", "camera hint"),
        ({"source": "rtsp://cam/1", "loop": True}, "loop", "replays a video file"),
        ({"source": "a.mp4", "resize": [4, 4]}, "resize", "between"),
        ({"source": "a.mp4", "fsp": 3}, "fsp", "Extra inputs"),
        ({"source": "a.mp4", "decoder": "ffmpeg"}, "decoder", "reads network streams"),
        ({"source": "rtsp://cam/1", "hwaccel": "rkmpp"}, "hwaccel", 'set decoder = "ffmpeg"'),
        (
            {"source": "rtsp://cam/1", "decoder": "gstreamer", "hwaccel": "cuda"},
            "hwaccel",
            'is for decoder = "ffmpeg"',
        ),
        ({"source": "a.mp4", "fps": 5}, "fps", "camera hint"),
    ],
)
def test_bad_options_are_rejected_before_anything_runs(options: dict, key: str, words: str) -> None:
    with pytest.raises(ValidationError) as err:
        Capture.Config(**options)
    (e,) = err.value.errors()
    assert e["loc"] == (key,) and words in e["msg"]


@pytest.mark.parametrize(
    ("output", "line"),
    [  # what ffmpeg 5.1 and gst-launch 1.22 print (captured from real runs)
        (
            "[rtsp @ 0x5] method DESCRIBE failed: 401 Unauthorized\n"
            "rtsp://u:s3cret@127.0.0.1:8612/cam: Server returned 401 Unauthorized",
            "401 Unauthorized: wrong user or password",
        ),
        (
            "ERROR: from element /GstPipeline:pipeline0/GstRTSPSrc:rtspsrc0: Not found\n"
            "Not Found (404)",
            "404 Not Found: no such stream path on the camera",
        ),
        (
            "[tcp @ 0x5] Connection to tcp://127.0.0.1:8699?timeout=0 failed: Connection refused",
            "connection refused: camera off or wrong port",
        ),
        (
            "[tcp @ 0x5] Failed to resolve hostname nosuchhost.invalid: Name or service not known",
            "host not found: check the camera's address",
        ),
        (
            "no suitable plugins found:\nMissing decoder: H.265 (Main Profile) (video/x-h265)",
            "codec not supported: no decoder for H.265 (Main Profile)",
        ),
        (
            "Device creation failed: -1.\nDevice setup failed for decoder on input stream #0:0",
            "hardware decoding is not available here (the hwaccel's device failed to open)",
        ),
        ("rtsp://admin:s3cret@cam/1: weird failure", "rtsp://admin:***@cam/1: weird failure"),
        ("Stream #0:0: Video: h264", ""),
    ],
)
def test_decoder_output_becomes_one_readable_line(output: str, line: str) -> None:
    assert explain(output.splitlines()) == line


def test_decoder_frame_sizes_are_read_from_their_output() -> None:
    ff = "  Stream #0:0: Video: rawvideo (BGR[24] / 0x18524742), bgr24(pc, gbr), 640x360 [SAR 1:1"
    assert ffmpeg_size(ff) == (640, 360)
    assert ffmpeg_size("  Stream #0:0: Video: h264 (High), yuv420p(progressive), 1920x1080") is None
    gst = "/GstPipeline:pipeline0/GstFdSink:fdsink0.GstPad:sink: caps = video/x-raw, "
    assert gst_size(gst + "width=(int)320, height=(int)180, format=(string)BGR") == (320, 180)
    assert (
        gst_size("/GstPipeline:pipeline0/GstRTSPSrc:src: caps = video/x-raw, width=(int)3") is None
    )


def test_rtsp_password_is_masked_in_what_is_logged() -> None:
    text = parse_source("rtsp://admin:s3cret@10.0.0.9/stream1").describe()
    assert "s3cret" not in text and "admin:***@10.0.0.9" in text


def test_backoff_doubles_to_its_cap_with_jitter() -> None:
    b = Backoff(0.5, 4.0, jitter=0.1)
    delays = [b.next_delay() for _ in range(6)]
    for got, base in zip(delays, [0.5, 1, 2, 4, 4, 4], strict=True):
        assert base * 0.9 <= got <= base * 1.1
    b.reset()
    assert b.next_delay() <= 0.55


# -- live network streams ------------------------------------------------------------------
class MjpegServer:
    """A live MJPEG-over-HTTP camera (multipart/x-mixed-replace) that can be cut and brought
    back on the same port; every frame carries its index and this server's ``level``."""

    def __init__(self, port: int = 0, level: int = 80, fps: float = 50.0) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with outer.lock:
                    outer.viewers += 1
                self.send_response(200)
                self.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
                self.end_headers()
                i = 0
                try:
                    while not outer.stopped:
                        jpeg = cv2.imencode(".jpg", stamp(i, level))[1].tobytes()
                        head = f"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpeg)}"
                        self.wfile.write(head.encode() + b"\r\n\r\n" + jpeg + b"\r\n")
                        i += 1
                        time.sleep(1 / fps)
                except OSError:
                    pass
                finally:
                    with contextlib.suppress(OSError):  # the viewer sees the camera go
                        self.connection.shutdown(socket.SHUT_RDWR)
                    with outer.lock:
                        outer.viewers -= 1

            def log_message(self, *args: object) -> None:
                pass

        self.stopped = False
        self.viewers = 0  # connections being served
        self.lock = threading.Lock()
        self.httpd = ThreadingHTTPServer(("127.0.0.1", port), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/stream.mjpg"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        """Cut every viewer and stop listening, like a camera that lost power."""
        self.stopped = True
        self.httpd.shutdown()
        self.httpd.server_close()
        # the handlers see the flag and close their connections
        assert poll_for(lambda: self.viewers == 0, 10), f"{self.viewers} viewers still served"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("decoder", ["auto", "opencv"])
def test_live_source_gives_up_after_max_reconnects(tmp_path: Path, caplog, decoder: str) -> None:
    """Each decoder says why in the same words; the stage logs the outage at info (the
    supervisor tells a person) and its end as an error."""
    caplog.set_level(logging.INFO)
    url = f"http://127.0.0.1:{free_port()}/stream.mjpg"
    cap = Capture(source=url, decoder=decoder, backoff_s=0.05, max_backoff_s=0.1, max_reconnects=2)
    t0 = time.monotonic()
    msgs, drops = read_all(cap, tmp_path)
    assert msgs == [] and drops["reconnect"] == 1 and time.monotonic() - t0 < 5
    outage = [r for r in caplog.records if "reconnecting (backoff" in r.getMessage()]
    assert len(outage) == 1 and outage[0].levelno == logging.INFO
    assert "connection refused: camera off or wrong port; reconnecting" in caplog.text
    assert "giving up after 2 failed reconnects; ending the stream" in caplog.text


@pytest.mark.integration
def test_an_opencv_stream_reports_its_health_as_the_camera_comes_and_goes(
    tmp_path: Path,
) -> None:
    """Down while the camera never answered, live once frames flow, reconnecting (with why)
    after it drops, live again when it is back."""
    port = free_port()
    runtime = InlineRuntime()
    url = f"http://127.0.0.1:{port}/stream.mjpg"
    cap = Capture(source=url, decoder="opencv", backoff_s=0.1, max_backoff_s=0.2)
    cap.stream_id = "cam0"
    cap.setup(Context(stage="cam0", graph_dir=tmp_path, runtime=runtime))
    servers = [MjpegServer(port, level=60)]
    try:
        assert all(cap.read() is not None for _ in range(5))
        servers[0].stop()
        threading.Timer(1.0, lambda: servers.append(MjpegServer(port, level=200))).start()
        levels = [read_stamp(cap.read().frame)["level"] for _ in range(10)]
    finally:
        cap.close()
        for server in servers:
            server.stop()
    assert levels[-1] > 150  # the second camera's frames
    states = [
        s for i, (s, _) in enumerate(runtime.health) if i == 0 or runtime.health[i - 1][0] != s
    ]
    assert states == ["connecting", "down", "live", "reconnecting", "live"], runtime.health
    assert runtime.health[1] == ("down", "connection refused: camera off or wrong port")


@pytest.mark.integration
@pytest.mark.slow
def test_live_stream_that_drops_is_reconnected_and_numbering_goes_on(
    tmp_path: Path, no_leaks
) -> None:
    """The camera is down at start, comes up, is cut mid-run and comes back on the same
    port: the capture waits and reconnects, the run says each change of the camera once
    (down with why, live, reconnecting, live again after the outage), and ends cleanly."""
    port = free_port()
    url = f"http://127.0.0.1:{port}/stream.mjpg"
    graph = capture_graph(
        tmp_path, source=url, decoder="opencv", backoff_s=0.2, max_backoff_s=0.4
    ).write(tmp_path)
    out = tmp_path / "out.jsonl"
    args = ["run", str(graph), "--frames", "80", "--stats-out", str(tmp_path / "stats.json")]
    run = start_rkpipe(*args)
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(run.stderr), daemon=True)
    reader.start()
    try:  # no camera yet: the stage keeps retrying
        assert poll_for(lambda: any("rkpipe: cam0 down: " in line for line in lines), 20)
        first = MjpegServer(port, level=60)
        assert poll_for(lambda: out.exists() and len(read_jsonl(out)) >= 20, 20)
        first.stop()
        time.sleep(1.0)
        second = MjpegServer(port, level=200)
        run.wait(timeout=30)
        second.stop()
    finally:
        run.kill()
    reader.join(timeout=5)
    err = "".join(lines)
    assert run.returncode == 0, err
    rows = read_jsonl(out)
    seqs = [r["seq"] for r in rows]
    assert len(rows) >= 60 and seqs == sorted(set(seqs))
    levels = [round(r["meta"]["level"] / 100) for r in rows]  # 60 -> 1, 200 -> 2
    cut = levels.index(2)
    assert set(levels[:cut]) == {1} and set(levels[cut:]) == {2}  # before, then after
    assert rows[cut]["t_capture"] - rows[cut - 1]["t_capture"] >= 0.9
    said = [ln for ln in err.splitlines() if re.match(r"rkpipe: cam0 (down|live|reconn)", ln)]
    assert said[0] == "rkpipe: cam0 down: connection refused: camera off or wrong port; retrying"
    assert re.fullmatch(r"rkpipe: cam0 live after [\d.]+ s down", said[1]), said
    assert said[2] == (
        "rkpipe: cam0 reconnecting: no frame (stream closed, timed out or undecodable)"
    )
    again = r"rkpipe: cam0 live again after [\d.]+ s( \(\d+ more reports? not shown\))?"
    assert re.fullmatch(again, said[3]) and len(said) == 4, said
    assert f"[cam0] cam0: stream {url}: decoding with OpenCV" in err  # and nothing more
    assert not [ln for ln in err.splitlines() if ln.startswith("[cam0]") and "decoding" not in ln]
    assert "Traceback" not in err
    stats = json.loads((tmp_path / "stats.json").read_text())
    assert stats["stages"]["cam0"]["events"]["reconnect"] == 2  # an outage, not lost frames
    assert "reconnect" not in stats["stages"]["cam0"]["drops_by_reason"]
