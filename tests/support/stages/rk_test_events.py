"""A test stage that adds known analytics events, so sink tests know exactly what to expect.

Referenced from graphs as ``uses = "rk_test_events:EmitEvents"``.
"""

from __future__ import annotations

from pathlib import Path

import cv2

from pipeline import Message, Stage, StageConfig
from stages import events


class EmitEvents(Stage):
    """On every ``every``-th frame (seq 0, every, 2*every, ...) add one event of each type in
    ``types``: a crossing of line "door" (in on even picks, out on odd), entry to and exit
    from zone "lobby", and a counts snapshot. Other frames get no events. With
    ``snapshot_dir`` each crossing also gets its frame as a JPEG there, named in the event's
    ``snapshot`` relative to that folder."""

    class Config(StageConfig):
        every: int = 5
        types: list[str] = ["line_crossing"]
        snapshot_dir: str | None = None

    def setup(self, ctx) -> None:
        self.totals: dict[str, dict[str, int]] = {}

    def process(self, msg: Message) -> Message:
        if msg.seq % self.config.every:
            return msg
        pick = msg.seq // self.config.every
        totals = self.totals.setdefault(msg.stream, {"in": 0, "out": 0})
        direction = "in" if pick % 2 == 0 else "out"
        out = []
        for kind in self.config.types:
            if kind == "line_crossing":
                totals[direction] += 1
                out.append(
                    events.line_crossing_event(
                        msg, "door", direction, pick, 0, (10.0, 20.0), totals
                    )
                )
            elif kind == "zone_enter":
                out.append(events.zone_enter_event(msg, "lobby", pick, 2))
            elif kind == "zone_exit":
                out.append(events.zone_exit_event(msg, "lobby", pick, 2, 1.5))
            elif kind == "counts":
                lines = {"door": {"in": {"person": totals["in"]}, "out": {"person": totals["out"]}}}
                out.append(events.counts_event(msg, lines, {"lobby": {"car": 1}}))
        if self.config.snapshot_dir and msg.frame is not None:
            name = f"{msg.stream}/{msg.seq}.jpg"
            path = Path(self.config.snapshot_dir) / name
            path.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(path), msg.frame)
            for ev in out:
                if ev["type"] == "line_crossing":
                    ev["snapshot"] = name
        msg.meta.setdefault("events", []).extend(out)
        return msg
