"""Capture through decoder processes (ffmpeg, gst-launch) from real RTSP cameras: GStreamer's
RTSP server on localhost serving H.264 clips of the synthetic scene. Frames are checked by
content (which clip and which frame they show), cameras are cut and brought back, and the
health a person sees is checked state by state."""

from __future__ import annotations

import os
import signal
import socket
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from pipeline.context import Context, InlineRuntime
from pipeline.doctor import DoctorContext
from pipeline.errors import StageSetupError
from pipeline.transport.framepool import FramePool
from stages.capture import Capture
from stages.capture.config import CaptureConfig
from stages.capture.decoder_ffmpeg import FfmpegOptions, ffmpeg_argv
from stages.capture.decoders import Choice, choose_decoder
from stages.capture.doctor import capture_checks
from stages.capture.opencv_stream import FFMPEG_HINT
from stages.capture.opener import tcp_answer
from stages.capture.probe import stream_status, why_not_open
from support.cameras import RtspCamera, clip_frames, h264_clip, match_frame, rtsp_ready
from support.graph import Graph
from support.rkpipe import child_pid, poll_for, read_jsonl, start_rkpipe

pytestmark = pytest.mark.skipif(bool(rtsp_ready()), reason=rtsp_ready() or "ready")

FPS = 10
MAX_ERR = 12.0  # mean grey-level difference between a captured frame and its clip frame
DECODERS = ["ffmpeg", "gstreamer"]


@pytest.fixture(scope="module")
def clips(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two 30 s clips of different streets (seeds 1 and 2), 320x180 at 10 fps."""
    folder = tmp_path_factory.mktemp("clips")
    return [h264_clip(folder / f"street{s}.mp4", s, 30 * FPS, (320, 180), FPS) for s in (1, 2)]


@pytest.fixture(scope="module")
def refs(clips: list[Path]) -> list[np.ndarray]:
    return [clip_frames(c) for c in clips]


@pytest.fixture
def camera(clips: list[Path]) -> Iterator[RtspCamera]:
    cam = RtspCamera(clips[0])
    yield cam
    cam.kill()


def start_capture(url: str, runtime: InlineRuntime | None = None, **options) -> Capture:
    cap = Capture(source=url, **options)
    cap.stream_id = "cam0"
    cap.setup(Context(stage="cam0", runtime=runtime or InlineRuntime()))
    return cap


def states(runtime: InlineRuntime) -> list[str]:
    """The health states reported, each change once."""
    out: list[str] = []
    for state, _ in runtime.health:
        if not out or out[-1] != state:
            out.append(state)
    return out


def read_n(cap: Capture, n: int) -> list:
    msgs = [cap.read() for _ in range(n)]
    assert all(m is not None for m in msgs)
    return msgs


def assert_shows_clip(msgs: list, ref: np.ndarray, first_below: int | None = None) -> list[int]:
    """Every frame is a frame of ``ref`` (in order); returns the clip indices."""
    matches = [match_frame(m.frame, ref) for m in msgs]
    assert max(err for _, err in matches) < MAX_ERR, matches
    indices = [i for i, _ in matches]
    assert indices == sorted(indices), indices
    if first_below is not None:
        assert indices[0] < first_below, indices
    return indices


# -- reading ---------------------------------------------------------------------------------
@pytest.mark.integration
@pytest.mark.parametrize("decoder", DECODERS)
def test_decoder_reads_camera_frames_into_shared_memory(
    decoder: str, camera: RtspCamera, refs: list[np.ndarray]
) -> None:
    """Each frame is read by ``readinto`` straight into a pool slot, at the resize size, and
    shows the clip the camera serves, frame after frame."""
    pool = FramePool(f"rkpipe-decodertest-{os.getpid()}", 16)
    runtime = InlineRuntime()
    runtime.alloc = pool.alloc  # type: ignore[method-assign]
    cap = start_capture(camera.url, runtime, decoder=decoder, resize=[160, 90])
    msgs: list = []
    try:
        msgs = read_n(cap, 12)
        assert all(pool.owns(m.frame) and m.frame.shape == (90, 160, 3) for m in msgs)
        assert_shows_clip(msgs, refs[0])
        assert all(match_frame(m.frame, refs[1])[1] > 2 * MAX_ERR for m in msgs[:3])
        assert states(runtime) == ["connecting", "live"]
    finally:
        cap.close()
        del msgs
        pool.close()


@pytest.mark.integration
@pytest.mark.parametrize("decoder", [*DECODERS, "opencv"])
def test_fps_caps_the_rate_frames_are_kept_at(
    decoder: str, camera: RtspCamera, refs: list[np.ndarray]
) -> None:
    cap = start_capture(camera.url, decoder=decoder, fps=FPS / 2)
    try:
        msgs = read_n(cap, 10)
    finally:
        cap.close()
    span = msgs[-1].t_capture - msgs[0].t_capture
    assert span >= 9 / (FPS / 2) * 0.8  # not faster than the cap
    steps = np.diff(assert_shows_clip(msgs, refs[0]))
    assert np.median(steps) == 2  # every other frame of the clip


@pytest.mark.integration
@pytest.mark.parametrize("decoder", DECODERS)
def test_a_camera_that_drops_is_reconnected_and_reported(
    decoder: str, camera: RtspCamera, refs: list[np.ndarray]
) -> None:
    """Cut the camera: the capture reports reconnecting (with why), retries with backoff
    while the port refuses, and is live again with the new session's frames."""
    runtime = InlineRuntime()
    options = {"backoff_s": 0.2, "max_backoff_s": 0.4, "read_timeout_s": 3}
    cap = start_capture(camera.url, runtime, decoder=decoder, resize=[160, 90], **options)
    try:
        before = read_n(cap, 8)
        camera.kill()
        threading.Timer(1.5, camera.start).start()  # back on the same port
        after = read_n(cap, 12)  # blocks through the outage
    finally:
        cap.close()
    assert_shows_clip(before, refs[0])
    tail = assert_shows_clip(after[-8:], refs[0], first_below=40)  # the clip from its start
    assert tail[-1] > tail[0]
    assert states(runtime) == ["connecting", "live", "reconnecting", "live"]
    details = [d for s, d in runtime.health if s == "reconnecting"]
    assert details[0] == "the camera closed the stream", details
    assert "connection refused: camera off or wrong port" in details[1:], details
    assert runtime.events["reconnect"] == 1


# -- what a person sees when it fails --------------------------------------------------------
@pytest.fixture(scope="module")
def locked_camera(clips: list[Path]) -> Iterator[RtspCamera]:
    cam = RtspCamera(clips[0], user="viewer", password="s3cret")
    yield cam
    cam.kill()


@pytest.mark.integration
@pytest.mark.parametrize("decoder", [*DECODERS, "opencv"])
@pytest.mark.parametrize(
    ("url", "detail"),
    [
        ("rtsp://viewer:wrong@127.0.0.1:{port}/cam", "401 Unauthorized: wrong user or password"),
        ("rtsp://viewer:s3cret@127.0.0.1:{port}/nope", "404 Not Found: no such stream path"),
        ("rtsp://viewer:s3cret@127.0.0.1:{closed}/cam", "connection refused: camera off"),
    ],
)
def test_a_failing_camera_is_down_with_one_readable_line(
    decoder: str, url: str, detail: str, locked_camera: RtspCamera, caplog
) -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))  # bound, never listening: connections are refused
        url = url.format(port=locked_camera.port, closed=closed.getsockname()[1])
        runtime = InlineRuntime()
        cap = start_capture(url, runtime, decoder=decoder, max_reconnects=0)
        try:
            assert cap.read() is None  # no retries allowed: the stream ends
        finally:
            cap.close()
    assert runtime.health[0] == ("connecting", "")
    assert runtime.health[1][0] == "down" and runtime.health[1][1].startswith(detail)
    assert runtime.health[-1][0] == "down" and "gave up after 0 tries" in runtime.health[-1][1]
    assert "s3cret" not in caplog.text and "viewer:***@" in caplog.text


@pytest.fixture(scope="module")
def digest_camera(clips: list[Path]) -> Iterator[RtspCamera]:
    cam = RtspCamera(clips[0], user="viewer", password="s3cret", digest=True)
    yield cam
    cam.kill()


@pytest.mark.integration
@pytest.mark.parametrize("digest", [False, True])
def test_the_camera_is_asked_why_a_stream_does_not_open(
    digest: bool, locked_camera: RtspCamera, digest_camera: RtspCamera
) -> None:
    """What the OpenCV path and ``rkpipe doctor`` say comes from the camera itself: with
    the URL's user and password (Basic or Digest, as the camera asks), nothing is wrong."""
    cam = digest_camera if digest else locked_camera
    base = f"127.0.0.1:{cam.port}"
    assert stream_status(f"rtsp://viewer:s3cret@{base}/cam") == 200
    assert why_not_open(f"rtsp://viewer:s3cret@{base}/cam") == ""
    assert why_not_open(f"rtsp://viewer:wrong@{base}/cam") == (
        "401 Unauthorized: wrong user or password"
    )
    assert why_not_open(f"rtsp://{base}/cam").startswith("401 Unauthorized: the camera wants a")
    assert why_not_open(f"rtsp://viewer:s3cret@{base}/nope") == (
        "404 Not Found: no such stream path on the camera"
    )


@pytest.mark.integration
def test_doctor_names_what_is_wrong_with_a_camera_url(locked_camera: RtspCamera) -> None:
    base = f"rtsp://viewer:s3cret@127.0.0.1:{locked_camera.port}"
    ok = {c.name: c for c in capture_checks(CaptureConfig(source=f"{base}/cam"), DoctorContext())}
    assert ok["camera"].status == "ok"
    bad = capture_checks(CaptureConfig(source=f"{base}/nope"), DoctorContext())
    camera = next(c for c in bad if c.name == "camera")
    assert camera.status == "fail" and camera.detail.endswith(
        "404 Not Found: no such stream path on the camera"
    )
    assert "viewer:***@" in camera.detail and "stream's path" in camera.fix


class _WebPage(BaseHTTPRequestHandler):
    def do_GET(self) -> None:  # a camera's web page, not its stream
        body = b"<html>camera settings</html>"
        self.send_response(200)
        self.send_header("Content-Type", "text/html")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


@pytest.mark.integration
def test_an_opencv_stream_the_camera_serves_but_opencv_cannot_open_says_so() -> None:
    """The URL answers 200 (a web page, not a video): not a network problem, and said so."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), _WebPage)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/index.html"
    try:
        assert why_not_open(url) == ""
        runtime = InlineRuntime()
        cap = start_capture(url, runtime, decoder="opencv", max_reconnects=0)
        cap.close()
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert runtime.health[1] == (
        "down", f"the camera answers, but OpenCV cannot open the stream{FFMPEG_HINT}"
    )  # fmt: skip


def test_a_closed_port_and_an_unknown_host_are_named_without_a_camera() -> None:
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        for scheme in ("rtsp", "http"):
            assert why_not_open(f"{scheme}://127.0.0.1:{port}/cam") == (
                "connection refused: camera off or wrong port"
            )
    assert why_not_open("udp://127.0.0.1:5000") == ""  # not over TCP: nothing to ask


@pytest.mark.integration
def test_a_camera_that_never_answers_is_down_within_a_second_while_retrying(
    tmp_path: Path,
) -> None:
    """A host that takes no connection (a listener whose queue is full: SYNs are dropped)
    shows as down long before the open times out, and the capture keeps trying."""
    with socket.socket() as full, socket.socket() as first:
        full.bind(("127.0.0.1", 0))
        full.listen(0)
        first.connect(full.getsockname())  # fills the queue; nothing accepts it
        url = f"rtsp://127.0.0.1:{full.getsockname()[1]}/cam"
        assert tcp_answer(url, timeout=0.5).startswith("no answer")
        runtime = InlineRuntime()
        t0 = time.monotonic()
        cap = Capture(source=url, decoder="ffmpeg", open_timeout_s=4, max_reconnects=0)
        cap.stream_id = "cam0"
        setup = threading.Thread(
            target=cap.setup, args=(Context(stage="cam0", runtime=runtime),), daemon=True
        )
        setup.start()
        try:
            assert poll_for(lambda: len(runtime.health) >= 2, 20)
            took = time.monotonic() - t0
        finally:
            setup.join(timeout=30)  # the open gives up after open_timeout_s
            cap.close()
    state, detail = runtime.health[1]  # the watchdog's finding, not the open's time-out
    assert state == "down" and detail.startswith("no answer from 127.0.0.1"), runtime.health
    assert took < 4
    assert runtime.health[-1] == ("down", "timed out opening the stream")  # then the open gave up


@pytest.mark.integration
def test_codec_not_supported_is_named(camera: RtspCamera, monkeypatch: pytest.MonkeyPatch) -> None:
    """GStreamer without an H.264 decoder (ranked out) says so, not "internal data flow"."""
    monkeypatch.setenv("GST_PLUGIN_FEATURE_RANK", "avdec_h264:NONE,openh264dec:NONE")
    runtime = InlineRuntime()
    cap = start_capture(camera.url, runtime, decoder="gstreamer", max_reconnects=0)
    cap.close()
    assert runtime.health[1] == ("down", "codec not supported: no decoder for H.264 (High Profile)")


@pytest.mark.integration
@pytest.mark.skipif(Path("/dev/nvidia0").exists(), reason="this machine has an NVIDIA GPU")
def test_a_hardware_decoder_the_machine_lacks_is_named(camera: RtspCamera) -> None:
    """This ffmpeg is built with cuda but the machine has no GPU: the device fails at run
    time; rkmpp is not in this ffmpeg at all: that is a setup error before anything runs."""
    runtime = InlineRuntime()
    cap = start_capture(camera.url, runtime, decoder="ffmpeg", hwaccel="cuda", max_reconnects=0)
    cap.close()
    assert runtime.health[1][0] == "down"
    assert runtime.health[1][1].startswith("hardware decoding is not available here")
    with pytest.raises(StageSetupError, match=r"decoder: this ffmpeg .* has no rkmpp decoding"):
        start_capture(camera.url, decoder="ffmpeg", hwaccel="rkmpp")


# -- choosing a decoder ----------------------------------------------------------------------
def test_auto_prefers_the_rk3588_ffmpeg(tmp_path: Path) -> None:
    """The board's ffmpeg (ffmpeg-rockchip) cannot run on x86, so a stand-in script answers
    ``-hwaccels`` and ``-filters`` as it does; the choice and the command built for it are
    what is checked here (the board test runs the real one)."""
    fake = tmp_path / "ffmpeg"
    fake.write_text(
        '#!/bin/sh\ncase "$2" in\n'
        '  -hwaccels) printf "Hardware acceleration methods:\\nrkmpp\\ndrm\\n" ;;\n'
        '  -filters) printf " ... scale_rkrga V->V Rockchip RGA\\n" ;;\nesac\n'
    )
    fake.chmod(0o755)
    assert choose_decoder("auto", "auto", str(fake)) == Choice(
        "ffmpeg", "rkmpp", "auto: ffmpeg has the RK3588 decoder"
    )
    argv = ffmpeg_argv("rtsp://cam/1", FfmpegOptions(str(fake), "rkmpp", "tcp", (640, 360), 15), 7)
    text = " ".join(argv)
    assert "-hwaccel rkmpp -hwaccel_output_format drm_prime -i rtsp://cam/1" in text
    assert "-vf fps=15,scale_rkrga=w=640:h=360:format=bgr24,hwdownload,format=bgr24" in text
    assert text.endswith("-pix_fmt bgr24 -f rawvideo pipe:7")


def test_auto_prefers_ffmpeg_then_gstreamer_then_opencv(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without a hardware decoder: ffmpeg where it is installed, else GStreamer, else
    OpenCV (a stand-in ffmpeg script and a GStreamer without elements stand for the others)."""
    fake = tmp_path / "ffmpeg"
    fake.write_text('#!/bin/sh\nprintf "Hardware acceleration methods:\\n"\n')
    fake.chmod(0o755)
    have: set[str] = {"decodebin"}
    monkeypatch.setattr("stages.capture.decoders.gst_has", lambda element: element in have)
    assert choose_decoder("auto", "auto", str(fake)) == Choice(
        "ffmpeg", "none", "auto: no hardware decoder; ffmpeg is installed"
    )
    missing = str(tmp_path / "no-ffmpeg-here")
    assert choose_decoder("auto", "auto", missing) == Choice(
        "gstreamer", "none", "auto: no hardware decoder or ffmpeg; GStreamer is"
    )
    have.add("mppvideodec")  # the board's GStreamer comes before a software ffmpeg
    assert choose_decoder("auto", "auto", str(fake)).hwaccel == "rkmpp"
    have.clear()
    assert choose_decoder("auto", "auto", missing) == Choice(
        "opencv", "none", "auto: neither ffmpeg nor GStreamer is installed"
    )
    with pytest.raises(StageSetupError, match=r"ffmpeg not found .* apt install ffmpeg"):
        choose_decoder("ffmpeg", "auto", missing)


def test_auto_on_this_machine_is_a_decoder_process() -> None:
    """Where ffmpeg and GStreamer are installed (as here), auto never picks OpenCV."""
    assert choose_decoder("auto", "auto", "ffmpeg").decoder == "ffmpeg"


# -- a run with two cameras ------------------------------------------------------------------
def camera_graph(tmp_path: Path, cams: list[RtspCamera], clips: list[Path]) -> Path:
    graph = Graph("cameras")
    for i, cam in enumerate(cams):
        graph.source(
            f"cam{i}",
            uses="capture",
            source=cam.url,
            decoder="ffmpeg",
            resize=[160, 90],
            backoff_s=0.2,
            max_backoff_s=0.5,
            read_timeout_s=3,
        )
    return (
        graph.stage(
            "match",
            uses="rk_test_cameras:ClipMatch",
            inputs=[f"cam{i}" for i in range(len(cams))],
            clips={f"cam{i}": c for i, c in enumerate(clips)},
        )
        .sink("out", uses="jsonl", inputs=["match"], path=tmp_path / "out.jsonl")
        .write(tmp_path)
    )


def rows_of(path: Path, stream: str) -> list[dict]:
    return [r for r in read_jsonl(path) if r["stream"] == stream] if path.exists() else []


@pytest.mark.integration
@pytest.mark.slow
def test_two_cameras_one_cut_and_back_the_other_unaffected(
    tmp_path: Path, clips: list[Path], no_leaks
) -> None:
    cams = [RtspCamera(clips[0]), RtspCamera(clips[1])]
    out = tmp_path / "out.jsonl"
    run = start_rkpipe("run", str(camera_graph(tmp_path, cams, clips)))
    try:
        assert poll_for(lambda: min(len(rows_of(out, s)) for s in ("cam0", "cam1")) >= 15, 60)
        cams[1].kill()
        t_cut = time.time()
        # cam1 is seen to be down by the rest of the run, while cam0 goes on
        assert poll_for(
            lambda: any(
                r["meta"]["health"].get("cam1", {}).get("state") == "reconnecting"
                for r in rows_of(out, "cam0")
            ),
            30,
        )
        time.sleep(1.0)
        cams[1].start()
        t_back = time.time()
        assert poll_for(
            lambda: sum(r["t_capture"] > t_back for r in rows_of(out, "cam1")) >= 15, 60
        )
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    finally:
        run.kill()
        for cam in cams:
            cam.kill()
    assert run.returncode == 130, err
    assert "decoding with ffmpeg" in err and "Traceback" not in err
    rows = {s: rows_of(out, s) for s in ("cam0", "cam1")}
    for stream, got in rows.items():  # every frame shows its own camera's clip
        assert max(r["meta"]["clip_err"] for r in got) < MAX_ERR, stream
        assert all(r["meta"]["other_err"] > r["meta"]["clip_err"] + 5 for r in got), stream
        seqs = [r["seq"] for r in got]
        assert seqs == sorted(set(seqs))
    cam0 = rows["cam0"]
    during = [r for r in cam0 if t_cut < r["t_capture"] < t_back]
    assert len(during) >= 0.5 * FPS * (t_back - t_cut)  # cam0 kept its pace
    indices = [r["meta"]["clip_index"] for r in cam0]
    assert indices == sorted(indices) and indices[-1] - indices[0] >= len(cam0) - 3
    back = [r["meta"]["clip_index"] for r in rows["cam1"] if r["t_capture"] > t_back]
    assert back[0] < 40 and back == sorted(back)  # the camera's new session, from its start
    seen: list[str] = []
    for r in cam0:
        state = r["meta"]["health"].get("cam1", {}).get("state")
        if state and (not seen or seen[-1] != state):
            seen.append(state)
    assert seen[-3:] == ["live", "reconnecting", "live"], seen
    final = rows["cam1"][-1]["meta"]["health"]
    assert final["cam1"]["reconnects"] == 1 and final["cam0"]["reconnects"] == 0


@pytest.mark.integration
def test_a_killed_capture_stage_takes_its_decoder_with_it(
    tmp_path: Path, clips: list[Path], no_leaks
) -> None:
    """SIGKILL the stage: its ffmpeg dies too (PR_SET_PDEATHSIG), and the restarted stage
    starts a decoder of its own."""
    cam = RtspCamera(clips[0])
    out = tmp_path / "out.jsonl"
    run = start_rkpipe("run", str(camera_graph(tmp_path, [cam], clips[:1])))
    try:
        assert poll_for(lambda: len(rows_of(out, "cam0")) >= 5, 60)
        stage = child_pid(run, "cam0")
        assert stage is not None
        (decoder,) = decoder_pids(stage)
        os.kill(stage, signal.SIGKILL)
        assert poll_for(lambda: not Path(f"/proc/{decoder}").exists(), 10)
        assert poll_for(lambda: child_pid(run, "cam0") not in (None, stage), 30)
        new_stage = child_pid(run, "cam0")
        assert poll_for(lambda: len(decoder_pids(new_stage or 0)) == 1, 30)
        run.send_signal(signal.SIGINT)
        _, err = run.communicate(timeout=60)
    finally:
        run.kill()
        cam.kill()
    assert run.returncode == 130, err


def decoder_pids(parent: int) -> list[int]:
    """ffmpeg processes whose parent is ``parent``."""
    found = []
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            status = (d / "status").read_text()
            cmd = (d / "cmdline").read_bytes().split(b"\0")[0]
        except OSError:
            continue
        ppid = next(int(ln.split()[1]) for ln in status.splitlines() if ln.startswith("PPid:"))
        if ppid == parent and cmd.endswith(b"ffmpeg"):
            found.append(int(d.name))
    return found
