"""Loitering in a zone: with ``loiter_s``, one ``zone_loiter`` event per stay, sent while the
object is still inside once it has been there that long, and the exit's ``dwell_s`` after it;
over many random walks (hypothesis) and through the stage, against the event schema."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipeline.detections import Detections
from pipeline.messages import Message
from pipeline.testing import run_stage
from stages.events import validate_event, zone_loiter_event
from stages.zones import ZoneMonitor
from stages.zones.stage import Zones

SQUARE = {"lot": [(0, 0), (100, 0), (100, 100), (0, 100)]}
BOX = {"cam0": [{"name": "crosswalk", "polygon": [[200, 200], [400, 200], [400, 300], [200, 300]]}]}
T0 = 1_700_000_000.0


def feet(x: float, y: float) -> list[float]:
    """A 20x40 box whose bottom-centre anchor is at (x, y)."""
    return [x - 10, y - 40, x + 10, y]


def walk(ys: list[float], cls: int = 0) -> list[Message]:
    """Track 1 standing at x=320 and each y in turn, one frame at 30 fps."""
    out = []
    for seq, y in enumerate(ys):
        msg = Message("cam0", seq, seq - 1, t_capture=T0 + seq / 30)
        msg.detections = Detections(
            np.array([feet(320, y)], np.float32),
            np.full(1, 0.9, np.float32),
            np.array([cls], np.int32),
            np.array([1], np.int64),
        )
        out.append(msg)
    return out


def events(out: list[Message], kind: str | None = None) -> list[dict]:
    """Every event of ``out`` (each checked against the schema), or those of ``kind``."""
    found = [e for m in out for e in m.meta.get("events", [])]
    for e in found:
        validate_event(e)
    return [e for e in found if kind is None or e["type"] == kind]


def test_loiter_comes_once_while_inside_then_exit_carries_the_whole_dwell() -> None:
    monitor = ZoneMonitor(SQUARE, enter_frames=1, exit_frames=1, loiter=2.0)
    seen = []
    for i, x in enumerate([50] * 10 + [300]):  # one frame per 0.5 s: inside 0.0 .. 4.5 s
        seen += monitor.update(np.array([feet(x, 50)]), np.array([7]), np.array([0]), 0.5 * i)
    assert [(e.kind, e.timestamp, e.dwell) for e in seen] == [
        ("enter", 0.0, None),
        ("loiter", 2.0, 2.0),
        ("exit", 5.0, 5.0),
    ]


def test_a_stay_shorter_than_loiter_s_sends_no_loiter_and_each_stay_may_loiter_again() -> None:
    monitor = ZoneMonitor(SQUARE, enter_frames=1, exit_frames=1, loiter=1.0)
    xs = [50, 50, 300, 50, 50, 50, 50, 300]  # 0.5 s inside, out, then 1.5 s inside
    seen = []
    for i, x in enumerate(xs):
        seen += monitor.update(np.array([feet(x, 50)]), np.array([1]), np.array([0]), 0.5 * i)
    assert [e.kind for e in seen] == ["enter", "exit", "enter", "loiter", "exit"]


# one track, random moves in and out of the zone and random gaps between frames
paths = st.lists(
    st.tuples(st.booleans(), st.floats(0.05, 1.5)), min_size=1, max_size=60
)  # (inside, seconds since the previous frame)


@settings(max_examples=300, deadline=None)
@given(paths, st.integers(1, 3), st.floats(0.1, 5.0))
def test_loiter_invariants_over_random_walks(path, frames: int, loiter: float) -> None:
    """Each stay: at most one loiter, after its enter and before its exit, only once the
    track has been inside loiter_s (dwell at least that), and the exit's dwell is no less."""
    monitor = ZoneMonitor(
        SQUARE, enter_frames=frames, exit_frames=frames, forget_after=10.0, loiter=loiter
    )
    t, seen = 0.0, []
    for inside, gap in path:
        t += gap
        box = np.array([feet(50 if inside else 300, 50)])
        seen += monitor.update(box, np.array([3]), np.array([0]), t)
    seen += monitor.update(np.empty((0, 4)), np.empty(0), np.empty(0), t + 11.0)  # forgotten
    stay: list = []
    for ev in seen:
        if ev.kind == "enter":
            assert not stay
            stay = [ev]
            continue
        assert stay, f"{ev.kind} outside a stay"
        if ev.kind == "loiter":
            assert [e.kind for e in stay] == ["enter"] and ev.timestamp > stay[0].timestamp
            assert ev.dwell == pytest.approx(ev.timestamp - stay[0].timestamp)
            assert ev.dwell >= loiter - 1e-9
            stay.append(ev)
        else:
            assert ev.kind == "exit"
            if len(stay) == 2:
                assert ev.dwell >= stay[1].dwell  # equal: forgotten at that last sight
            else:  # no loiter: no frame inside came after loiter_s; the exit is then
                # confirmed within exit_frames sightings of at most 1.5 s apart
                assert ev.dwell < loiter + frames * 1.5 + 1e-9
            stay = []
    assert not stay


def test_the_zones_stage_sends_schema_valid_loiter_events() -> None:
    ys = [150, 160] + [250] * 40 + [350, 360]  # 30 fps: inside about 1.3 s
    out = run_stage(Zones(zones=BOX, snapshot_every_s=0, loiter_s=1.0), walk(ys, cls=2))
    kinds = [e["type"] for e in events(out) if e["type"] != "counts"]
    assert kinds == ["zone_enter", "zone_loiter", "zone_exit"]
    (loiter,) = events(out, "zone_loiter")
    validate_event(loiter)
    assert loiter["id"].endswith(":crosswalk:1:loiter")
    assert (loiter["zone"], loiter["class_name"]) == ("crosswalk", "car")
    assert loiter["dwell_s"] == pytest.approx(1.0, abs=1 / 30)
    (leave,) = events(out, "zone_exit")
    assert leave["dwell_s"] > loiter["dwell_s"]
    # without loiter_s, none
    plain = run_stage(Zones(zones=BOX, snapshot_every_s=0), walk(ys, cls=2))
    assert events(plain, "zone_loiter") == []


def test_a_loiter_event_with_a_bad_dwell_is_refused_by_the_schema() -> None:
    (msg,) = walk([250])
    ev = zone_loiter_event(msg, "crosswalk", 1, 0, 3.0)
    validate_event(ev)
    ev.pop("dwell_s")
    with pytest.raises(ValueError, match="dwell_s"):
        validate_event(ev)
