"""Tracker behaviours users rely on: stable IDs through noise, occlusion, weak boxes and
dropped frames; no ID reuse; no matching across classes when asked."""

from __future__ import annotations

import numpy as np
import pytest

from stages.bytetrack import Tracker, association, iou_matrix, linear_assignment


def box(cx: float, cy: float, w: float = 40, h: float = 80) -> list[float]:
    return [cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2]


def step(tracker: Tracker, boxes: list, conf=0.9, cls=0, gap: int = 1) -> np.ndarray:
    """Feed one frame of boxes (scalar or per-box conf/cls); return the tracker IDs."""
    n = len(boxes)
    xyxy = np.array(boxes, np.float32).reshape(n, 4)
    result = tracker.update(xyxy, np.broadcast_to(conf, n), np.broadcast_to(cls, n), gap)
    return result.tracker_id


def test_ids_stable_and_velocity_measured_for_moving_objects():
    tracker = Tracker()
    for f in range(20):
        ids = step(tracker, [box(100 + 5 * f, 200), box(400, 300 - 3 * f)])
        assert ids.tolist() == [1, 2]
    snap = tracker.snapshot()
    np.testing.assert_allclose(snap.velocity, [[5, 0], [0, -3]], atol=0.5)
    assert snap.hits.tolist() == [20, 20]
    assert snap.age.tolist() == [19, 19]


def test_occluded_object_keeps_its_id():
    tracker = Tracker()
    for f in range(10):
        (tid,) = step(tracker, [box(100 + 4 * f, 200)])
    for _ in range(12):  # hidden for 12 frames, within the 30-frame buffer
        step(tracker, [])
    assert tracker.snapshot().lost.tolist() == [True]
    assert step(tracker, [box(100 + 4 * 22, 200)]).tolist() == [tid]


def _hidden_walker_ids(tracker: Tracker) -> set[int]:
    """A walker (40 px wide, 3 px/frame) is hidden for 10 frames and slows down meanwhile, so
    it comes out 30 px behind where its track predicts: too far for a plain IoU match."""
    ids = []
    for f in range(50):
        if 20 <= f < 30:
            step(tracker, [])
            continue
        x = 100 + 3 * f - (30 if f >= 30 else 0)
        ids += [int(i) for i in step(tracker, [box(x, 200)]) if i >= 0]
    return set(ids)


def test_walker_back_from_behind_something_keeps_the_id():
    """Lost tracks get a second match on boxes grown by ``rematch_buffer`` of their size (as
    C-BIoU does): where plain ByteTrack gives the walker a new ID, it keeps the old one, so a
    line it crossed while hidden is still counted for the same person."""
    assert len(_hidden_walker_ids(Tracker(rematch_buffer=0))) == 2  # plain ByteTrack
    assert len(_hidden_walker_ids(Tracker())) == 1


def test_low_score_box_continues_a_track_but_never_starts_one():
    tracker = Tracker()
    for f in range(5):
        (tid,) = step(tracker, [box(100 + 3 * f, 200)], conf=0.9)
    for f in range(5, 10):  # partly occluded: the detector is unsure
        assert step(tracker, [box(100 + 3 * f, 200)], conf=0.3).tolist() == [tid]
    for f in range(10):  # a weak box elsewhere stays untracked
        assert step(tracker, [box(130 + 3 * f, 200), box(600, 600)], conf=[0.9, 0.3])[1] == -1


def test_ids_are_never_reused_after_a_track_dies():
    tracker = Tracker(track_buffer=30, frame_rate=10)  # lost tracks live 10 frames
    assert tracker.max_time_lost == 10
    step(tracker, [box(100, 100)])
    (first,) = step(tracker, [box(100, 100)])
    for _ in range(11):
        step(tracker, [])
    assert len(tracker.snapshot().tracker_id) == 0
    step(tracker, [box(100, 100)])
    (again,) = step(tracker, [box(100, 100)])
    assert again > first
    tracker.reset()
    step(tracker, [box(100, 100)])
    assert step(tracker, [box(100, 100)])[0] > again


def test_one_frame_false_positive_gets_no_id():
    tracker = Tracker()
    step(tracker, [box(100, 100)])
    assert step(tracker, [box(100, 100), box(500, 500)]).tolist() == [1, -1]  # not confirmed
    step(tracker, [box(100, 100)])
    step(tracker, [box(100, 100), box(800, 300)])
    assert step(tracker, [box(100, 100), box(800, 300)]).tolist() == [1, 2]  # next ID is 2


@pytest.mark.parametrize(("gap", "same_id"), [(5, True), (1, False)])
def test_frame_gap_predicts_through_dropped_frames(gap, same_id):
    tracker = Tracker()
    for f in range(10):
        (tid,) = step(tracker, [box(100 + 10 * f, 200, w=20, h=40)])
    # four frames dropped upstream: the object moved 50 px, more than its width
    after = step(tracker, [box(100 + 10 * 14, 200, w=20, h=40)], gap=gap)
    after = step(tracker, [box(100 + 10 * 15, 200, w=20, h=40)])
    assert bool(after[0] == tid) is same_id


def test_objects_side_by_side_keep_their_own_ids():
    tracker = Tracker()
    rng = np.random.default_rng(1)
    for f in range(40):  # two people walking shoulder to shoulder, boxes touching
        boxes = [box(100 + 4 * f, 200), box(140 + 4 * f, 200)]
        noisy = (np.array(boxes) + rng.normal(0, 1.5, (2, 4))).tolist()
        assert step(tracker, noisy).tolist() == [1, 2]


def test_class_aware_matching_never_joins_person_and_car():
    aware, agnostic = Tracker(class_aware=True), Tracker(class_aware=False)
    for tracker in (aware, agnostic):
        for _ in range(3):
            (person,) = step(tracker, [box(100, 100)], cls=0)
    for _ in range(2):
        (car_aware,) = step(aware, [box(100, 100)], cls=2)
        (car_agnostic,) = step(agnostic, [box(100, 100)], cls=2)
    assert car_aware not in (-1, person)
    assert car_agnostic == person


def test_class_is_a_majority_vote_over_the_track():
    tracker = Tracker()
    for cls in [0, 0, 0, 2, 0, 2]:  # the detector flickers to class 2 now and then
        result = tracker.update(np.array([box(100, 100)]), np.array([0.9]), np.array([cls]))
        assert result.class_id.tolist() == [0]


def test_result_keeps_input_order_and_shapes():
    tracker = Tracker()
    boxes = np.array([box(500, 100), box(100, 100), box(300, 100)], np.float32)
    result = tracker.update(boxes, np.array([0.9, 0.05, 0.8]), np.array([1, 2, 3]))
    np.testing.assert_array_equal(result.xyxy, boxes)
    assert result.tracker_id.tolist() == [1, -1, 2]
    assert result.tracked().class_id.tolist() == [1, 3]
    empty = tracker.update(np.empty((0, 4)), np.empty(0), np.empty(0))
    assert empty.tracker_id.shape == (0,) and empty.velocity.shape == (0, 2)
    with pytest.raises(ValueError, match="confidence 2"):
        tracker.update(boxes, np.array([0.9, 0.9]), np.array([1, 2, 3]))


def test_iou_matrix_values():
    a = np.array([[0, 0, 10, 10], [0, 0, 0, 0]])
    b = np.array([[0, 0, 10, 10], [5, 0, 15, 10], [20, 20, 30, 30]])
    np.testing.assert_allclose(iou_matrix(a, b), [[1, 1 / 3, 0], [0, 0, 0]])


def test_scipy_fallback_gives_the_same_matching(monkeypatch):
    rng = np.random.default_rng(0)
    costs = [rng.random((rng.integers(1, 9), rng.integers(1, 9))) for _ in range(50)]
    with_lap = [linear_assignment(c, 0.6)[0].tolist() for c in costs]
    monkeypatch.setattr(association, "_lap", None)
    assert [linear_assignment(c, 0.6)[0].tolist() for c in costs] == with_lap


def test_ids_unique_in_every_frame_of_a_busy_scene():
    tracker = Tracker()
    rng = np.random.default_rng(3)
    pos = rng.uniform(50, 600, (30, 2))
    vel = rng.normal(0, 3, (30, 2))
    for _ in range(60):
        pos += vel
        seen = rng.random(30) > 0.1
        boxes = [box(x, y, 30, 60) for x, y in pos[seen]]
        ids = step(tracker, boxes, conf=rng.uniform(0.2, 1.0, int(seen.sum())))
        real = ids[ids >= 0]
        assert len(np.unique(real)) == len(real)
