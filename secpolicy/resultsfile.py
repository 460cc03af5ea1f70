"""The results JSON as bytes (one serialisation for every writer, so every stated SHA-256 agrees)
and a hardened reader for JSON data files: hostile values are exit 2 with a location."""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
import stat
from typing import Any

import orjson

from secpolicy.errors import InputError, LocatedError

__all__ = ["MAX_DEPTH", "parse_json", "read_input", "read_json_file", "results_bytes", "sha256_hex"]

# Deeper than any results, summary or baseline document; deep enough nesting otherwise
# exhausts the recursion of the JSON reader, the schema validator or the templates.
MAX_DEPTH = 48
_INT_DIGITS = 4300  # Python's int/str conversion limit (sys.get_int_max_str_digits)
_HUGE_INT = re.compile(r"(?:^|[:\[,])\s*(-?\d{" + str(_INT_DIGITS + 1) + ",})")


def results_bytes(results: dict[str, Any]) -> bytes:
    """The document as written by `scan --format json`, `--report-dir` and `report -f json`.
    A lone surrogate (undecodable bytes read from the host) stays a JSON `\\udcXX` escape."""
    try:
        # orjson's indented form is json.dumps(indent=2)'s, byte for byte but for how a float
        # is spelt (`0.00001` for `1e-05`), and a tenth of its time on a full scan's results.
        return orjson.dumps(results, option=orjson.OPT_INDENT_2 | orjson.OPT_APPEND_NEWLINE)
    except TypeError:  # a lone surrogate, an integer beyond 64 bits: what orjson refuses
        text = json.dumps(results, indent=2, ensure_ascii=False) + "\n"
        return text.encode("utf-8", "backslashreplace")


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class _Bad(ValueError):
    def __init__(self, literal: str, message: str) -> None:
        super().__init__(message)
        self.literal = literal


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
    # Containers only, depth as a number: a 5,000-finding file is walked in milliseconds.
    stack: list[tuple[Any, int]] = [(doc, 0)] if isinstance(doc, (dict, list)) else []
    while stack:
        node, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise InputError(f"nested deeper than {MAX_DEPTH} levels at {_where(_path_to_depth(doc, 8))}/...", label)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((c, depth + 1) for c in children if isinstance(c, (dict, list)))


def _path_to_depth(doc: Any, n: int) -> list[Any]:
    """The first `n` steps towards the deepest point (for the message only)."""
    path: list[Any] = []
    node = doc
    while len(path) < n and isinstance(node, (dict, list)) and node:
        items = list(node.items()) if isinstance(node, dict) else list(enumerate(node))
        key, node = max(items, key=lambda kv: _depth(kv[1]))
        path.append(key)
    return path


def _depth(node: Any) -> int:
    best, stack = 0, [(node, 0)]
    while stack:
        n, d = stack.pop()
        best = max(best, d)
        if isinstance(n, (dict, list)):
            stack.extend((c, d + 1) for c in (n.values() if isinstance(n, dict) else n))
    return best


def parse_json(raw: bytes, label: str) -> Any:
    """Parse JSON text strictly: UTF-8, no NaN/Infinity, numbers Python can hold, bounded
    nesting. InputError names `label` (usually the file) and the line and column."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"not UTF-8 text (byte {e.start})", label) from None
    try:
        doc = json.loads(text, parse_float=_float, parse_constant=_constant)
    except _Bad as e:
        line, col = _position(text, e.literal)
        raise LocatedError(str(e), label, line, col) from None
    except json.JSONDecodeError as e:
        raise LocatedError(f"not JSON: {e.msg}", label, e.lineno, e.colno) from None
    except RecursionError:
        raise InputError("nested deeper than the JSON reader allows", label) from None
    except ValueError as e:  # any other conversion the reader refused
        # (only a number the reader refused raises here: Python's limit on integer digits)
        huge = _HUGE_INT.search(text)
        if huge is None:
            raise InputError(f"not JSON: {e}", label) from None
        at = huge.start(1)
        line = text.count("\n", 0, at) + 1
        col = at - (text.rfind("\n", 0, at) + 1) + 1
        digits = len(huge.group(1).lstrip("-"))
        raise LocatedError(f"an integer of {digits} digits", label, line, col) from None
    _check_depth(doc, label)
    return doc


def read_input(path: str, what: str = "", limit: int | None = None) -> bytes:
    """The bytes of an input file: a regular file or a pipe (`<(ssh host cat results.json)`).
    A device (`/dev/zero` never ends), a socket or a directory is InputError (exit 2), and so
    is more than `limit` bytes; a FIFO nobody writes to reads as empty instead of waiting."""
    label = f"{what} " if what else ""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | os.O_NOCTTY)
    except OSError as e:
        raise InputError(f"cannot read {label}{path} ({(e.strerror or str(e)).lower()})") from None
    with os.fdopen(fd, "rb") as f:
        mode = os.fstat(fd).st_mode
        if stat.S_ISFIFO(mode):
            os.set_blocking(fd, True)  # the open did not wait for a writer; reads wait for data
        elif not stat.S_ISREG(mode):
            kind = ("a directory" if stat.S_ISDIR(mode) else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode)
                    else "a socket" if stat.S_ISSOCK(mode) else "not a regular file")
            raise InputError(f"cannot read {label}{path} ({kind})")
        try:
            raw = f.read() if limit is None else f.read(limit + 1)
        except OSError as e:
            raise InputError(f"cannot read {label}{path} ({(e.strerror or str(e)).lower()})") from None
    if limit is not None and len(raw) > limit:
        raise InputError(f"cannot read {label}{path} (larger than {limit} bytes)")
    return raw


def read_json_file(path: str, what: str = "") -> tuple[Any, bytes]:
    """The parsed document and the exact bytes read (what a stated SHA-256 covers)."""
    raw = read_input(path, what)
    return parse_json(raw, path), raw
