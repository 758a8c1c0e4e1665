"""Make the default detector's training set: 320x320 tiles cut from full-size synthetic street
frames, with YOLO labels, under ``models/data/``.

Tiles are crops, never downscaled, so people and cars keep the pixel size they have in a
640x360 frame letterboxed to 640x640 at deployment, while training runs at imgsz 320 (a
quarter of the compute). The dataset yaml lists all 80 COCO names, so the model keeps the
stock YOLOv8 output layout; only person (0) and car (2) occur.

    python models/make_dataset.py            # ~3000 train + ~300 val tiles, seed 0
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stages.synthetic import FrameTruth, Scene  # noqa: E402

TILE = 320
MIN_SHOWN = 0.3  # least share of an object that must be seen in the tile for a label
VAL_SEED_BASE = 1_000_000  # scene seeds of the validation split; train seeds stay below
COCO_NAMES = (  # noqa: SIM905 (one string reads better than 80 lines)
    "person bicycle car motorcycle airplane bus train truck boat traffic_light fire_hydrant "
    "stop_sign parking_meter bench bird cat dog horse sheep cow elephant bear zebra giraffe "
    "backpack umbrella handbag tie suitcase frisbee skis snowboard sports_ball kite "
    "baseball_bat baseball_glove skateboard surfboard tennis_racket bottle wine_glass cup fork "
    "knife spoon bowl banana apple sandwich orange broccoli carrot hot_dog pizza donut cake "
    "chair couch potted_plant bed dining_table toilet tv laptop mouse remote keyboard "
    "cell_phone microwave oven toaster sink refrigerator book clock vase scissors teddy_bear "
    "hair_drier toothbrush"
).split()
assert len(COCO_NAMES) == 80


def tile_labels(truth: FrameTruth, x0: int, y0: int) -> list[str]:
    """YOLO label lines (class cx cy w h, normalised) of the objects seen in the tile."""
    vis = truth.visibility.astype(np.float64)
    frame = truth.xyxy.astype(np.float64)
    tile = frame.copy()
    tile[:, 0::2] = (tile[:, 0::2] - x0).clip(0, TILE)
    tile[:, 1::2] = (tile[:, 1::2] - y0).clip(0, TILE)
    tw, th = tile[:, 2] - tile[:, 0], tile[:, 3] - tile[:, 1]
    frame_area = (frame[:, 2] - frame[:, 0]) * (frame[:, 3] - frame[:, 1])
    shown = vis * tw * th / np.maximum(frame_area, 1e-9)
    lines = []
    for j in np.flatnonzero((shown >= MIN_SHOWN) & (tw >= 3) & (th >= 4)):
        cx, cy = (tile[j, 0] + tile[j, 2]) / 2 / TILE, (tile[j, 1] + tile[j, 3]) / 2 / TILE
        c = int(truth.class_id[j])
        lines.append(f"{c} {cx:.6f} {cy:.6f} {tw[j] / TILE:.6f} {th[j] / TILE:.6f}")
    return lines


def write_split(out: Path, split: str, n_scenes: int, seed: int, base: int) -> tuple[int, int]:
    """Write ``n_scenes`` x 5 frames x 2 tiles; returns (tiles, labelled boxes)."""
    rng = np.random.default_rng([seed, base])
    img_dir, lbl_dir = out / "images" / split, out / "labels" / split
    img_dir.mkdir(parents=True, exist_ok=True)
    lbl_dir.mkdir(parents=True, exist_ok=True)
    tiles = boxes = 0
    for k in range(n_scenes):
        r = rng.random()
        preset = "empty" if r < 0.06 else "easy" if r < 0.5 else "hard"
        scene = Scene(preset, seed=base + k)
        for i in rng.choice(2400, 5, replace=False):
            img, truth = scene.render(int(i)), scene.truth(int(i))
            for _ in range(2):
                x0 = int(rng.integers(0, scene.width - TILE + 1))
                y0 = int(rng.integers(0, scene.height - TILE + 1))
                name = f"{preset}_s{base + k}_f{i}_x{x0}_y{y0}"
                crop = img[y0 : y0 + TILE, x0 : x0 + TILE]
                cv2.imwrite(str(img_dir / f"{name}.jpg"), crop, [cv2.IMWRITE_JPEG_QUALITY, 92])
                labels = tile_labels(truth, x0, y0)
                (lbl_dir / f"{name}.txt").write_text("".join(f"{ln}\n" for ln in labels))
                tiles, boxes = tiles + 1, boxes + len(labels)
    return tiles, boxes


def write_yaml(out: Path) -> Path:
    """The Ultralytics dataset file, with all 80 COCO class names (nc = 80)."""
    names = "\n".join(f"  {i}: {n}" for i, n in enumerate(COCO_NAMES))
    path = out / "street.yaml"
    path.write_text(f"path: {out}\ntrain: images/train\nval: images/val\nnames:\n{names}\n")
    return path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "models" / "data")
    p.add_argument("--train-scenes", type=int, default=300, help="x10 tiles (default 300)")
    p.add_argument("--val-scenes", type=int, default=30, help="x10 tiles (default 30)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    t0 = time.monotonic()
    train = write_split(args.out, "train", args.train_scenes, args.seed, 0)
    val = write_split(args.out, "val", args.val_scenes, args.seed, VAL_SEED_BASE)
    yaml = write_yaml(args.out)
    print(f"train {train[0]} tiles / {train[1]} boxes, val {val[0]} tiles / {val[1]} boxes")
    print(f"wrote {yaml} in {time.monotonic() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
