"""A test stage that adds known analytics events, so sink tests know exactly what to expect.

Referenced from graphs as ``uses = "rk_test_events:EmitEvents"``.
"""

from __future__ import annotations

from pipeline import Message, Stage, StageConfig
from stages import events


class EmitEvents(Stage):
    """On every ``every``-th frame (seq 0, every, 2*every, ...) add one event of each type in
    ``types``: a crossing of line "door" (in on even picks, out on odd), entry to and exit
    from zone "lobby", and a counts snapshot. Other frames get no events."""

    class Config(StageConfig):
        every: int = 5
        types: list[str] = ["line_crossing"]

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
        msg.meta.setdefault("events", []).extend(out)
        return msg
