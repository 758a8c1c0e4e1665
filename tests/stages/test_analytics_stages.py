"""The line_crossing and zones stages, run inline: the events a user receives for the cases
that make counting hard, the per-stream options, snapshots, and graph-time validation.

LineCounter/ZoneMonitor geometry is tested in test_analytics.py; here each case is checked
through the stage: event fields, running totals, overlays, gaps in ``seq`` and end of stream.
Every event any test sees is validated against the JSON Schema (jsonschema).
"""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest

from pipeline.detections import Detections
from pipeline.errors import GraphError, StageSetupError
from pipeline.graph.load import load_graph
from pipeline.messages import Message
from pipeline.testing import run_stage
from stages.events import validate_event
from stages.line_crossing.stage import LineCrossing
from stages.zones.stage import Zones
from support.rkpipe import ROOT

DOOR = {"cam0": [{"name": "door", "a": [0, 300], "b": [640, 300]}]}  # "in" = moving down
T0 = 1_700_000_000.0
Obj = tuple[int, int, float, float]  # (track id, class id, x centre, y bottom)


def frame(seq: int, objs: list[Obj], prev: int | None = None, stream: str = "cam0") -> Message:
    """A tracked frame at 30 fps; each object is a 20x40 box standing on (x, y)."""
    msg = Message(stream, seq, seq - 1 if prev is None else prev, t_capture=T0 + seq / 30)
    boxes = [[x - 10, y - 40, x + 10, y] for _, _, x, y in objs]
    msg.detections = Detections(
        np.array(boxes, np.float32).reshape(-1, 4),
        np.full(len(objs), 0.9, np.float32),
        np.array([o[1] for o in objs], np.int32),
        np.array([o[0] for o in objs], np.int64),
    )
    return msg


def walk(ys: list[float], tid: int = 1, cls: int = 0, x: float = 320.0) -> list[Message]:
    return [frame(i, [(tid, cls, x, y)]) for i, y in enumerate(ys)]


def events(out: list[Message], kind: str | None = None) -> list[dict]:
    found = [e for m in out for e in m.meta.get("events", [])]
    for e in found:
        validate_event(e)
    return [e for e in found if kind is None or e["type"] == kind]


def crossings(out: list[Message]) -> list[tuple[str, int, str]]:
    return [(e["direction"], e["track_id"], e["class_name"]) for e in events(out, "line_crossing")]


def lines_stage(**options) -> LineCrossing:
    return LineCrossing(**{"lines": DOOR, "snapshot_every_s": 0, **options})


# --- line_crossing ------------------------------------------------------------------------


def test_a_crossing_is_one_event_with_every_field_and_the_overlay_on_every_frame() -> None:
    out = run_stage(lines_stage(), walk([280, 290, 299, 310, 320], cls=2))
    [ev] = events(out, "line_crossing")
    assert ev["line"] == "door" and ev["direction"] == "in"
    assert (ev["track_id"], ev["class_id"], ev["class_name"]) == (1, 2, "car")
    assert ev["stream"] == "cam0" and ev["seq"] == 3 and ev["id"] == "inline:cam0:3:door:1"
    assert ev["t_capture"] == pytest.approx(T0 + 3 / 30)
    assert ev["time"].startswith("2023-11-14T22:13:20.") and ev["time"].endswith("Z")
    assert ev["point"][1] == pytest.approx(300) and ev["totals"] == {"in": 1, "out": 0}
    door = {"a": [0.0, 300.0], "b": [640.0, 300.0]}
    assert [m.meta["lines"]["door"] for m in out[:5]] == [{**door, "in": 0, "out": 0}] * 3 + [
        {**door, "in": 1, "out": 0}
    ] * 2


def test_an_object_stopping_on_the_line_is_counted_once() -> None:
    ys = [290, 296, 299, 300, 301, 299, 302, 300, 301, 302, 298, 301, 303, 310, 320]
    out = run_stage(lines_stage(), walk(ys))
    assert crossings(out) == [("in", 1, "person")]


def test_turning_back_counts_in_then_out_with_running_totals() -> None:
    out = run_stage(lines_stage(), walk([280, 295, 310, 320, 310, 295, 280]))
    evs = events(out, "line_crossing")
    assert [(e["direction"], e["totals"]) for e in evs] == [
        ("in", {"in": 1, "out": 0}),
        ("out", {"in": 1, "out": 1}),
    ]


def test_occluded_for_several_frames_while_crossing_counts_once() -> None:
    msgs = walk([270, 280, 290])
    msgs += [frame(i, []) for i in range(3, 8)]  # hidden: the tracker keeps the ID
    msgs += [frame(i, [(1, 0, 320, y)]) for i, y in ((8, 330), (9, 340))]
    out = run_stage(lines_stage(), msgs)
    assert crossings(out) == [("in", 1, "person")]
    assert events(out, "line_crossing")[0]["seq"] == 8


def test_frames_dropped_upstream_while_crossing_still_count() -> None:
    """An object that is on one side in one message and on the other in the next (frames
    dropped in between, known from ``prev``) is counted where its path cut the line."""
    msgs = [frame(0, [(1, 0, 100, 280)]), frame(5, [(1, 0, 150, 330)], prev=0)]
    out = run_stage(lines_stage(), msgs)
    [ev] = events(out, "line_crossing")
    assert ev["direction"] == "in" and ev["point"] == [120.0, 300.0]


def test_two_objects_crossing_together_give_two_events_with_their_own_ids() -> None:
    msgs = [frame(i, [(1, 0, 300, y), (2, 2, 340, y)]) for i, y in enumerate([285, 295, 305, 315])]
    evs = events(run_stage(lines_stage(), msgs), "line_crossing")
    assert sorted((e["track_id"], e["class_name"]) for e in evs) == [(1, "person"), (2, "car")]
    assert len({e["id"] for e in evs}) == 2
    assert sorted(e["totals"]["in"] for e in evs) == [1, 2]


def test_unconfirmed_tracks_are_ignored() -> None:
    out = run_stage(lines_stage(), walk([280, 290, 310, 320], tid=-1))
    assert crossings(out) == []


def test_classes_filter_counts_only_the_named_classes() -> None:
    msgs = [frame(i, [(1, 0, 300, y), (2, 2, 340, y)]) for i, y in enumerate([285, 305, 315])]
    out = run_stage(lines_stage(classes=["car"]), msgs)
    assert crossings(out) == [("in", 2, "car")]


def test_star_lines_apply_to_streams_without_their_own_and_streams_count_apart() -> None:
    """``lines.cam0`` replaces ``lines."*"`` for cam0; cam1, not named, gets the star's."""
    lines = {**DOOR, "*": [{"name": "mid", "a": [320, 0], "b": [320, 360]}]}
    msgs = [frame(i, [(1, 0, 300 + 10 * i, 280 + 10 * i)]) for i in range(4)]
    msgs += [frame(i, [(1, 0, 300 + 10 * i, 100)], stream="cam1") for i in range(4)]
    out = run_stage(lines_stage(lines=lines), msgs)
    got = sorted((e["stream"], e["line"], e["track_id"]) for e in events(out, "line_crossing"))
    assert got == [("cam0", "door", 1), ("cam1", "mid", 1)]  # cam0 crossed "mid" too: not its
    assert set(out[0].meta["lines"]) == {"door"} and out[0].stream == "cam0"
    assert set(out[-1].meta["lines"]) == {"mid"} and out[-1].stream == "cam1"


@pytest.mark.parametrize(
    ("shape", "said"),
    [
        (
            {"lines": {"cam0": {"name": "door", "a": [1500, 900], "b": [1800, 900]}}},
            "line 'door' of stream 'cam0' lies outside its 640x360 frame at (1500, 900), "
            "(1800, 900) (pixels); nothing is counted beyond the edge",
        ),
        (
            {"lines": {"*": {"name": "door", "a": [0, 300], "b": [1920, 300]}}},
            "line 'door' of stream 'cam0' reaches outside its 640x360 frame at (1920, 300)",
        ),
        (
            {"zones": {"cam0": {"name": "lot", "polygon": [[0, 0], [700, 0], [700, 50]]}}},
            "zone 'lot' of stream 'cam0' reaches outside its 640x360 frame at (700, 0), (700, 50)",
        ),
    ],
)
def test_a_shape_outside_the_frame_is_a_warning_at_the_streams_first_frame(
    shape: dict, said: str, caplog: pytest.LogCaptureFixture
) -> None:
    stage = lines_stage(**shape) if "lines" in shape else Zones(**shape, snapshot_every_s=0)
    run_stage(stage, with_frames(walk([280, 290, 310]), 640, 360))
    warned = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert len(warned) == 1 and said in warned[0], warned  # once, not per frame


def test_a_shape_inside_the_frame_or_on_its_edge_says_nothing(caplog) -> None:
    edge = {"cam0": {"name": "door", "a": [0, 360], "b": [640, 0]}}
    run_stage(lines_stage(lines=edge), with_frames(walk([280, 290, 310]), 640, 360))
    assert not [r for r in caplog.records if r.levelname == "WARNING"]


def test_a_stream_without_lines_passes_through_untouched() -> None:
    msg = frame(0, [(1, 0, 100, 100)], stream="cam9")
    [out] = run_stage(lines_stage(), [msg])
    assert "lines" not in out.meta and "events" not in out.meta


def test_counts_snapshots_follow_the_capture_clock_and_end_with_a_final_one() -> None:
    ys = [280 + 2 * i for i in range(40)]  # crosses at frame 10; 40 frames = 1.33 s
    out = run_stage(lines_stage(snapshot_every_s=0.5), walk(ys))
    snaps = events(out, "counts")
    assert [s["seq"] for s in snaps] == [15, 30, 40]  # every 0.5 s, then the final one
    assert snaps[0]["lines"] == {"door": {"in": {"person": 1}, "out": {}}}
    assert snaps[0]["zones"] == {}
    assert out[-1].seq == 40 and out[-1].frame is None and out[-1].prev == 39
    assert out[-1].meta["lines"]["door"]["in"] == 1


def test_counts_list_every_watched_class_with_zeros() -> None:
    out = run_stage(lines_stage(classes=["person", "car", 16]), walk([280, 290, 310, 320]))
    final = events(out, "counts")[-1]
    assert final["lines"]["door"] == {
        "in": {"person": 1, "car": 0, "dog": 0},
        "out": {"person": 0, "car": 0, "dog": 0},
    }


def test_snapshots_off_still_give_the_final_count() -> None:
    out = run_stage(lines_stage(snapshot_every_s=0), walk([280, 290, 310]))
    assert [s["seq"] for s in events(out, "counts")] == [3]


def test_messages_without_tracker_ids_are_a_setup_error_naming_the_fix() -> None:
    msg = Message("cam0", 0)
    msg.detections = Detections.empty()
    del msg.arrays["det.tracker_id"]
    with pytest.raises(StageSetupError, match="add bytetrack before this stage"):
        run_stage(lines_stage(), [msg])


# --- zones --------------------------------------------------------------------------------

BOX = {"cam0": [{"name": "crosswalk", "polygon": [[200, 200], [400, 200], [400, 300], [200, 300]]}]}


def zones_stage(**options) -> Zones:
    return Zones(**{"zones": BOX, "snapshot_every_s": 0, **options})


def test_zone_enter_exit_with_dwell_on_the_capture_clock_and_occupancy() -> None:
    ys = [150, 160, 210, 220, 230, 240, 250, 260, 310, 320, 330]  # inside at frames 2..7
    out = run_stage(zones_stage(), walk(ys, cls=2))
    enter, leave = events(out, "zone_enter") + events(out, "zone_exit")
    assert (enter["zone"], enter["class_name"], enter["track_id"]) == ("crosswalk", "car", 1)
    assert enter["id"] == "inline:cam0:3:crosswalk:1:enter"  # confirmed after 2 frames inside
    assert leave["type"] == "zone_exit" and leave["dwell_s"] == pytest.approx(6 / 30, abs=1e-3)
    occupancy = [m.meta["zones"]["crosswalk"]["occupancy"] for m in out[:11]]
    assert occupancy == [0, 0, 0, 1, 1, 1, 1, 1, 1, 0, 0]
    assert out[0].meta["zones"]["crosswalk"]["polygon"][0] == [200.0, 200.0]


def test_an_object_in_a_zone_for_a_single_frame_raises_no_event() -> None:
    out = run_stage(zones_stage(), walk([150, 250, 350, 360]))
    assert events(out, "zone_enter") == events(out, "zone_exit") == []


def test_zone_counts_snapshot_gives_occupancy_per_class() -> None:
    msgs = [frame(i, [(1, 0, 300, 250), (2, 2, 250, 250), (3, 0, 50, 50)]) for i in range(4)]
    snaps = events(run_stage(zones_stage(), msgs), "counts")
    assert snaps[-1]["zones"] == {"crosswalk": {"occupancy": {"person": 1, "car": 1}}}


def test_zone_counts_list_every_watched_class_with_zeros() -> None:
    msgs = [frame(i, [(1, 0, 300, 250)]) for i in range(4)]
    snaps = events(run_stage(zones_stage(classes=["person", "bus"]), msgs), "counts")
    assert snaps[-1]["zones"] == {"crosswalk": {"occupancy": {"person": 1, "bus": 0}}}


def test_lines_then_zones_share_one_counts_event_per_message() -> None:
    ys = [280 + 2 * i for i in range(31)]
    first = run_stage(lines_stage(snapshot_every_s=0.5), walk(ys))
    area = [{"name": "crosswalk", "polygon": [[200, 200], [400, 200], [400, 400], [200, 400]]}]
    out = run_stage(zones_stage(snapshot_every_s=0.5, zones={"*": area}), first)
    for m in out:
        assert sum(e["type"] == "counts" for e in m.meta.get("events", [])) <= 1
    final = events(out, "counts")[-1]
    assert final["seq"] == 31 and out[-1].seq == 31  # zones added to the lines' final one
    assert final["lines"]["door"]["in"] == {"person": 1}
    assert final["zones"] == {"crosswalk": {"occupancy": {"person": 1}}}
    assert "zones" in out[-1].meta and "lines" in out[-1].meta


# --- validation at graph time -------------------------------------------------------------


def graph_problem(tmp_path: Path, body: str) -> str:
    path = tmp_path / "g.toml"
    path.write_text(
        textwrap.dedent(
            """
            [stages.cam0]
            uses = "synthetic"
            frames = 1
            [stages.a]
            uses = "{uses}"
            inputs = ["cam0"]
            """
        ).replace("{uses}", "zones" if "zones" in body else "line_crossing")
        + textwrap.dedent(body)
    )
    with pytest.raises(GraphError) as info:
        load_graph(path, cpus={0, 1})
    return str(info.value)


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        (
            'lines.cam0 = [{ name = "door", a = [10, 10], b = [10, 10] }]',
            "stages.a.lines.cam0.0: line 'door' has zero length",
        ),
        (
            'lines.cam0 = [{ name = "d", a = [0, 1], b = [5, 1] }, '
            '{ name = "d", a = [0, 2], b = [5, 2] }]',
            "line names must be unique per stream; stream 'cam0' has ['d'] more than once",
        ),
        ('lines.cam0 = [{ name = "d", a = [0, 1] }]', "stages.a.lines.cam0.0.b"),
        ('lines.cam0 = [{ name = "d", a = [0], b = [5, 1] }]', "stages.a.lines.cam0.0.a"),
        (
            'lines.cam0 = [{ name = "d", a = [0, 1], b = [5, 1], colour = "red" }]',
            "stages.a.lines.cam0.0.colour",
        ),
        ("lines.cam0 = []", "no lines given"),
        (
            'lines.cam0 = { name = "d", a = [0, 1], b = [5, 1] }\nclasses = ["persn"]',
            "unknown class name 'persn'",
        ),
        (
            'lines.cam0 = { name = "d", a = [0, 1], b = [5, 1] }\nanchor = "feet"',
            "stages.a.anchor",
        ),
        (
            'zones.cam0 = [{ name = "z", polygon = [[0, 0], [5, 5]] }]',
            "stages.a.zones.cam0.0.polygon",
        ),
        (
            'zones.cam0 = [{ name = "z", polygon = [[0, 0], [5, 5], [10, 10]] }]',
            "zone 'z' has zero area",
        ),
        (
            'lines.cam0 = { name = "d", a = [0, 0.5], b = [640, 0.5], relative = true }',
            "stages.a.lines.cam0.0: line 'd' has relative = true, so every coordinate is a "
            "fraction 0-1 of the frame",
        ),
        (
            'lines.cam0 = { name = "d", a = [0, 0.5], b = [1, 0.5] }',
            "line 'd' lies within 1 pixel of the corner; add relative = true",
        ),
        (
            'zones.cam0 = { name = "z", polygon = [[0, 0], [1, 0], [1, 1]] }',
            "zone 'z' lies within 1 pixel of the corner; add relative = true",
        ),
        (
            'zones.cam0 = { name = "z", polygon = [[0, 0], [2, 0], [1, 1]], relative = true }',
            "zone 'z' has relative = true",
        ),
    ],
)
def test_bad_options_are_graph_errors_naming_the_key(
    tmp_path: Path, body: str, expected: str
) -> None:
    assert expected in graph_problem(tmp_path, body)


def with_frames(msgs: list[Message], width: int, height: int) -> list[Message]:
    for m in msgs:
        m.frame = np.zeros((height, width, 3), np.uint8)
    return msgs


def test_relative_lines_are_placed_by_each_streams_frame_size() -> None:
    """``a = [0, 0.5], b = [1, 0.5]`` with ``relative``: the same door as pixels [0, 300] to
    [640, 300] on a 640x600 stream, and half way down any other stream's frames."""
    half = {"*": [{"name": "door", "a": [0, 0.5], "b": [1, 0.5], "relative": True}]}
    ys = [280, 290, 299, 310, 320]
    by_pixels = run_stage(lines_stage(), with_frames(walk(ys), 640, 600))
    by_share = run_stage(lines_stage(lines=half), with_frames(walk(ys), 640, 600))
    assert crossings(by_share) == crossings(by_pixels) == [("in", 1, "person")]
    assert by_share[0].meta["lines"]["door"] == {"a": [0.0, 300.0], "b": [640.0, 300.0], **{
        "in": 0, "out": 0}}  # fmt: skip
    small = [frame(i, [(1, 0, 100, y)], stream="cam1") for i, y in enumerate([50, 70, 90])]
    out = run_stage(lines_stage(lines=half), with_frames(small, 200, 120))
    assert crossings(out) == [("in", 1, "person")]  # the line is at y = 60 there
    assert out[0].meta["lines"]["door"]["b"] == [200.0, 60.0]


def test_relative_zones_are_placed_by_the_frame_size() -> None:
    lower = {"cam0": [{"name": "lot", "polygon": [[0, 0.5], [1, 0.5], [1, 1], [0, 1]],
                       "relative": True}]}  # fmt: skip
    stage = Zones(zones=lower, snapshot_every_s=0, enter_frames=1)
    out = run_stage(stage, with_frames(walk([100, 150, 350, 360]), 640, 400))
    assert [e["type"] for e in events(out, "zone_enter")] == ["zone_enter"]
    assert events(out, "zone_enter")[0]["seq"] == 2
    assert out[0].meta["zones"]["lot"]["polygon"] == [[0, 200], [640, 200], [640, 400], [0, 400]]


def test_relative_coordinates_without_frames_are_a_setup_error() -> None:
    half = {"cam0": [{"name": "door", "a": [0, 0.5], "b": [1, 0.5], "relative": True}]}
    with pytest.raises(StageSetupError, match=r"line 'door' is relative \(0-1\), but this"):
        run_stage(lines_stage(lines=half), walk([280, 320]))


def test_a_single_line_table_is_accepted() -> None:
    stage = LineCrossing(lines={"cam0": {"name": "d", "a": [0, 1], "b": [5, 1]}})
    assert stage.config.lines["cam0"][0].name == "d"


@pytest.mark.parametrize("graph", sorted((ROOT / "graphs").glob("*.toml")), ids=lambda p: p.stem)
def test_the_shipped_graphs_place_their_lines_as_fractions_of_the_frame(graph: Path) -> None:
    """A 1080p camera in place of the 640x360 scene gets the same line, not one in a corner."""
    for sdef in load_graph(graph).stages.values():
        table = getattr(sdef.config, "lines", None) or getattr(sdef.config, "zones", None)
        for shapes in (table or {}).values():
            assert all(shape.relative for shape in shapes), (graph.name, sdef.name)
