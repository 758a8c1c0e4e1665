"""The video sink: real graphs write MP4 files that OpenCV reads back frame for frame, with the
overlays drawn on them; gaps can be filled to keep real time; bad paths and codecs fail early."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from pipeline.errors import StageSetupError
from pipeline.stage import Context
from stages.sinks.video import VideoSink
from stages.synthetic import Scene
from support.rkpipe import run_rkpipe, write_graph

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
    graph = write_graph(
        tmp_path,
        f"""
[stages.cam0]
uses = "synthetic"
scene = "easy"
frames = 40
[stages.cam1]
uses = "synthetic"
scene = "easy"
seed = 1
frames = 25
[stages.overlay]
uses = "rk_test_overlay:Overlay"
inputs = ["cam0", "cam1"]
box = {list(BOX)}
[stages.video]
uses = "video"
inputs = ["overlay"]
path = "{tmp_path}/annotated/{{stream}}.mp4"
[stages.raw]
uses = "video"
inputs = ["overlay"]
path = "{tmp_path}/raw/{{stream}}.mp4"
annotate = false
""",
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
    graph = write_graph(
        tmp_path,
        f"""
[stages.cam0]
uses = "synthetic"
scene = "easy"
width = 320
height = 180
frames = 30
[stages.overlay]
uses = "rk_test_overlay:Overlay"
inputs = ["cam0"]
width = 320
height = 180
drop = {dropped}
[stages.filled]
uses = "video"
inputs = ["overlay"]
path = "{tmp_path}/filled.mp4"
fill_gaps = true
[stages.plain]
uses = "video"
inputs = ["overlay"]
path = "{tmp_path}/plain.mp4"
""",
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


@pytest.mark.parametrize(("path", "fourcc"), [("v.mp4", "ZZZZ"), ("v.notavideo", "mp4v")])
def test_a_codec_or_container_ffmpeg_lacks_fails_at_setup(tmp_path, path, fourcc) -> None:
    sink = VideoSink(path=str(tmp_path / path), fourcc=fourcc)
    with pytest.raises(StageSetupError, match=r"cannot open a video writer.*try fourcc"):
        sink.setup(Context(stage="video"))
    assert list(tmp_path.iterdir()) == []  # the probe file is cleaned up


@pytest.mark.integration
def test_a_bad_video_path_is_one_clear_line_from_the_cli(tmp_path: Path, no_leaks) -> None:
    (tmp_path / "file").write_text("")
    graph = write_graph(
        tmp_path,
        f"""
[stages.cam0]
uses = "synthetic"
frames = 5
[stages.video]
uses = "video"
inputs = ["cam0"]
path = "{tmp_path}/file/{{stream}}.mp4"
""",
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
