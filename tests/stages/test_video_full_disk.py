"""The video sink with event clips on a disk that fills up: a real run whose recording and
clips folder are on a small tmpfs (mounted in a private mount namespace, so nothing outside
the test sees it), full when the run starts, freed, filled again mid-run and freed again.
Every frame that cannot be written is counted ``sink_error`` (said once), the sink never
crashes or restarts, the source and the other sink go on untouched, and writing resumes when
space returns: the recording and the clips written then play. And, frame for frame, what a
refused write leaves: the file whole, and a keyframe next."""

from __future__ import annotations

import errno
import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.keys import META_EVENTS
from pipeline.messages import Message
from pipeline.stage import Context
from stages import events
from stages.sinks.video import VideoSink
from stages.sinks.video.encoders import H264File
from support.rkpipe import TEST_STAGES, poll_for, read_jsonl, rkpipe_env
from support.video_kills import playable_frames, video_parts

FRAMES = 300


def fill(folder: Path) -> None:
    """Write ``folder/fill`` until the file system is full."""
    chunk = b"\0" * (64 << 10)
    with open(folder / "fill", "ab", buffering=0) as f:
        try:
            while True:
                f.write(chunk)
        except OSError as exc:
            if exc.errno != errno.ENOSPC:
                raise
        try:  # the last few bytes too
            while True:
                f.write(b"\0" * 512)
        except OSError:
            pass


@pytest.mark.integration
def test_clips_on_a_full_disk_are_counted_and_recover_when_space_returns(
    tmp_path: Path, no_leaks
) -> None:
    if os.geteuid() != 0 or shutil.which("unshare") is None:
        pytest.fail("this test mounts a tmpfs in a private mount namespace: it needs root")
    disk = tmp_path / "disk"
    disk.mkdir()
    graph = tmp_path / "graph.toml"
    graph.write_text(
        f"""
[stages.cam0]
uses = "synthetic"
scene = "easy"
width = 320
height = 180
fps = 60
realtime = true
frames = {FRAMES}
[stages.events]
uses = "rk_test_events:EmitEvents"
inputs = ["cam0"]
every = 15
[stages.video]
uses = "video"
inputs = ["events"]
path = "{disk}/rec/{{stream}}.mp4"
clips = {{ dir = "{disk}/clips", before_s = 0.25, after_s = 0.25 }}
[stages.out]
uses = "jsonl"
inputs = ["events"]
path = "{tmp_path}/frames.jsonl"
"""
    )
    stats = tmp_path / "stats.json"
    rkpipe = [sys.executable, "-m", "pipeline.cli", "run", str(graph), "--stats-out", str(stats)]
    script = (
        f'mount -t tmpfs -o size=2m tmpfs "{disk}" && mkdir "{disk}/rec" "{disk}/clips" && '
        f'{{ dd if=/dev/zero of="{disk}/fill" bs=64k 2>/dev/null; true; }} && exec "$@"'
    )
    run = subprocess.Popen(
        ["unshare", "-m", "--propagation", "private", "sh", "-c", script, "sh", *rkpipe],
        env=rkpipe_env({"PYTHONPATH": str(TEST_STAGES)}),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(run.stderr), daemon=True)  # type: ignore[arg-type]
    reader.start()
    try:
        inside = Path(f"/proc/{run.pid}/root") / disk.relative_to("/")  # the run's tmpfs
        # full from the start: the sink starts all the same, and counts what it cannot write
        assert poll_for(lambda: any("cannot deliver" in ln for ln in lines), 60), "".join(lines)
        (inside / "fill").unlink()
        clips = inside / "clips"
        assert poll_for(lambda: any(p.stat().st_size for p in clips.rglob("*.mp4")), 30)
        fill(inside)  # full again, mid-run, with clips being written
        assert poll_for(lambda: run.poll() is not None, 0.5) is False
        (inside / "fill").unlink()
        rec = inside / "rec"
        grown = (rec / "cam0.mp4").stat().st_size
        assert poll_for(lambda: (rec / "cam0.mp4").stat().st_size > grown, 30), "no recovery"
        found = {p.relative_to(inside) for p in inside.rglob("*.mp4")}
        playable = {p: playable_frames(inside / p) for p in found}
        assert poll_for(lambda: run.poll() is not None, 60)
        run.wait(30)
    finally:
        if run.poll() is None:
            run.kill()
            run.wait(30)
        reader.join(timeout=10)
    err = "".join(lines)
    assert run.returncode == 0, err[-3000:]
    doc = json.loads(stats.read_text())
    entry = doc["streams"]["cam0"]
    assert entry["produced"] == FRAMES  # the source went on
    assert entry["sinks"]["out"]["delivered"] == FRAMES  # and so did the other sink
    assert len(read_jsonl(tmp_path / "frames.jsonl")) == FRAMES
    video = entry["sinks"]["video"]
    lost = video["dropped_by_reason"].get("sink_error@video", 0)
    assert lost > 0 and video["delivered"] > 0, video
    assert video["delivered"] + video["dropped"] == FRAMES and doc["exact"], video
    assert "exited with" not in err and "restarting" not in err, err[-3000:]  # no crash
    assert err.count("cannot deliver") == 1, err[-3000:]  # said once, not per frame
    assert "is full" in err  # the probe at setup found the full disk and said so
    assert "writing " in err and " again (" in err  # and the sink says when it recovers
    # what the sink wrote after space returned plays, as far as the run had got
    recording = Path("rec/cam0.mp4")
    assert playable[recording] > 0, playable
    clips_played = [n for p, n in playable.items() if "clips" in p.parts]
    assert clips_played and max(clips_played) > 0, playable
    assert not video_parts(disk / "rec", "cam0")  # the tmpfs went with the run


def test_a_frame_the_disk_refuses_is_left_out_and_the_recording_goes_on_at_a_keyframe(
    tmp_path: Path,
) -> None:
    """Writes the kernel refuses (the file's descriptor pointed at /dev/full for a while:
    every write fails with ENOSPC) raise, leave the file whole, and the next frame written
    is a keyframe, so everything after it decodes."""
    writer = H264File(tmp_path / "v.mp4", (64, 48), 10)  # a keyframe every 10 frames
    grey = [np.full((48, 64, 3), 20 * i, np.uint8) for i in range(13)]
    for i in range(5):
        writer.write(grey[i])
    kept, full = os.dup(writer.file.fd), os.open("/dev/full", os.O_WRONLY)
    os.dup2(full, writer.file.fd)
    for i in range(5, 8):
        with pytest.raises(OSError) as failed:
            writer.write(grey[i])
        assert failed.value.errno == errno.ENOSPC
    os.dup2(kept, writer.file.fd)
    os.close(kept)
    os.close(full)
    for i in range(8, 13):
        writer.write(grey[i])
    writer.close()
    with av.open(str(tmp_path / "v.mp4")) as container:
        stream = container.streams.video[0]
        packets = [
            (round(p.pts * stream.time_base * 10), p.is_keyframe)
            for p in container.demux(stream)
            if p.size
        ]
    assert packets == [(i, i in (0, 8)) for i in [*range(5), *range(8, 13)]]
    with av.open(str(tmp_path / "v.mp4")) as container:
        pictures = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(pictures) == 10
    for picture, i in zip(pictures, [*range(5), *range(8, 13)], strict=True):
        assert abs(float(picture.mean()) - 20 * i) < 4


def test_a_clip_write_the_disk_refuses_is_counted_and_the_clip_goes_on_at_the_next_frame(
    tmp_path: Path,
) -> None:
    """A refused write to an open clip raises from ``process`` (the runtime counts the frame
    ``sink_error``: it is not in its clip) while the recording keeps it; the next frame is
    made a keyframe, so the clip goes on at once when the disk takes writes again."""
    clips = {"dir": str(tmp_path / "clips"), "before_s": 5, "after_s": 2}
    sink = VideoSink(path=str(tmp_path / "{stream}.mp4"), annotate=False, fps=10, clips=clips)
    sink.setup(Context(stage="video"))
    grey = [np.full((48, 64, 3), 8 * i, np.uint8) for i in range(30)]
    refused, kept, full = range(8, 11), -1, os.open("/dev/full", os.O_WRONLY)
    for i in range(30):
        msg = Message("cam0", i, i - 1, arrays={"frame": grey[i]})
        if i == 5:
            event = events.line_crossing_event(msg, "door", "in", 7, 0, (1, 2), {"in": 1, "out": 0})
            msg.meta[META_EVENTS] = [event]
        clip = sink.tracks["cam0"].clips.clip if "cam0" in sink.tracks else None
        if i == refused.start:
            kept = os.dup(clip.fd)
            os.dup2(full, clip.fd)
        if i == refused.stop:
            os.dup2(kept, clip.fd)
            os.close(kept)
        if i in refused:
            with pytest.raises(OSError) as failed:
                sink.process(msg)
            assert failed.value.errno == errno.ENOSPC
        else:
            sink.process(msg)
    sink.close()
    os.close(full)
    [path] = list((tmp_path / "clips").rglob("*.mp4"))
    with av.open(str(tmp_path / "cam0.mp4")) as container:
        recording = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    with av.open(str(path)) as container:
        clip_pictures = [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]
    assert len(recording) == 30  # every frame is in the recording
    in_clip = [*range(8), *range(11, 26)]  # from the recording's start to 2 s past frame 5
    assert len(clip_pictures) == len(in_clip)
    for picture, i in zip(clip_pictures, in_clip, strict=True):
        assert np.array_equal(picture, recording[i])
