"""What a person is told of a camera: each change of state once (down with why,
reconnecting, live again after the outage's length), repeats and flapping rate-limited with
a count, and where the camera stands once a quiet spell is over. Fed reports with a clock
of the test's own, no processes."""

from __future__ import annotations

import re
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.supervise.camera_health import BURST, REPEAT_S, CameraHealth, span

REFUSED = "connection refused: camera off or wrong port"


class Told:
    """A CameraHealth whose lines are kept, fed reports at given times."""

    def __init__(self, tmp_path: Path) -> None:
        self.lines: list[tuple[float, str]] = []
        self.now = 0.0
        self.health = CameraHealth(tmp_path, lambda line: self.lines.append((self.now, line)))

    def report(self, t: float, state: str, detail: str = "", stream: str = "cam0") -> None:
        self.now = t
        self.health.update(stream, state, detail, now=t)

    def tick(self, t: float) -> None:
        self.now = t
        self.health.tick(now=t)

    def text(self) -> list[str]:
        return [line for _, line in self.lines]


def test_a_camera_down_at_start_then_live_says_each_change_once(tmp_path: Path) -> None:
    told = Told(tmp_path)
    told.report(0.0, "connecting")
    told.report(0.5, "down", REFUSED)
    for k in range(50):  # retried every 2 s: the same report is never sent twice, but
        told.tick(1.0 + 2 * k)  # the supervisor ticks on
    told.report(101.0, "live")
    assert told.text() == [
        f"rkpipe: cam0 down: {REFUSED}; retrying",
        "rkpipe: cam0 live after 1 m 41 s down",  # since its first report
    ]


def test_a_camera_a_reload_removed_is_never_down_too_long(tmp_path: Path) -> None:
    told = Told(tmp_path)
    told.report(0.0, "live")
    told.report(10.0, "down", REFUSED)
    told.health.remove("cam0", now=30.0)
    told.report(31.0, "reconnecting")  # what it says as it stops is not news
    assert told.health.down_too_long(5.0, now=500.0) == []
    final = told.health.final(now=600.0)["cam0"]
    assert final["state"] == "removed" and final["down_s"] == 20.0  # its outage ended there
    assert told.text() == [f"rkpipe: cam0 down: {REFUSED}; retrying"]


def test_an_outage_is_reconnecting_then_down_then_live_again_with_its_length(
    tmp_path: Path,
) -> None:
    told = Told(tmp_path)
    told.report(0.0, "connecting")
    told.report(1.0, "live")  # the first connection: nothing to say
    told.report(10.0, "reconnecting", "the camera closed the stream")
    told.report(11.0, "reconnecting", REFUSED)  # a new reason: a repeat, held back
    told.report(40.0, "down", REFUSED)
    told.report(52.5, "live")
    assert told.text() == [
        "rkpipe: cam0 reconnecting: the camera closed the stream",
        f"rkpipe: cam0 down after 30.0 s: {REFUSED}; retrying (1 more report not shown)",
        "rkpipe: cam0 live again after 42.5 s",
    ]


def test_a_flapping_camera_is_said_in_a_burst_then_counted_then_where_it_stands(
    tmp_path: Path,
) -> None:
    told = Told(tmp_path)
    told.report(0.0, "connecting")
    told.report(0.1, "live")
    t = 1.0
    for _ in range(20):  # 40 changes within 40 s
        told.report(t, "reconnecting", "the camera closed the stream")
        told.report(t + 0.5, "live")
        t += 2.0
    assert len(told.lines) == BURST
    told.tick(t)  # still within REPEAT_S of the last line said
    assert len(told.lines) == BURST
    told.tick(told.lines[-1][0] + REPEAT_S)
    assert told.text()[-1] == f"rkpipe: cam0 now live ({40 - BURST} more reports not shown)"
    told.report(t + 200, "reconnecting", "the camera closed the stream")  # quiet since
    assert told.text()[-1] == "rkpipe: cam0 reconnecting: the camera closed the stream"


def test_two_cameras_are_limited_each_on_its_own(tmp_path: Path) -> None:
    told = Told(tmp_path)
    for k in range(10):
        told.report(float(k), "down" if k % 2 else "reconnecting", REFUSED, stream="cam0")
    told.report(11.0, "down", REFUSED, stream="cam1")
    assert told.text()[-1] == f"rkpipe: cam1 down: {REFUSED}; retrying"
    assert sum(line.startswith("rkpipe: cam0 ") for line in told.text()) == BURST


def test_a_reason_that_quotes_a_url_never_shows_its_password(tmp_path: Path) -> None:
    told = Told(tmp_path)
    told.report(0.0, "down", "rtsp://admin:hunter2@10.0.0.9/s: 401 Unauthorized")
    assert told.text() == ["rkpipe: cam0 down: rtsp://admin:***@10.0.0.9/s: 401 Unauthorized; "
                           "retrying"]  # fmt: skip


def test_outage_lengths_read_as_a_person_writes_them() -> None:
    assert [span(s) for s in (4.21, 59.96, 190, 7500)] == ["4.2 s", "60.0 s", "3 m 10 s", "2 h 5 m"]


REPORT = st.tuples(
    st.floats(0.01, 30.0),  # seconds since the previous report
    st.sampled_from(["live", "reconnecting", "down", "connecting"]),
    st.sampled_from(["", REFUSED, "the camera closed the stream", "timed out"]),
)


@settings(max_examples=200, deadline=None)
@given(st.lists(REPORT, max_size=80))
def test_lines_stay_few_and_the_last_word_is_where_the_camera_stands(
    tmp_path_factory, reports: list[tuple[float, str, str]]
) -> None:
    """Whatever a camera reports: within any REPEAT_S at most BURST changes and one repeat
    are said, and once the supervisor ticks on past a quiet spell, the last line says the
    camera's state as it is."""
    told = Told(tmp_path_factory.mktemp("health"))
    t = 0.0
    for gap, state, detail in reports:
        t += gap
        told.report(t, state, detail)
        told.tick(t)
    times = [when for when, _ in told.lines]
    for i, start in enumerate(times):
        within = [w for w in times[i:] if w - start < REPEAT_S]
        assert len(within) <= BURST + 2, told.lines  # changes, a repeat, a 'now' line
    told.tick(t + REPEAT_S)
    told.tick(t + 2 * REPEAT_S)
    if not told.lines:
        return
    final = told.health.streams["cam0"]["state"]
    said = re.match(r"rkpipe: cam0 (?:now )?(\w+)", told.lines[-1][1])
    assert said is not None
    if final == "connecting":
        return  # said by no line (the state before it stands until it is down or live)
    assert said[1] == final, told.lines
