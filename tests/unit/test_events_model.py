"""The Event model: timestamps, canonical lines, validation, and schema/type-checker agreement."""

from __future__ import annotations

import json

import pytest

from secpolicy.dsl.types import ListType, ObjectType
from secpolicy.errors import InputError
from secpolicy.events import fields
from secpolicy.events.model import (
    EVENT_TYPES,
    canonical_json,
    event_errors,
    format_ts,
    get_field,
    parse_ts,
    ts_seconds,
    validate_event,
)
from secpolicy.resources import load_schema


def test_timestamps_are_fixed_width_and_round_trip() -> None:
    assert format_ts(0) == "1970-01-01T00:00:00.000000000Z"
    assert format_ts(1481077231, 371_000_000) == "2016-12-07T02:20:31.371000000Z"
    assert parse_ts("2016-12-07T02:20:31.371Z") == "2016-12-07T02:20:31.371000000Z"
    assert parse_ts("2016-12-07T02:20:31+00:00") == "2016-12-07T02:20:31.000000000Z"
    assert parse_ts("2016-12-07T02:20:31.123456789Z") == "2016-12-07T02:20:31.123456789Z"
    assert ts_seconds("2016-12-07T02:20:31.500000000Z") == pytest.approx(1481077231.5)


@pytest.mark.parametrize("bad", ["2016-12-07 02:20", "2016-12-07T02:20:31+02:00", "2016-13-07T02:20:31Z", ""])
def test_bad_timestamps_are_input_errors(bad: str) -> None:
    with pytest.raises(InputError):
        parse_ts(bad)


def test_canonical_json_sorts_keys_and_keeps_unicode() -> None:
    line = canonical_json({"type": "exec", "proc": {"exe": "/usr/bin/é", "args": ["a"]}, "ts": "x"})
    assert line == '{"proc":{"args":["a"],"exe":"/usr/bin/é"},"ts":"x","type":"exec"}'


def test_get_field_walks_dotted_paths() -> None:
    e = {"type": "auth", "auth": {"rhost": "10.0.0.1"}}
    assert get_field(e, "auth.rhost") == "10.0.0.1"
    assert get_field(e, "proc.exe") is None
    assert get_field(e, ("auth", "rhost", "x")) is None


def test_validation_names_the_bad_fields() -> None:
    good = {"type": "exec", "ts": "2024-01-01T00:00:00.000000000Z", "proc": {"pid": 1, "exe": "/bin/sh"}}
    assert event_errors(good) == []
    errors = event_errors({"type": "exe", "ts": "2024-01-01", "proc": {"pid": -1, "exee": "x"}})
    assert any(e.startswith("type:") for e in errors)
    assert any(e.startswith("ts:") for e in errors)
    assert any(e.startswith("proc.pid:") for e in errors)
    assert any("exee" in e for e in errors)
    with pytest.raises(InputError, match="invalid event"):
        validate_event({"type": "exec"})


def _schema_paths(schema: dict, prefix: str = "") -> dict[str, dict]:
    out = {}
    for name, sub in schema.get("properties", {}).items():
        path = prefix + name
        if sub.get("type") == "object" and "properties" in sub:
            out.update(_schema_paths(sub, path + "."))
        else:
            out[path] = sub
    return out


def _catalogue_paths(t: ObjectType, prefix: str = "") -> dict[str, object]:
    out: dict[str, object] = {}
    for name, ft in t.fields.items():
        path = prefix + name
        if isinstance(ft, ObjectType):
            out.update(_catalogue_paths(ft, path + "."))
        else:
            out[path] = ft
    return out


def test_event_schema_and_type_catalogue_agree() -> None:
    schema = _schema_paths(load_schema("event"))
    catalogue = _catalogue_paths(fields.EVENT)
    assert set(schema) == set(catalogue)
    for path, t in catalogue.items():
        s = schema[path]
        if isinstance(t, ListType):
            assert s["type"] == "array", path
        elif t.name in ("int", "mode"):
            assert s["type"] == "integer", path
        else:
            assert s.get("type") == "string" or "enum" in s, path
    assert tuple(load_schema("event")["properties"]["type"]["enum"]) == EVENT_TYPES == fields.EVENT_TYPES


def test_alert_schema_is_valid_json_schema() -> None:
    import jsonschema

    schema = load_schema("alert")
    jsonschema.validators.validator_for(schema).check_schema(schema)
    assert json.dumps(schema)
