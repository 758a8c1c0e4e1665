"""Synthetic street scenes: determinism, truth that matches the pixels, crossings, the CLI."""

from __future__ import annotations

import json
import time

import cv2
import numpy as np
import pytest

from pipeline.geometry import anchor_points, side_of_line
from stages.synthetic import PRESETS, Scene, parse_scene_uri
from stages.synthetic.cli import main as scene_cli

W, H = 640, 360


def truth_equal(a, b) -> bool:
    return all(
        np.array_equal(getattr(a, k), getattr(b, k))
        for k in ("xyxy", "class_id", "track_id", "visibility", "full_xyxy")
    )


def test_same_seed_same_frames_and_truth():
    a, b = Scene("hard", seed=5), Scene("hard", seed=5)
    for i in (0, 37, 400):
        assert np.array_equal(a.render(i), b.render(i))
        assert truth_equal(a.truth(i), b.truth(i))
    img = a.render(0)
    assert img.shape == (H, W, 3) and img.dtype == np.uint8


def test_different_seed_differs():
    a, b = Scene("easy", seed=1), Scene("easy", seed=2)
    assert not np.array_equal(a.render(10), b.render(10))
    assert not np.array_equal(a.background, b.background)


def test_random_access_equals_sequential():
    seq = Scene("hard", seed=9)
    frames = [seq.render(i) for i in range(40)]
    truths = [seq.truth(i) for i in range(40)]
    rnd = Scene("hard", seed=9)
    for i in (39, 3, 20, 0, 38):
        assert np.array_equal(rnd.render(i), frames[i])
        assert truth_equal(rnd.truth(i), truths[i])


def test_truth_fields_and_classes():
    scene = Scene("hard", seed=3)
    for i in range(0, 300, 30):
        t = scene.truth(i)
        n = len(t.track_id)
        assert t.xyxy.shape == (n, 4) and t.xyxy.dtype == np.float32
        assert t.class_id.dtype == np.int32 and t.track_id.dtype == np.int64
        assert set(t.class_id.tolist()) <= {0, 2}
        assert len(set(t.track_id.tolist())) == n
        assert (
            (t.xyxy[:, :2] >= 0).all() and (t.xyxy[:, 2] <= W).all() and (t.xyxy[:, 3] <= H).all()
        )
        assert ((t.visibility >= 0) & (t.visibility <= 1)).all()
        full = t.full_xyxy
        wh = full[:, 2:] - full[:, :2]
        people, cars = wh[t.class_id == 0], wh[t.class_id == 2]
        assert (people[:, 1] > 1.5 * people[:, 0]).all()
        assert ((people[:, 1] >= 15) & (people[:, 1] <= 95)).all()
        assert (cars[:, 0] > 1.5 * cars[:, 1]).all()


def test_drawn_pixels_lie_in_boxes_and_fill_them():
    scene = Scene("easy", seed=4)
    checked = 0
    for i in range(0, 600, 25):
        canvas = scene.draw_objects(i, np.zeros((H, W, 3), np.uint8))
        drawn = canvas.any(axis=2)
        t = scene.truth(i)
        inside = np.zeros_like(drawn)
        for x0, y0, x1, y1 in t.xyxy:
            inside[max(int(y0) - 1, 0) : int(y1) + 2, max(int(x0) - 1, 0) : int(x1) + 2] = True
        assert not (drawn & ~inside).any(), f"frame {i}: pixels drawn outside every box"
        full = t.full_xyxy
        for j, (x0, y0, x1, y1) in enumerate(full):
            others = np.delete(full, j, axis=0)
            overlap = (
                (others[:, 0] < x1 + 3)
                & (others[:, 2] > x0 - 3)
                & (others[:, 1] < y1 + 3)
                & (others[:, 3] > y0 - 3)
            )
            if overlap.any() or x0 < 3 or y0 < 3 or x1 > W - 3 or y1 > H - 3:
                continue
            ys, xs = np.nonzero(drawn[int(y0) - 3 : int(y1) + 4, int(x0) - 3 : int(x1) + 4])
            got = (
                np.array([xs.min(), ys.min(), xs.max() + 1, ys.max() + 1])
                + [
                    int(x0) - 3,
                    int(y0) - 3,
                ]
                * 2
            )
            assert np.abs(got - [x0, y0, x1, y1]).max() <= 1.6, (i, j, got, full[j])
            checked += 1
    assert checked >= 20


def test_rendered_objects_stand_out_and_rest_is_background():
    scene = Scene("hard", seed=6)
    amp = scene.noise.amplitude
    for i in (50, 150):
        img, t = scene.render(i).astype(int), scene.truth(i)
        diff = np.abs(img - scene.background).max(axis=2)
        covered = np.zeros((H, W), bool)
        for x0, y0, x1, y1 in t.xyxy:
            covered[max(int(y0) - 1, 0) : int(y1) + 2, max(int(x0) - 1, 0) : int(x1) + 2] = True
        assert diff[~covered].max() <= amp  # only noise outside the boxes
        for (x0, y0, x1, y1), v in zip(t.xyxy, t.visibility, strict=True):
            if v == 1.0:
                box = diff[int(np.ceil(y0)) : int(y1), int(np.ceil(x0)) : int(x1)]
                assert (box > amp).mean() > 0.35


def _crossings_from_truth(scene: Scene, lines, frames: int) -> set[tuple]:
    """Crossings computed from the per-frame truth alone (true boxes' anchors)."""
    tracks: dict[int, list[tuple[int, int, np.ndarray]]] = {}
    for i in range(frames):
        t = scene.truth(i)
        for tid, c, p in zip(t.track_id, t.class_id, anchor_points(t.full_xyxy), strict=True):
            tracks.setdefault(int(tid), []).append((i, int(c), p))
    out = set()
    for tid, rows in tracks.items():
        for name, (a, b) in lines.items():
            last = None
            for i, c, p in rows:
                s = np.sign(side_of_line(p, a, b)[0])
                if s == 0:
                    continue
                if last is not None and s != last[0]:
                    q = last[1]
                    d, e = np.subtract(b, a), p - q  # where q->p cuts line a-b, along a->b
                    qa = q - np.asarray(a)
                    u = (qa[0] * e[1] - qa[1] * e[0]) / (d[0] * e[1] - d[1] * e[0])
                    if 0 <= u <= 1:
                        out.add((i, tid, c, name, "in" if s > 0 else "out"))
                last = (s, p)
    return out


def test_crossings_match_truth_tracks():
    lines = {
        "road": ((20.0, 0.6 * H), (620.0, 0.6 * H)),
        "mid": ((320.0, 20.0), (320.0, 340.0)),
        "short": ((100.0, 150.0), (200.0, 150.0)),
    }
    scene = Scene("hard", seed=2)
    got = {
        (c.frame, c.track_id, c.class_id, c.line, c.direction) for c in scene.crossings(lines, 300)
    }
    assert got == _crossings_from_truth(scene, lines, 300)
    assert {g[4] for g in got} == {"in", "out"}
    assert {g[3] for g in got} >= {"road", "mid"}
    assert {g[2] for g in got} == {0, 2}


def test_entries_exits_and_ids_never_reused():
    scene = Scene("easy", seed=8)
    seen: dict[int, list[int]] = {}
    edge: dict[int, list[bool]] = {}
    n = 900
    for i in range(n):
        t = scene.truth(i)
        for tid, (x0, _, x1, y1) in zip(t.track_id.tolist(), t.xyxy, strict=True):
            seen.setdefault(tid, []).append(i)
            edge.setdefault(tid, []).append(x0 <= 0 or x1 >= W or y1 >= H)
    for tid, frames in seen.items():
        assert frames == list(range(frames[0], frames[-1] + 1)), f"id {tid} came back"
        if frames[0] > 0:
            assert edge[tid][0], f"id {tid} appeared away from the border"
        if frames[-1] < n - 1:
            assert edge[tid][-1], f"id {tid} vanished away from the border"
    assert sum(f[0] > 0 for f in seen.values()) >= 5
    assert sum(f[-1] < n - 1 for f in seen.values()) >= 5
    assert min(seen) > 0


def test_presets_differ_in_crowding_and_occlusion():
    easy, hard = Scene("easy", seed=1), Scene("hard", seed=1)

    def count(s: Scene) -> float:
        return float(np.mean([len(s.truth(i).track_id) for i in range(0, 900, 90)]))

    assert count(hard) > 2 * count(easy)
    vis = np.concatenate([hard.truth(i).visibility for i in range(0, 900, 90)])
    assert (vis < 0.5).any() and (vis == 1).any()
    assert len(Scene("empty", seed=1).truth(100).track_id) == 0
    assert set(PRESETS) >= {"easy", "hard"}


def test_render_is_fast():
    scene = Scene("easy", seed=0)
    scene.render(0)
    t0 = time.perf_counter()
    for i in range(1, 31):
        scene.render(i)
    assert (time.perf_counter() - t0) / 30 < 0.015


def test_parse_scene_uri():
    assert parse_scene_uri("synthetic:street?seed=3&preset=hard") == {"seed": 3, "preset": "hard"}
    assert parse_scene_uri("synthetic:street") == {}
    kw = parse_scene_uri("synthetic:street?width=320&height=240&fps=15")
    assert kw == {"width": 320, "height": 240, "fps": 15.0}
    assert Scene(**kw).render(0).shape == (240, 320, 3)
    for bad in (
        "street?seed=1",
        "synthetic:park",
        "synthetic:street?speed=2",
        "synthetic:street?seed=x",
        "synthetic:street?preset=medium",
    ):
        with pytest.raises(ValueError, match="scene source"):
            parse_scene_uri(bad)


def test_cli_writes_mp4_and_truth(tmp_path):
    out = tmp_path / "clip.mp4"
    argv = [str(out), "--preset", "hard", "--seed", "2", "--frames", "24"]
    assert scene_cli([*argv, "--line", "mid=320,20,320,340", "--line", "r=0,216,640,216"]) == 0
    cap = cv2.VideoCapture(str(out))
    frames = 0
    while cap.read()[0]:
        frames += 1
    assert frames == 24
    doc = json.loads(out.with_suffix(".json").read_text())
    assert doc["scene"]["seed"] == 2 and len(doc["frames"]) == 24
    t = Scene("hard", seed=2).truth(23)
    assert doc["frames"][23]["track_id"] == t.track_id.tolist()
    assert np.allclose(doc["frames"][23]["xyxy"], t.xyxy, atol=0.01)
    assert set(doc["lines"]) == {"mid", "r"} and isinstance(doc["crossings"], list)


def test_cli_rejects_bad_line(capsys):
    with pytest.raises(SystemExit):
        scene_cli(["x.mp4", "--line", "door=1,2,3"])
    assert "x1,y1,x2,y2" in capsys.readouterr().err


def test_fps_keeps_speeds_per_second():
    def step(fps: float) -> float:
        scene, moves = Scene("easy", seed=3, fps=fps), []
        prev: dict[int, np.ndarray] = {}
        for i in range(0, 120):
            t = scene.truth(i)
            now = dict(zip(t.track_id.tolist(), anchor_points(t.full_xyxy), strict=True))
            moves += [np.abs(p - prev[k]).sum() for k, p in now.items() if k in prev]
            prev = now
        return float(np.mean(moves))

    assert 1.5 < step(15.0) / step(30.0) < 2.7


@pytest.mark.parametrize("preset", ["easy", "hard"])
def test_no_car_drives_through_another_nor_a_walker_through_its_group(preset):
    """Occlusion in the scenes is what a camera sees (a car passing walkers, people side by
    side), never two objects in one place: cars in a lane keep their distance, and a group's
    walkers follow a step apart."""
    scene = Scene(preset, seed=8)
    for i in range(0, 900, 3):
        t = scene.truth(i)
        b = t.full_xyxy[t.class_id == 2]
        lane = np.abs(b[:, None, 3] - b[None, :, 3]) < 0.03 * scene.height  # one wheel line
        wide = np.minimum(b[:, None, 2], b[None, :, 2]) - np.maximum(b[:, None, 0], b[None, :, 0])
        np.fill_diagonal(lane, False)
        assert not (lane & (wide > 0)).any(), f"frame {i}: a car drives through another"
    walkers = [a for a in scene.actors(0, 900) if a.class_id == 0]
    for a in walkers:
        for b in walkers:
            group = a is not b and a.speed == b.speed and np.array_equal(a.path[:, 0], b.path[:, 0])
            if group:  # the same route at the same pace: one group
                apart = abs(a.t0 - b.t0) * a.speed
                assert apart >= 0.39 * min(a.size[1], b.size[1]), (a.track_id, b.track_id)
