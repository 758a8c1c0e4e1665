"""The accounting proved without processes: random interleavings of delivering, filtering,
copies, deaths (also half-way through a commit), restarts, lost ENDs and a clean stop, played
on the real books over real ledgers (``books_sim``), and checked per stream and sink: every
frame produced is delivered once or counted once, with a reason where it belongs."""

from __future__ import annotations

import string
import tempfile
from pathlib import Path

from books_sim import STEPS, Run, plan_for
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.accounting.keys import NAME_MAX

steps = st.lists(st.tuples(st.sampled_from(STEPS), st.integers(0, 3)), max_size=120)
# names of every allowed length, the longest ones often (where fixed sizes bite)
lengths = st.one_of(st.integers(1, NAME_MAX), st.sampled_from([46, 50, 60, NAME_MAX - 1, NAME_MAX]))
name = lengths.flatmap(
    lambda n: st.text(string.ascii_letters + string.digits + "_-", min_size=n, max_size=n)
)
FAULTS = {"crashed"}
POLICY = {"live_overflow", "filtered"}


def play(
    script: list[tuple[str, int]], live: bool, filter_every: int, names: tuple[str, str, str]
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        run = Run(Path(tmp), plan_for(*names, live), live, filter_every)
        try:
            for step, arg in script:
                run.step(step, arg)
            report = run.finish()
            check(run, report)
        finally:
            run.close()


def check(run: Run, report: dict) -> None:
    entry = report["streams"][run.source]
    account = entry["sinks"][run.sink]
    assert report["exact"], (entry, run.kills)
    # nothing twice, in order, and the sink's books say what its user received
    assert run.delivered == sorted(set(run.delivered))
    assert account["delivered"] == len(run.delivered)
    assert account["delivered"] + account["dropped"] == entry["produced"]
    assert account["difference"] == 0
    # reasons where they belong: a crash only where a process died, and at its place
    for reason, n in account["dropped_by_reason"].items():
        word, _, where = reason.partition("@")
        assert n > 0
        if word == "crashed":  # lost after leaving ``where``: it or its consumer died
            assert where in (run.source, run.relay), reason
            if where == run.relay:
                assert run.kills["relay"] or run.kills["sink"], reason
            else:
                assert run.kills["source"] or run.kills["relay"], reason
        elif word == "filtered":
            assert where == run.relay and run.filter_every
        elif word == "live_overflow" or word == "stopped":
            assert run.live and where == run.source
        else:
            raise AssertionError(f"unexpected reason {reason}")
    if not any(run.kills.values()):
        assert not [r for r in account["dropped_by_reason"] if r.startswith("crashed")]
        assert entry["produced"] - account["delivered"] == sum(
            n
            for r, n in account["dropped_by_reason"].items()
            if r.split("@")[0] in POLICY | {"stopped"}
        )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=steps, live=st.booleans(), filter_every=st.sampled_from([0, 3]))
def test_every_frame_is_delivered_once_or_counted_once(
    script: list[tuple[str, int]], live: bool, filter_every: int
) -> None:
    play(script, live, filter_every, ("cam0", "relay", "out"))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(script=steps, live=st.booleans(), names=st.lists(name, min_size=3, max_size=3, unique=True))
def test_names_of_any_allowed_length_keep_the_books(
    script: list[tuple[str, int]], live: bool, names: list[str]
) -> None:
    play(script, live, 3, (names[0], names[1], names[2]))
