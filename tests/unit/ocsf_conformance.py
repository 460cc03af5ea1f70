"""Checks an OCSF event against the attribute table of OCSF 1.3.0 (tests/fixtures/ocsf, made
from the published schema): required attributes, known attributes only, JSON types, enums."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

SCHEMA = json.loads((Path(__file__).resolve().parents[1] / "fixtures" / "ocsf" / "ocsf-1.3.0.json").read_text())
_PY = {"string_t": (str,), "integer_t": (int,), "long_t": (int,), "float_t": (int, float), "boolean_t": (bool,),
       "json_t": (object,)}


def _base(type_name: str) -> str:
    while type_name not in _PY:
        type_name = SCHEMA["types"][type_name]["base"]
    return type_name


def violations(event: dict[str, Any], class_name: str) -> list[str]:
    spec = SCHEMA["classes"][class_name]
    errors: list[str] = []
    _check(event, spec["attributes"], class_name, errors)
    for name in ("category_uid", "class_uid"):
        if event.get(name) != spec[name]:
            errors.append(f"{class_name}.{name}: {event.get(name)!r}, not {spec[name]}")
    if event.get("type_uid") != spec["class_uid"] * 100 + int(event.get("activity_id", -1)):
        errors.append(f"{class_name}.type_uid: {event.get('type_uid')!r} is not class_uid * 100 + activity_id")
    return errors


def _check(obj: Any, attrs: dict[str, Any], where: str, errors: list[str]) -> None:
    if not isinstance(obj, dict):
        errors.append(f"{where}: not an object")
        return
    for name, a in attrs.items():
        if a["requirement"] == "required" and name not in obj:
            errors.append(f"{where}.{name}: required, missing")
    for name, value in obj.items():
        a = attrs.get(name)
        if a is None:
            errors.append(f"{where}.{name}: not an attribute of OCSF {SCHEMA['version']}")
            continue
        if a["is_array"]:
            if not isinstance(value, list):
                errors.append(f"{where}.{name}: must be an array")
                continue
            items = value
        else:
            items = [value]
        for i, item in enumerate(items):
            at = f"{where}.{name}" + (f"[{i}]" if a["is_array"] else "")
            obj_type = a["object_type"] or (a["type"] if a["type"] in SCHEMA["objects"] else None)
            if obj_type == "object":  # OCSF's free-form object (unmapped data)
                if not isinstance(item, dict):
                    errors.append(f"{at}: not an object")
                continue
            if obj_type is not None:
                _check(item, SCHEMA["objects"][obj_type], at, errors)
                continue
            base = _base(a["type"])
            if not isinstance(item, _PY[base]) or (base != "boolean_t" and isinstance(item, bool)):
                errors.append(f"{at}: {item!r} is not {a['type']}")
                continue
            limit = SCHEMA["types"].get(a["type"], {}).get("max_len")
            if limit and isinstance(item, str) and len(item) > limit:
                errors.append(f"{at}: longer than {limit}")
            if "enum" in a and str(item) not in a["enum"]:
                errors.append(f"{at}: {item!r} is not one of {a['enum']}")
