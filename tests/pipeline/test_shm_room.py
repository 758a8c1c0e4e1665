"""/dev/shm is checked before the run and reserved when a pool is made: a graph whose frame
pools do not fit is one clear error, exit 2, before any stage starts; a pool that finds no
room later (another process filled /dev/shm) is one clear error naming /dev/shm; never a
stage dying of SIGBUS (signal 7) over and over. Each test runs rkpipe in a private mount
namespace with its own small /dev/shm (``unshare -m``, as root)."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from support.graph import graph_file
from support.rkpipe import ROOT, rkpipe_env

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(
        os.geteuid() != 0 or shutil.which("unshare") is None,
        reason="a private /dev/shm needs root and unshare",
    ),
]


def rkpipe(*args: str) -> list[str]:
    return [sys.executable, "-m", "pipeline.cli", *args]


def run_with_shm(size: str, argv: list[str], timeout: float = 120) -> subprocess.CompletedProcess:
    """``argv`` with a /dev/shm of ``size`` of its own (a tmpfs in a new mount namespace,
    gone when it ends)."""
    script = f"mount -t tmpfs -o size={size} tmpfs /dev/shm && exec {shlex.join(argv)}"
    return subprocess.run(
        ["unshare", "-m", "sh", "-c", script],
        cwd=ROOT,
        env=rkpipe_env(),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def test_a_graph_whose_pools_do_not_fit_is_refused_before_any_stage_starts() -> None:
    res = run_with_shm("64m", rkpipe("run", "graphs/two_streams.toml", "--duration", "20"))
    assert res.returncode == 2, res.stderr
    err = res.stderr
    assert "Traceback" not in err and "signal 7" not in err and "processes running" not in err
    need = re.search(r"two_streams.toml: the frame pools and ledgers need about (\d+) MB of", err)
    # 640x384 model input: pre 70.3 MB + det 59.3 MB + cam0 19.1 MB + cam1 19.1 MB of pools
    assert need and int(need.group(1)) >= 167, err
    assert "which has 64 MB free of 64 MB (biggest: pre 25 slots 70.3 MB" in err
    assert "--shm-size" in err and "smaller model input" in err
    assert "(the biggest: pool_slots in [stages.pre], now 25)" in err


def test_the_same_graph_runs_with_fewer_slots(tmp_path: Path) -> None:
    """The fix the message gives works: small pools fit the same 64 MB."""
    stages = {
        "cam0": {"uses": "synthetic", "frames": 20, "width": 320, "height": 240},
        "pre": {"uses": "letterbox", "inputs": ["cam0"], "size": [320, 320], "pool_slots": 8},
        "out": {"uses": "jsonl", "inputs": ["pre"], "path": str(tmp_path / "{stream}.jsonl")},
    }
    res = run_with_shm("64m", rkpipe("run", str(graph_file(tmp_path, stages))))
    assert res.returncode == 0, res.stderr
    assert len((tmp_path / "cam0.jsonl").read_text().splitlines()) == 20


def test_a_pool_that_finds_no_room_later_is_a_clear_error_not_sigbus(tmp_path: Path) -> None:
    """The stage's pool is bigger than it declared (as when another process fills /dev/shm
    after the check): its allocation fails at once, the stage is not restarted, the run says
    why and ends."""
    stages = {
        "cam0": {"uses": "synthetic", "frames": 50, "width": 64, "height": 48},
        "big": {"uses": "rk_test_shm:BigArrays", "inputs": ["cam0"], "mb": 16},
        "out": {"uses": "jsonl", "inputs": ["big"], "path": str(tmp_path / "{stream}.jsonl")},
    }
    res = run_with_shm("64m", rkpipe("run", str(graph_file(tmp_path, stages))))
    err = res.stderr
    assert res.returncode == 1, err
    assert "signal 7" not in err and "giving up" not in err and "restarting" not in err, err
    assert "big: /dev/shm has no room for frame pool rkpipe-" in err, err
    assert "MB free of 64 MB, another process may have filled it" in err
    assert "--shm-size" in err


def test_a_pool_reserves_its_memory_when_it_is_made(tmp_path: Path) -> None:
    """A pool's segment is allocated in full at once (not a sparse file that a write past the
    free space kills with SIGBUS), and a segment that cannot be is removed again."""
    code = (
        "import numpy as np, os\n"
        "from pipeline.transport.framepool import FramePool, SHM_DIR\n"
        "from pipeline.errors import ShmError\n"
        "pool = FramePool('rkpipe-t-pool', 8)\n"
        "pool.alloc((2**20,), np.uint8)\n"
        "[seg] = SHM_DIR.glob('rkpipe-t-pool-*')\n"
        "assert os.stat(seg).st_blocks * 512 >= 8 * 2**20, os.stat(seg)\n"
        "try:\n"
        "    pool.alloc((8 * 2**20,), np.uint8)\n"
        "except ShmError as exc:\n"
        "    print('refused:', exc)\n"
        "print(sorted(p.name for p in SHM_DIR.iterdir()))\n"
    )
    res = run_with_shm("32m", [sys.executable, "-c", code])
    assert res.returncode == 0, res.stderr
    assert "refused: /dev/shm has no room for frame pool rkpipe-t-pool-8388608 (64.0 MB;" in (
        res.stdout
    )
    assert "['rkpipe-t-pool-1048576']" in res.stdout  # the one that fitted, and only it
