"""Tracking and counting accuracy against exact ground truth, rkpipe vs supervision.

Synthetic street clips (``stages.synthetic``, easy and hard presets) run through the default
detector (models/rkpipe-yolov8n.onnx, ONNX Runtime in-process, through the letterbox, infer
and yolov8_decode stages) once; the SAME detections then go to rkpipe's Tracker +
LineCounter and, when a venv with it exists (``python3 -m venv /tmp/sv &&
/tmp/sv/bin/pip install supervision==0.26.1``), to supervision's ByteTrack + LineZone in a
subprocess (detections passed in a .npz file). Reported per tracker: MOTA, IDF1, ID switches
(CLEAR-MOT and IDF1 by py-motmetrics, IoU >= 0.5 against objects at least ``--min-vis``
visible; others are "don't care") and the crossing-count error per line vs the scene's truth:
against every crossing, and against the countable ones (the object seen at least ``--min-vis``
visible on two frames or more within ``--window`` frames before and after: what a camera can
count). The events line matches each counted crossing to a true one on the same line and
direction, at most ``--window`` frames apart: missed and extra events, where the count error
lets a miss and an extra cancel. With several ``--seeds``, a total per preset and tracker
sums the errors over the clips.

    python benchmarks/bench_accuracy.py [--frames 600] [--hard-frames 300] [--seeds 7,8,9]
        [--presets easy,hard] [--json out.json] [--cache DIR]

``--against MODEL`` also runs a second detector on the same frames (each letterboxed to its
own model's input, as ``size = "model"`` does in a graph) and compares it with ``--model``:
recall and mean IoU of the first model's boxes at ``--against-conf``, box counts, and both
models' line-crossing counts, against the target for a model at another input size (recall
and IoU >= 0.995, counts within 0.5%):

    python benchmarks/bench_accuracy.py --frames 200 --hard-frames 150 --seeds 7,8 \
        --against models/rkpipe-yolov8n-640x384.onnx
"""

from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # before numpy loads its BLAS

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT / "models" / "rkpipe-yolov8n.onnx"
WIDTH, HEIGHT = 640, 360
CLASSES = {0: "person", 2: "car"}

Frames = list[tuple[np.ndarray, np.ndarray, np.ndarray]]  # per frame: xyxy, conf, class_id
Event = tuple[int, str, str]  # a counted crossing: frame (0-based), line, direction


def scene_lines(width: int = WIDTH, height: int = HEIGHT) -> dict[str, tuple]:
    """Counting lines on the synthetic street: one along the road (walkers crossing it), and
    three across the street at a quarter, half and three quarters of the width (cars, and
    walkers on the sidewalks)."""
    w, h = float(width), float(height)
    return {
        "road": ((0.0, 0.6 * h), (w, 0.6 * h)),
        "left": ((0.25 * w, 0.0), (0.25 * w, h)),
        "middle": ((0.5 * w, 0.0), (0.5 * w, h)),
        "right": ((0.75 * w, 0.0), (0.75 * w, h)),
    }


# --- detections (main interpreter only) ---------------------------------------------------


def detect(
    preset: str, seed: int, frames: int, conf: float, threads: int, model: Path = MODEL
) -> Frames:
    """Run the default model on frames 0..frames-1 of a scene, as a graph would."""
    sys.path.insert(0, str(ROOT))
    from pipeline.messages import Message
    from pipeline.stage import Context
    from stages.infer import Infer
    from stages.infer.input_size import onnx_input_size
    from stages.letterbox.stage import Letterbox
    from stages.synthetic import Scene
    from stages.yolov8_decode.stage import YoloV8Decode

    scene = Scene(preset, seed=seed, width=WIDTH, height=HEIGHT)
    ctx = Context(stage="bench", graph_dir=ROOT)
    size = onnx_input_size(model) or (640, 640)  # what size = "model" takes in a graph
    chain = [
        Letterbox(size=size),
        Infer(model=str(model), threads=threads),
        YoloV8Decode(conf=conf),
    ]
    for stage in chain:
        stage.setup(ctx)
    out: Frames = []
    for i in range(frames):
        msg = Message("bench", i, i - 1, arrays={"frame": scene.render(i)})
        for stage in chain:
            msg = stage.process(msg)
        det = msg.detections
        out.append((det.xyxy.copy(), det.confidence.copy(), det.class_id.copy()))
    for stage in chain:
        stage.close()
    return out


def save_frames(frames: Frames, path: Path) -> None:
    """Per-frame arrays flattened, plus lengths (no pickle)."""
    cols = list(zip(*frames, strict=True))
    np.savez(
        path,
        xyxy=np.concatenate(cols[0]).reshape(-1, 4),
        conf=np.concatenate(cols[1]),
        cls=np.concatenate(cols[2]),
        lengths=np.array([len(c) for c in cols[1]]),
    )


def load_frames(path: Path) -> Frames:
    z = np.load(path)
    cuts = np.cumsum(z["lengths"])[:-1]
    parts = [np.split(z[k], cuts) for k in ("xyxy", "conf", "cls")]
    return list(zip(*parts, strict=True))


# --- trackers + counters (the supervision one runs in its own venv) -----------------------


def run_rkpipe(frames: Frames, lines: dict) -> tuple[list[tuple], dict, list[Event]]:
    """rkpipe's Tracker + LineCounter with the bytetrack/line_crossing stage defaults."""
    sys.path.insert(0, str(ROOT))
    from stages.bytetrack.stage import ByteTrack
    from stages.line_crossing import LineCounter

    tracker, counter, tracks, events = ByteTrack.Config().tracker(), LineCounter(lines), [], []
    for xyxy, conf, cls in frames:
        r = tracker.update(xyxy, conf, cls)
        keep = r.tracker_id >= 0
        events += counter.update(r.xyxy, r.tracker_id, r.class_id)
        tracks.append((r.xyxy[keep], r.tracker_id[keep], r.class_id[keep]))
    events += counter.finish()  # the clip's end, as the line_crossing stage's end_stream does
    # the counter numbers frames from 1
    return tracks, counter.counts, [(e.frame - 1, e.line, e.direction) for e in events]


def run_supervision(frames: Frames, lines: dict) -> tuple[list[tuple], dict, list[Event]]:
    """supervision's ByteTrack + LineZone (bottom-centre anchor, as rkpipe's default).

    LineZone calls a move to the left of start->end "in"; rkpipe (and the truth) call a move
    to the clockwise side "in", i.e. the right in image coordinates: directions are swapped
    back here so both report in one convention."""
    import supervision as sv

    tracker = sv.ByteTrack(track_activation_threshold=0.5, frame_rate=30)
    anchor = [sv.Position.BOTTOM_CENTER]
    zones = {
        name: sv.LineZone(sv.Point(*a), sv.Point(*b), triggering_anchors=anchor)
        for name, (a, b) in lines.items()
    }
    counts = {name: {"in": {}, "out": {}} for name in lines}
    tracks, events = [], []
    for i, (xyxy, conf, cls) in enumerate(frames):
        det = tracker.update_with_detections(
            sv.Detections(xyxy=xyxy, confidence=conf, class_id=cls.astype(int))
        )
        tracks.append((det.xyxy, det.tracker_id.astype(np.int64), det.class_id))
        for name, zone in zones.items():
            went_in, went_out = zone.trigger(det)
            for flags, ours in ((went_out, "in"), (went_in, "out")):
                for c in det.class_id[flags].tolist():
                    counts[name][ours][int(c)] = counts[name][ours].get(int(c), 0) + 1
                    events.append((i, name, ours))
    return tracks, counts, events


def supervision_child(args: list[str]) -> None:
    """Entry point inside the supervision venv: track, count, write results back."""
    det_path, out_path = Path(args[0]), Path(args[1])
    lines = json.loads(args[2])
    tracks, counts, events = run_supervision(load_frames(det_path), lines)
    save_frames([(x, t, c) for x, t, c in tracks], out_path)
    Path(str(out_path) + ".json").write_text(json.dumps({"counts": counts, "events": events}))


def supervision(sv_python: Path, frames: Frames, lines: dict) -> tuple | str:
    """supervision's results via its own interpreter; a reason string when unavailable."""
    if not sv_python.exists():
        return f"skipped ({sv_python} not found; see this file's docstring)"
    with tempfile.TemporaryDirectory() as tmp:
        det_path, out_path = Path(tmp, "det.npz"), Path(tmp, "out.npz")
        save_frames(frames, det_path)
        cmd = [str(sv_python), __file__, "--sv-child", str(det_path), str(out_path)]
        proc = subprocess.run(
            [*cmd, json.dumps(lines)], capture_output=True, text=True, timeout=600, check=False
        )
        if proc.returncode != 0:
            return f"skipped (failed: {proc.stderr.strip().splitlines()[-1:]})"
        tracks = [(x, t.astype(np.int64), c) for x, t, c in load_frames(out_path)]
        result = json.loads(Path(str(out_path) + ".json").read_text())
    counts = {
        n: {d: {int(c): v for c, v in by.items()} for d, by in ds.items()}
        for n, ds in result["counts"].items()
    }
    return tracks, counts, [tuple(e) for e in result["events"]]


# --- scoring ------------------------------------------------------------------------------


def iou_matrix(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of each box in ``a`` (N, 4) with each in ``b`` (M, 4)."""
    a, b = a[:, None, :], b[None, :, :]
    w = np.clip(np.minimum(a[..., 2], b[..., 2]) - np.maximum(a[..., 0], b[..., 0]), 0, None)
    h = np.clip(np.minimum(a[..., 3], b[..., 3]) - np.maximum(a[..., 1], b[..., 1]), 0, None)
    inter = w * h
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])  # noqa: E731
    return inter / np.maximum(area(a) + area(b) - inter, 1e-9)


def mot_scores(truth: list, tracks: list[tuple], min_vis: float) -> dict[str, float]:
    """MOTA, IDF1, ID switches by py-motmetrics; hypotheses that overlap an object seen less
    than ``min_vis`` (IoU >= 0.5) are ignored rather than counted as false positives."""
    import motmetrics as mm

    acc = mm.MOTAccumulator(auto_id=True)
    for t, (xyxy, ids, _) in zip(truth, tracks, strict=True):
        care = t.visibility >= min_vis
        iou = (
            iou_matrix(t.xyxy, xyxy)
            if len(xyxy) and len(t.xyxy)
            else np.zeros((len(t.xyxy), len(xyxy)))
        )
        dont = np.zeros(len(xyxy), bool)
        if (~care).any() and len(xyxy):
            dont = (iou[~care] >= 0.5).any(axis=0) & ~(iou[care] >= 0.5).any(axis=0)
        dist = 1.0 - iou[care][:, ~dont]
        dist[dist > 0.5] = np.nan
        acc.update(t.track_id[care].tolist(), ids[~dont].tolist(), dist)
    mh = mm.metrics.create()
    sums = ["idtp", "idfp", "idfn", "num_misses", "num_false_positives", "num_objects"]
    s = mh.compute(acc, metrics=["mota", "idf1", "num_switches", *sums], name="x")
    return {
        "mota": float(s["mota"].iloc[0]),
        "idf1": float(s["idf1"].iloc[0]),
        "id_switches": int(s["num_switches"].iloc[0]),
        **{k: int(s[k].iloc[0]) for k in sums},  # for totals pooled over clips
    }


def pooled(res: list[dict]) -> tuple[float, float]:
    """MOTA and IDF1 over several clips as one sequence (as MOT benchmarks total them)."""
    total = {k: sum(r[k] for r in res) for k in res[0] if isinstance(res[0][k], int)}
    idf1 = 2 * total["idtp"] / max(2 * total["idtp"] + total["idfp"] + total["idfn"], 1)
    errors = total["num_misses"] + total["num_false_positives"] + total["id_switches"]
    return 1 - errors / max(total["num_objects"], 1), idf1


def per_direction(counts: dict) -> dict[str, dict[str, int]]:
    """Crossings per line and direction, all classes together."""
    return {n: {d: sum(by.values()) for d, by in ds.items()} for n, ds in counts.items()}


def count_error(counts: dict, truth: dict) -> dict[str, object]:
    """Crossings per line/direction (all classes) and their error vs the truth."""
    got, want = per_direction(counts), per_direction(truth)
    total = _total(truth)
    wrong = sum(abs(got[n][d] - want[n][d]) for n in want for d in want[n])
    exact_by_class = (
        all(
            counts[n][d].get(c, 0) == v
            for n in truth
            for d in truth[n]
            for c, v in truth[n][d].items()
        )
        and got == want
    )
    return {
        "counts": got,
        "truth": want,
        "abs_error": wrong,
        "rel_error": wrong / max(total, 1),
        "exact": exact_by_class,
    }


def countable_error(counts: dict, seen: dict, truth: dict) -> dict[str, object]:
    """The error against what a camera can count: per line and direction, the countable
    crossings missed, plus the counts beyond every true crossing (counting a crossing that
    was hard to see is not an error; counting one that never happened is)."""
    got, low, high = per_direction(counts), per_direction(seen), per_direction(truth)
    wrong = sum(
        max(0, low[n][d] - got[n][d]) + max(0, got[n][d] - high[n][d])
        for n in high
        for d in high[n]
    )
    return {"abs_error": wrong, "rel_error": wrong / max(_total(seen), 1), "exact": wrong == 0}


def event_errors(truth: list[Event], got: list[Event], within: int) -> dict[str, int]:
    """Crossing events matched one to one, per line and direction, to true crossings at most
    ``within`` frames apart (closest first): the missed and the extra ones. Stricter than the
    count error, where a miss and an extra on the same line and direction cancel."""
    missed = extra = 0
    for key in {e[1:] for e in truth} | {e[1:] for e in got}:
        want = sorted(f for f, *k in truth if tuple(k) == key)
        have = sorted(f for f, *k in got if tuple(k) == key)
        pairs = sorted((abs(a - b), i, j) for i, a in enumerate(want) for j, b in enumerate(have))
        used_w, used_h = set(), set()
        for gap, i, j in pairs:
            if gap <= within and i not in used_w and j not in used_h:
                used_w.add(i)
                used_h.add(j)
        missed += len(want) - len(used_w)
        extra += len(have) - len(used_h)
    return {"missed": missed, "extra": extra}


def truth_counts(scene, lines: dict, truth: list, min_vis: float = 0.0, window: int = 30) -> dict:
    """Crossings per line/direction/class by the scene's truth. With ``min_vis``, only the
    countable ones: the object is at least that visible on two frames or more of the
    ``window`` frames before the crossing and of the ``window`` after it, i.e. it can be seen
    on both sides of the line (a crossing made wholly behind others, or in a clip's first
    frame, is one no camera can count: a tracker confirms a track on its second sighting)."""
    seen: dict[int, set[int]] = {}
    for f, t in enumerate(truth):
        for tid in t.track_id[t.visibility >= min_vis].tolist():
            seen.setdefault(tid, set()).add(f)
    counts = {n: {"in": {}, "out": {}} for n in lines}
    for c in scene.crossings(lines, len(truth)):
        if min_vis > 0:
            frames = seen.get(c.track_id, set())
            before = sum(f in frames for f in range(c.frame - window, c.frame)) >= 2
            after = sum(f in frames for f in range(c.frame, c.frame + window)) >= 2
            if not (before and after):
                continue
        by = counts[c.line][c.direction]
        by[c.class_id] = by.get(c.class_id, 0) + 1
    return counts


def evaluate(preset: str, seed: int, frames: int, args: argparse.Namespace) -> dict:
    """Detect once, then score each tracker on the same detections."""
    sys.path.insert(0, str(ROOT))
    from stages.synthetic import Scene

    scene = Scene(preset, seed=seed, width=WIDTH, height=HEIGHT)
    lines = scene_lines()
    t0 = time.perf_counter()
    cache = args.cache and args.cache / f"{preset}-{seed}-{frames}-{args.conf}.npz"
    cached = bool(cache and cache.exists())
    if cached:
        dets = load_frames(cache)
    else:
        dets = detect(preset, seed, frames, args.conf, args.threads, args.model)
        if cache:
            cache.parent.mkdir(parents=True, exist_ok=True)
            save_frames(dets, cache)
    det_s = time.perf_counter() - t0
    truth = [scene.truth(i) for i in range(frames)]
    want = truth_counts(scene, lines, truth)
    seen = truth_counts(scene, lines, truth, args.min_vis, args.window)
    out: dict = {
        "preset": preset,
        "seed": seed,
        "frames": frames,
        "detect_ms_per_frame": None if cached else round(det_s / frames * 1e3, 1),
        "truth_crossings": _total(want),
        "truth_crossings_countable": _total(seen),
    }
    true_events = [(c.frame, c.line, c.direction) for c in scene.crossings(lines, frames)]
    results = {"rkpipe": run_rkpipe(dets, lines)}
    sv_result = supervision(args.sv_python, dets, lines)
    if isinstance(sv_result, str):
        out["supervision"] = sv_result
    else:
        results["supervision"] = sv_result
    if args.against is not None:
        other = detect(preset, seed, frames, args.conf, args.threads, args.against)
        out["against"] = compare_models(dets, other, lines, want, args.against_conf)
    for name, (tracks, counts, events) in results.items():
        out[name] = {**mot_scores(truth, tracks, args.min_vis), **count_error(counts, want)}
        out[name]["countable"] = countable_error(counts, seen, want)
        out[name]["events"] = event_errors(true_events, events, args.window)
    return out


def compare_models(ref: Frames, other: Frames, lines: dict, want: dict, conf: float) -> dict:
    """``--against``: another model's detections on the same frames, against ``ref``'s (at
    ``conf``; matched per class at IoU >= 0.5), and both models' crossing counts."""
    sys.path.insert(0, str(ROOT))
    from pipeline.detections import Detections
    from stages.infer.rknn_export.verify import agreement

    def dets(frames: Frames) -> list[Detections]:
        return [Detections(x[c >= conf], c[c >= conf], k[c >= conf]) for x, c, k in frames]

    same = agreement(dets(ref), dets(other))
    got = {}
    for name, frames in (("ref", ref), ("other", other)):
        got[name] = count_error(run_rkpipe(frames, lines)[1], want)
    counts = [sum(v for ds in got[k]["counts"].values() for v in ds.values()) for k in got]
    return {
        "conf": conf,
        "reference_boxes": same.reference,
        "matched": same.matched,
        "extra": same.extra,
        "recall": same.recall,
        "mean_iou": same.mean_iou,
        "boxes": [sum(len(f[1][f[1] >= conf]) for f in fr) for fr in (ref, other)],
        "crossings": counts,
        "count_abs_error": [got[k]["abs_error"] for k in ("ref", "other")],
    }


def print_against(rows: list[dict], ref: Path, other: Path) -> None:
    """The ``--against`` table: the other model's boxes against the reference model's."""
    print(f"\n{other.name} against {ref.name} (same frames; boxes at conf, IoU >= 0.5):")
    head = f"{'clip':<18}{'boxes ref/other':>17}{'recall':>8}{'mean IoU':>9}{'extra':>7}"
    print(head + "  crossings ref/other (count error vs truth)")
    tot = {"ref": 0, "matched": 0, "extra": 0, "b0": 0, "b1": 0, "c0": 0, "c1": 0, "iou": 0.0}
    for r in rows:
        a = r["against"]
        clip = f"{r['preset']} s{r['seed']} {r['frames']}f"
        print(
            f"{clip:<18}{a['boxes'][0]:>9}/{a['boxes'][1]:<7}{a['recall']:8.4f}{a['mean_iou']:9.4f}"
            f"{a['extra']:7d}  {a['crossings'][0]}/{a['crossings'][1]} "
            f"({a['count_abs_error'][0]} / {a['count_abs_error'][1]})"
        )
        tot["ref"] += a["reference_boxes"]
        tot["matched"] += a["matched"]
        tot["extra"] += a["extra"]
        tot["iou"] += a["mean_iou"] * a["matched"]
        tot["b0"], tot["b1"] = tot["b0"] + a["boxes"][0], tot["b1"] + a["boxes"][1]
        tot["c0"], tot["c1"] = tot["c0"] + a["crossings"][0], tot["c1"] + a["crossings"][1]
    recall = tot["matched"] / max(tot["ref"], 1)
    iou = tot["iou"] / max(tot["matched"], 1)
    boxes_diff = abs(tot["b1"] - tot["b0"]) / max(tot["b0"], 1)
    count_diff = abs(tot["c1"] - tot["c0"]) / max(tot["c0"], 1)
    ok = recall >= 0.995 and iou >= 0.995 and boxes_diff <= 0.005 and count_diff <= 0.005
    print(
        f"{'total':<18}{tot['b0']:>9}/{tot['b1']:<7}{recall:8.4f}{iou:9.4f}{tot['extra']:7d}  "
        f"{tot['c0']}/{tot['c1']}  | boxes differ {boxes_diff:.2%}, crossings {count_diff:.2%}; "
        f"target: recall and IoU >= 0.995, counts within 0.5%: {'met' if ok else 'NOT met'}"
    )


def _total(counts: dict) -> int:
    return sum(sum(by.values()) for ds in counts.values() for by in ds.values())


def print_table(rows: list[dict]) -> None:
    head = (
        f"{'clip':<18}{'tracker':<13}{'MOTA':>7}{'IDF1':>7}{'IDsw':>6}  crossings got/truth (err)"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        clip = f"{r['preset']} s{r['seed']} {r['frames']}f"
        for name in ("rkpipe", "supervision"):
            res = r.get(name)
            if isinstance(res, str) or res is None:
                print(f"{clip:<18}{name:<13}{res}")
                continue
            got = sum(v for ds in res["counts"].values() for v in ds.values())
            print(
                f"{clip:<18}{name:<13}{res['mota']:7.3f}{res['idf1']:7.3f}{res['id_switches']:6d}"
                f"  {got}/{r['truth_crossings']} ({res['abs_error']}, {res['rel_error']:.1%})"
                f"{'  exact' if res['exact'] else ''}"
                f" | countable {res['countable']['abs_error']}/{r['truth_crossings_countable']}"
                f" ({res['countable']['rel_error']:.1%})"
                f" | events missed {res['events']['missed']} extra {res['events']['extra']}"
            )


def print_totals(rows: list[dict]) -> None:
    """Crossing errors summed over the clips of each preset, per tracker."""
    for preset in dict.fromkeys(r["preset"] for r in rows):
        clips = [r for r in rows if r["preset"] == preset]
        for name in ("rkpipe", "supervision"):
            res = [r[name] for r in clips if isinstance(r.get(name), dict)]
            if len(res) != len(clips):
                continue
            err = sum(x["abs_error"] for x in res)
            total = sum(r["truth_crossings"] for r in clips)
            c_err = sum(x["countable"]["abs_error"] for x in res)
            c_total = sum(r["truth_crossings_countable"] for r in clips)
            missed = sum(x["events"]["missed"] for x in res)
            extra = sum(x["events"]["extra"] for x in res)
            mota, idf1 = pooled(res)
            print(
                f"{preset + ' total':<18}{name:<13}{mota:7.3f}{idf1:7.3f}"
                f"{sum(x['id_switches'] for x in res):6d}  {len(clips)} clips: crossings error "
                f"{err}/{total} ({err / max(total, 1):.1%}) | countable {c_err}/{c_total} "
                f"({c_err / max(c_total, 1):.1%}) | events missed {missed} extra {extra}"
            )
        both = [
            r for r in clips if all(isinstance(r.get(n), dict) for n in ("rkpipe", "supervision"))
        ]
        if both:
            at_least = sum(r["rkpipe"]["idf1"] >= r["supervision"]["idf1"] for r in both)
            print(f"{preset + ' total':<18}IDF1 >= supervision's on {at_least}/{len(both)} clips")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=600, help="easy clip length")
    ap.add_argument("--hard-frames", type=int, default=300, help="hard clip length")
    ap.add_argument("--seeds", default="7", help="scene seeds, comma-separated")
    ap.add_argument("--presets", default="easy,hard", help="scene presets, comma-separated")
    ap.add_argument("--conf", type=float, default=0.1, help="decode score threshold")
    ap.add_argument("--min-vis", type=float, default=0.5, help="objects seen less: don't care")
    ap.add_argument(
        "--window", type=int, default=30, help="countable: seen within this many frames"
    )
    ap.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads")
    ap.add_argument("--model", type=Path, default=MODEL, help="detector ONNX (stock layout)")
    ap.add_argument(
        "--against",
        type=Path,
        metavar="MODEL",
        help="also run this detector (e.g. models/rkpipe-yolov8n-640x384.onnx) and compare "
        "its boxes and counts with --model's",
    )
    ap.add_argument(
        "--against-conf", type=float, default=0.25, help="--against: boxes compared from here"
    )
    ap.add_argument("--sv-python", type=Path, default=Path("/tmp/sv/bin/python"))
    ap.add_argument("--json", type=Path, help="also write the results here")
    ap.add_argument("--cache", type=Path, help="keep detections here and reuse them")
    ap.add_argument("--sv-child", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.sv_child:
        supervision_child(args.sv_child)
        return
    seeds = [int(x) for x in args.seeds.split(",")]
    length = {"easy": args.frames, "hard": args.hard_frames}
    rows = [
        evaluate(preset, seed, length[preset], args)
        for preset in args.presets.split(",")
        for seed in seeds
    ]
    print_table(rows)
    if len(seeds) > 1:
        print_totals(rows)
    if args.against is not None:
        print_against(rows, args.model, args.against)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
