"""Event clips of the video sink: a clip for an event at any frame of a recording, the first
ones included, that plays (ffprobe) and holds the recording's own pictures; a killed sink
leaves its open clip playable too."""

from __future__ import annotations

from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.keys import META_EVENTS
from pipeline.messages import Message
from pipeline.stage import Context
from stages import events
from stages.sinks.video import VideoSink
from support.video_kills import playable_frames

FPS = 10  # a keyframe every 10 frames (keyframe_s 1)


def frame(i: int) -> np.ndarray:
    """A picture that says which frame it is (its grey level)."""
    return np.full((48, 64, 3), (i * 6) % 256, np.uint8)


def record(folder: Path, n: int, event_at: int, before_s: float, after_s: float) -> VideoSink:
    """A recording of ``n`` frames with one line crossing on frame ``event_at``."""
    clips = {"dir": str(folder / "clips"), "before_s": before_s, "after_s": after_s}
    sink = VideoSink(path=str(folder / "{stream}.mp4"), annotate=False, fps=FPS, clips=clips)
    sink.setup(Context(stage="video"))
    for i in range(n):
        msg = Message("cam0", i, i - 1, arrays={"frame": frame(i)})
        if i == event_at:
            totals = {"in": 1, "out": 0}
            event = events.line_crossing_event(msg, "door", "in", 7, 0, (1.0, 2.0), totals)
            msg.meta[META_EVENTS] = [event]
        sink.process(msg)
    sink.close()
    return sink


def decode(path: Path) -> list[np.ndarray]:
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="bgr24") for f in container.decode(video=0)]


@pytest.mark.parametrize("before_s", [0, 5])
@pytest.mark.parametrize("event_at", range(7))
def test_an_event_on_any_of_the_first_frames_gets_a_clip_that_plays(
    tmp_path: Path, event_at: int, before_s: float
) -> None:
    record(tmp_path, 40, event_at, before_s, after_s=1)
    [clip] = list((tmp_path / "clips").rglob("*.mp4"))
    # from the keyframe at or before the event (the recording's first: frame 0) to a
    # second past the event
    expected = event_at + FPS + 1
    assert playable_frames(clip) == expected
    cut, main = decode(clip), decode(tmp_path / "cam0.mp4")
    assert len(cut) == expected
    for i in (0, event_at, expected - 1):
        assert np.array_equal(cut[i], main[i])
    with av.open(str(clip)) as container:  # its duration is in its header
        assert container.duration is not None
        assert container.duration / 1e6 == pytest.approx(expected / FPS, abs=0.01)


@pytest.mark.parametrize(("event_at", "before_s", "start"), [(25, 1, 10), (25, 0, 20), (9, 0, 0)])
def test_a_clip_starts_at_the_keyframe_before_s_before_its_event(
    tmp_path: Path, event_at: int, before_s: float, start: int
) -> None:
    record(tmp_path, 60, event_at, before_s, after_s=0.5)
    [clip] = list((tmp_path / "clips").rglob("*.mp4"))
    cut, main = decode(clip), decode(tmp_path / "cam0.mp4")
    assert len(cut) == event_at + 5 - start + 1
    assert np.array_equal(cut[0], main[start]) and np.array_equal(cut[-1], main[event_at + 5])
