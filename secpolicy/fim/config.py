"""FIM configuration: YAML validated against `fim.schema.json` into a frozen `FimConfig`
whose rules know their attribute set, include/exclude patterns and which paths they own."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from secpolicy.errors import InputError, LocatedError
from secpolicy.fim.attrs import HASH_ATTRS, XATTR_ATTRS, resolve_attrs
from secpolicy.resources import load_schema

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

    @property
    def hash_algo(self) -> str | None:
        found = self.attrs & HASH_ATTRS
        return next(iter(found)) if found else None

    @property
    def wants_xattrs(self) -> bool:
        return bool(self.attrs & XATTR_ATTRS)

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
        }


@dataclass(frozen=True)
class CompiledRule:
    """A rule with its patterns compiled; built once per scan."""

    rule: Rule
    include: re.Pattern[str] | None
    exclude: re.Pattern[str] | None
    # The rule's derived properties, looked up once per entry in a scan: computed here once.
    hash_algo: str | None = field(init=False, compare=False)
    wants_xattrs: bool = field(init=False, compare=False)
    growing: bool = field(init=False, compare=False)
    selects_all: bool = field(init=False, compare=False)  # neither include nor exclude

    def __post_init__(self) -> None:
        object.__setattr__(self, "selects_all", self.include is None and self.exclude is None)
        object.__setattr__(self, "hash_algo", self.rule.hash_algo)
        object.__setattr__(self, "wants_xattrs", self.rule.wants_xattrs)
        object.__setattr__(self, "growing", self.rule.growing)

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

    def canonical(self) -> dict[str, Any]:
        """What the baseline depends on; cosmetic edits to the YAML do not change it."""
        return {
            "format": 1,
            "name": self.name,
            "hash": self.hash,
            "rules": [r.to_dict() for r in sorted(self.rules, key=lambda r: r.path)],
        }

    @property
    def digest(self) -> str:
        text = json.dumps(self.canonical(), sort_keys=True, separators=(",", ":"))
        return hashlib.sha256(text.encode("utf-8")).hexdigest()

    def compiled(self) -> dict[str, CompiledRule]:
        return {
            r.path: CompiledRule(r, _compile_patterns(r.include), _compile_patterns(r.exclude))
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
            j = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("!", "^") else i + 1)
            if j < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1 : j]
                if body[:1] in ("!", "^"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = j
        else:
            out.append(re.escape(c))
        i += 1
    body = "".join(out)
    if pattern.startswith("/"):
        return body
    if "/" not in pattern:
        return "(?:.*/)?" + body
    return ".*/" + body


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
        node = yaml.compose(text)
        data = yaml.safe_load(text)
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
    validator = jsonschema.Draft202012Validator(load_schema("fim"))
    errors = sorted(validator.iter_errors(data), key=lambda e: list(e.absolute_path))
    if errors:
        err = errors[0]
        where = "/".join(str(p) for p in err.absolute_path) or "(top level)"
        raise _error_at(text, source, _locate(node, list(err.absolute_path)), f"{where}: {err.message}")
    try:
        return config_from_dict(data, source=source, default_name=Path(source).stem)
    except LocatedError:
        raise
    except InputError as e:
        # Point at the offending rule when the message names one.
        m = re.match(r"paths\[(\d+)\]", e.message)
        at = _locate(node, ["paths", int(m.group(1))]) if m else None
        raise _error_at(text, source, at, e.message) from None


def config_from_dict(
    data: dict[str, Any], source: str | None = None, default_name: str = "default"
) -> FimConfig:
    """Build a FimConfig from already-parsed data (as read from YAML or built in code)."""
    if source is None:
        problem = jsonschema.Draft202012Validator(load_schema("fim")).iter_errors(data)
        first = next(iter(problem), None)
        if first is not None:
            where = "/".join(str(p) for p in first.absolute_path) or "(top level)"
            raise InputError(f"{where}: {first.message}")
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
                except re.error as e:
                    raise InputError(f"{where}: invalid {kind} pattern {pat!r}: {e}") from None
        rules.append(
            Rule(
                path=path,
                attrs=attrs,
                include=tuple(item.get("include", [])),
                exclude=tuple(item.get("exclude", [])),
                recurse=bool(item.get("recurse", True)),
                cross_filesystems=bool(item.get("cross_filesystems", global_xdev)),
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
    )
