"""The Event and Alert TypedDicts of secpolicy.models and the published JSON Schemas
(event.schema.json, alert.schema.json) agree: every property, whether it is required, and its
type (enums value for value), both ways. The schemas stay the contract; a change to one side
alone fails here."""

from __future__ import annotations

import typing
from typing import Any, Literal, NotRequired, Required

import pytest

from secpolicy import models
from secpolicy.events.fields import EVENT_TYPES
from secpolicy.models import Alert, Event, EventType, Severity, SeverityName
from secpolicy.resources import load_schema

_SCALARS = {str: "string", int: "integer", bool: "boolean", float: "number"}
# Where a schema says only "object" and points at another schema in words, the TypedDict
# names that schema's type: checked against that schema on its own.
_ROOTS: dict[Any, str] = {Event: "event", Alert: "alert"}


def _is_typeddict(tp: Any) -> bool:
    return isinstance(tp, type) and typing.is_typeddict(tp)


def disagreements(tp: Any, schema: dict[str, Any], where: str, root: bool = False) -> list[str]:
    """What differs between a Python type (as in secpolicy.models) and a JSON Schema."""
    if tp is Any:
        typed = {k for k in ("type", "enum", "const", "properties", "items") if k in schema}
        return [f"{where}: Any in models, {sorted(typed)} in the schema"] if typed else []
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin is Literal:
        if set(args) != set(schema.get("enum", ())):
            return [f"{where}: {sorted(args)} in models, {schema.get('enum')} in the schema"]
        return []
    if tp in _SCALARS:
        return [] if schema.get("type") == _SCALARS[tp] else [f"{where}: {tp.__name__} in models, {schema} in the schema"]
    if origin is list:
        if schema.get("type") != "array" or "items" not in schema:
            return [f"{where}: a list in models, {schema.get('type')} in the schema"]
        return disagreements(args[0], schema["items"], f"{where}[]")
    if origin is dict:
        if schema.get("type") != "object" or "properties" in schema:
            return [f"{where}: a dict in models, not a free-form object in the schema"]
        extra = schema.get("additionalProperties", True)
        if args[1] is Any:
            return [] if extra is True else [f"{where}: dict[str, Any] in models, values {extra} in the schema"]
        return disagreements(args[1], extra if isinstance(extra, dict) else {}, f"{where}{{}}")
    if _is_typeddict(tp):
        if schema.get("type") != "object":
            return [f"{where}: {tp.__name__} in models, {schema.get('type')} in the schema"]
        if tp in _ROOTS and not root and "properties" not in schema:
            return []  # checked against its own schema
        return _object(tp, schema, where)
    return [f"{where}: {tp!r} has no JSON Schema counterpart"]


def _object(tp: Any, schema: dict[str, Any], where: str) -> list[str]:
    hints = typing.get_type_hints(tp, include_extras=True)
    props = schema.get("properties", {})
    out = [f"{where}.{k}: in models, not in the schema" for k in sorted(set(hints) - set(props))]
    out += [f"{where}.{k}: in the schema, not in models" for k in sorted(set(props) - set(hints))]
    required = set()
    for key, hint in hints.items():
        origin = typing.get_origin(hint)
        if origin is Required or (tp.__total__ and origin is not NotRequired):
            required.add(key)
        if origin in (Required, NotRequired):
            hint = typing.get_args(hint)[0]
        if key in props:
            out += disagreements(hint, props[key], f"{where}.{key}")
    if required != set(schema.get("required", ())):
        out.append(f"{where}: required {sorted(required)} in models, {sorted(schema.get('required', ()))} in the schema")
    return out


@pytest.mark.parametrize("tp,name", [(Event, "event"), (Alert, "alert")])
def test_typeddict_and_schema_agree(tp, name):
    assert disagreements(tp, load_schema(name), name, root=True) == []


def test_enums_are_the_ones_the_code_uses():
    assert typing.get_args(EventType) == EVENT_TYPES
    assert set(typing.get_args(SeverityName)) == {s.value for s in Severity}


def test_a_difference_either_way_is_found():
    """The comparison can fail: a property, a type, an enum value or a required key that one
    side has and the other has not is reported."""
    schema = load_schema("event")
    bad = {**schema, "properties": {**schema["properties"], "extra": {"type": "string"}}}
    assert disagreements(Event, bad, "event", root=True) == ["event.extra: in the schema, not in models"]

    class Narrow(typing.TypedDict, total=False):
        uid: Required[str]
        caps: list[int]
        mode: Literal["a"]

    found = disagreements(Narrow, {"type": "object", "required": [], "properties": {
        "uid": {"type": "integer"}, "caps": {"type": "array", "items": {"type": "string"}},
        "mode": {"enum": ["a", "b"]}, "name": {"type": "string"}}}, "x")
    assert found == [
        "x.name: in the schema, not in models",
        "x.uid: str in models, {'type': 'integer'} in the schema",
        "x.caps[]: int in models, {'type': 'string'} in the schema",
        "x.mode: ['a'] in models, ['a', 'b'] in the schema",
        "x: required ['uid'] in models, [] in the schema",
    ]


def test_every_typeddict_in_models_is_reached_from_event_or_alert():
    """No shape in models that the schemas never check."""
    reached: set[Any] = set()

    def walk(tp: Any) -> None:
        if _is_typeddict(tp):
            if tp in reached:
                return
            reached.add(tp)
            for hint in typing.get_type_hints(tp).values():
                walk(hint)
        for arg in typing.get_args(tp):
            walk(arg)

    walk(Event)
    walk(Alert)
    declared = {v for v in vars(models).values() if _is_typeddict(v)}
    assert declared - reached == set()
