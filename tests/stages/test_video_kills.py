"""A killed video sink keeps its word: every frame the run counted delivered to it is in a
file that plays (ffprobe decodes it), in the part the killed process left or in the next.
Real runs, the sink's process SIGKILLed at random moments (fixed seeds)."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from support.video_kills import kill_run

pytestmark = [pytest.mark.integration]


@pytest.mark.parametrize("seed", range(3))
def test_a_killed_video_sink_leaves_every_frame_it_counted_playable(
    tmp_path: Path, no_leaks, seed: int
) -> None:
    run = kill_run(tmp_path, random.Random(f"video-kill:{seed}"), kills=2)
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.kills >= 1, "no kill found the video sink running"
    assert run.exact and run.adds_up, run.stderr[-3000:]
    assert len(run.parts) >= 2, run.parts  # the restarted sink went on in a new part
    # each frame counted delivered plays; a frame written just before the kill may be in the
    # file though the runtime counted it lost (at most one per kill)
    assert run.delivered <= run.playable <= run.delivered + run.kills, run.parts
    for name, size, frames in run.parts:
        assert size == 0 or frames > 0, f"{name}: {size} bytes that do not play"
