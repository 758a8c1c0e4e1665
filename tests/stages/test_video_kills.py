"""A killed video sink keeps its word: every frame the run counted delivered to it is in a
file that plays (ffprobe decodes it), in the part the killed process left or in the next.
Chromium plays that part to its last frame. Real runs, the sink's process SIGKILLed at
random moments (fixed seeds)."""

from __future__ import annotations

import random
import re
from pathlib import Path

import pytest

from support.browser import chromium_path, dump_dom
from support.video_kills import kill_run, playable_frames

pytestmark = [pytest.mark.integration]


@pytest.mark.parametrize("seed", range(3))
def test_a_killed_video_sink_leaves_every_frame_it_counted_playable(
    tmp_path: Path, no_leaks, seed: int
) -> None:
    run = kill_run(tmp_path, random.Random(f"video-kill:{seed}"), kills=2)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.kills >= 1, "no kill found the video sink running"
    assert run.exact and run.adds_up, run.stderr[-3000:]
    assert run.parts, run.parts
    # each frame counted delivered plays; a frame written just before the kill may be in the
    # file though the runtime counted it lost (at most one per kill)
    assert run.delivered <= run.playable <= run.delivered + run.kills, run.parts
    for name, size, frames in run.parts:
        assert size == 0 or frames > 0, f"{name}: {size} bytes that do not play"


def test_a_killed_video_sink_leaves_its_clips_playable(tmp_path: Path, no_leaks) -> None:
    run = kill_run(tmp_path, random.Random("video-kill:clips"), kills=2, clips=True)
    assert run.returncode == 0 and run.kills >= 1, run.stderr[-3000:]
    assert run.exact and run.adds_up and run.delivered <= run.playable, run.parts
    clips = sorted((tmp_path / "clips").rglob("*.mp4"))
    assert len(clips) >= 3, clips  # an event every 50 frames of 240, but while it was down
    for clip in clips:  # the one open at a kill too, up to its last frame
        assert clip.stat().st_size == 0 or playable_frames(clip) > 0, clip


PLAYER = """<!doctype html><html><body>
<video id="v" src="SRC" muted autoplay playsinline></video><pre id="out">waiting</pre>
<script>
const v = document.getElementById("v"), out = document.getElementById("out");
v.addEventListener("error", () => { out.textContent = "error " + (v.error && v.error.code); });
v.addEventListener("timeupdate", () => {
  out.textContent = `played duration=${v.duration} to=${v.currentTime}`;
});
v.play().catch((e) => { out.textContent = "play failed: " + e; });
</script></body></html>
"""


def test_chromium_plays_what_a_killed_sink_left_to_its_last_frame(tmp_path: Path, no_leaks) -> None:
    exe = chromium_path()
    if exe is None:
        pytest.fail("this test needs Chromium: apt-get install chromium")
    run = kill_run(tmp_path, random.Random("video-kill:chromium"), kills=1)
    assert run.kills == 1 and run.returncode == 0, run.stderr[-3000:]
    assert len(run.parts) == 2, run.parts  # the killed process's part, and the next
    name, _, frames = run.parts[0]  # the part the killed process left
    assert frames > 0, run.parts
    page = tmp_path / "play.html"
    page.write_text(PLAYER.replace("SRC", name))
    flags = ("--autoplay-policy=no-user-gesture-required", "--virtual-time-budget=15000")
    dom = dump_dom(exe, page.as_uri(), tmp_path / "profile", *flags)
    played = re.search(r"played duration=([\d.]+) to=([\d.]+)", dom)
    assert played, dom[-400:]
    duration, end = (float(v) for v in played.groups())
    assert duration == pytest.approx(frames / 60, abs=0.02)  # every frame, at 60 fps
    assert end == pytest.approx(duration, abs=0.02)  # played to the end
