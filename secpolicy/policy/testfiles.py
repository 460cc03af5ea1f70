"""The `files:` of a check rule's inline test, validated into plain specs: a path is a list of
ordinary names below the test's root (no `..`, `.` or empty parts), modes and ids are in range."""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from typing import Any

__all__ = ["TestFile", "TestFileError", "parse_test_file", "parse_test_files"]

_MODE = re.compile(r"(0o)?[0-7]{1,4}")
_MAX_ID = 2**32 - 2  # 2**32 - 1 is "leave unchanged" to chown(2)
_MAX_NAME = 255  # bytes in one path component (NAME_MAX)
_MAX_PATH = 4096  # bytes in the whole path (PATH_MAX)
_MAX_PARTS = 64


class TestFileError(ValueError):
    """What is wrong with one entry; `where` is the field (() for the path itself)."""

    __test__ = False  # not a pytest class

    def __init__(self, message: str, where: tuple = ()) -> None:
        super().__init__(message)
        self.message = message
        self.where = where
        self.name: Any = None  # the entry's path as written, set by parse_test_files


@dataclass(frozen=True)
class TestFile:
    """One entry to create under the temporary root."""

    __test__ = False

    path: str  # as written in the policy
    parts: tuple[str, ...]  # its components below the root
    kind: str  # file | dir | symlink
    content: str = ""
    data: bytes | None = None  # from `base64`: written as is, in place of `content`
    target: str = ""  # of a symlink: stored as written, never followed when writing
    mode: int | None = None
    uid: int | None = None
    gid: int | None = None


def _parts(name: Any) -> tuple[str, ...]:
    if not isinstance(name, str):
        raise TestFileError(f"a test file name is a path, not {name!r}")
    if not name.startswith("/"):
        raise TestFileError(f"{name!r}: test file paths are absolute (they live under the test's root)")
    if "\0" in name:
        raise TestFileError(f"{name!r}: a path cannot contain a NUL byte")
    if len(name.encode("utf-8", "surrogateescape")) > _MAX_PATH:
        raise TestFileError(f"path longer than {_MAX_PATH} bytes")
    parts = tuple(name[1:].split("/"))
    for p in parts:
        if p in ("", ".", ".."):
            shown = "an empty part (//, or a trailing /)" if p == "" else f"a {p!r} part"
            raise TestFileError(f"{name!r} has {shown}: write each test file by its plain path")
        if len(p.encode("utf-8", "surrogateescape")) > _MAX_NAME:
            raise TestFileError(f"{name!r}: a path component is longer than {_MAX_NAME} bytes")
    if len(parts) > _MAX_PARTS:
        raise TestFileError(f"{name!r}: more than {_MAX_PARTS} levels deep")
    return parts


def _mode(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise TestFileError(f"mode must be octal permission bits such as '0o644', not {value!r}", ("mode",))
    if isinstance(value, str):
        if not _MODE.fullmatch(value):
            raise TestFileError(f"mode must be octal permission bits such as '0o644', not {value!r}", ("mode",))
        return int(value, 8)
    if not 0 <= value <= 0o7777:
        raise TestFileError(f"mode {value} is outside 0..0o7777", ("mode",))
    return value


def _id(value: Any, field: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _MAX_ID:
        raise TestFileError(f"{field} must be a number from 0 to {_MAX_ID}, not {value!r}", (field,))
    return value


def _base64(name: str, value: Any) -> bytes:
    """The bytes of a `base64` field; whitespace (a YAML block's line breaks) is ignored."""
    if not isinstance(value, str):
        raise TestFileError(f"base64 must be a string of base64 text, not {value!r}", ("base64",))
    text = "".join(value.split())
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except (UnicodeEncodeError, binascii.Error) as e:
        raise TestFileError(f"{name!r}: base64 is not valid base64 ({e})", ("base64",)) from None


def parse_test_file(name: Any, spec: Any) -> TestFile:
    """Validate one `files:` entry (path -> content, or {content|base64|dir|symlink, mode, uid,
    gid})."""
    parts = _parts(name)
    if isinstance(spec, str):
        return TestFile(name, parts, "file", content=spec)
    if not isinstance(spec, dict):
        raise TestFileError(f"{name!r}: give the content as a string, or a mapping with content, dir or symlink")
    allowed = ("base64", "content", "dir", "gid", "mode", "symlink", "uid")
    unknown = sorted(str(k) for k in spec if k not in allowed)
    if unknown:
        raise TestFileError(f"unknown field {unknown[0]!r} (allowed: {', '.join(allowed)})", (unknown[0],))
    kinds = [k for k in ("content", "base64", "symlink") if k in spec] + (["dir"] if spec.get("dir") else [])
    if len(kinds) > 1:
        raise TestFileError(
            f"{name!r}: an entry is a file (content or base64), a dir or a symlink, not {' and '.join(kinds)}"
        )
    if "dir" in spec and not isinstance(spec["dir"], bool):
        raise TestFileError(f"dir must be true or false, not {spec['dir']!r}", ("dir",))
    mode = _mode(spec["mode"]) if spec.get("mode") is not None else None
    uid = _id(spec["uid"], "uid") if spec.get("uid") is not None else None
    gid = _id(spec["gid"], "gid") if spec.get("gid") is not None else None
    if "symlink" in spec:
        target = spec["symlink"]
        if not isinstance(target, str) or not target or "\0" in target:
            raise TestFileError(f"symlink must be a non-empty target path, not {target!r}", ("symlink",))
        if mode is not None:
            raise TestFileError("a symlink has no mode of its own (set it on the target)", ("mode",))
        return TestFile(name, parts, "symlink", target=target, uid=uid, gid=gid)
    if spec.get("dir"):
        return TestFile(name, parts, "dir", mode=mode, uid=uid, gid=gid)
    if "base64" in spec:
        return TestFile(name, parts, "file", data=_base64(name, spec["base64"]), mode=mode, uid=uid, gid=gid)
    content = spec.get("content", "")
    if not isinstance(content, str):
        raise TestFileError(f"content must be a string, not {content!r}", ("content",))
    return TestFile(name, parts, "file", content=content, mode=mode, uid=uid, gid=gid)


def parse_test_files(files: Any) -> list[TestFile]:
    """All entries, in order; the first problem raises TestFileError (with `.name` set)."""
    if not isinstance(files, dict):
        raise TestFileError("files: is a mapping of paths to contents")
    out = []
    for name, spec in files.items():
        try:
            out.append(parse_test_file(name, spec))
        except TestFileError as e:
            e.name = name
            raise
    return out
