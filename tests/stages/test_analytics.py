"""Line counting and zone behaviours users rely on: each real crossing counted once, never
twice for jitter or a stop on the line; zone enter/exit/dwell/occupancy without flicker."""

from __future__ import annotations

import numpy as np
import pytest

from stages.bytetrack import Tracker
from stages.line_crossing import LineCounter
from stages.zones import ZoneMonitor, points_in_polygon

DOOR = {"door": ((0.0, 100.0), (200.0, 100.0))}  # a->b points right: below (y > 100) is "in"


def feet(x: float, y: float, w: float = 20, h: float = 40) -> list[float]:
    """A box whose bottom-centre anchor is at (x, y)."""
    return [x - w / 2, y - h, x + w / 2, y]


def walk(counter: LineCounter, path: list, track: int = 1, cls: int = 0) -> list:
    """Move one track's anchor along ``path`` [(x, y), ...]; return all crossing events."""
    events = []
    for x, y in path:
        events += counter.update(np.array([feet(x, y)]), np.array([track]), np.array([cls]))
    return events


def test_crossing_is_counted_with_direction_class_and_point():
    counter = LineCounter(DOOR)
    (event,) = walk(counter, [(50, 80), (50, 95), (50, 105), (50, 120)], track=7, cls=2)
    assert (event.line, event.track_id, event.class_id, event.direction) == ("door", 7, 2, "in")
    assert event.point == pytest.approx((50, 100))
    assert counter.counts["door"] == {"in": {2: 1}, "out": {}}
    assert counter.totals() == {"door": {"in": 1, "out": 0}}


def test_object_stopping_on_the_line_is_never_counted_twice():
    counter = LineCounter(DOOR, margin=3)
    jitter = [(50, 100 + d) for d in [-2, 1, 2, -1, 2, -2] * 5]  # stands on the line
    assert walk(counter, [(50, 70), (50, 90), *jitter]) == []
    beyond = [(50, 104 + d) for d in [0, 1, 0, 1.5] * 5]  # steps off just past the band
    assert len(walk(counter, beyond)) == 1
    assert counter.totals()["door"] == {"in": 1, "out": 0}


def test_object_vanishing_just_past_the_line_is_counted_once_it_is_forgotten():
    """Occluded (or out of view) right after crossing, before it cleared the band: counted
    when the track is given up, with the frame it was last seen."""
    counter = LineCounter(DOOR, margin=3, forget_after=5)
    assert walk(counter, [(50, 80), (50, 95), (50, 101), (50, 102)], track=4, cls=2) == []
    events = []
    for _ in range(6):  # nothing seen for a while
        events += counter.update(np.empty((0, 4)), np.empty(0, int), np.empty(0, int))
    (event,) = events
    assert (event.direction, event.track_id, event.class_id, event.frame) == ("in", 4, 2, 4)
    assert event.point[1] == pytest.approx(100)
    assert counter.totals()["door"] == {"in": 1, "out": 0}


def test_stream_end_counts_a_track_last_seen_just_past_the_line():
    counter = LineCounter(DOOR, margin=3)
    walk(counter, [(50, 80), (50, 95), (50, 101.5), (50, 102)])
    assert [e.direction for e in counter.finish()] == ["in"]
    assert counter.finish() == []  # once


def test_a_single_sighting_past_the_line_or_a_stop_on_it_is_not_settled_as_a_crossing():
    counter = LineCounter(DOOR, margin=3)
    walk(counter, [(50, 80), (50, 95), (50, 101)], track=1)  # one sighting over the line
    jitter = [(60, 100 + d) for d in [-2, 1, 2, -1, 2, -2]]  # stands on it, last seen before
    walk(counter, [(60, 80), *jitter], track=2)
    assert counter.finish() == []


def test_a_track_first_seen_on_the_line_goes_by_the_side_it_was_first_seen_on():
    """Born inside the band (a stream's start, or out from behind something on the line):
    stepping off on the other side is a crossing, as for the exact line; stepping back off on
    the same side is not. Never counting such tracks would undercount, always."""
    counter = LineCounter(DOOR, margin=3)
    (event,) = walk(counter, [(50, 98), (50, 99.5), (50, 101), (50, 104), (50, 110)], track=1)
    assert (event.direction, event.frame) == ("in", 4)
    assert event.point == pytest.approx((50, 100))
    assert walk(counter, [(60, 98), (60, 99), (60, 97), (60, 90)], track=2) == []
    events = walk(counter, [(70, 102), (70, 99), (70, 94), (70, 120)], track=3)
    assert [e.direction for e in events] == ["out", "in"]
    assert counter.totals()["door"] == {"in": 2, "out": 1}


def test_jitter_across_the_line_counts_once_when_the_object_really_crosses():
    counter = LineCounter(DOOR, margin=3)
    path = [(50, 60), *[(50, 100 + (-2.5 if i % 2 else 2.5)) for i in range(40)], (50, 130)]
    events = walk(counter, path)
    assert [e.direction for e in events] == ["in"]


def test_turning_back_counts_in_then_out():
    counter = LineCounter(DOOR)
    events = walk(counter, [(50, 80), (50, 120), (60, 130), (60, 110), (60, 70)])
    assert [e.direction for e in events] == ["in", "out"]
    assert counter.totals()["door"] == {"in": 1, "out": 1}


def test_anchor_jumping_across_between_two_updates_is_counted():
    counter = LineCounter(DOOR)
    (event,) = walk(counter, [(20, 40), (120, 160)])  # the line fell between two frames
    assert event.direction == "in"
    assert event.point == pytest.approx((70, 100))


@pytest.mark.parametrize(("x", "counted"), [(198, True), (203, True), (215, False), (-20, False)])
def test_only_crossings_within_the_segment_count(x, counted):
    counter = LineCounter(DOOR, tolerance=4)
    assert bool(walk(counter, [(x, 80), (x, 120)])) is counted


def test_diagonal_jump_past_the_segment_end_is_not_counted():
    counter = LineCounter(DOOR)
    assert walk(counter, [(190, 40), (330, 160)]) == []  # cuts y=100 at x=260, past b


def test_two_objects_crossing_side_by_side_are_both_counted():
    counter = LineCounter(DOOR)
    for y in range(70, 140, 10):
        boxes = np.array([feet(40, y), feet(62, y)])
        counter.update(boxes, np.array([1, 2]), np.array([0, 0]))
    assert counter.counts["door"]["in"] == {0: 2}


def test_direction_follows_the_line_orientation():
    counter = LineCounter({"up": ((200, 100), (0, 100))})  # b->a reversed: below is "out"
    assert [e.direction for e in walk(counter, [(50, 80), (50, 120)])] == ["out"]


def test_several_lines_count_independently():
    counter = LineCounter({"door": DOOR["door"], "gate": ((0, 200), (200, 200))})
    walk(counter, [(50, 50), (50, 150), (50, 250)])
    assert counter.totals() == {"door": {"in": 1, "out": 0}, "gate": {"in": 1, "out": 0}}


def test_untracked_boxes_are_ignored():
    counter = LineCounter(DOOR)
    for y in (80, 120):
        assert counter.update(np.array([feet(50, y)]), np.array([-1]), np.array([0])) == []


def test_tracks_unseen_for_forget_after_frames_are_forgotten():
    counter = LineCounter(DOOR, forget_after=5)
    walk(counter, [(90, 80)], track=3)
    for _ in range(6):
        counter.update(np.empty((0, 4)), np.empty(0), np.empty(0))
    assert walk(counter, [(90, 120)], track=3) == []  # its side was forgotten: no inference
    walk(counter, [(90, 80)], track=4)
    for _ in range(4):
        counter.update(np.empty((0, 4)), np.empty(0), np.empty(0))
    assert len(walk(counter, [(90, 120)], track=4)) == 1  # still remembered


def test_bad_lines_are_rejected():
    with pytest.raises(ValueError, match="zero length"):
        LineCounter({"dot": ((5, 5), (5, 5))})


def test_occluded_while_crossing_keeps_id_and_counts_once():
    tracker, counter = Tracker(), LineCounter(DOOR)
    counts = []
    for f in range(40):
        y = 40 + 4 * f
        hidden = 12 <= f <= 20  # behind a pillar right on the line (y 88..120)
        xyxy = np.empty((0, 4)) if hidden else np.array([feet(100, y, 30, 60)])
        out = tracker.update(xyxy, np.full(len(xyxy), 0.9), np.zeros(len(xyxy)))
        counts += counter.update(out.xyxy, out.tracker_id, out.class_id)
    assert [(e.track_id, e.direction) for e in counts] == [(1, "in")]


def test_points_in_concave_polygon():
    l_shape = [(0, 0), (100, 0), (100, 40), (40, 40), (40, 100), (0, 100)]
    inside = points_in_polygon(np.array([[20, 20], [70, 20], [20, 70], [70, 70]]), l_shape)
    assert inside.tolist() == [True, True, True, False]


SQUARE = {"lot": [(0, 0), (100, 0), (100, 100), (0, 100)]}


def visit(monitor: ZoneMonitor, xs: list, track: int = 1, cls: int = 0, t0: float = 0) -> list:
    """Move one track's anchor along y=50 through ``xs``, one frame per 0.5 s."""
    events = []
    for i, x in enumerate(xs):
        boxes = np.array([feet(x, 50)])
        events += monitor.update(boxes, np.array([track]), np.array([cls]), t0 + 0.5 * i)
    return events


def test_zone_enter_exit_and_dwell_seconds():
    monitor = ZoneMonitor(SQUARE, enter_frames=2, exit_frames=2)
    events = visit(monitor, [-30, 10, 20, 30, 40, 150, 160])
    assert [(e.kind, e.timestamp, e.dwell) for e in events] == [
        ("enter", 0.5, None),
        ("exit", 2.5, 2.0),
    ]


def test_one_frame_flicker_across_the_border_raises_no_event():
    monitor = ZoneMonitor(SQUARE, enter_frames=2, exit_frames=2)
    assert visit(monitor, [-5, 5, -5, -5, 5, -5]) == []  # never 2 frames inside
    assert [e.kind for e in visit(monitor, [20, 20, 105, 20, 20], t0=10)] == ["enter"]


def test_occupancy_per_class_and_current_dwell():
    monitor = ZoneMonitor(SQUARE, enter_frames=1, exit_frames=1)
    boxes = np.array([feet(10, 50), feet(50, 50), feet(90, 50), feet(300, 50)])
    monitor.update(boxes, np.array([1, 2, 3, 4]), np.array([0, 0, 2, 0]), 1.0)
    assert monitor.occupancy() == {"lot": {0: 2, 2: 1}}
    monitor.update(boxes[1:], np.array([2, 3, 4]), np.array([0, 2, 0]), 4.0)
    assert monitor.dwell(now=5.0) == {"lot": {2: 4.0, 3: 4.0}}
    monitor.update(boxes[[0, 2]] + [200, 0, 200, 0], np.array([2, 3]), np.array([0, 2]), 6.0)
    assert monitor.occupancy() == {"lot": {}}


def test_track_lost_inside_a_zone_exits_when_forgotten():
    monitor = ZoneMonitor(SQUARE, enter_frames=1, forget_after=2.0)
    visit(monitor, [50, 50, 50])  # inside from t=0 to t=1
    (event,) = monitor.update(np.empty((0, 4)), np.empty(0), np.empty(0), timestamp=3.5)
    assert (event.kind, event.timestamp, event.dwell) == ("exit", 1.0, 1.0)
    assert monitor.occupancy() == {"lot": {}}
