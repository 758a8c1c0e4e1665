"""``rkpipe run --watch`` reloads when the graph file holds new text: not when it is only
touched or saved unchanged, not while it is still being written, and also when an editor
saves by renaming a new file over it."""

from __future__ import annotations

import os
import time
from pathlib import Path

from pipeline.supervise.graph_watch import GraphWatch

TEXT = '[pipeline]\\nname = "w"\\n'


def _aged(path: Path, seconds: float = 5.0) -> None:
    """Date the file back, as if its save had finished a while ago."""
    t = time.time() - seconds
    os.utime(path, (t, t))


def _watch(tmp_path: Path) -> tuple[Path, GraphWatch]:
    path = tmp_path / "g.toml"
    path.write_text(TEXT)
    _aged(path, 60)
    return path, GraphWatch(path, every_s=0.0, settle_s=0.3)


def test_new_text_is_a_change_once(tmp_path: Path) -> None:
    path, watch = _watch(tmp_path)
    assert not watch.changed(time.monotonic())
    path.write_text(TEXT + "stats_interval_s = 1\\n")
    _aged(path)
    assert watch.changed(time.monotonic())
    watch.seen()  # the run reloaded it
    assert not watch.changed(time.monotonic())


def test_a_touch_or_the_same_text_is_not_a_change(tmp_path: Path) -> None:
    path, watch = _watch(tmp_path)
    path.touch()
    _aged(path, 2)
    assert not watch.changed(time.monotonic())
    path.write_text(TEXT)
    _aged(path, 1)
    assert not watch.changed(time.monotonic())


def test_a_file_being_written_is_looked_at_again_later(tmp_path: Path) -> None:
    path, watch = _watch(tmp_path)
    path.write_text(TEXT + "# half")  # its mtime is now: still settling
    assert not watch.changed(time.monotonic())
    _aged(path)
    assert watch.changed(time.monotonic())


def test_a_save_by_rename_and_a_moment_without_the_file(tmp_path: Path) -> None:
    path, watch = _watch(tmp_path)
    path.unlink()
    assert not watch.changed(time.monotonic())  # gone for a moment: the run keeps its graph
    new = tmp_path / ".g.toml.swp"
    new.write_text(TEXT + "spin_us = 0\\n")
    _aged(new)
    new.rename(path)
    assert watch.changed(time.monotonic())


def test_it_looks_at_most_every_interval(tmp_path: Path) -> None:
    path, _ = _watch(tmp_path)
    watch = GraphWatch(path, every_s=3600.0, settle_s=0.0)
    assert not watch.changed(time.monotonic())  # looked: unchanged
    path.write_text(TEXT + "spin_us = 0\\n")
    _aged(path)
    assert not watch.changed(time.monotonic())  # not looked at again yet
