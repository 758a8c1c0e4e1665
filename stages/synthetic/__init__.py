"""Synthetic street scenes with exact ground truth: people and cars moving along a street,
deterministic from a seed, for live pipeline sources, training data and evaluation.

    scene = Scene("hard", seed=3)
    frame, truth = scene.render(0), scene.truth(0)
    events = scene.crossings({"door": ((0, 300), (640, 300))}, frames=300)
"""

from __future__ import annotations

from stages.synthetic.actors import PRESETS, Preset
from stages.synthetic.scene import Crossing, FrameTruth, Scene, is_scene_uri, parse_scene_uri
from stages.synthetic.stage import SyntheticSource

__all__ = [
    "PRESETS",
    "Crossing",
    "FrameTruth",
    "Preset",
    "Scene",
    "SyntheticSource",
    "is_scene_uri",
    "parse_scene_uri",
]
