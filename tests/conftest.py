"""Fixtures every test may use: fail a test that leaks shared memory or stage processes."""

from __future__ import annotations

import time

import pytest

from support.rkpipe import orphaned_stage_pids, stale_segments


@pytest.fixture
def no_leaks():
    """Fail the test if it leaves shared-memory segments or stage processes behind."""
    before_shm, before_pids = stale_segments(), orphaned_stage_pids()
    yield
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        extra_shm = stale_segments() - before_shm
        extra_pids = orphaned_stage_pids() - before_pids
        if not extra_shm and not extra_pids:
            return
        time.sleep(0.1)
    assert not extra_shm, f"shared memory left behind: {sorted(extra_shm)}"
    assert not extra_pids, f"stage processes left behind: {sorted(extra_pids)}"
