"""FIM configuration: YAML validated against `fim.schema.json` into a frozen `FimConfig`
whose rules know their attribute set, include/exclude/nodiff patterns and which paths they own."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from secpolicy.errors import InputError, LocatedError
from secpolicy.fim.attrs import FLAG_ATTRS, HASH_ATTRS, XATTR_ATTRS, resolve_attrs
from secpolicy.resources import load_schema

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
DIFF_SIZE_LIMIT = 1 << 20
DIFF_MAX_LINES = 100

__all__ = ["FimConfig", "Rule", "config_from_dict", "glob_to_regex", "load_config"]


@dataclass(frozen=True)
class Rule:
    """One watched path and how entries under it are checked."""

    path: str
    attrs: frozenset[str]
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    recurse: bool = True
    cross_filesystems: bool = False
    report_changes: bool = False
    nodiff: tuple[str, ...] = ()

    @property
    def hash_algo(self) -> str | None:
        found = self.attrs & HASH_ATTRS
        return next(iter(found)) if found else None

    @property
    def wants_xattrs(self) -> bool:
        return bool(self.attrs & XATTR_ATTRS)

    @property
    def wants_flags(self) -> bool:
        return bool(self.attrs & FLAG_ATTRS)

    @property
    def growing(self) -> bool:
        return "S" in self.attrs

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "attrs": sorted(self.attrs),
            "include": list(self.include),
            "exclude": list(self.exclude),
            "recurse": self.recurse,
            "cross_filesystems": self.cross_filesystems,
            "report_changes": self.report_changes,
            "nodiff": list(self.nodiff),
        }


@dataclass(frozen=True)
class CompiledRule:
    """A rule with its patterns compiled; built once per scan."""

    rule: Rule
    include: re.Pattern[str] | None
    exclude: re.Pattern[str] | None
    nodiff: re.Pattern[str] | None = None
    # The rule's derived properties, looked up once per entry in a scan: computed here once.
    hash_algo: str | None = field(init=False, compare=False)
    wants_xattrs: bool = field(init=False, compare=False)
    wants_flags: bool = field(init=False, compare=False)
    growing: bool = field(init=False, compare=False)
    selects_all: bool = field(init=False, compare=False)  # neither include nor exclude

    def __post_init__(self) -> None:
        object.__setattr__(self, "selects_all", self.include is None and self.exclude is None)
        object.__setattr__(self, "hash_algo", self.rule.hash_algo)
        object.__setattr__(self, "wants_xattrs", self.rule.wants_xattrs)
        object.__setattr__(self, "wants_flags", self.rule.wants_flags)
        object.__setattr__(self, "growing", self.rule.growing)

    def diffs(self, path: str) -> bool:
        """Is a copy of this entry's content kept, to show what changed in it?"""
        return self.rule.report_changes and not (self.nodiff is not None and self.nodiff.match(path))

    def selects(self, path: str) -> bool:
        if self.exclude is not None and self.exclude.match(path):
            return False
        return self.include is None or bool(self.include.match(path))

    def excluded(self, path: str) -> bool:
        return self.exclude is not None and bool(self.exclude.match(path))


@dataclass(frozen=True)
class FimConfig:
    name: str
    rules: tuple[Rule, ...]
    hash: str = "sha256"
    workers: int = 2
    database: str | None = None
    source: str | None = None
    diff_size_limit: int = DIFF_SIZE_LIMIT
    diff_max_lines: int = DIFF_MAX_LINES

    def canonical(self) -> dict[str, Any]:
        """What the baseline depends on; cosmetic edits to the YAML do not change it."""
        return {
            "format": 2,
            "name": self.name,
            "hash": self.hash,
            "diff_size_limit": self.diff_size_limit,
            "diff_max_lines": self.diff_max_lines,
            "rules": [r.to_dict() for r in sorted(self.rules, key=lambda r: r.path)],
        }

    @property
    def digest(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def compiled(self) -> dict[str, CompiledRule]:
        return {
            r.path: CompiledRule(r, _compile_patterns(r.include), _compile_patterns(r.exclude),
                                 _compile_patterns(r.nodiff))
            for r in self.rules
        }

    def rule_for(self, path: str) -> Rule | None:
        """The most specific rule whose path is `path` or one of its ancestors."""
        best: Rule | None = None
        for r in self.rules:
            covers = path == r.path or path.startswith(r.path.rstrip("/") + "/")
            if covers and (best is None or len(r.path) > len(best.path)):
                best = r
        if best is not None and not best.recurse and path != best.path:
            return None
        return best


def glob_to_regex(pattern: str) -> str:
    """Shell-style glob over absolute paths: `*` and `?` stay inside one component, `**`
    crosses components. A pattern without '/' matches the last component (the name);
    one with a '/' but not leading matches a trailing run of components."""
    i, n, out = 0, len(pattern), []
    while i < n:
        c = pattern[i]
        if c == "*":
            if pattern.startswith("**", i):
                i += 2
                if i < n and pattern[i] == "/":
                    out.append("(?:.*/)?")  # `a/**/b` also matches `a/b`
                    i += 1
                else:
                    out.append(".*")
                continue
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            cls, i = _bracket(pattern, i)
            out.append(cls)
        else:
            out.append(re.escape(c))
        i += 1
    body = "".join(out)
    if pattern.startswith("/"):
        return body
    if "/" not in pattern:
        return "(?:.*/)?" + body
    return ".*/" + body


# POSIX character classes inside brackets (`[[:alpha:]]`), in the C locale as AIDE's PCRE
# patterns and fnmatch(3) read them; as regex set members.
_POSIX_CLASSES = {
    "alpha": "a-zA-Z", "digit": "0-9", "alnum": "a-zA-Z0-9", "upper": "A-Z", "lower": "a-z",
    "xdigit": "0-9A-Fa-f", "space": " \\t\\n\\r\\f\\v", "blank": " \\t", "cntrl": "\\x00-\\x1f\\x7f",
    "print": "\\x20-\\x7e", "graph": "\\x21-\\x7e",
    "punct": "".join("\\" + ch for ch in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
}


def _bracket(pattern: str, start: int) -> tuple[str, int]:
    """The regex set for the bracket expression at `start` (`[abc]`, `[!a-z]`, `[[:digit:]_]`)
    and the index of its closing `]`. Every member is escaped, so nothing in it reads as a
    regex set operation; an unclosed bracket or an unknown class is an InputError."""
    k, n = start + 1, len(pattern)
    out = ["["]
    if pattern[k : k + 1] in ("!", "^"):
        out.append("^")
        k += 1
    first = True
    while True:
        if k >= n:
            raise InputError(f"unclosed '[' at character {start + 1} (write [[] for a literal '[')")
        ch = pattern[k]
        if ch == "]" and not first:
            return "".join(out) + "]", k
        first = False
        if pattern.startswith("[:", k):
            end = pattern.find(":]", k + 2)
            if end < 0:
                raise InputError(f"unclosed character class '[:' at character {k + 1}")
            name = pattern[k + 2 : end]
            if name not in _POSIX_CLASSES:
                raise InputError(f"unknown character class [:{name}:] at character {k + 1} "
                                 f"(known: {', '.join(sorted(_POSIX_CLASSES))})")
            out.append(_POSIX_CLASSES[name])
            k = end + 2
            continue
        if pattern.startswith(("[.", "[="), k):
            raise InputError(f"collating elements and equivalence classes ({pattern[k:k + 2]}) are not "
                             f"supported, at character {k + 1}")
        is_range = ch == "-" and len(out) > 1 and out[-1] != "^" and pattern[k + 1 : k + 2] not in ("", "]")
        out.append("-" if is_range else re.escape(ch) if ch not in "-]&~|[^\\" else "\\" + ch)
        k += 1


def _compile_patterns(patterns: tuple[str, ...]) -> re.Pattern[str] | None:
    if not patterns:
        return None
    return re.compile("(?:" + "|".join(glob_to_regex(p) for p in patterns) + r")\Z", re.DOTALL)


def _normalize_path(p: str, where: str) -> str:
    if not p.startswith("/"):
        raise InputError(f"{where}: watched path {p!r} must be absolute")
    norm = os.path.normpath(p)
    if norm.startswith("//"):
        norm = "/" + norm.lstrip("/")
    return norm


def _locate(node: yaml.Node | None, path: list[Any]) -> yaml.Node | None:
    """The YAML node at a jsonschema error path, for line numbers."""
    for key in path:
        if isinstance(node, yaml.MappingNode):
            nxt = None
            for k, v in node.value:
                if k.value == key:
                    nxt = v
                    break
            if nxt is None:
                return node
            node = nxt
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
        else:
            return node
    return node


def _error_at(text: str, source: str, node: yaml.Node | None, message: str) -> LocatedError:
    if node is None:
        return LocatedError(message, source)
    line = node.start_mark.line
    lines = text.splitlines()
    src = lines[line] if line < len(lines) else None
    return LocatedError(message, source, line + 1, node.start_mark.column + 1, src)


def load_config(path: str | os.PathLike[str]) -> FimConfig:
    """Read and validate a FIM YAML configuration; every problem is an InputError with
    the file, line and column where it can be located."""
    source = os.fspath(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise InputError("configuration file not found", source) from None
    except (OSError, UnicodeDecodeError) as e:
        raise InputError(f"cannot read configuration: {e}", source) from None
    try:
        data = yaml.load(text, Loader=_Loader)
    except yaml.MarkedYAMLError as e:
        mark = e.problem_mark
        line = mark.line if mark else None
        lines = text.splitlines()
        raise LocatedError(
            f"invalid YAML: {e.problem}",
            source,
            line + 1 if line is not None else None,
            mark.column + 1 if mark else None,
            lines[line] if line is not None and line < len(lines) else None,
        ) from None
    except yaml.YAMLError as e:
        raise InputError(f"invalid YAML: {e}", source) from None
    if data is None:
        raise InputError("configuration is empty", source)
    if not _plainly_valid(data):
        problem = _schema_problem(data)
        if problem is not None:
            message, at = problem
            raise _error_at(text, source, _locate(yaml.compose(text, Loader=_Loader), at), message)
    try:
        return config_from_dict(data, source=source, default_name=Path(source).stem)
    except LocatedError:
        raise
    except InputError as e:
        # Point at the offending rule when the message names one.
        m = re.match(r"paths\[(\d+)\]", e.message)
        node = _locate(yaml.compose(text, Loader=_Loader), ["paths", int(m.group(1))]) if m else None
        raise _error_at(text, source, node, e.message) from None


def config_from_dict(
    data: dict[str, Any], source: str | None = None, default_name: str = "default"
) -> FimConfig:
    """Build a FimConfig from already-parsed data (as read from YAML or built in code)."""
    if source is None and not _plainly_valid(data):
        problem = _schema_problem(data)
        if problem is not None:
            raise InputError(problem[0])
    default_hash = data.get("hash", "sha256")
    groups = data.get("groups", {}) or {}
    global_xdev = bool(data.get("cross_filesystems", False))
    rules: list[Rule] = []
    seen: set[str] = set()
    for idx, item in enumerate(data["paths"]):
        where = f"paths[{idx}]"
        path = _normalize_path(item["path"], where)
        if path in seen:
            raise InputError(f"{where}: path {path} is watched twice")
        seen.add(path)
        try:
            attrs = resolve_attrs(
                item.get("attrs", "R"), groups, default_hash, bool(item.get("growing", False))
            )
        except InputError as e:
            raise InputError(f"{where}: {e.message}") from None
        for kind in ("include", "exclude"):
            for pat in item.get(kind, []):
                try:
                    re.compile(glob_to_regex(pat))
                except (re.error, InputError) as e:
                    raise InputError(f"{where}: invalid {kind} pattern {pat!r}: {e}") from None
        for pat in item.get("nodiff", []):
            try:
                re.compile(glob_to_regex(pat))
            except (re.error, InputError) as e:
                raise InputError(f"{where}: invalid nodiff pattern {pat!r}: {e}") from None
        report_changes = bool(item.get("report_changes", False))
        if report_changes and not attrs & HASH_ATTRS:
            raise InputError(f"{where}: report_changes needs a content hash (sha256 or blake3) in attrs")
        rules.append(
            Rule(
                path=path,
                attrs=attrs,
                include=tuple(item.get("include", [])),
                exclude=tuple(item.get("exclude", [])),
                recurse=bool(item.get("recurse", True)),
                cross_filesystems=bool(item.get("cross_filesystems", global_xdev)),
                report_changes=report_changes,
                nodiff=tuple(item.get("nodiff", [])),
            )
        )
    for gname, gspec in groups.items():
        try:
            resolve_attrs(gspec, groups, default_hash)
        except InputError as e:
            raise InputError(f"groups/{gname}: {e.message}") from None
    database = data.get("database")
    if database and source and not os.path.isabs(database):
        database = os.path.join(os.path.dirname(os.path.abspath(source)), database)
    return FimConfig(
        name=data.get("name", default_name),
        rules=tuple(rules),
        hash=default_hash,
        workers=int(data.get("workers", 2)),
        database=database,
        source=source,
        diff_size_limit=int(data.get("diff_size_limit", DIFF_SIZE_LIMIT)),
        diff_max_lines=int(data.get("diff_max_lines", DIFF_MAX_LINES)),
    )


# The schema's checks, done by hand for the configurations that pass them: importing and
# building a jsonschema validator costs more than the rest of a small `fim check`. Anything
# not plainly valid goes to jsonschema, which decides and words the error.
_TOP = {"version", "name", "database", "hash", "cross_filesystems", "workers", "diff_size_limit",
        "diff_max_lines", "groups", "paths"}
_ITEM = {"path", "attrs", "include", "exclude", "recurse", "growing", "cross_filesystems",
         "report_changes", "nodiff"}
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}\Z")
_GROUP = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")


def _int_in(v: Any, lo: int, hi: int) -> bool:
    return type(v) is int and lo <= v <= hi


def _strings(v: Any) -> bool:
    return type(v) is list and all(type(x) is str and x for x in v)


def _attrs_ok(v: Any) -> bool:
    return (type(v) is str and bool(v)) or _strings(v)


def _item_ok(item: Any) -> bool:
    if type(item) is not dict or not set(item) <= _ITEM:
        return False
    path = item.get("path")
    if type(path) is not str or not path.startswith("/"):
        return False
    if "attrs" in item and not _attrs_ok(item["attrs"]):
        return False
    if any(k in item and not _strings(item[k]) for k in ("include", "exclude", "nodiff")):
        return False
    return all(type(item[k]) is bool for k in ("recurse", "growing", "cross_filesystems", "report_changes") if k in item)


def _plainly_valid(data: Any) -> bool:
    """True only when `data` certainly satisfies fim.schema.json (a test holds the two
    together); False means "ask jsonschema", not "invalid"."""
    if type(data) is not dict or not set(data) <= _TOP:
        return False
    checks = (
        ("version", lambda v: type(v) is int and v == 1),
        ("name", lambda v: type(v) is str and _NAME.match(v) is not None),
        ("database", lambda v: type(v) is str and bool(v)),
        ("hash", lambda v: v in ("sha256", "blake3")),
        ("cross_filesystems", lambda v: type(v) is bool),
        ("workers", lambda v: _int_in(v, 1, 64)),
        ("diff_size_limit", lambda v: _int_in(v, 1, 67108864)),
        ("diff_max_lines", lambda v: _int_in(v, 1, 100000)),
        ("groups", lambda v: type(v) is dict and all(
            type(k) is str and _GROUP.match(k) and _attrs_ok(x) for k, x in v.items())),
    )
    if not all(check(data[name]) for name, check in checks if name in data):
        return False
    paths = data.get("paths")
    return type(paths) is list and bool(paths) and all(_item_ok(i) for i in paths)


def _schema_problem(data: Any) -> tuple[str, list[Any]] | None:
    """The first schema violation as (message, path in the document), or None."""
    import jsonschema

    validator = jsonschema.Draft202012Validator(load_schema("fim"))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if not errors:
        return None
    err = errors[0]
    where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
    return f"{where}: {err.message}", list(err.absolute_path)
