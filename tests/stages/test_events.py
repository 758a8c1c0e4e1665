"""The event contract (rkpipe.event/1): the schema is valid and shipped, builders fill the
common fields, and invalid events are rejected with a message naming the field."""

from __future__ import annotations

import sys

import jsonschema
import pytest

import stages.events as events_mod
from pipeline.messages import Message
from stages.events import (
    counts_event,
    iso_time,
    line_crossing_event,
    load_schema,
    validate_event,
    zone_enter_event,
    zone_exit_event,
)

MSG = Message("cam0", 1234, 1233, t_capture=1_700_000_000.25)


def all_kinds() -> list[dict]:
    return [
        line_crossing_event(MSG, "door", "in", 17, 0, (320.5, 300.0), {"in": 3, "out": 1}),
        zone_enter_event(MSG, "crosswalk", 17, 2),
        zone_exit_event(MSG, "crosswalk", 17, 2, 4.25),
        counts_event(
            MSG,
            {"door": {"in": {"person": 3}, "out": {"car": 1}}},
            {"crosswalk": {"person": 2}},
        ),
    ]


def test_schema_is_valid_draft_2020_12_and_versioned() -> None:
    schema = load_schema()
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["$schema"].endswith("/draft/2020-12/schema")
    assert "/event/1/" in schema["$id"]
    assert schema["$defs"]["schema"] == {"const": "rkpipe.event/1"}


def test_every_builder_makes_a_valid_event_with_the_common_fields() -> None:
    for ev in all_kinds():
        validate_event(ev)
        jsonschema.validate(ev, load_schema())  # and against the whole oneOf, as a sink would
        assert ev["schema"] == "rkpipe.event/1"
        assert (ev["stream"], ev["seq"], ev["t_capture"]) == ("cam0", 1234, 1_700_000_000.25)
        assert ev["time"] == "2023-11-14T22:13:20.250Z"
    assert len({ev["id"] for ev in all_kinds()}) == 4
    assert all_kinds()[0]["id"] == "cam0:1234:door:17"


def test_the_run_id_keeps_ids_of_two_runs_apart() -> None:
    """A stage passes its ``ctx.run_id``: the same frame and track in two runs differ."""
    ids = [
        line_crossing_event(MSG, "door", "in", 17, 0, (1, 2), {"in": 1, "out": 0}, run=r)["id"]
        for r in ("4242xa1b2c3", "4243x0d0e0f")
    ]
    assert ids == ["4242xa1b2c3:cam0:1234:door:17", "4243x0d0e0f:cam0:1234:door:17"]
    assert counts_event(MSG, run="r1")["id"] == "r1:cam0:1234:counts"
    assert zone_exit_event(MSG, "z", 3, 0, 1.0, run="r1")["id"] == "r1:cam0:1234:z:3:exit"


def test_builders_fill_class_names_from_coco_and_round_numbers() -> None:
    crossing, enter, leave, counts = all_kinds()
    assert crossing["class_name"] == "person" and enter["class_name"] == "car"
    assert leave["dwell_s"] == 4.25 and crossing["point"] == [320.5, 300.0]
    assert counts["lines"]["door"] == {"in": {"person": 3}, "out": {"car": 1}}
    assert counts["zones"] == {"crosswalk": {"occupancy": {"person": 2}}}
    assert zone_enter_event(MSG, "z", 1, 999)["class_name"] == "class_999"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"direction": "up"}, "at direction: 'up' is not one of ['in', 'out']"),
        ({"totals": {"in": 1}}, "at totals: 'out' is a required property"),
        ({"track_id": -1}, "at track_id: -1 is less than the minimum of 0"),
        ({"time": "yesterday"}, "at time: 'yesterday' does not match"),
        ({"schema": "rkpipe.event/2"}, "at schema: 'rkpipe.event/1' was expected"),
        ({"colour": "red"}, "('colour' was unexpected)"),
        ({"type": "explosion"}, "type must be one of"),
    ],
)
def test_invalid_events_are_rejected_naming_the_field(change: dict, message: str) -> None:
    ev = {**all_kinds()[0], **change}
    with pytest.raises(ValueError, match=r"invalid .*event") as info:
        validate_event(ev)
    assert message in str(info.value)


def test_a_missing_field_is_named() -> None:
    ev = all_kinds()[2]
    del ev["dwell_s"]
    with pytest.raises(ValueError, match=r"invalid zone_exit event at \(event\): 'dwell_s' is"):
        validate_event(ev)


def test_without_jsonschema_required_keys_are_still_checked(monkeypatch) -> None:
    """jsonschema is a test dependency only; at run time a light check stands in."""
    monkeypatch.setitem(sys.modules, "jsonschema", None)  # import now fails
    events_mod._validator.cache_clear()
    try:
        for ev in all_kinds():
            validate_event(ev)
        ev = all_kinds()[0]
        del ev["totals"], ev["point"]
        with pytest.raises(ValueError, match="invalid line_crossing event: missing point, totals"):
            validate_event(ev)
        with pytest.raises(ValueError, match=r"schema must be 'rkpipe\.event/1'"):
            validate_event({**all_kinds()[1], "schema": "x"})
    finally:
        events_mod._validator.cache_clear()


def test_iso_time_is_utc_with_milliseconds() -> None:
    assert iso_time(0.0) == "1970-01-01T00:00:00.000Z"
    assert iso_time(1_700_000_000.1234) == "2023-11-14T22:13:20.123Z"
