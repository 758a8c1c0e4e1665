"""One table row per failure that ``pipeline.runtime.integrity`` says how the books survive,
played without processes on the real books (``books_sim``): the run ends exact, and the
frames lost are counted under the reason, and at the place, the docstring names."""

from __future__ import annotations

from pathlib import Path

import pytest
from books_sim import Run, plan_for

from pipeline.accounting.books import died_since
from pipeline.errors import TransportError
from pipeline.transport.codec import decode

# (failure, live source, relay filters every n-th, steps, reasons expected at the sink)
ROWS = [
    (
        "a stage drops frames on purpose",
        False,
        2,
        ["produce", "relay", "deliver"] * 4,
        {"filtered@relay": 2},
    ),
    (
        "a live source drops its oldest frame",
        True,
        0,
        ["produce"] * 5 + ["send", "relay", "deliver"] * 2,
        {"live_overflow@cam0": 3},
    ),
    (
        "a process dies holding frames (the relay)",
        False,
        0,
        ["produce"] * 3 + ["relay", "kill_relay", "produce", "relay", "deliver", "deliver"],
        {"crashed@cam0": 2},
    ),
    (
        "a process dies holding a frame it took",
        False,
        0,
        ["produce", "produce", ("kill_relay", 1), "relay", "deliver"],
        {"crashed@cam0": 1, "crashed@relay": 1},
    ),
    (
        "a sink dies with frames queued for it",
        False,
        0,
        ["produce"] * 3 + ["relay"] * 3 + ["deliver", "kill_sink"],
        {"crashed@relay": 2},
    ),
    (
        "a sink dies half-way through a frame's commit",
        False,
        0,
        ["produce", "relay", "produce", "relay", "deliver", ("kill_sink", 1)],
        {"crashed@relay": 1},
    ),
    (
        "a file source dies half-way through a frame",
        False,
        0,
        ["produce", ("kill_source", 1), "produce", "relay", "deliver"],
        {},
    ),
    (
        "a live source dies with frames queued",
        True,
        0,
        ["produce", "produce", "kill_source", "produce", "send"],
        {"crashed@cam0": 2},
    ),
    (
        "a stream's END dies in a crash (queued)",
        False,
        0,
        ["produce", "relay", "stop", "kill_relay"],
        {},
    ),
    (
        "a stream's END dies in a crash (taken)",
        False,
        0,
        ["produce", "relay", "stop", ("kill_relay", 1)],
        {},
    ),
    (
        "a sink's END dies in a crash",
        False,
        0,
        ["produce", "stop", "relay", "relay", "kill_sink"],
        {"crashed@relay": 1},
    ),
    (
        "a copy of a link reaches the sink",
        False,
        0,
        ["produce", "relay", "copy", "deliver", "deliver"],
        {},
    ),
    (
        "a clean stop with frames queued in a live source",
        True,
        0,
        ["produce", "produce", "stop"],
        {"stopped@cam0": 2},
    ),
]


@pytest.mark.parametrize(
    ("live", "filter_every", "steps", "reasons"),
    [row[1:] for row in ROWS],
    ids=[row[0] for row in ROWS],
)
def test_each_failure_keeps_the_books(
    tmp_path: Path, live: bool, filter_every: int, steps: list, reasons: dict[str, int]
) -> None:
    run = Run(tmp_path, plan_for("cam0", "relay", "out", live), live, filter_every)
    try:
        for step in steps:
            name, arg = step if isinstance(step, tuple) else (step, 0)
            run.step(name, arg)
        report = run.finish()
    finally:
        run.close()
    entry = report["streams"]["cam0"]
    account = entry["sinks"]["out"]
    assert report["exact"], entry
    assert account["dropped_by_reason"] == reasons
    assert account["delivered"] == len(run.delivered) == len(set(run.delivered))
    assert account["delivered"] + account["dropped"] == entry["produced"]


@pytest.mark.parametrize("stopped", [False, True])
def test_a_disabled_sink_or_a_stop_at_once_counts_what_never_arrived(
    tmp_path: Path, stopped: bool
) -> None:
    run = Run(tmp_path, plan_for("cam0", "relay", "out", False), False)
    try:
        for step in ["produce"] * 4 + ["relay"] * 4 + ["deliver"]:
            run.step(step, 0)
        run.to_sink.clear()  # the sink is gone (disabled), or the run was killed
        report = run.books.report(set() if stopped else {"out"}, stopped=stopped)
    finally:
        run.close()
    account = report["streams"]["cam0"]["sinks"]["out"]
    assert report["exact"]
    reason = "in_flight_at_stop" if stopped else "sink_disabled"
    assert account["delivered"] == 1 and account["dropped_by_reason"] == {reason: 3}


def test_a_consumer_behind_replicas_gives_a_frame_up_only_after_a_death() -> None:
    assert not died_since(0, 0) and not died_since(0, 123)  # nothing died: never
    assert died_since(200, 100) and died_since(200, 0)  # a death after the frame was made
    assert not died_since(100, 200)  # the death came before it: the frame is on its way


@pytest.mark.parametrize("garbage", [[b""], [b"\x93\x01\x02"], [b"\xc1"], []])
def test_a_bad_message_is_refused_never_a_frame(garbage: list[bytes]) -> None:
    with pytest.raises(TransportError):
        decode(garbage, None)
