"""The video sink: real graphs write H.264 MP4 files that OpenCV reads back frame for frame,
with the overlays drawn on them, and that headless Chromium plays; gaps can be filled to keep
real time; bad paths and codecs fail early; without PyAV it falls back to mp4v and says so."""

from __future__ import annotations

import re
import sys
from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from pipeline.errors import StageSetupError
from pipeline.stage import Context
from stages.sinks.video import VideoSink
from stages.synthetic import Scene
from support.browser import chromium_path, dump_dom
from support.graph import Graph
from support.rkpipe import read_jsonl, run_rkpipe

BOX = (60, 150, 200, 250)  # the fixed box rk_test_overlay adds (track 999)


def read_video(path: Path) -> tuple[int, list[np.ndarray]]:
    """The frame count the container declares, and every frame decoded."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"cannot open {path}"
    declared = int(cap.get(cv2.CAP_PROP_FRAME_COUNT))
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    cap.release()
    return declared, frames


def box_border(img: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """The pixels on the lower and right edges of ``box`` (the top edge carries a label)."""
    x1, y1, x2, y2 = box
    bottom = img[y2 - 1 : y2 + 2, x1:x2].reshape(-1, 3)
    right = img[y1 + 20 : y2, x2 - 1 : x2 + 2].reshape(-1, 3)
    return np.concatenate([bottom, right])


@pytest.mark.integration
def test_two_streams_give_two_annotated_videos_with_every_frame(tmp_path: Path, no_leaks) -> None:
    graph = (
        Graph()
        .source("cam0", uses="synthetic", scene="easy", frames=40)
        .source("cam1", uses="synthetic", scene="easy", seed=1, frames=25)
        .stage("overlay", uses="rk_test_overlay:Overlay", inputs=["cam0", "cam1"], box=list(BOX))
        .sink("video", uses="video", inputs=["overlay"], path=tmp_path / "annotated/{stream}.mp4")
        .sink(
            "raw",
            uses="video",
            inputs=["overlay"],
            path=tmp_path / "raw/{stream}.mp4",
            annotate=False,
        )
        .write(tmp_path)
    )
    res = run_rkpipe("run", str(graph))
    assert res.returncode == 0, res.stderr
    for stream, n in (("cam0", 40), ("cam1", 25)):
        declared, annotated = read_video(tmp_path / "annotated" / f"{stream}.mp4")
        assert declared == n and len(annotated) == n
        declared, raw = read_video(tmp_path / "raw" / f"{stream}.mp4")
        assert declared == n and len(raw) == n
        assert annotated[0].shape == (360, 640, 3)
    scene = Scene("easy", seed=0)
    _, annotated = read_video(tmp_path / "annotated" / "cam0.mp4")
    _, raw = read_video(tmp_path / "raw" / "cam0.mp4")
    for i in (0, 17, 39):
        truth = scene.render(i).astype(np.int16)
        # the raw video is the synthetic frame, up to compression
        assert np.abs(raw[i].astype(np.int16) - truth).mean() < 6
        # the annotated one has the box drawn over it, and the counting line across it
        drawn = np.abs(box_border(annotated[i], BOX).astype(np.int16) - box_border(truth, BOX))
        assert drawn.mean() > 40
        line_y = int(360 * 0.75)
        across = np.abs(annotated[i][line_y, 250:600].astype(np.int16) - truth[line_y, 250:600])
        assert np.median(across) > 40


@pytest.mark.integration
def test_fill_gaps_repeats_the_last_frame_over_dropped_ones(tmp_path: Path, no_leaks) -> None:
    dropped = [5, 6, 7, 20]
    graph = (
        Graph()
        .source("cam0", uses="synthetic", scene="easy", width=320, height=180, frames=30)
        .stage(
            "overlay",
            uses="rk_test_overlay:Overlay",
            inputs=["cam0"],
            width=320,
            height=180,
            drop=dropped,
        )
        .sink(
            "filled", uses="video", inputs=["overlay"], path=tmp_path / "filled.mp4", fill_gaps=True
        )
        .sink("plain", uses="video", inputs=["overlay"], path=tmp_path / "plain.mp4")
        .write(tmp_path)
    )
    res = run_rkpipe("run", str(graph))
    assert res.returncode == 0, res.stderr
    declared, filled = read_video(tmp_path / "filled.mp4")
    assert declared == len(filled) == 30  # real time kept: one frame per seq
    declared, plain = read_video(tmp_path / "plain.mp4")
    assert declared == len(plain) == 30 - len(dropped)
    for i in (5, 6, 7):  # the frame of seq 4 stands in for 5, 6 and 7
        assert np.abs(filled[i].astype(np.int16) - filled[4]).mean() < 2
    assert np.abs(filled[8].astype(np.int16) - filled[4]).mean() > 2  # then it moves on


def test_a_folder_that_cannot_be_written_fails_at_setup(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    sink = VideoSink(path=f"{blocker}/{{stream}}/video.mp4")
    sink.setup(Context(stage="video"))  # a folder named per stream is checked per stream
    sink = VideoSink(path=f"{blocker}/out/{{stream}}.mp4")
    with pytest.raises(StageSetupError, match=r"stages\.video\.path: cannot write to folder"):
        sink.setup(Context(stage="video"))


@pytest.mark.parametrize(("path", "codec"), [("v.mp4", "ZZZZ"), ("v.notavideo", "h264")])
def test_a_codec_or_container_ffmpeg_lacks_fails_at_setup(tmp_path, path, codec) -> None:
    sink = VideoSink(path=str(tmp_path / path), codec=codec)
    with pytest.raises(StageSetupError, match=r"cannot open a video writer.*use a \.mp4"):
        sink.setup(Context(stage="video"))
    assert list(tmp_path.iterdir()) == []  # the probe file is cleaned up


def write_frames(path: Path, n: int, size: tuple[int, int], **options) -> VideoSink:
    from pipeline.messages import Message

    sink = VideoSink(path=str(path), annotate=False, **options)
    sink.setup(Context(stage="video"))
    for i in range(n):
        img = np.full((size[1], size[0], 3), (i * 5) % 256, np.uint8)
        sink.process(Message("cam0", i, i - 1, arrays={"frame": img}))
    sink.close()
    return sink


def test_recordings_are_h264_with_the_index_first_and_a_keyframe_a_second(tmp_path) -> None:
    path = tmp_path / "v.mp4"
    write_frames(path, 75, (321, 181), fps=25)  # odd sides: 4:2:0 wants them even
    data = path.read_bytes()
    # the header first, then a fragment per frame: playable while loading, and up to its
    # last frame if the writer dies
    assert 0 < data.find(b"moov") < data.find(b"moof") < data.find(b"mdat")
    assert data.count(b"moof") == 75
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.format.name == "yuv420p"
        assert (stream.width, stream.height) == (320, 180)
        keys = [p.pts for p in container.demux(stream) if p.is_keyframe]
        assert [round(float(pts * stream.time_base), 3) for pts in keys] == [0.0, 1.0, 2.0]
        assert container.duration / 1e6 == pytest.approx(3.0)  # in the header, once closed


def test_without_pyav_it_writes_mp4v_and_says_why(tmp_path, monkeypatch, caplog) -> None:
    monkeypatch.setitem(sys.modules, "av", None)  # how Python behaves when PyAV is missing
    sink = write_frames(tmp_path / "v.mp4", 10, (64, 48))
    assert sink.codec == "mp4v"
    assert "PyAV is not installed (pip install av); writing mp4v instead" in caplog.text
    assert len(read_video(tmp_path / "v.mp4")[1]) == 10


@pytest.mark.integration
def test_a_recording_plays_in_headless_chromium(tmp_path: Path, no_leaks) -> None:
    exe = chromium_path()
    if exe is None:
        pytest.fail("this test needs Chromium: apt-get install chromium")
    graph = (
        Graph()
        .source("cam0", uses="synthetic", scene="easy", frames=60)
        .sink("video", uses="video", inputs=["cam0"], path=tmp_path / "{stream}.mp4", fps=20)
        .write(tmp_path)
    )
    res = run_rkpipe("run", str(graph))
    assert res.returncode == 0, res.stderr
    page = tmp_path / "play.html"
    page.write_text(PLAYER.replace("SRC", "cam0.mp4"))
    flags = ("--autoplay-policy=no-user-gesture-required", "--virtual-time-budget=8000")
    dom = dump_dom(exe, page.as_uri(), tmp_path / "profile", *flags)
    played = re.search(r"played duration=([\d.]+) from=([\d.]+) to=([\d.]+)", dom)
    assert played, dom[-400:]
    duration, start, end = (float(v) for v in played.groups())
    assert duration == pytest.approx(3.0, abs=0.06)  # 60 frames at 20 fps
    assert end > start + 0.5  # the picture moved on


PLAYER = """<!doctype html><html><body>
<video id="v" src="SRC" muted autoplay playsinline></video><pre id="out">waiting</pre>
<script>
const v = document.getElementById("v"), out = document.getElementById("out");
let from = null;
v.addEventListener("error", () => { out.textContent = "error " + (v.error && v.error.code); });
v.addEventListener("timeupdate", () => {
  if (from === null) from = v.currentTime;
  if (v.currentTime > from + 0.5)
    out.textContent = `played duration=${v.duration} from=${from} to=${v.currentTime}`;
});
v.play().catch((e) => { out.textContent = "play failed: " + e; });
</script></body></html>
"""


@pytest.mark.integration
def test_a_bad_video_path_is_one_clear_line_from_the_cli(tmp_path: Path, no_leaks) -> None:
    (tmp_path / "file").write_text("")
    graph = (
        Graph()
        .source("cam0", uses="synthetic", frames=5)
        .sink("video", uses="video", inputs=["cam0"], path=tmp_path / "file/{stream}.mp4")
        .write(tmp_path)
    )
    res = run_rkpipe("run", str(graph), timeout=60)
    assert res.returncode == 2  # found when the graph is validated, before any process starts
    assert f"graph.toml:8 stages.video.path: cannot write '{tmp_path}/file/{{stream}}.mp4': " in (
        res.stderr
    )
    assert f"{tmp_path}/file is not a folder" in res.stderr
    assert "Traceback" not in res.stderr


def test_restarted_sink_keeps_the_first_part_and_writes_the_next(tmp_path: Path) -> None:
    """After a crash the new process must not overwrite the video the old one wrote."""
    from pipeline.messages import Message

    frames = [np.full((48, 64, 3), v, np.uint8) for v in (10, 200)]
    for restarted, value in ((False, 0), (True, 1)):
        sink = VideoSink(path=str(tmp_path / "{stream}.mp4"), annotate=False)
        sink.setup(Context(stage="video", restarted=restarted))
        sink.process(Message("cam0", value, value - 1, arrays={"frame": frames[value]}))
        sink.close()
    first, second = (
        cv2.VideoCapture(str(tmp_path / "cam0.mp4")),
        cv2.VideoCapture(str(tmp_path / "cam0.1.mp4")),
    )
    ok1, f1 = first.read()
    ok2, f2 = second.read()
    assert ok1 and ok2
    assert abs(float(f1.mean()) - 10) < 8 and abs(float(f2.mean()) - 200) < 8


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


@pytest.mark.integration
def test_an_event_clip_holds_the_seconds_around_the_event(tmp_path: Path, no_leaks) -> None:
    graph = (
        Graph()
        .source("cam0", uses="synthetic", scene="easy", frames=260)
        .stage("truth", uses="rk_test_overlay:Overlay", inputs=["cam0"], overlays=False)
        .stage(
            "lines",
            uses="line_crossing",
            inputs=["truth"],
            lines={"*": {"name": "door", "a": [0, 270], "b": [640, 270]}},
        )
        .sink(
            "video",
            uses="video",
            inputs=["lines"],
            path=tmp_path / "{stream}.mp4",
            annotate=False,
            clips={"dir": tmp_path / "clips", "before_s": 1, "after_s": 1},
        )
        .sink(
            "events",
            uses="jsonl",
            inputs=["lines"],
            path=tmp_path / "events.jsonl",
            events_only=True,
        )
        .write(tmp_path)
    )
    res = run_rkpipe("run", str(graph))
    assert res.returncode == 0, res.stderr
    [event] = [e for e in read_jsonl(tmp_path / "events.jsonl") if e["type"] == "line_crossing"]
    [clip] = list((tmp_path / "clips").rglob("*.mp4"))
    assert clip.name.endswith(f"_line_crossing_door_{event['track_id']}.mp4")
    main, cut = decode(tmp_path / "cam0.mp4"), decode(clip)
    start = (event["seq"] - 30) // 30 * 30  # the keyframe at least a second before (1 s GOP)
    end = min(event["seq"] + 30, 259)  # a second after, or the stream's end
    assert len(cut) == end - start + 1
    for i in (0, len(cut) - 1):  # the same pictures as the recording, packet for packet
        assert np.array_equal(cut[i], main[start + i])


def test_clips_need_h264(tmp_path: Path) -> None:
    sink = VideoSink(path=str(tmp_path / "v.mp4"), codec="mp4v", clips=True)
    with pytest.raises(StageSetupError, match=r"stages\.video\.clips: event clips are cut from"):
        sink.setup(Context(stage="video"))
