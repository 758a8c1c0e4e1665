"""``rkpipe scene``: write a synthetic clip (MP4) and its ground truth (JSON) for tests,
benchmarks and demos without any real video.

    python -m stages.synthetic.cli out/street.mp4 --preset hard --seed 3 --frames 300 \\
        --line door=0,300,640,300
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

import cv2

from pipeline.output_files import make_folder, named, open_file, write_replacing
from stages.synthetic.actors import PRESETS
from stages.synthetic.scene import Scene

__all__ = ["build_parser", "main", "parse_line", "write_clip"]

Line = tuple[tuple[float, float], tuple[float, float]]


def parse_line(text: str) -> tuple[str, Line]:
    """``name=x1,y1,x2,y2`` -> (name, ((x1, y1), (x2, y2)))."""
    name, sep, coords = text.partition("=")
    parts = coords.split(",")
    try:
        x1, y1, x2, y2 = (float(v) for v in parts)
    except ValueError:
        msg = f"--line {text!r}: expected name=x1,y1,x2,y2 with four numbers"
        raise argparse.ArgumentTypeError(msg) from None
    if not sep or not name:
        msg = f"--line {text!r}: expected name=x1,y1,x2,y2"
        raise argparse.ArgumentTypeError(msg)
    return name, ((x1, y1), (x2, y2))


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``rkpipe scene``."""
    p = argparse.ArgumentParser(
        prog="rkpipe scene",
        description="Write a synthetic street clip (MP4) and its ground truth (JSON), for "
        "tests, benchmarks and demos without any real video.",
        epilog="example: rkpipe scene out/street.mp4 --preset hard --seed 3 --frames 300 "
        "--line door=0,300,640,300",
    )
    p.add_argument("output", type=Path, help="MP4 file to write; the truth goes to .json beside")
    p.add_argument("--preset", default="easy", choices=sorted(PRESETS))
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--frames", type=int, default=300, help="clip length (default 300)")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=float, default=30.0)
    p.add_argument(
        "--line",
        type=parse_line,
        action="append",
        default=[],
        metavar="N=X1,Y1,X2,Y2",
        help="a counting line for the crossings truth (repeatable)",
    )
    p.add_argument("--truth", type=Path, help="truth JSON path (default: OUTPUT with .json)")
    return p


def _frame_record(scene: Scene, i: int) -> dict[str, Any]:
    t = scene.truth(i)
    return {
        "frame": i,
        "xyxy": [[round(float(v), 2) for v in box] for box in t.xyxy],
        "class_id": t.class_id.tolist(),
        "track_id": t.track_id.tolist(),
        "visibility": [round(float(v), 3) for v in t.visibility],
    }


def write_clip(scene: Scene, video: Path, truth: Path, frames: int, lines: dict[str, Line]) -> int:
    """Render ``frames`` frames to ``video`` (mp4v) and their truth to ``truth``; returns the
    number of crossings."""
    make_folder(video.parent, sticky_ok=True)  # never through a link at its name
    fd = open_file(video, truncate=True)
    try:
        with named(fd, video.suffix) as name:
            code, size = cv2.VideoWriter.fourcc(*"mp4v"), (scene.width, scene.height)
            writer = cv2.VideoWriter(name, code, scene.fps, size)
    finally:
        os.close(fd)
    if not writer.isOpened():
        msg = f"OpenCV cannot write {video} (mp4v)"
        raise OSError(msg)
    try:
        records = []
        for i in range(frames):
            writer.write(scene.render(i))
            records.append(_frame_record(scene, i))
    finally:
        writer.release()
    crossings = scene.crossings(lines, frames)
    doc = {
        "scene": {
            "preset": scene.preset,
            "seed": scene.seed,
            "width": scene.width,
            "height": scene.height,
            "fps": scene.fps,
            "frames": frames,
        },
        "classes": {"0": "person", "2": "car"},
        "lines": {k: [list(a), list(b)] for k, (a, b) in lines.items()},
        "frames": records,
        "crossings": [c.__dict__ for c in crossings],
    }
    write_replacing(truth, json.dumps(doc, separators=(",", ":")).encode())
    return len(crossings)


def main(argv: list[str] | None = None) -> int:
    """write a synthetic street clip (MP4) and its ground truth (JSON)"""
    args = build_parser().parse_args(argv)
    lines = dict(args.line)
    if len(lines) != len(args.line):
        print("rkpipe scene: line names must be unique", file=sys.stderr)
        return 2
    if args.frames < 1:
        print("rkpipe scene: --frames must be at least 1", file=sys.stderr)
        return 2
    try:
        scene = Scene(args.preset, args.seed, args.width, args.height, args.fps)
        truth = args.truth or args.output.with_suffix(".json")
        n = write_clip(scene, args.output, truth, args.frames, lines)
    except (ValueError, OSError) as exc:
        print(f"rkpipe scene: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({args.frames} frames) and {truth} ({n} crossings)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
