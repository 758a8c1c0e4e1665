"""Fixtures of the stage tests: a real headless Chromium for the pages."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.browser import Browser, chromium_path, group_alive
from support.rkpipe import poll_for


@pytest.fixture
def browser(tmp_path: Path):
    """A headless Chromium of its own, closed (with every helper process) afterwards."""
    exe = chromium_path()
    if exe is None:
        pytest.fail("this test needs Chromium: apt-get install chromium")
    b = Browser(exe, tmp_path / "profile")
    yield b
    b.close()
    assert poll_for(lambda: not group_alive(b.proc.pid), 10), "chromium left behind"
