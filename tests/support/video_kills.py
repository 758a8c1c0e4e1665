"""Real runs whose ``video`` sink is SIGKILLed at random moments, and what its files hold:
frames counted delivered (the run's stats) against frames that play (ffprobe, every part
the sink wrote). Shared by tests/stages/test_video_kills.py and benchmarks/video_kills.py.
"""

from __future__ import annotations

import random
import subprocess
from dataclasses import dataclass
from pathlib import Path

from support.faults import Fault, run_with_faults

__all__ = ["KillRun", "kill_run", "playable_frames", "video_parts"]


def playable_frames(path: Path) -> int:
    """Frames ffprobe decodes in ``path`` (0 when it cannot open it at all)."""
    res = subprocess.run(
        [
            "ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0",
            "-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", str(path),
        ],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    out = res.stdout.strip().rstrip(",")
    return int(out) if res.returncode == 0 and out.isdigit() else 0


def video_parts(folder: Path, stream: str) -> list[Path]:
    """``stream``'s recording and the parts restarted sinks went on in, in order."""
    parts = sorted(folder.glob(f"{stream}.*.mp4"), key=lambda p: int(p.suffixes[0][1:]))
    first = folder / f"{stream}.mp4"
    return ([first] if first.exists() else []) + parts


@dataclass
class KillRun:
    kills: int  # SIGKILLs that found the video sink running
    delivered: int  # frames the run's stats count delivered to the video sink
    playable: int  # frames ffprobe decodes in all its parts
    parts: list[tuple[str, int, int]]  # (file, bytes, frames playable)
    exact: bool  # the run's own check
    adds_up: bool  # delivered + dropped == produced for the video sink
    returncode: int
    stderr: str


def kill_run(
    folder: Path, rng: random.Random, kills: int, frames: int = 240, clips: bool = False
) -> KillRun:
    """One run of a live-paced source (60 fps) into a ``video`` sink and a ``jsonl`` sink,
    the video sink SIGKILLed ``kills`` times at random moments in its first seconds; with
    ``clips`` an event every 50 frames makes the sink cut clips into ``folder/clips``."""
    folder.mkdir(parents=True, exist_ok=True)
    source = "cam0"
    more = ""
    if clips:
        source = "events"
        more = f"""clips = {{ dir = "{folder}/clips", before_s = 0.25, after_s = 0.25 }}
[stages.events]
uses = "rk_test_events:EmitEvents"
inputs = ["cam0"]
every = 50
"""
    graph = folder / "video_kills.toml"
    graph.write_text(
        f"""
[stages.cam0]
uses = "synthetic"
scene = "easy"
width = 320
height = 180
fps = 60
realtime = true
frames = {frames}
[stages.video]
uses = "video"
inputs = ["{source}"]
path = "{folder}/{{stream}}.mp4"
fps = 60
{more}[stages.out]
uses = "jsonl"
inputs = ["{source}"]
path = "{folder}/frames.jsonl"
"""
    )
    span = frames / 60 * 0.8
    faults = sorted(
        (Fault(round(rng.uniform(0.3, span), 2), "video") for _ in range(kills)),
        key=lambda f: f.at_s,
    )
    outcome = run_with_faults(graph, faults, folder / "stats.json")
    stream = outcome.stats.get("streams", {}).get("cam0", {})
    account = stream.get("sinks", {}).get("video", {"delivered": 0, "dropped": 0})
    parts = [(p.name, p.stat().st_size, playable_frames(p)) for p in video_parts(folder, "cam0")]
    return KillRun(
        kills=len(outcome.done),
        delivered=account["delivered"],
        playable=sum(n for _, _, n in parts),
        parts=parts,
        exact=bool(outcome.stats.get("exact")),
        adds_up=account["delivered"] + account["dropped"] == stream.get("produced", -1),
        returncode=outcome.returncode,
        stderr=outcome.stderr,
    )
