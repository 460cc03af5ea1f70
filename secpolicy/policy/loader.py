"""Load policy YAML files: validate against the shipped JSON Schema, resolve named lists and
macros (shared across all loaded files, cycles rejected), compile every expression once."""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
from jsonschema.exceptions import best_match

from secpolicy.dsl import (
    Catalogue,
    CompiledExpr,
    Macro,
    ast,
    compile_expression,
    parse_duration,
    parse_expression,
)
from secpolicy.dsl.checker import check_expression
from secpolicy.dsl.types import ANY, BOOL, FLOAT, INT, STR, ListType, ObjectType, Type
from secpolicy.errors import InputError, LocatedError
from secpolicy.events.fields import EVENT, event_field_type
from secpolicy.facts.base import FactRegistry
from secpolicy.models import Severity
from secpolicy.policy.cache import ParseCache
from secpolicy.policy.model import (
    Condition,
    Policy,
    PolicySet,
    Rule,
    RuleTest,
    SequenceSpec,
    Threshold,
)
from secpolicy.policy.vars import (
    SCAN,
    SCAN_VAR,
    VarDecl,
    bounds_allowed,
    convert_value,
    did_you_mean,
)
from secpolicy.policy.yamlpos import Positioned, expression_origin, load_yaml
from secpolicy.resources import load_schema

__all__ = ["PolicyErrors", "find_policy_files", "load_policies", "read_text_file"]


class PolicyErrors(InputError):
    """One or more located errors across the loaded files (all are reported, not just the first)."""

    def __init__(self, errors: Sequence[InputError]) -> None:
        super().__init__(f"{len(errors)} error(s) in policies")
        self.errors = list(errors)

    def render(self) -> str:
        return "\n".join(e.render() for e in self.errors)


def _display(p: Path | str) -> str:
    # Non-UTF-8 names are shown with escapes rather than crashing the terminal.
    return os.fsdecode(p).encode("utf-8", "backslashreplace").decode("utf-8")


def find_policy_files(paths: Iterable[Path]) -> list[Path]:
    """Files named on the command line, and *.yaml / *.yml below named directories."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            found: list[Path] = []
            for dirpath, dirnames, filenames in os.walk(p, followlinks=False):
                dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
                for f in filenames:
                    if f.endswith((".yaml", ".yml")) and not f.startswith("."):
                        found.append(Path(dirpath) / f)
            out.extend(sorted(found))
        elif p.exists() or p.is_symlink():
            out.append(p)
        else:
            raise InputError("no such file or directory", _display(p))
    return out


def read_text_file(path: Path) -> tuple[str, bytes]:
    try:
        raw = path.read_bytes()
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
        col = e.start - (raw.rfind(b"\n", 0, e.start) + 1) + 1
        raise LocatedError("not valid UTF-8", _display(path), line, col) from None


_VALIDATOR: jsonschema.protocols.Validator | None = None


def _validator() -> jsonschema.protocols.Validator:
    global _VALIDATOR
    if _VALIDATOR is None:
        schema = load_schema("policy")
        cls = jsonschema.validators.validator_for(schema)
        _VALIDATOR = cls(schema)
    return _VALIDATOR


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


@dataclass
class _Doc:
    path: Path
    shown: str
    pos: Positioned
    raw: bytes
    sha256: str
    cached: dict[tuple, ast.Node] | None  # parsed expressions from the compile cache
    parsed: dict[tuple, ast.Node]

    def parse(self, at: tuple, text: str) -> ast.Node:
        node = self.cached.get(at) if self.cached is not None else None
        if node is None:
            node = parse_expression(text, expression_origin(self.pos, at, text))
        self.parsed[at] = node
        return node


_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)\}")


def _list_literal(doc: Positioned, at: tuple, values: list[Any]) -> ast.ListLit:
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


class _Loader:
    def __init__(self, registry: FactRegistry, cache: ParseCache | None) -> None:
        self.registry = registry
        self.cache = cache
        self.errors: list[InputError] = []
        self.lists: dict[str, ast.ListLit] = {}
        self.macros: dict[str, Macro] = {}
        self.vars: dict[str, VarDecl] = {}
        self.defined_at: dict[str, str] = {}
        self.rule_ids: dict[str, str] = {}

    def read(self, path: Path) -> _Doc | None:
        shown = _display(path)
        try:
            text, raw = read_text_file(path)
            pos = load_yaml(text, shown)
        except InputError as e:
            self.errors.append(e)
            return None
        if not isinstance(pos.data, dict):
            self.errors.append(LocatedError("a policy file must be a mapping with metadata: and rules:", shown, 1, 1))
            return None
        sha = hashlib.sha256(raw).hexdigest()
        # A cache entry exists only for a file that validated and compiled cleanly before.
        cached = self.cache.get(sha) if self.cache is not None else None
        if cached is None:
            verrs = sorted(_validator().iter_errors(pos.data), key=lambda e: list(e.absolute_path))
            if verrs:
                self.errors.append(_schema_error(pos, best_match(verrs) or verrs[0]))
                return None
        return _Doc(path, shown, pos, raw, sha, cached, {})

    def collect_names(self, d: _Doc) -> None:
        data = d.pos.data
        for name, values in (data.get("lists") or {}).items():
            if self._define(d, ("lists", name), name):
                try:
                    self.lists[name] = _list_literal(d.pos, ("lists", name), values)
                except LocatedError as e:
                    self.errors.append(e)
        for name, text in (data.get("macros") or {}).items():
            if self._define(d, ("macros", name), name):
                origin = expression_origin(d.pos, ("macros", name), text)
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
                    self.errors.append(d.pos.error(at + (key,), f"{key}: applies to numbers, modes, durations and sizes, not {tname}", key=True))
                    continue
                bounds[key] = self._convert(d, at + (key,), tname.removeprefix("list[").removesuffix("]"), spec[key])
        choices = None
        if "choices" in spec:
            elem = tname.removeprefix("list[").removesuffix("]")
            choices = tuple(self._convert(d, at + ("choices", i), elem, c) for i, c in enumerate(spec["choices"]))
        default = self._convert(d, at + ("default",), tname, spec["default"])
        if len(self.errors) > n_errors:
            return None
        sp = d.pos.key_spans.get(at)
        decl = VarDecl(
            name, tname, default, spec["description"].strip(), f"{d.shown}:{sp.line if sp else 1}",
            bounds.get("min"), bounds.get("max"), choices,
        )
        if decl.minimum is not None and decl.maximum is not None and decl.minimum > decl.maximum:
            self.errors.append(d.pos.error(at + ("min",), "min is above max"))
            return None
        try:
            decl.check_bounds(default)
        except ValueError as e:
            self.errors.append(d.pos.error(at + ("default",), f"default: {e}"))
            return None
        return decl

    def _convert(self, d: _Doc, at: tuple, tname: str, raw: Any) -> Any:
        try:
            return convert_value(tname, raw)
        except ValueError as e:
            self.errors.append(d.pos.error(at, f"{at[-1] if isinstance(at[-1], str) else 'choice'}: {e}"))
            return None

    def _define(self, d: _Doc, at: tuple, name: str) -> bool:
        if name == SCAN_VAR:
            self.errors.append(d.pos.error(at, f"{name!r} is reserved for the scan context (scan.kind, scan.live, scan.root)", key=True))
            return False
        if name in self.defined_at:
            self.errors.append(d.pos.error(at, f"{name!r} is already defined at {self.defined_at[name]}", key=True))
            return False
        if name in self.registry or name in EVENT.fields:
            self.errors.append(d.pos.error(at, f"{name!r} would hide the fact or event field of that name", key=True))
            return False
        sp = d.pos.key_spans.get(at)
        self.defined_at[name] = f"{d.shown}:{sp.line if sp else 1}"
        return True

    def check_macros(self) -> None:
        # Every macro must type-check on its own in a check or an event context, so cycles and
        # unknown names are reported even for macros no rule uses.
        for m in self.macros.values():
            errors: list[LocatedError] = []
            for event in (False, True):
                try:
                    check_expression(m.node, self.catalogue(event=event), m.origin, m.text, want=ANY)
                    break
                except LocatedError as e:
                    errors.append(e)
            else:
                names_event_field = re.match(r"\s*\(?\s*([A-Za-z_]+)", m.text)
                event_like = bool(names_event_field and names_event_field.group(1) in EVENT.fields)
                self.errors.append(errors[1] if event_like else errors[0])

    def catalogue(self, *, event: bool) -> Catalogue:
        return Catalogue(
            facts=self.registry.signatures(),
            event_root=EVENT if event else None,
            lists=self.lists,
            macros=self.macros,
            vars={SCAN_VAR: SCAN} | {n: v.type for n, v in self.vars.items()},
        )

    def compile(self, d: _Doc, at: tuple, text: str, *, event: bool) -> CompiledExpr | None:
        origin = expression_origin(d.pos, at, text)
        try:
            node = d.parse(at, text)
            return compile_expression(
                text, self.catalogue(event=event), origin, kind="event" if event else "check", parsed=node
            )
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
            sp = d.pos.spans.get(where)
            default_reason = f"the condition {' '.join(text.split())} does not hold"
            out.append(Condition(expr, (reason or default_reason).strip(), f"{d.shown}:{sp.line if sp else 1}", scope))
        return tuple(out) if len(out) == len(items) else None

    def build(self, d: _Doc) -> Policy:
        data = d.pos.data
        meta = data["metadata"]
        rules: list[Rule] = []
        shared: tuple[Condition, ...] = ()
        if "applicable" in data:
            for i, r in enumerate(data.get("rules") or []):
                if "check" not in r:
                    self.errors.append(d.pos.error(
                        ("applicable",),
                        f"applicable: at the top of a file applies to check rules; rule {r.get('id')!r} is an event rule "
                        "(keep event rules in a file of their own)",
                        key=True,
                    ))
                    break
            shared = self.conditions(d, ("applicable",), data["applicable"], "policy") or ()
        for i, r in enumerate(data.get("rules") or []):
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
        sp = d.pos.spans.get(at)
        source = f"{d.shown}:{sp.line if sp else 1}"
        rid = r["id"]
        if rid in self.rule_ids:
            self.errors.append(d.pos.error(at + ("id",), f"duplicate rule id {rid!r} (first defined at {self.rule_ids[rid]})"))
            return None
        self.rule_ids[rid] = source
        n_errors = len(self.errors)
        check = self.compile(d, at + ("check",), r["check"], event=False) if "check" in r else None
        own: tuple[Condition, ...] = ()
        if "applicable" in r:
            if "check" not in r:
                self.errors.append(d.pos.error(at + ("applicable",), "applicable: goes with check: (event rules are not evaluated against facts)", key=True))
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
                if event_field_type(m.group(1)) is None:
                    self.errors.append(d.pos.error(at + ("message",), f"unknown event field {{{m.group(1)}}} in message"))
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
            if event_field_type(p) is None:
                self.errors.append(d.pos.error(at + (k,) if len(paths) > 1 or at[-1] != "by" else at, f"unknown event field {p!r}"))

    def check_fact_twin(self, d: _Doc, at: tuple, name: str, value: Any, checked: CompiledExpr | None) -> None:
        """A test's stand-in for a fact must have the fact's shape: unknown fields are errors."""
        if name not in self.registry:
            self.errors.append(d.pos.error(at, f"unknown fact {name!r}", key=True))
            return
        spec = self.registry.get(name)
        sig = spec.signature
        if sig.params:
            self.errors.append(d.pos.error(at, f"fact {name!r} takes arguments: only argument-less facts can be given", key=True))
            return
        if spec.twin is not None:
            return  # the fact builds its own object from the data (and says what is wrong)
        if checked is not None:
            called = _methods_called_on(checked.node, sig.returns)
            if called:
                self.errors.append(d.pos.error(
                    at, f"the check calls {name}.{called[0]}(), which a plain-data stand-in cannot provide", key=True
                ))
                return
        errors = _shape_errors(value, sig.returns, at)
        if errors:
            where, msg = errors[0]
            self.errors.append(d.pos.error(where, msg, key=True))

    def build_test(
        self, d: _Doc, at: tuple, k: int, t: dict, *, is_event: bool, check: CompiledExpr | None = None
    ) -> RuleTest:
        tat = at + ("tests", k)
        sp = d.pos.spans.get(tat)
        source = f"{d.shown}:{sp.line if sp else 1}"
        expect = t["expect"]
        if is_event and expect not in ("fire", "no_fire"):
            self.errors.append(d.pos.error(tat + ("expect",), f"an event rule's test expects fire or no_fire, not {expect!r}"))
        if not is_event and expect in ("fire", "no_fire"):
            self.errors.append(d.pos.error(tat + ("expect",), f"a check's test expects pass, fail, error or not_applicable, not {expect!r}"))
        if is_event and "events" not in t:
            self.errors.append(d.pos.error(tat, "an event rule's test needs events:"))
        root = None
        if "root" in t:
            root = str((d.path.parent / t["root"]).resolve())
            if not os.path.isdir(root):
                self.errors.append(d.pos.error(tat + ("root",), f"fixture root {t['root']!r} is not a directory"))
        for fname, value in (t.get("facts") or {}).items():
            self.check_fact_twin(d, tat + ("facts", fname), fname, value, check)
        if is_event and "vars" in t:
            self.errors.append(d.pos.error(tat + ("vars",), "vars: event rules do not read vars", key=True))
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

    def test_vars(self, d: _Doc, tat: tuple, t: dict) -> dict[str, Any]:
        """A test's `vars:`: declared names, values of the declared type within its bounds."""
        out: dict[str, Any] = {}
        for name, raw in t["vars"].items():
            at = tat + ("vars", name)
            decl = self.vars.get(name)
            if decl is None:
                self.errors.append(d.pos.error(at, f"unknown var {name!r}{did_you_mean(name, self.vars)}", key=True))
                continue
            try:
                out[name] = decl.check(raw)
            except ValueError as e:
                self.errors.append(d.pos.error(at, f"{name}: {e}"))
        return out


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


def load_policies(paths: Sequence[Path], registry: FactRegistry, *, cache_dir: Path | None = None) -> PolicySet:
    """Load, validate and compile. Raises PolicyErrors listing every located error.
    With `cache_dir`, unchanged files skip validation and parsing (see policy/cache.py)."""
    files = find_policy_files(paths)
    loader = _Loader(registry, ParseCache(cache_dir) if cache_dir is not None else None)
    docs = [d for d in (loader.read(p) for p in files) if d is not None]
    for d in docs:
        loader.collect_names(d)
    loader.check_macros()
    policies = [loader.build(d) for d in docs]
    if loader.errors:
        raise PolicyErrors(loader.errors)
    if loader.cache is not None:
        for d in docs:
            if d.cached is None:
                loader.cache.put(d.sha256, d.parsed)
    return PolicySet(tuple(policies))
