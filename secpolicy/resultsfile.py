"""The results JSON as bytes (one serialisation for every writer, so every stated SHA-256 agrees)
and a hardened reader for JSON data files: hostile values are exit 2 with a location."""

from __future__ import annotations

import hashlib
import json
import math
import re
from typing import Any

from secpolicy.errors import InputError, LocatedError

__all__ = ["MAX_DEPTH", "parse_json", "read_json_file", "results_bytes", "sha256_hex"]

# Deeper than any results, summary or baseline document; deep enough nesting otherwise
# exhausts the recursion of the JSON reader, the schema validator or the templates.
MAX_DEPTH = 48
_INT_DIGITS = 4300  # Python's int/str conversion limit (sys.get_int_max_str_digits)


def results_bytes(results: dict[str, Any]) -> bytes:
    """The document as written by `scan --format json`, `--report-dir` and `report -f json`.
    A lone surrogate (undecodable bytes read from the host) stays a JSON `\\udcXX` escape."""
    text = json.dumps(results, indent=2, ensure_ascii=False) + "\n"
    return text.encode("utf-8", "backslashreplace")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Bad(ValueError):
    def __init__(self, literal: str, message: str) -> None:
        super().__init__(message)
        self.literal = literal


def _int(text: str) -> int:
    if len(text.lstrip("-")) > _INT_DIGITS:
        raise _Bad(text, f"an integer of {len(text.lstrip('-'))} digits")
    return int(text)


def _float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Bad(text, f"a number out of range ({text[:40]}{'...' if len(text) > 40 else ''})")
    return value


def _constant(text: str) -> Any:
    raise _Bad(text, f"{text} is not JSON")


def _position(text: str, literal: str) -> tuple[int, int]:
    m = re.search(r"(?<![\w.])" + re.escape(literal) + r"(?![\w.])", text)
    start = m.start() if m else 0
    line = text.count("\n", 0, start) + 1
    return line, start - (text.rfind("\n", 0, start) + 1) + 1


def _where(path: list[Any]) -> str:
    return "/".join(str(p) for p in path) or "(top level)"


def _check_depth(doc: Any, label: str) -> None:
    stack: list[tuple[Any, list[Any]]] = [(doc, [])]
    while stack:
        node, where = stack.pop()
        if len(where) > MAX_DEPTH:
            raise InputError(f"nested deeper than {MAX_DEPTH} levels at {_where(where[:8])}/...", label)
        if isinstance(node, dict):
            stack.extend((v, where + [k]) for k, v in node.items())
        elif isinstance(node, list):
            stack.extend((v, where + [i]) for i, v in enumerate(node))


def parse_json(raw: bytes, label: str) -> Any:
    """Parse JSON text strictly: UTF-8, no NaN/Infinity, numbers Python can hold, bounded
    nesting. InputError names `label` (usually the file) and the line and column."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text (byte {e.start})", label) from None
    try:
        doc = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except _Bad as e:
        line, col = _position(text, e.literal)
        raise LocatedError(str(e), label, line, col) from None
    except json.JSONDecodeError as e:
        raise LocatedError(f"not JSON: {e.msg}", label, e.lineno, e.colno) from None
    except RecursionError:
        raise InputError("nested deeper than the JSON reader allows", label) from None
    except ValueError as e:  # any other conversion the reader refused
        raise InputError(f"not JSON: {e}", label) from None
    _check_depth(doc, label)
    return doc


def read_json_file(path: str, what: str = "") -> tuple[Any, bytes]:
    """The parsed document and the exact bytes read (what a stated SHA-256 covers)."""
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as e:
        label = f"{what} " if what else ""
        raise InputError(f"cannot read {label}{path} ({(e.strerror or str(e)).lower()})") from None
    return parse_json(raw, path), raw
