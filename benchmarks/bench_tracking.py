"""Tracking cost per frame with 50 moving objects, on one core with one numpy thread.

Detections come from a synthetic scene: objects gliding smoothly around a 1920x1080 frame with
box noise, low-score frames (as under occlusion), missed detections, a few false positives and
some dropped frames (passed to rkpipe as ``frame_gap``). rkpipe's ``Tracker`` and, when a
venv with it exists (``python3 -m venv /tmp/sv && /tmp/sv/bin/pip install supervision==0.26.1``),
supervision's ``ByteTrack`` run on the same detections in this same run.

    python benchmarks/bench_tracking.py [--frames 1000] [--objects 50] [--sv-python PATH]
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_var] = "1"  # before numpy loads its BLAS

import argparse  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
WARMUP = 30
W, H = 1920.0, 1080.0


def make_scene(frames: int, objects: int, seed: int = 0) -> list[tuple[np.ndarray, ...]]:
    """Per frame: (xyxy, confidence, class_id, gt object index (-1 = false positive), gap)."""
    rng = np.random.default_rng(seed)
    pos = rng.uniform([100, 100], [W - 100, H - 100], (objects, 2))
    size = rng.uniform([25, 40], [90, 160], (objects, 2))
    speed = rng.uniform(1.0, 8.0, objects)
    heading = rng.uniform(0, 2 * np.pi, objects)
    cls = rng.integers(0, 3, objects).astype(np.int32)
    out, gap = [], 1
    for _ in range(frames):
        heading += rng.normal(0, 0.03, objects) + _steer(pos, heading)
        pos += np.stack([np.cos(heading), np.sin(heading)], 1) * speed[:, None]
        if rng.random() < 0.02:  # a dropped frame: the tracker sees the next one with gap 2
            gap += 1
            continue
        out.append(_detect(rng, pos, size, cls, gap))
        gap = 1
    return out


def _steer(pos: np.ndarray, heading: np.ndarray) -> np.ndarray:
    """Turn objects near an edge smoothly back towards the middle (no instant bounces)."""
    near = (pos < 200).any(1) | (pos > [W - 200, H - 200]).any(1)
    home = np.arctan2(H / 2 - pos[:, 1], W / 2 - pos[:, 0])
    turn = (home - heading + np.pi) % (2 * np.pi) - np.pi
    return np.where(near, np.clip(turn, -0.08, 0.08), 0.0)


def _detect(rng, pos, size, cls, gap) -> tuple[np.ndarray, ...]:
    """Noisy detections of the true boxes: 5% missed, 10% low-score, ~1 false positive."""
    n = len(pos)
    seen = np.flatnonzero(rng.random(n) > 0.05)
    half = size[seen] / 2
    xyxy = np.concatenate([pos[seen] - half, pos[seen] + half], 1)
    xyxy += rng.normal(0, 1, xyxy.shape) * 0.03 * np.tile(size[seen], 2)
    conf = np.where(rng.random(len(seen)) < 0.1, rng.uniform(0.15, 0.5), rng.uniform(0.6, 0.95))
    n_fp = rng.poisson(1.0)
    fp_xy = rng.uniform([0, 0], [W - 80, H - 80], (n_fp, 2))
    fp = np.concatenate([fp_xy, fp_xy + rng.uniform(20, 80, (n_fp, 2))], 1)
    return (
        np.concatenate([xyxy, fp]).astype(np.float32),
        np.concatenate([conf, rng.uniform(0.1, 0.55, n_fp)]).astype(np.float32),
        np.concatenate([cls[seen], rng.integers(0, 3, n_fp)]).astype(np.int32),
        np.concatenate([seen, np.full(n_fp, -1)]),
        np.array(gap),
    )


def id_stats(gt: list[np.ndarray], ids: list[np.ndarray]) -> tuple[int, int]:
    """(distinct IDs given to real objects, ID switches: an object's ID changing)."""
    last: dict[int, int] = {}
    switches, given = 0, set()
    for g, t in zip(gt, ids, strict=True):
        for obj, tid in zip(g.tolist(), t.tolist(), strict=True):
            if obj < 0 or tid < 0:
                continue
            given.add(tid)
            switches += last.get(obj, tid) != tid
            last[obj] = tid
    return len(given), switches


def run_rkpipe(scene: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, list[np.ndarray]]:
    """Per-frame seconds and per-detection IDs from rkpipe's Tracker."""
    sys.path.insert(0, str(ROOT))
    from stages.bytetrack import Tracker

    tracker, times, ids = Tracker(), [], []
    for xyxy, conf, cls, _, gap in scene:
        t0 = time.perf_counter()
        result = tracker.update(xyxy, conf, cls, frame_gap=int(gap))
        times.append(time.perf_counter() - t0)
        ids.append(result.tracker_id)
    return np.array(times), ids


def run_supervision(scene: list[tuple[np.ndarray, ...]]) -> tuple[np.ndarray, list[np.ndarray]]:
    """The same with supervision's ByteTrack (same thresholds; it cannot be told of gaps)."""
    import supervision as sv

    tracker, times, ids = sv.ByteTrack(track_activation_threshold=0.5), [], []
    for xyxy, conf, cls, _, _ in scene:
        dets = sv.Detections(xyxy=xyxy, confidence=conf, class_id=cls)
        t0 = time.perf_counter()
        out = tracker.update_with_detections(dets)
        times.append(time.perf_counter() - t0)
        by_box = {row.tobytes(): int(t) for row, t in zip(out.xyxy, out.tracker_id, strict=True)}
        ids.append(np.array([by_box.get(row.tobytes(), -1) for row in xyxy], np.int64))
    return np.array(times), ids


def save_scene(scene: list[tuple[np.ndarray, ...]], path: Path) -> None:
    """Write the frames as flat arrays plus per-frame lengths (no pickle)."""
    cols = list(zip(*scene, strict=True))
    np.savez(
        path,
        xyxy=np.concatenate(cols[0]),
        conf=np.concatenate(cols[1]),
        cls=np.concatenate(cols[2]),
        gt=np.concatenate(cols[3]),
        gap=np.array(cols[4]),
        lengths=np.array([len(c) for c in cols[1]]),
    )


def load_scene(path: Path) -> list[tuple[np.ndarray, ...]]:
    """Inverse of ``save_scene``."""
    z = np.load(path)
    cuts = np.cumsum(z["lengths"])[:-1]
    parts = [np.split(z[k], cuts) for k in ("xyxy", "conf", "cls", "gt")]
    return [(*frame, gap) for frame, gap in zip(zip(*parts, strict=True), z["gap"], strict=True)]


def supervision_child(scene_path: Path, out_path: Path) -> None:
    """Entry point inside the supervision venv: time it and write times and IDs back."""
    times, ids = run_supervision(load_scene(scene_path))
    np.savez(out_path, times=times, ids=np.concatenate(ids))


def baseline(sv_python: Path, scene: list[tuple[np.ndarray, ...]]) -> tuple | None:
    """Run supervision in its own interpreter on the same scene; None (and why) if absent."""
    if not sv_python.exists():
        print(f"supervision: skipped ({sv_python} not found; see this file's docstring)")
        return None
    with tempfile.TemporaryDirectory() as tmp:
        scene_path, out_path = Path(tmp, "scene.npz"), Path(tmp, "out.npz")
        save_scene(scene, scene_path)
        cmd = [str(sv_python), __file__, "--sv-child", str(scene_path), str(out_path)]
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
        if proc.returncode != 0:
            print(f"supervision: skipped (failed: {proc.stderr.strip().splitlines()[-1:]})")
            return None
        z = np.load(out_path)
        lengths = [len(frame[1]) for frame in scene]
        return z["times"], np.split(z["ids"], np.cumsum(lengths)[:-1])


def report(name: str, times: np.ndarray, ids: list[np.ndarray], gt: list[np.ndarray]) -> None:
    """One line: p50/mean/p99 ms per frame after warm-up, and ID quality."""
    ms = times[WARMUP:] * 1e3
    given, switches = id_stats(gt, ids)
    print(
        f"{name:<12} p50 {np.median(ms):6.3f} ms  mean {ms.mean():6.3f} ms  "
        f"p99 {np.percentile(ms, 99):6.3f} ms  | IDs given {given:4d}  ID switches {switches:4d}"
    )


def main() -> None:
    """Pin to one core, build the scene, time rkpipe then supervision on it."""
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=1000)
    ap.add_argument("--objects", type=int, default=50)
    ap.add_argument("--sv-python", type=Path, default=Path("/tmp/sv/bin/python"))
    ap.add_argument("--sv-child", nargs=2, type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sv_child:
        supervision_child(*args.sv_child)
        return
    cpu = max(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})
    scene = make_scene(args.frames, args.objects)
    gt = [frame[3] for frame in scene]
    dets = np.mean([len(frame[1]) for frame in scene])
    print(
        f"{len(scene)} frames ({args.frames - len(scene)} dropped), {args.objects} objects, "
        f"{dets:.1f} detections/frame, pinned to CPU {cpu}, 1 numpy thread"
    )
    report("rkpipe", *run_rkpipe(scene), gt)
    sv_result = baseline(args.sv_python, scene)
    if sv_result is not None:
        report("supervision", *sv_result, gt)


if __name__ == "__main__":
    main()
