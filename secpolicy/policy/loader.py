"""Load policy YAML files: validate against the shipped JSON Schema, resolve named lists and
macros (shared across all loaded files, cycles rejected), compile every expression once."""

from __future__ import annotations

import errno
import hashlib
import ipaddress
import os
import re
import stat
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from secpolicy.dsl import (
    Catalogue,
    CompiledExpr,
    Macro,
    Origin,
    ast,
    compile_expression,
    parse_duration,
    parse_expression,
)
from secpolicy.dsl.checker import check_expression
from secpolicy.dsl.limits import LIMITS
from secpolicy.dsl.lint import LintWarning, mixed_and_or, unused_macros
from secpolicy.dsl.types import (
    ANY,
    BOOL,
    CIDR,
    FLOAT,
    INT,
    STR,
    ListType,
    ObjectType,
    Signature,
    Type,
)
from secpolicy.errors import InputError, LocatedError
from secpolicy.models import Severity
from secpolicy.policy.cache import ParseCache
from secpolicy.policy.vars import (
    SCAN,
    SCAN_VAR,
    bounds_allowed,
    checked_value,
    converted_value,
    did_you_mean,
)
from secpolicy.resources import load_schema
from secpolicy.rules import (
    Condition,
    Policy,
    PolicySet,
    Rule,
    RuleTest,
    SequenceSpec,
    Threshold,
    VarDecl,
)

if TYPE_CHECKING:
    import jsonschema
    import jsonschema_rs

    from secpolicy.policy.yamlpos import Positioned

__all__ = ["PolicyErrors", "find_policy_files", "load_policies", "read_text_file", "schema_violation"]


def load_yaml(text: str, path: str) -> Positioned:
    """yamlpos.load_yaml, imported (with PyYAML) only when a file is not in the compile cache
    or turns out to be wrong."""
    from secpolicy.policy import yamlpos

    return yamlpos.load_yaml(text, path)


def expression_origin(doc: Positioned, at: tuple, text: str) -> Origin:
    from secpolicy.policy import yamlpos

    return yamlpos.expression_origin(doc, at, text)  # type: ignore[no-any-return]


class PolicyErrors(InputError):
    """One or more located errors across the loaded files (all are reported, not just the first)."""

    def __init__(self, errors: Sequence[InputError]) -> None:
        # One mistake reached twice (an expression reused through a YAML alias) is said once.
        seen: set[str] = set()
        unique = []
        for e in errors:
            shown = e.render()
            if shown not in seen:
                seen.add(shown)
                unique.append(e)
        super().__init__(f"{len(unique)} error(s) in policies")
        self.errors = unique

    def render(self) -> str:
        return "\n".join(e.render() for e in self.errors)


def _display(p: Path | str) -> str:
    # Non-UTF-8 names are shown with escapes rather than crashing the terminal.
    return os.fsdecode(p).encode("utf-8", "backslashreplace").decode("utf-8")


def find_policy_files(paths: Iterable[Path]) -> list[Path]:
    """Files named on the command line, and *.yaml / *.yml below named directories (a
    directory holding none is an InputError)."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found: list[Path] = []
            for dirpath, dirnames, filenames in os.walk(p, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in filenames:
                    if f.endswith((".yaml", ".yml")) and not f.startswith("."):
                        found.append(Path(dirpath) / f)
            if not found:
                # Checking nothing is a mistake (a wrong path, `X.YAML`), never a clean run.
                raise InputError("no policy files in this directory (*.yaml or *.yml, not hidden)", _display(p))
            out.extend(sorted(found))
        elif p.exists() or p.is_symlink():
            out.append(p)
        else:
            raise InputError("no such file or directory", _display(p))
    return out


def read_text_file(path: Path) -> tuple[str, bytes]:
    """The text (and bytes) of a policy, waiver or tailoring file. Anything but a regular
    file is refused before a byte is read: a FIFO with no writer would block for ever."""
    try:
        raw = _read_regular(path)
    except FileNotFoundError:
        raise InputError("no such file (it vanished while loading?)", _display(path)) from None
    except IsADirectoryError:
        raise InputError("is a directory", _display(path)) from None
    except PermissionError:
        raise InputError("permission denied", _display(path)) from None
    except OSError as e:
        raise InputError(e.strerror or str(e), _display(path)) from None
    try:
        return raw.decode("utf-8"), raw
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        start = raw.rfind(b"\n", 0, e.start) + 1
        end = raw.find(b"\n", e.start)
        # The column in characters, as an editor counts them (a BOM is not one), not in bytes.
        before = raw[start : e.start].decode("utf-8").removeprefix("\ufeff" if start == 0 else "")
        src = raw[start : end if end >= 0 else len(raw)].decode("utf-8", "replace")
        src = src.removeprefix("\ufeff" if start == 0 else "")
        raise LocatedError("not valid UTF-8", _display(path), line, len(before) + 1, src) from None


def _check_regular(path: Path, mode: int) -> None:
    if stat.S_ISDIR(mode):
        raise IsADirectoryError(errno.EISDIR, "is a directory")
    if not stat.S_ISREG(mode):
        kind = "a FIFO" if stat.S_ISFIFO(mode) else "a socket" if stat.S_ISSOCK(mode) else "a device"
        raise InputError(f"not a regular file ({kind})", _display(path))


def _read_regular(path: Path) -> bytes:
    # Checked before opening (a device is never opened), and again on the descriptor: the
    # O_NONBLOCK open of a FIFO swapped in meanwhile does not wait for a writer.
    _check_regular(path, os.stat(path).st_mode)
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    try:
        _check_regular(path, os.fstat(fd).st_mode)
        chunks = []
        while chunk := os.read(fd, 1 << 20):
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


_VALIDATORS: dict[str, jsonschema.protocols.Validator] = {}


def _validator(name: str = "policy") -> jsonschema.protocols.Validator:
    if name not in _VALIDATORS:
        import jsonschema  # only a file that is not in the compile cache is validated

        schema = load_schema(name)
        _VALIDATORS[name] = jsonschema.validators.validator_for(schema)(schema)
    return _VALIDATORS[name]


_FAST_VALIDATORS: dict[str, jsonschema_rs.Validator] = {}


def _accepted(data: Any, name: str) -> bool:
    """Whether jsonschema-rs's compiled validator accepts `data` (a hundredth of jsonschema's
    time). Where the two differ it is the stricter (tests/fuzz hold it to that), so what it
    refuses, or a value it cannot take, goes to jsonschema, which judges and words the error."""
    if name not in _FAST_VALIDATORS:
        import jsonschema_rs

        _FAST_VALIDATORS[name] = jsonschema_rs.validator_for(load_schema(name))
    try:
        return _FAST_VALIDATORS[name].is_valid(data)
    except Exception:  # noqa: BLE001 - e.g. a YAML date or a lone surrogate in a key: jsonschema decides
        return False


def schema_violation(doc: Positioned, schema: str) -> LocatedError | None:
    """The most relevant error of `doc` against the shipped schema `schema`, located."""
    if _accepted(doc.data, schema):
        return None
    verrs = sorted(_validator(schema).iter_errors(doc.data), key=lambda e: list(e.absolute_path))
    if not verrs:
        return None
    from jsonschema.exceptions import best_match

    return _schema_error(doc, best_match(verrs) or verrs[0])


def _schema_error(doc: Positioned, err: jsonschema.ValidationError) -> LocatedError:
    at = tuple(err.absolute_path)
    if err.validator == "additionalProperties" and isinstance(err.instance, dict):
        allowed = set(err.schema.get("properties", {}))
        extra = sorted(k for k in err.instance if k not in allowed)
        if extra:
            hint = f" (allowed: {', '.join(sorted(allowed))})" if allowed else ""
            return doc.error(at + (extra[0],), f"unknown field {extra[0]!r}{hint}", key=True)
    if err.validator == "required":
        return doc.error(at, f"missing required field: {err.message.split(' ')[0]}")
    if err.validator == "oneOf" and len(at) == 2 and at[0] == "rules":
        rule = err.instance if isinstance(err.instance, dict) else {}
        kinds = [k for k in ("check", "when", "sequence") if k in rule]
        if "threshold" in rule and "when" not in rule:
            return doc.error(at, "threshold: goes with when: (an event rule)")
        return doc.error(at, f"a rule needs exactly one of check:, when: or sequence:, found {kinds or 'none'}")
    if err.validator == "enum":
        return doc.error(at, f"{err.instance!r} is not one of {', '.join(map(str, err.validator_value))}")
    where = "/".join(map(str, at)) or "document"
    return doc.error(at, f"{where}: {err.message}")


# Expression text in one file once YAML aliases are expanded: `check: *c` repeats a 64 KiB
# expression without repeating its bytes, and each copy costs a parse and a compile. The
# bundled packs hold about 64 KiB of expression text in all.
EXPRESSION_TEXT_CHARS = 1024 * 1024


def _expression_texts(data: dict) -> Iterator[tuple[tuple, str]]:
    """(path, text) of every expression of a schema-valid policy document."""
    def applicable(at: tuple, raw: Any) -> Iterator[tuple[tuple, str]]:
        if isinstance(raw, str):
            yield at, raw
        elif isinstance(raw, list):
            yield from ((at + (k, "if"), c["if"]) for k, c in enumerate(raw))

    yield from ((("macros", n), t) for n, t in (data.get("macros") or {}).items())
    yield from applicable(("applicable",), data.get("applicable"))
    for i, r in enumerate(data.get("rules") or ()):
        for key in ("check", "when"):
            if key in r:
                yield ("rules", i, key), r[key]
        yield from applicable(("rules", i, "applicable"), r.get("applicable"))
        steps = (r.get("sequence") or {}).get("steps") or ()
        yield from ((("rules", i, "sequence", "steps", k), t) for k, t in enumerate(steps))


def _expression_text_error(doc: Positioned) -> LocatedError | None:
    """A located error at the expression that takes the file past EXPRESSION_TEXT_CHARS."""
    total = 0
    for at, text in _expression_texts(doc.data):
        if len(text) > LIMITS.expression_chars:
            continue  # the parser refuses it on its own, with that limit named
        total += len(text)
        if total > EXPRESSION_TEXT_CHARS:
            # At the key: an `*alias` value has no position of its own (it is the anchor's).
            return doc.error(at, f"the expressions of this file add up to more than {EXPRESSION_TEXT_CHARS:,} "
                                 "characters (the limit, counting each `*alias` copy): an alias bomb?", key=True)
    return None


class _Doc:
    """One policy file being loaded. From the compile cache it comes as plain data, the
    lines the loader asks for and the parsed expressions: the YAML is parsed again (for
    positions) only if something in it turns out to be wrong."""

    def __init__(self, path: Path, shown: str, text: str, sha256: str, pos: Positioned | None, cached: dict | None,
                 cached_scope: str | None = None) -> None:
        self.path = path
        self.shown = shown
        self.text = text
        self.sha256 = sha256
        self._pos = pos
        self.cached = cached
        self.cached_scope = cached_scope  # the scope of the cache entry it came from
        self.data: dict = cached["data"] if cached is not None else pos.data  # type: ignore[union-attr]
        self.parsed: dict[tuple, ast.Node] = {}
        self.by_text: dict[str, ast.Node] = {}  # one parse per distinct text (`*alias` copies)
        self.lines: dict[tuple, int] = {}  # (path, key?) -> line, kept in the cache
        self.lint: list[tuple[str, int, int, str | None]] | None = None  # its warnings, kept in the cache

    @property
    def pos(self) -> Positioned:
        if self._pos is None:
            self._pos = load_yaml(self.text, self.shown)
        return self._pos

    def error(self, at: tuple, message: str, *, key: bool = False) -> LocatedError:
        return self.pos.error(at, message, key=key)

    def line(self, at: tuple, *, key: bool = False) -> int:
        """The line of the value at `at` (or of the key naming it)."""
        k = (at, key)
        if self.cached is not None and k in self.cached["lines"]:
            n: int = self.cached["lines"][k]
        else:
            sp = (self.pos.key_spans if key else self.pos.spans).get(at)
            n = sp.line if sp else 1
        self.lines[k] = n
        return n

    def origin(self, at: tuple, text: str) -> Origin:
        """Where the expression at `at` stands, computed only when an error needs it."""
        if self._pos is not None:
            return expression_origin(self._pos, at, text)
        found: list[Origin] = []

        def locate(line: int, col: int) -> tuple[int, int, str | None]:
            if not found:
                found.append(expression_origin(self.pos, at, text))
            return found[0].locate(line, col)

        return Origin(self.shown, locate)

    def parse(self, at: tuple, text: str) -> ast.Node:
        node = self.cached["parsed"].get(at) if self.cached is not None else None
        if node is None:
            node = self.by_text.get(text)
        if node is None:
            node = parse_expression(text, self.origin(at, text))
        self.by_text.setdefault(text, node)
        self.parsed[at] = node
        return node

    def cache_entry(self, scope: str | None = None) -> dict[str, Any]:
        """What the loader read of the file. For the `event` scope the check rules are left
        out (stubs keep the rules' positions): a load of event rules skips them unread."""
        data = self.data
        if scope == "event" and data.get("rules"):
            data = {**data, "rules": [_CHECK_STUB if "check" in r else r for r in data["rules"]]}
        entry: dict[str, Any] = {"data": data, "lines": self.lines, "parsed": self.parsed}
        if scope is None and self.lint is not None:
            entry["lint"] = self.lint
        return entry


_CHECK_STUB: dict[str, Any] = {"check": None}  # a check rule, left out of an event-scope entry


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def _networks(values: list[Any]) -> list[Any] | None:
    """The networks of a list of addresses and networks with at least one network
    (`[10.0.0.0/8, 192.0.2.7]`), or None: as strings, `x in list` would compare text and
    never find 10.1.2.3 in 10.0.0.0/8."""
    if not values or not all(isinstance(v, str) for v in values) or not any("/" in v for v in values):
        return None
    try:
        return [ipaddress.ip_network(v.strip(), strict=False) for v in values]
    except ValueError:
        return None


def _list_literal(doc: _Doc, at: tuple, values: list[Any]) -> ast.ListLit:
    nets = _networks(values)
    if nets is not None:
        return ast.ListLit(tuple(ast.Literal(n, type=CIDR) for n in nets), type=ListType(CIDR))
    items = []
    elem: Type | None = None
    for i, v in enumerate(values):
        t = BOOL if isinstance(v, bool) else INT if isinstance(v, int) else FLOAT if isinstance(v, float) else STR
        if elem is None:
            elem = t
        elif t != elem:
            raise doc.error(at + (i,), f"list mixes {elem} and {t} values")
        items.append(ast.Literal(v, type=t))
    return ast.ListLit(tuple(items), type=ListType(elem or ANY))


class FactSpecLike(Protocol):
    @property
    def signature(self) -> Signature: ...
    @property
    def twin(self) -> object | None: ...  # builds the fact from an inline test's data


class FactCatalogue(Protocol):
    """The facts policies may read, as the loader needs them: handed in by the composition
    root (a `secpolicy.facts.FactRegistry` is one), never imported from facts/."""

    def __contains__(self, name: object) -> bool: ...
    def get(self, name: str) -> FactSpecLike: ...
    def signatures(self) -> dict[str, Signature]: ...


class _Loader:
    def __init__(self, registry: FactCatalogue, events: ObjectType, cache: ParseCache | None,
                 only: str | None = None) -> None:
        self.registry = registry
        self.events = events  # the event fields `when:` and `sequence:` read
        self.cache = cache
        self.only = only
        self.errors: list[InputError] = []
        self.lists: dict[str, ast.ListLit] = {}
        self.macros: dict[str, Macro] = {}
        self.vars: dict[str, VarDecl] = {}
        self.defined_at: dict[str, str] = {}
        self.rule_ids: dict[str, str] = {}
        self.macros_used: set[str] = set()
        # Compiled once per distinct text and kind: the catalogue is the same for every rule.
        self.compiled: dict[tuple[str, bool], CompiledExpr] = {}

    def read(self, path: Path) -> _Doc | None:
        shown = _display(path)
        try:
            text, raw = read_text_file(path)
        except InputError as e:
            self.errors.append(e)
            return None
        sha = hashlib.sha256(raw).hexdigest()
        # A cache entry exists only for a file that validated and compiled cleanly before. A
        # load of event rules alone prefers its own, smaller entries and may take a full one.
        cached, scope = None, None
        if self.cache is not None:
            if self.only == "event":
                cached, scope = self.cache.get(sha, "event"), "event"
            if cached is None:
                cached, scope = self.cache.get(sha), None
        if cached is not None:
            return _Doc(path, shown, text, sha, None, cached, scope)
        try:
            pos = load_yaml(text, shown)
        except InputError as e:
            self.errors.append(e)
            return None
        if not isinstance(pos.data, dict):
            self.errors.append(LocatedError("a policy file must be a mapping with metadata: and rules:", shown, 1, 1))
            return None
        violation = schema_violation(pos, "policy")
        if violation is not None:
            self.errors.append(violation)
            return None
        too_much = _expression_text_error(pos)
        if too_much is not None:
            self.errors.append(too_much)
            return None
        return _Doc(path, shown, text, sha, pos, None)

    def collect_names(self, d: _Doc) -> None:
        data = d.data
        for name, values in (data.get("lists") or {}).items():
            if self._define(d, ("lists", name), name):
                try:
                    self.lists[name] = _list_literal(d, ("lists", name), values)
                except LocatedError as e:
                    self.errors.append(e)
        for name, text in (data.get("macros") or {}).items():
            if self._define(d, ("macros", name), name):
                origin = d.origin(("macros", name), text)
                try:
                    node = d.parse(("macros", name), text)
                except LocatedError as e:
                    self.errors.append(e)
                    continue
                self.macros[name] = Macro(name, node, origin, text)
        for name, spec in (data.get("vars") or {}).items():
            if self._define(d, ("vars", name), name):
                decl = self._var(d, ("vars", name), name, spec)
                if decl is not None:
                    self.vars[name] = decl

    def _var(self, d: _Doc, at: tuple, name: str, spec: dict) -> VarDecl | None:
        """A var declaration, its default and bounds converted and checked (errors located)."""
        tname = spec["type"]
        n_errors = len(self.errors)
        bounds: dict[str, Any] = {}
        for key in ("min", "max"):
            if key in spec:
                if not bounds_allowed(tname):
                    self.errors.append(d.error(at + (key,), f"{key}: applies to numbers, modes, durations and sizes, not {tname}", key=True))
                    continue
                bounds[key] = self._convert(d, at + (key,), tname.removeprefix("list[").removesuffix("]"), spec[key])
        choices = None
        if "choices" in spec:
            elem = tname.removeprefix("list[").removesuffix("]")
            choices = tuple(self._convert(d, at + ("choices", i), elem, c) for i, c in enumerate(spec["choices"]))
        default = self._convert(d, at + ("default",), tname, spec["default"])
        if len(self.errors) > n_errors:
            return None
        decl = VarDecl(
            name, tname, default, spec["description"].strip(), f"{d.shown}:{d.line(at, key=True)}",
            bounds.get("min"), bounds.get("max"), choices,
        )
        if decl.minimum is not None and decl.maximum is not None and decl.minimum > decl.maximum:
            self.errors.append(d.error(at + ("min",), "min is above max"))
            return None
        try:
            decl.check_bounds(default)
        except ValueError as e:
            self.errors.append(d.error(at + ("default",), f"default: {e}"))
            return None
        return decl

    def _convert(self, d: _Doc, at: tuple, tname: str, raw: Any) -> Any:
        try:
            return converted_value(tname, raw)
        except ValueError as e:
            self.errors.append(d.error(at, f"{at[-1] if isinstance(at[-1], str) else 'choice'}: {e}"))
            return None

    def _define(self, d: _Doc, at: tuple, name: str) -> bool:
        if name == SCAN_VAR:
            self.errors.append(d.error(at, f"{name!r} is reserved for the scan context (scan.kind, scan.live, scan.root)", key=True))
            return False
        if name in self.defined_at:
            self.errors.append(d.error(at, f"{name!r} is already defined at {self.defined_at[name]}", key=True))
            return False
        if name in self.registry or name in self.events.fields:
            self.errors.append(d.error(at, f"{name!r} would hide the fact or event field of that name", key=True))
            return False
        self.defined_at[name] = f"{d.shown}:{d.line(at, key=True)}"
        return True

    def check_macros(self) -> None:
        # Every macro must type-check on its own in a check or an event context, so cycles and
        # unknown names are reported even for macros no rule uses. The likely context is tried
        # first: a failed try builds a located error, which a cached file pays for by
        # parsing its YAML again.
        for m in self.macros.values():
            errors: list[LocatedError] = []
            first = self.reads_event_fields(m.node, set())
            for event in (first, not first):
                try:
                    check_expression(m.node, self.catalogue(event=event), m.origin, m.text, want=ANY)
                    break
                except LocatedError as e:
                    errors.append(e)
            else:
                # A name that is called (`file("/x")`) is a fact, not the event field `file`.
                names_event_field = re.match(r"\s*\(?\s*([A-Za-z_][A-Za-z0-9_]*)(?![A-Za-z0-9_]|\s*\()", m.text)
                event_like = bool(names_event_field and names_event_field.group(1) in self.events.fields)
                self.errors.append(errors[int(event_like != first)])

    def reads_event_fields(self, node: ast.Node, seen: set[str]) -> bool:
        """Whether an expression names an event field bare (`proc.exe`), directly or through a
        macro; a fact of the same name (`file(...)`) is called, so a bare name is the field."""
        for n in _walk(node):
            if not isinstance(n, ast.Name):
                continue
            if n.name in self.macros and n.name not in seen:
                seen.add(n.name)
                if self.reads_event_fields(self.macros[n.name].node, seen):
                    return True
            elif n.name in self.events.fields and (n.name not in self.registry or self.registry.get(n.name).signature.params):
                return True
        return False

    def catalogue(self, *, event: bool) -> Catalogue:
        return Catalogue(
            facts=self.registry.signatures(),
            event_root=self.events if event else None,
            lists=self.lists,
            macros=self.macros,
            vars={SCAN_VAR: SCAN} | {n: v.type for n, v in self.vars.items()},
        )

    def compile(self, d: _Doc, at: tuple, text: str, *, event: bool) -> CompiledExpr | None:
        origin = d.origin(at, text)
        try:
            node = d.parse(at, text)
            compiled = self.compiled.get((text, event))
            if compiled is None:
                compiled = compile_expression(
                    text, self.catalogue(event=event), origin, kind="event" if event else "check", parsed=node
                )
                self.compiled[(text, event)] = compiled
            self.macros_used |= compiled.macros_used
            return compiled
        except LocatedError as e:
            self.errors.append(e)
            return None

    def conditions(self, d: _Doc, at: tuple, raw: str | list, scope: str) -> tuple[Condition, ...] | None:
        """`applicable:` as conditions: a bare expression, or a list of {if, reason}."""
        items = [(at, raw, None)] if isinstance(raw, str) else [(at + (k, "if"), c["if"], c["reason"]) for k, c in enumerate(raw)]
        out = []
        for where, text, reason in items:
            expr = self.compile(d, where, text, event=False)
            if expr is None:
                continue
            line = d.line(where)
            default_reason = f"the condition {' '.join(text.split())} does not hold"
            out.append(Condition(expr, (reason or default_reason).strip(), f"{d.shown}:{line}", scope))
        return tuple(out) if len(out) == len(items) else None

    def build(self, d: _Doc) -> Policy:
        data = d.data
        meta = data["metadata"]
        rules: list[Rule] = []
        shared: tuple[Condition, ...] = ()
        if "applicable" in data and self.only != "event":
            for i, r in enumerate(data.get("rules") or []):
                if "check" not in r:
                    self.errors.append(d.error(
                        ("applicable",),
                        f"applicable: at the top of a file applies to check rules; rule {r.get('id')!r} is an event rule "
                        "(keep event rules in a file of their own)",
                        key=True,
                    ))
                    break
            shared = self.conditions(d, ("applicable",), data["applicable"], "policy") or ()
        for i, r in enumerate(data.get("rules") or []):
            if self.only is not None and self.only != ("check" if "check" in r else "event"):
                continue
            rule = self.build_rule(d, i, r, meta["id"], shared)
            if rule is not None:
                rules.append(rule)
        return Policy(
            id=meta["id"],
            title=meta["title"],
            version=str(meta["version"]),
            path=d.shown,
            sha256=d.sha256,
            standard=meta.get("standard"),
            benchmark=meta.get("benchmark"),
            rules=tuple(rules),
            coverage=data.get("coverage") or {},
            applicable=shared,
            vars=tuple(self.vars[n] for n in (data.get("vars") or {}) if n in self.vars),
        )

    def build_rule(self, d: _Doc, i: int, r: dict, policy_id: str, shared: tuple[Condition, ...] = ()) -> Rule | None:
        at = ("rules", i)
        source = f"{d.shown}:{d.line(at)}"
        rid = r["id"]
        if rid in self.rule_ids:
            self.errors.append(d.error(at + ("id",), f"duplicate rule id {rid!r} (first defined at {self.rule_ids[rid]})"))
            return None
        self.rule_ids[rid] = source
        n_errors = len(self.errors)
        check = self.compile(d, at + ("check",), r["check"], event=False) if "check" in r else None
        own: tuple[Condition, ...] = ()
        if "applicable" in r:
            if "check" not in r:
                self.errors.append(d.error(at + ("applicable",), "applicable: goes with check: (event rules are not evaluated against facts)", key=True))
            else:
                own = self.conditions(d, at + ("applicable",), r["applicable"], "rule") or ()
        applicable = shared + own if check is not None else ()
        when = self.compile(d, at + ("when",), r["when"], event=True) if "when" in r else None
        threshold = None
        if "threshold" in r:
            t = r["threshold"]
            by = tuple(t.get("by") or ())
            self.check_fields(d, at + ("threshold", "by"), by)
            threshold = Threshold(int(t["count"]), float(parse_duration(t["within"])), by)
        sequence = None
        if "sequence" in r:
            s = r["sequence"]
            by_raw = s.get("by") or ()
            by = (by_raw,) if isinstance(by_raw, str) else tuple(by_raw)
            self.check_fields(d, at + ("sequence", "by"), by)
            steps = [
                self.compile(d, at + ("sequence", "steps", k), text, event=True) for k, text in enumerate(s["steps"])
            ]
            if all(steps):
                sequence = SequenceSpec(by, float(parse_duration(s["within"])), tuple(steps))  # type: ignore[arg-type]
        message = r.get("message")
        if message is not None:
            for m in _PLACEHOLDER.finditer(message):
                if self.events.path_type(m.group(1)) is None:
                    self.errors.append(d.error(at + ("message",), f"unknown event field {{{m.group(1)}}} in message"))
        tests = tuple(
            self.build_test(d, at, k, t, is_event="check" not in r, check=check)
            for k, t in enumerate(r.get("tests") or ())
        )
        if len(self.errors) > n_errors:
            return None
        return Rule(
            id=rid,
            title=r["title"],
            severity=Severity(r["severity"]),
            policy_id=policy_id,
            source=source,
            description=r.get("description", "").strip(),
            rationale=r.get("rationale", "").strip(),
            remediation=r.get("remediation", "").strip(),
            references={k: tuple(str(x) for x in v) for k, v in (r.get("references") or {}).items()},
            tags=tuple(r.get("tags") or ()),
            profiles=tuple(r.get("profiles") or ()),
            enabled=bool(r.get("enabled", True)),
            check=check,
            when=when,
            message=message,
            threshold=threshold,
            sequence=sequence,
            tests=tests,
            applicable=applicable,
            params=self.params(check, applicable),
        )

    def params(self, check: CompiledExpr | None, applicable: tuple[Condition, ...]) -> dict[str, VarDecl]:
        used: set[str] = set(check.vars_used) if check is not None else set()
        for c in applicable:
            used |= c.expr.vars_used
        return {n: self.vars[n] for n in sorted(used) if n in self.vars}

    def check_fields(self, d: _Doc, at: tuple, paths: Sequence[str]) -> None:
        for k, p in enumerate(paths):
            if self.events.path_type(p) is None:
                self.errors.append(d.error(at + (k,) if len(paths) > 1 or at[-1] != "by" else at, f"unknown event field {p!r}"))

    def check_fact_twin(self, d: _Doc, at: tuple, name: str, value: Any, checked: CompiledExpr | None) -> None:
        """A test's stand-in for a fact must have the fact's shape: unknown fields are errors."""
        if name not in self.registry:
            self.errors.append(d.error(at, f"unknown fact {name!r}", key=True))
            return
        spec = self.registry.get(name)
        sig = spec.signature
        if sig.params:
            self.errors.append(d.error(at, f"fact {name!r} takes arguments: only argument-less facts can be given", key=True))
            return
        if spec.twin is not None:
            return  # the fact builds its own object from the data (and says what is wrong)
        if checked is not None:
            called = _methods_called_on(checked.node, sig.returns)
            if called:
                self.errors.append(d.error(
                    at, f"the check calls {name}.{called[0]}(), which a plain-data stand-in cannot provide", key=True
                ))
                return
        errors = _shape_errors(value, sig.returns, at)
        if errors:
            where, msg = errors[0]
            self.errors.append(d.error(where, msg, key=True))

    def build_test(
        self, d: _Doc, at: tuple, k: int, t: dict, *, is_event: bool, check: CompiledExpr | None = None
    ) -> RuleTest:
        tat = at + ("tests", k)
        source = f"{d.shown}:{d.line(tat)}"
        expect = t["expect"]
        if is_event and expect not in ("fire", "no_fire"):
            self.errors.append(d.error(tat + ("expect",), f"an event rule's test expects fire or no_fire, not {expect!r}"))
        if not is_event and expect in ("fire", "no_fire"):
            self.errors.append(d.error(tat + ("expect",), f"a check's test expects pass, fail, error or not_applicable, not {expect!r}"))
        if is_event and "events" not in t:
            self.errors.append(d.error(tat, "an event rule's test needs events:"))
        root = self.fixture_root(d, tat + ("root",), t["root"]) if "root" in t else None
        for fname, value in (t.get("facts") or {}).items():
            self.check_fact_twin(d, tat + ("facts", fname), fname, value, check)
        # A test's files depend on its text alone: those of a file from the compile cache were
        # checked when it was cached (only a load without errors writes entries).
        for fname, spec in (t.get("files") or {}).items() if d.cached is None else ():
            from secpolicy.policy.testfiles import TestFileError, parse_test_file

            try:
                parse_test_file(fname, spec)
            except TestFileError as e:
                self.errors.append(d.error(tat + ("files", fname) + e.where, e.message, key=not e.where))
        if is_event and "vars" in t:
            self.errors.append(d.error(tat + ("vars",), "vars: event rules do not read vars", key=True))
        values = self.test_vars(d, tat, t) if "vars" in t else None
        return RuleTest(
            name=t.get("name") or f"test {k + 1}",
            expect=expect,
            root=root,
            files=t.get("files"),
            options=t.get("options"),
            facts=t.get("facts"),
            events=tuple(t["events"]) if "events" in t else None,
            alerts=t.get("alerts"),
            source=source,
            vars=values,
        )

    def fixture_root(self, d: _Doc, at: tuple, given: str) -> str | None:
        """A test's `root:`, resolved. Policies come from pull requests: a root outside the
        policy's own directory (absolute, `..`, or a symlink out) would copy the host's files
        into the test and print them in its failure message."""
        if os.path.isabs(given):
            self.errors.append(d.error(at, f"fixture root {given!r} is absolute: give a directory relative to the policy file"))
            return None
        if "\0" in given:
            self.errors.append(d.error(at, "a fixture root cannot contain a NUL byte"))
            return None
        home = os.path.realpath(d.path.parent)
        root = os.path.realpath(os.path.join(home, given))  # symlinks followed (a loop stays unresolved)
        if os.path.commonpath([home, root]) != home:
            self.errors.append(d.error(at, f"fixture root {given!r} leads outside the policy's directory (through '..' or a symlink)"))
            return None
        if not os.path.isdir(root):
            self.errors.append(d.error(at, f"fixture root {given!r} is not a directory"))
            return None
        return root

    def test_vars(self, d: _Doc, tat: tuple, t: dict) -> dict[str, Any]:
        """A test's `vars:`: declared names, values of the declared type within its bounds."""
        out: dict[str, Any] = {}
        for name, raw in t["vars"].items():
            at = tat + ("vars", name)
            decl = self.vars.get(name)
            if decl is None:
                self.errors.append(d.error(at, f"unknown var {name!r}{did_you_mean(name, self.vars)}", key=True))
                continue
            try:
                out[name] = checked_value(decl, raw)
            except ValueError as e:
                self.errors.append(d.error(at, f"{name}: {e}"))
        return out


def _walk(node: ast.Node) -> Iterator[ast.Node]:
    yield node
    for v in vars(node).values():
        if isinstance(v, ast.Node):
            yield from _walk(v)
        elif isinstance(v, tuple):
            for x in v:
                if isinstance(x, ast.Node):
                    yield from _walk(x)


def _methods_called_on(node: ast.Node, t: Type) -> list[str]:
    """Methods the expression calls on values of type `t` (or its elements)."""
    target = t.elem if isinstance(t, ListType) else t
    found: list[str] = []

    def walk(n: Any) -> None:
        if isinstance(n, ast.MethodCall) and n.obj.type is target:
            found.append(n.name)
        for v in vars(n).values():
            if isinstance(v, ast.Node):
                walk(v)
            elif isinstance(v, tuple):
                for x in v:
                    if isinstance(x, ast.Node):
                        walk(x)

    walk(node)
    return found


def _shape_errors(value: Any, t: Type, at: tuple) -> list[tuple[tuple, str]]:
    if isinstance(t, ListType):
        if not isinstance(value, list):
            return [(at, f"expected a list for {t}")]
        return [e for i, v in enumerate(value) for e in _shape_errors(v, t.elem, at + (i,))]
    if isinstance(t, ObjectType):
        if not isinstance(value, dict):
            return [(at, f"expected a mapping for {t}")]
        out: list[tuple[tuple, str]] = []
        for k, v in value.items():
            if k not in t.fields:
                out.append((at + (k,), f"unknown field {k!r} of {t} (fields: {', '.join(sorted(t.fields))})"))
            else:
                out.extend(_shape_errors(v, t.fields[k], at + (k,)))
        return out
    return []


def load_policies(
    paths: Sequence[Path], facts: FactCatalogue, *, events: ObjectType, cache_dir: Path | None = None,
    only: str | None = None,
) -> PolicySet:
    """Load, validate and compile. Raises PolicyErrors listing every located error.
    The vocabulary is handed in: `facts` are what `check:` expressions may call, `events` the
    event fields `when:` and `sequence:` read (`secpolicy.vocabulary` has the built-in ones).
    With `cache_dir`, unchanged files skip YAML parsing, validation and expression parsing
    (see policy/cache.py). `only="check"` or `only="event"` compiles and keeps only check
    rules or only event rules (`when:`/`sequence:`), for commands that need just those."""
    if only not in (None, "check", "event"):
        raise ValueError(f"only: check, event or None, not {only!r}")
    files = find_policy_files(paths)
    loader = _Loader(facts, events, ParseCache(cache_dir) if cache_dir is not None else None, only)
    docs = [d for d in (loader.read(p) for p in files) if d is not None]
    for d in docs:
        loader.collect_names(d)
    loader.check_macros()
    policies = [loader.build(d) for d in docs]
    if loader.errors:
        raise PolicyErrors(loader.errors)
    warnings = [w for d in docs for w in _lint_doc(d, complete=only is None)]
    if only is None:
        # A filtered load compiled only part of the rules: their macros are not all it saw used.
        warnings += unused_macros(loader.macros, loader.macros_used)
    if loader.cache is not None and only != "check":
        # A filtered load saw only part of each file: a load of event rules alone writes
        # entries of its own scope (never read by a full load), a load of check rules none.
        scope = None if only is None else "event"
        for d in docs:
            if d.cached is None or d.cached_scope != scope:
                loader.cache.put(d.sha256, d.cache_entry(scope), scope)
    return PolicySet(tuple(policies), warnings=tuple(warnings))


def _lint_doc(d: _Doc, *, complete: bool) -> list[LintWarning]:
    """The warnings about the file's expressions. A load of the whole file (`complete`) takes
    them from its compile cache entry, and keeps them there (they depend on its text alone)."""
    if complete and d.cached is not None and d.cached_scope is None:
        kept = d.cached.get("lint")
        if type(kept) is list and all(type(w) is tuple and len(w) == 4 for w in kept):
            return [LintWarning(message, d.shown, line, column, source) for message, line, column, source in kept]
    out: list[LintWarning] = []
    for at, node in d.parsed.items():
        text: Any = d.data
        for key in at:
            text = text[key]
        out.extend(mixed_and_or(node, d.origin(at, text), text))
    if complete:
        d.lint = [(w.message, w.line, w.column, w.source_line) for w in out]
    return out
