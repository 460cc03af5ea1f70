"""Applies a redaction policy to what leaves the process: events, alerts, audit-log details
and scan evidence. Originals are never modified; every output copy says what was redacted."""

from __future__ import annotations

import bisect
import hashlib
import hmac
import os
import re
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from secpolicy.models import Evidence
from secpolicy.redaction.detectors import (
    MASK,
    LazyPattern,
    TextDetector,
    attached_prefix,
    builtin_detectors,
    is_program,
    is_secret_value,
    json_quotes_escapes,
    json_secret_spans,
    json_unescaped,
    may_hold_secret,
    program_secrets,
    utf8,
)

__all__ = ["ACTIONS", "FIELD_CLASSES", "RedactionSettings", "Redactor"]

ACTIONS = ("keep", "scan", "mask", "pseudonym", "basename", "drop")

# Which values name the same kind of thing: a pseudonym is keyed by class, so `alice` as
# user.name, login.name and auth.user maps to one token and correlation still works.
FIELD_CLASSES: dict[str, str] = {
    "user.name": "user", "login.name": "user", "auth.user": "user", "account.name": "user",
    "file.path": "path", "file.target": "path", "proc.exe": "path", "proc.cwd": "path", "proc.pexe": "path",
    "auth.rhost": "host", "net.src_ip": "host", "net.dst_ip": "host", "host": "host",
}


# A string literal in a rule's expression naming a secret setting, or a field that holds one
# (`u.password`, the passwd or group file's password field): the value read for it is masked
# whole, whatever it looks like (`option("bindpw")`, `kv("/etc/x").get("db_password")`, a DES hash).
SECRET_SETTING = LazyPattern(
    r"[\"'](?:[A-Za-z0-9_.-]*[_.-])?(?:password|passwd|passphrase|pwd|secret|token|bindpw|rootpw|credentials?"
    r"|api_?key|private_?key|psk|community|secret_?key_?base)[\"']"
    r"|\.(?:password|passwd|passphrase|secret|token|psk)\b(?![.(])",
    re.IGNORECASE,
)

# The name of a value that is a secret, whatever the value looks like: `{"bindpw": "X"}`,
# `{"db_password": "X"}` in a record's nested objects (a bare `key` is a name, as in `config.key`).
_SECRET_NAME = LazyPattern(
    r"(?:[A-Za-z0-9]+[_.-])*(?:password|passwd|passphrase|pwd|secret|token|api_?key|access_?key|secret_?key"
    r"|private_?key|credentials?|psk|bindpw|rootpw|masterpw|masterauth|requirepass|secret[_.-]?key[_.-]?base)",
    re.IGNORECASE,
)
_secret_names: dict[str, bool] = {}
# What a password field holds when it holds no password (passwd's `x`, shadow's `*`, `!`, `!!`,
# Solaris-style `*LK*`): shown, so that evidence says why `u.password == "x"` failed.
_NO_PASSWORD = LazyPattern(r'"?(?:[x*!]{1,3}|\*LK\*|\*NP\*)"?')


# Observed values shown as they are even where the expression reads a secret setting: how
# format_value renders nothing, an empty string or list, and a boolean (strings are quoted).
_HOLDS_NO_SECRET = frozenset(("", '""', "null", "[]", "<absent>", "true", "false"))


def _no_password(observed: str) -> bool:
    return _NO_PASSWORD.fullmatch(observed) is not None


def _secret_name(key: str) -> bool:
    hit = _secret_names.get(key)
    if hit is None:
        hit = bool(_SECRET_NAME.fullmatch(key))
        if len(_secret_names) < 4096:
            _secret_names[key] = hit
    return hit


# Fields whose values are produced by secpolicy or the kernel, never by a user.
_NEVER_SECRET = frozenset({"ts", "type", "source", "outcome", "redacted"})

_SPAN_CACHE_SIZE = 4096  # texts whose secrets are remembered (the table is emptied when full)
_SPAN_CACHE_TEXT = 2048  # longer texts are searched every time


@dataclass(frozen=True)
class RedactionSettings:
    """A checked redaction policy (see `secpolicy.policy.redaction.load_redaction`)."""

    enabled: bool = True
    credentials: bool = True
    payment_cards: bool = True
    custom: tuple[TextDetector, ...] = ()
    fields: Mapping[str, str] = field(default_factory=dict)  # dotted event path -> action
    key: bytes | None = None  # pseudonym key; None: a random key for this run only
    source: str = "built-in default"
    key_source: str | None = None  # where `key` came from (a file, the audit log), for summaries


# Alert fields that hold nothing a user wrote (or are handled one by one below).
_ALERT_PLAIN = frozenset({"rule_id", "severity", "ts", "tags", "references", "coverage", "redacted"})
_PSEUDONYM_SHAPE = LazyPattern(r"[a-z_.]+-[0-9a-f]{12}")


class Redactor:
    """Redacts copies of records; a record with nothing to redact is returned as it is (the
    same object). `stats` counts redacted field paths over the run; one Redactor may serve
    several threads (a run's event loop and its output writer)."""

    def __init__(self, settings: RedactionSettings | None = None) -> None:
        self.settings = settings or RedactionSettings()
        s = self.settings
        self.detectors: tuple[TextDetector, ...] = (
            builtin_detectors(credentials=s.credentials, payment_cards=s.payment_cards) + s.custom
        )
        self.ephemeral_key = s.key is None
        self._key = s.key if s.key is not None else os.urandom(32)  # what secrets.token_bytes does
        # Most strings (paths, program names) hold nothing a built-in detector looks for: one
        # search over all of a record's strings decides; custom patterns have no such shortcut.
        self._prefilter = may_hold_secret if not s.custom else None
        self.stats: Counter[str] = Counter()
        self._records = 0
        self._lock = threading.Lock()
        self._pseudo_cache: dict[tuple[str, str], str] = {}
        self._span_cache: dict[str, list[tuple[int, int, str]]] = {}
        actions: dict[str, Callable[[str, str], str | None]] = {
            "mask": lambda _path, _v: MASK,
            "pseudonym": self._pseudonym,
            "basename": lambda _path, v: v.rstrip("/").rsplit("/", 1)[-1] or v,
        }
        self._field_actions = {p: a for p, a in s.fields.items() if a not in ("keep", "scan")}
        self._keep = frozenset(p for p, a in s.fields.items() if a == "keep")
        self._actions = actions
        self._structured = s.enabled and bool(self.detectors or self._field_actions)

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    @property
    def records_redacted(self) -> int:
        return self._records

    @property
    def key_source(self) -> str:
        return "per run" if self.ephemeral_key else (self.settings.key_source or "file")

    def summary(self) -> dict[str, Any]:
        """What results and run summaries say about redaction: the policy, and how many
        records and which fields had something masked (never the values)."""
        with self._lock:
            return {"enabled": self.enabled, "policy": self.settings.source, "records": self._records,
                    "fields": dict(sorted(self.stats.items())), "pseudonym_key": self.key_source}

    # -- text --------------------------------------------------------------------------------

    def text(self, value: str) -> str:
        """`value` with every detected secret replaced (the same string if none)."""
        spans = self._spans(value)
        if not spans:
            return value
        out: list[str] = []
        pos = 0
        for start, end, repl in spans:
            out += [value[pos:start], repl]
            pos = end
        out.append(value[pos:])
        return "".join(out)

    def _spans(self, value: str) -> list[tuple[int, int, str]]:
        """The secrets in `value`, in order, without overlaps (the earlier, wider find wins);
        callers must not change the list (it is remembered for the next record quoting the
        same text: command lines, paths and arguments repeat from event to event)."""
        if len(value) > _SPAN_CACHE_TEXT:
            return self._find_spans(value)
        cache = self._span_cache
        hit = cache.get(value)
        if hit is None:
            hit = self._find_spans(value)
            if len(cache) >= _SPAN_CACHE_SIZE:
                cache.clear()
            cache[value] = hit
        return hit

    def _find_spans(self, value: str) -> list[tuple[int, int, str]]:
        spans = self._detect(value)
        if "\\" in value:
            # Text that quotes text: a file's content as evidence renders it (`\n`, `\"`), a JSON
            # document read as lines (`"\u0070assword": ...`). Its escapes undone (twice: a JSON
            # document inside evidence's quotes), a secret shows its shape; what it covers there
            # is masked here, escapes and all.
            once = _unescape(value)
            twice = _unescape(once)
            for view in dict.fromkeys((once, twice)):
                found = self._detect(view) if view != value else []
                if found:
                    _, where = _unescaped(value)
                    if view is twice and twice != once:
                        _, where2 = _unescaped(once)
                        where = [where[w] for w in where2]
                    for start, end, repl in found:
                        a, b = where[start], where[end]
                        spans.append((a, b, repl if value[a:b] == view[start:end] else MASK))
        if not spans:
            return spans
        # Earlier finds first, the wider of two at one place first; a find overlapping the one
        # before it extends the masked span (a part of a secret must not stay).
        spans.sort(key=lambda s: (s[0], -s[1]))
        out: list[tuple[int, int, str]] = []
        for start, end, repl in spans:
            if not out or start >= out[-1][1]:
                out.append((start, end, repl))
            elif end > out[-1][1]:
                out[-1] = (out[-1][0], end, MASK)
        return out

    def _detect(self, value: str) -> list[tuple[int, int, str]]:
        if self._prefilter is not None and not self._prefilter(value):
            return []
        spans: list[tuple[int, int, str]] = []
        lowered = value.lower()
        for d in self.detectors:
            spans += d.spans(value, lowered)
        return spans

    def _pseudonym(self, path: str, value: str) -> str:
        cls = FIELD_CLASSES.get(path, path)
        key = (cls, value)
        hit = self._pseudo_cache.get(key)
        if hit is None:
            mac = hmac.new(self._key, f"{cls}\0{value}".encode("utf-8", "surrogatepass"), hashlib.sha256)
            hit = f"{cls}-{mac.hexdigest()[:12]}"
            if len(self._pseudo_cache) < 65536:
                self._pseudo_cache[key] = hit
        return hit

    # -- structured records ------------------------------------------------------------------

    def _needs_scan(self, record: Mapping[str, Any], skip: frozenset[str] = _NEVER_SECRET) -> bool:
        """Whether the detectors could find anything in `record`'s strings: decided on all of
        them joined by newlines (one prefilter search, and the detectors only when it hits),
        which finds every secret a single string holds, and possibly more. Custom patterns
        (RE2, maybe anchored) are tried string by string: no shortcut then."""
        if not self.detectors:
            return False
        if self._prefilter is None:
            return True
        texts: list[str] = []
        _strings(record, texts, skip)
        proc = record.get("proc")
        if isinstance(proc, Mapping) and isinstance(proc.get("exe"), str) and is_program(proc["exe"]):
            return True  # its own option syntax decides (`mysql -pX`), whatever order the fields are in
        return self._joined_hit(texts)

    def _joined_hit(self, texts: list[str]) -> bool:
        if not texts:
            return False
        joined = "\n".join(texts)
        if self._prefilter is None or self._prefilter(joined):
            return bool(self._spans(joined))
        # Escaped text (`\u0070assword=`, `\"password\": ...`) shows its shape only unescaped.
        view = _unescape(joined)
        if view is joined or view == joined:
            return False
        return (self._prefilter(view) or self._prefilter(_unescape(view))) and bool(self._spans(joined))

    def event(self, event: Mapping[str, Any]) -> Mapping[str, Any]:
        """A redacted copy of an Event (the input is left as it is), with `redacted` listing
        the dotted paths changed or dropped, when any were; the event itself when nothing
        needed redacting. A record redacted before keeps its pseudonyms and its list."""
        red, changed = self._event(event)
        if changed:
            self._count(changed)
        return red

    def _event(self, event: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[str]]:
        if not self._structured:
            return event, []
        scan = self._needs_scan(event)
        if not scan and not self._field_actions:
            return event, []
        changed: list[str] = []
        before = event.get("redacted")
        already = frozenset(before) if isinstance(before, list) else frozenset()
        out = self._walk(event, "", changed, event, scan, already)
        if not changed:
            return event, []
        subs = self._replaced(event, out)
        if subs:
            # A value a field action replaced goes wherever else the record quotes it (the
            # user's name in a home directory, a path in the command line that wrote it).
            out = self._substituted(out, "", subs, changed)
        out["redacted"] = sorted(set(changed) | already)
        return out, changed

    def _substituted(self, obj: Mapping[str, Any], prefix: str, subs: Mapping[str, str],
                     changed: list[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for k, v in obj.items():
            path = prefix + k
            if path in _NEVER_SECRET or path in self._field_actions:
                out[k] = v
            elif isinstance(v, str):
                out[k] = _substitute(v, subs)
                if out[k] != v:
                    changed.append(path)
            elif isinstance(v, Mapping):
                out[k] = self._substituted(v, path + ".", subs, changed)
            elif isinstance(v, list) and any(isinstance(x, str) for x in v):
                out[k] = [_substitute(x, subs) if isinstance(x, str) else x for x in v]
                if out[k] != v:
                    changed.append(path)
            else:
                out[k] = v
        return out

    @property
    def line_checkable(self) -> bool:
        """Whether `certainly_clean` can clear most records by their lines alone (no per-field
        action such as a pseudonym applies to every record)."""
        return not self._field_actions

    def certainly_clean(self, record: Mapping[str, Any], line: bytes) -> bool:
        """Whether `record` (an event or alert), serialised as the JSON `line` about to be
        written, certainly needs no redaction: one search over the line instead of a walk
        over the record. False means "redact it to know"."""
        return self.certainly_clean_many([record], [line])[0]

    def certainly_clean_many(self, records: Sequence[Mapping[str, Any]], lines: Sequence[bytes]) -> list[bool]:
        """`certainly_clean` of many records at once: one search over all their lines finds
        the few that may hold something (the search lets other threads run while it works,
        so one search per batch, not per record, keeps a writer thread from trading the
        interpreter back and forth with the loop that feeds it)."""
        n = len(records)
        if not self._structured:
            return [True] * n
        if self._field_actions or self._prefilter is None:
            return [False] * n
        return _clean_flags([_json_view(records[i], lines[i]) for i in range(n)])

    def certainly_clean_alone(self, events: Sequence[Mapping[str, Any]], lines: Sequence[bytes]) -> list[bool]:
        """`certainly_clean_many` of alerts each raised by one event alone (`{"event": e,
        "events": [e], ...}`), serialised as `lines`, without making the records."""
        n = len(events)
        if not self._structured:
            return [True] * n
        if self._field_actions or self._prefilter is None:
            return [False] * n
        views = []
        for i in range(n):
            event = events[i]
            views.append(_event_view(event, lines[i]) if type(event) is dict or isinstance(event, Mapping) else None)
        return _clean_flags(views)

    def alert(self, alert: Mapping[str, Any]) -> Mapping[str, Any]:
        """A redacted copy of an Alert: its message, its events, its correlation and
        aggregation keys, a FIM change; `redacted` names every field changed."""
        if not self._structured:
            return alert
        if not self._field_actions and self._prefilter is not None:
            texts: list[str] = []
            _alert_strings(alert, texts)
            if not self._joined_hit(texts):
                return alert
        changed: list[str] = []
        out = dict(alert)
        memo: dict[int, tuple[Mapping[str, Any], list[str]]] = {}

        def one(e: Mapping[str, Any]) -> tuple[Mapping[str, Any], list[str]]:
            hit = memo.get(id(e))  # `event` is most often also `events[0]`: redacted once
            if hit is None:
                hit = memo[id(e)] = self._event(e)
            return hit

        for k, v in alert.items():
            if k in _ALERT_PLAIN or k in ("message", "title"):
                continue
            if k == "event" and isinstance(v, Mapping):
                out[k], sub = one(v)
                changed += ["event." + p for p in sub]
            elif k == "events" and isinstance(v, list):
                new_events = []
                for i, e in enumerate(v):
                    if isinstance(e, Mapping):
                        red, sub = one(e)
                        changed += [f"events[{i}].{p}" for p in sub]
                        new_events.append(red)
                    else:
                        new_events.append(e)
                out[k] = new_events
            elif k in ("context", "aggregate") and isinstance(v, Mapping):
                out[k] = self._correlation(k, v, changed)
            elif k == "fim" and isinstance(v, Mapping):
                out[k] = self._fim(v, changed)
            else:
                out[k] = self._scan_any(v, k, changed, True)
        # The message was rendered from the raw event: what a field action replaced there
        # (a user pseudonymised, a path cut to its name) is replaced in it too.
        subs: dict[str, str] = {}
        quoted: dict[str, str] = {}
        for raw_event, (red, _) in ((e, memo[id(e)]) for e in _alert_events(alert) if id(e) in memo):
            subs.update(self._replaced(raw_event, red))
            if red is not raw_event:
                quoted.update(self._secrets_of(raw_event))
        for k in ("message", "title"):
            v = alert.get(k)
            if isinstance(v, str):
                nv = _substitute(self._field_text(v, True), subs)
                if quoted:
                    # The message was rendered from the raw event in a shape of its own (a list
                    # joined by spaces, an object as Python prints it): a secret the event's
                    # fields held goes from it wherever it stands.
                    nv = _unquoted(nv, quoted)
                if nv != v:
                    out[k] = nv
                    changed.append(k)
        if not changed:
            return alert
        before = alert.get("redacted")
        out["redacted"] = sorted(set(changed) | (set(before) if isinstance(before, list) else set()))
        self._count(changed)
        return out

    def _secrets_of(self, event: Mapping[str, Any]) -> dict[str, str]:
        """The secrets the detectors find in an event's strings (and its program's options
        reveal), each with what replaces it."""
        texts: list[str] = []
        _strings(event, texts, _NEVER_SECRET)
        out: dict[str, str] = {}
        for t in texts:
            for a, b, repl in self._spans(t):
                secret = t[a:b]
                if secret != repl:
                    out[secret] = repl
                    bare = secret.strip("\"'")
                    if bare != secret and bare:
                        out[bare] = MASK
        proc = event.get("proc")
        args = proc.get("args") if isinstance(proc, Mapping) else None
        if isinstance(args, list) and args:
            strs = [str(a) for a in args]
            for i in program_secrets(str(proc.get("exe") or strs[0]), strs):  # type: ignore[union-attr]
                out[strs[i][len(attached_prefix(strs[i])):]] = MASK
            if any(len(arg.split(None, 1)) > 1 for arg in strs):  # a value holding a space (`--password "a b"`)
                for i, found in self._arg_spans(strs).items():
                    arg = strs[i]
                    for start, stop, repl in found:
                        space = next((k for k in range(start, stop) if arg[k].isspace()), -1)
                        if repl == MASK and space >= 0:
                            out[arg[start:stop]] = MASK  # all of it, wherever it stands
                            out[MASK + arg[space:stop]] = MASK  # what the message's own find left of it
        for t in texts:  # `{"bindpw": "X"}`: X, read with its name by `_strings`
            name, sep, value = t.partition("=")
            if sep and _secret_name(name) and is_secret_value(value):
                out[value] = MASK
        return out

    def _replaced(self, raw: Mapping[str, Any], red: Mapping[str, Any]) -> dict[str, str]:
        """raw value -> what a field action made of it, for the actions this event met."""
        out: dict[str, str] = {}
        if red is raw:
            return out
        for path in self._field_actions:
            value = _get(raw, path)
            if isinstance(value, str) and len(value) > 1:
                new = _get(red, path)
                if new != value:
                    out[value] = new if isinstance(new, str) else MASK
        return out

    def _correlation(self, name: str, ctx: Mapping[str, Any], changed: list[str]) -> Mapping[str, Any]:
        """`context` or `aggregate`: the `key` values by their field's action, and the file
        paths an aggregate counts (`paths`: path -> count) as `file.path`."""
        out = dict(ctx)
        before = len(changed)
        key = ctx.get("key")
        if isinstance(key, Mapping):
            sub: list[str] = []
            new_key = {}
            for k, v in key.items():
                kv = self._value(k, v, sub, True) if isinstance(v, str) else v
                if kv is not None:
                    new_key[k] = kv
            if sub:
                out["key"] = new_key
                changed += [f"{name}.key.{p}" for p in sub]
        paths = ctx.get("paths")
        if isinstance(paths, Mapping):
            sub = []
            new_paths: dict[str, Any] = {}
            for p, n in paths.items():
                np = self._value("file.path", p, sub, True) if isinstance(p, str) else p
                if np is not None:
                    new_paths[np] = new_paths.get(np, 0) + n if isinstance(n, int) else n
            if sub:
                out["paths"] = new_paths
                changed.append(f"{name}.paths")
        return out if len(changed) > before else ctx

    def _fim(self, fim: Mapping[str, Any], changed: list[str]) -> Mapping[str, Any]:
        sub: list[str] = []
        out = {}
        for k, v in fim.items():
            if k == "path" and isinstance(v, str):
                nv = self._value("file.path", v, sub, True)
                if nv is not None:
                    out[k] = nv
                if nv != v:
                    sub[-1] = "path"
            else:
                out[k] = self._scan_any(v, k, sub, True)
        if not sub:
            return fim
        changed += [f"fim.{p}" for p in sub]
        return out

    def evidence(self, ev: Evidence) -> Evidence:
        """Scan evidence with secrets masked: the detectors over every field, and the whole
        observed value when the expression reads a secret setting (`option("bindpw")`)."""
        if not self.enabled:
            return ev
        changed: dict[str, str | None] = {}
        for name in ("expected", "observed", "message"):  # `source` is where: a path and line
            value = getattr(ev, name)
            if isinstance(value, str):
                new = self._field_text(value, True)
                if new != value:
                    changed[name] = new
        observed = changed.get("observed", ev.observed)
        # A boolean (`pam("common-password").has_module(...)` is `true`) or an absent value
        # holds no secret: masking them only hides why the rule passed or failed.
        if (observed is not None and observed not in _HOLDS_NO_SECRET and SECRET_SETTING.search(ev.expression)
                and observed != MASK and not _no_password(observed)):
            changed["observed"] = MASK
        if not changed:
            return ev
        self._count([f"evidence.{k}" for k in changed])
        return replace(ev, expected=changed.get("expected", ev.expected), observed=changed.get("observed", ev.observed),
                       source=changed.get("source", ev.source), message=changed.get("message", ev.message),
                       redacted=tuple(sorted(set(ev.redacted) | set(changed))))

    def details(self, details: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Free-form record details (audit-log records): every string scanned by the
        detectors; returns the copy and the paths changed (counted as `record.<path>`)."""
        changed: list[str] = []
        if not self.enabled or not self._needs_scan(details, frozenset()):
            return dict(details), changed
        out = self._scan_any(details, "", changed, True)
        if changed:
            self._count([f"record.{p}" for p in changed])
        return out, changed

    def count(self, paths: list[str]) -> None:
        """Count one record whose `paths` were redacted elsewhere (by this policy)."""
        if paths:
            self._count(paths)

    def _count(self, paths: list[str]) -> None:
        with self._lock:
            self._records += 1
            for p in set(paths):
                self.stats[_generic(p)] += 1

    def _field_text(self, v: str, scan: bool) -> str:
        return self.text(v) if scan and self.detectors else v

    def _value(self, path: str, v: str, changed: list[str], scan: bool,
               already: frozenset[str] = frozenset()) -> str | None:
        action = self._field_actions.get(path)
        if action == "drop":
            changed.append(path)
            return None
        nv: str | None
        if action is not None:
            if action == "pseudonym" and path in already and _PSEUDONYM_SHAPE.fullmatch(v):
                return v  # pseudonymised by an earlier run: the token stays what it was
            nv = self._actions[action](path, v)
        elif path in self._keep:
            return v
        elif scan and _secret_name(path.rsplit(".", 1)[-1]) and is_secret_value(v):
            nv = MASK
        else:
            nv = self._field_text(v, scan)
        if nv != v:
            changed.append(path)
        return nv

    def _walk(self, obj: Mapping[str, Any], prefix: str, changed: list[str], root: Mapping[str, Any],
              scan: bool, already: frozenset[str]) -> dict[str, Any]:
        out: dict[str, Any] = {}
        actions = self._field_actions
        for k, v in obj.items():
            path = prefix + k
            if path in _NEVER_SECRET:
                out[k] = v
            elif isinstance(v, str):
                nv = self._value(path, v, changed, scan, already)
                if nv is not None:
                    out[k] = nv
            elif actions.get(path) == "drop":
                changed.append(path)
            elif isinstance(v, Mapping):
                out[k] = self._walk(v, path + ".", changed, root, scan, already)
            elif isinstance(v, list):
                if path == "proc.args" and scan:
                    out[k] = self._args(v, root, changed)
                elif scan and _secret_name(k):
                    out[k] = self._scan_any({k: v}, prefix.rstrip("."), changed, True)[k]
                else:
                    out[k] = [self._scan_any(x, f"{path}[]", changed, scan) for x in v] if scan else v
            else:
                out[k] = v
        # The command line is the arguments joined: rebuild it so a secret the program's option
        # syntax revealed (mysql -pX) goes from both.
        if (prefix == "proc." and "cmdline" in out and "args" in out and out["args"] != obj.get("args")
                and obj.get("cmdline") == " ".join(str(a) for a in obj.get("args") or [])):
            out["cmdline"] = " ".join(str(a) for a in out["args"])
            if out["cmdline"] != obj["cmdline"]:
                changed.append("proc.cmdline")
        return out

    def _args(self, args: list[Any], root: Mapping[str, Any], changed: list[str]) -> list[Any]:
        """The argument vector with each secret masked: what the program's own option syntax
        says is one (`mysql -pX`), and what the detectors find in the arguments read as the
        command line they make (`--password X` spans two arguments)."""
        raw = root.get("proc")
        proc: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        program = str(proc.get("exe") or (args[0] if args else ""))
        strs = [str(a) for a in args]
        hidden = program_secrets(program, strs)
        local = self._arg_spans(strs)
        out: list[Any] = []
        for i, a in enumerate(args):
            if i in hidden:
                out.append(attached_prefix(strs[i]) + MASK)
                changed.append("proc.args")
            elif i in local or isinstance(a, str):
                na = _replace_spans(strs[i], local[i]) if i in local else strs[i]
                na = self._field_text(na, True)
                if na != a:
                    changed.append("proc.args")
                    out.append(na)
                else:
                    out.append(a)
            else:
                out.append(a)
        return out

    def _arg_spans(self, strs: list[str]) -> dict[int, list[tuple[int, int, str]]]:
        """What the detectors find in the arguments read as the command line they make, by
        argument: (start, end, replacement) in each; a value that starts an argument runs to
        its end (`_value_end`)."""
        local: dict[int, list[tuple[int, int, str]]] = {}
        pos = 0
        bounds = []
        for a in strs:
            bounds.append((pos, pos + len(a)))
            pos += len(a) + 1
        for start, end, repl in self._spans(" ".join(strs)):
            for i, (a0, a1) in enumerate(bounds):
                if a0 < end and start < a1:
                    whole = a0 <= start and end <= a1
                    lo, hi = max(start, a0) - a0, min(end, a1) - a0
                    local.setdefault(i, []).append((lo, _value_end(strs[i], lo, hi, repl) if whole else hi,
                                                    repl if whole else MASK))
        return local

    def _scan_any(self, v: Any, path: str, changed: list[str], scan: bool) -> Any:
        if not scan:
            return v
        if isinstance(v, str):
            nv = self._field_text(v, True)
            if nv != v:
                changed.append(path or "value")
            return nv
        if isinstance(v, Mapping):
            return {k: self._named(x, f"{path}.{k}" if path else str(k), changed)
                    if isinstance(k, str) and _secret_name(k) else
                    self._scan_any(x, f"{path}.{k}" if path else str(k), changed, True) for k, x in v.items()}
        if isinstance(v, list):
            return [self._scan_any(x, f"{path}[]", changed, True) for x in v]
        return v

    def _named(self, v: Any, path: str, changed: list[str]) -> Any:
        """A value under a secret's name (`"bindpw": "X"`): its strings masked whole."""
        if isinstance(v, str):
            if is_secret_value(v):
                changed.append(path)
                return MASK
            return v
        if isinstance(v, list):
            return [self._named(x, f"{path}[]", changed) for x in v]
        return self._scan_any(v, path, changed, True)


def _value_end(arg: str, start: int, end: int, repl: str) -> int:
    """Where a secret found in one argument ends: the argument's end when the secret stops at a
    space but starts its argument's first word (`--password "a b c"`, `--password=a b c`, `-U
    "u%pa ss"`: one argument is one value, spaces and all); `end` otherwise (`sh -c "X=1 run"`
    holds a command line)."""
    if repl != MASK or end >= len(arg) or not arg[end].isspace():
        return end
    prefix = arg[:start]
    if any(c.isspace() for c in prefix) or ("=" in prefix and not prefix.startswith("-")):
        return end
    return len(arg)


def _clean_flags(views: list[bytes | None]) -> list[bool]:
    """Whether each record is certainly clean, given what the prefilter searches for it (None:
    undecided, not clean): one search over all the views, joined by newlines."""
    flags = [True] * len(views)
    pieces: list[bytes] = []
    starts: list[int] = []
    owners: list[int] = []
    pos = 0
    for i, data in enumerate(views):
        if data is None:
            flags[i] = False
            continue
        pieces.append(data)
        starts.append(pos)
        owners.append(i)
        pos += len(data) + 1
    if pieces:
        for start, end in json_secret_spans(b"\n".join(pieces)):
            first = bisect.bisect_right(starts, start) - 1
            last = bisect.bisect_right(starts, max(start, end - 1)) - 1
            for k in range(max(first, 0), last + 1):
                flags[owners[k]] = False
    return flags


def _json_view(record: Mapping[str, Any], line: bytes) -> bytes | None:
    """What the prefilter searches for `record`: its JSON line, its arguments read as one
    command line, escapes undone; None when only a walk over the record can tell."""
    event = record.get("event")
    evs = record.get("events")
    if evs is not None:  # an alert
        if (type(evs) is not list or len(evs) > 1 or (type(event) is not dict and not isinstance(event, Mapping))
                or (evs and evs[0] is not event)):
            return None  # correlated events: `alert` reads each one's program
        return _event_view(event, line)
    return _event_view(record, line)


def _event_view(event: Mapping[str, Any], line: bytes) -> bytes | None:
    """`_json_view` of `event`, or of an alert it raised alone, serialised as `line`."""
    proc = event.get("proc")
    if type(proc) is dict:
        exe = proc.get("exe")
        if type(exe) is str and _is_program(exe):
            return None  # its own option syntax decides (`mysql -pX`)
        args = proc.get("args")
        if type(args) is list and len(args) > 1:
            view = _line_view(line)
            if view is None:
                return None
            # The arguments are also read as the command line they make (`--password X`).
            try:
                joined = " ".join(args)
            except TypeError:
                joined = " ".join(map(str, args))
            return view + b"\n" + utf8(joined)
    elif proc is not None:
        return None
    return _line_view(line)


_program_exes: dict[str, bool] = {}


def _is_program(exe: str) -> bool:
    """`is_program`, remembered: most alerts name one of a few programs."""
    hit = _program_exes.get(exe)
    if hit is None:
        hit = is_program(exe)
        if len(_program_exes) < 4096 and len(exe) <= 512:
            _program_exes[exe] = hit
    return hit


def _line_view(line: bytes) -> bytes | None:
    """`json_unescaped`, undecided also when a string holds escapes of its own (the detectors
    read such text unescaped too: `\\u0070assword=`, a file's content quoted with `\\n`)."""
    if b"\\" not in line:
        return line  # nothing escaped, nothing to undo (most lines): one look, not two
    view = json_unescaped(line)
    return None if view is None or json_quotes_escapes(view) else view


_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", '"': '"', "'": "'", "\\": "\\", "/": "/"}
# The escapes undone: JSON's, Python's, a shell's `\\"`; any other backslash stays as it is.
_ESCAPE = LazyPattern(r"\\(?:([nrt\"'\\/])|u([0-9a-fA-F]{4})|x([0-9a-fA-F]{2}))")


def _one(m: re.Match[str]) -> str:
    c = m.group(1)
    return _ESCAPES[c] if c else chr(int(m.group(2) or m.group(3), 16))


def _unescape(text: str) -> str:
    """`text` with its backslash escapes undone (one search in C; most texts hold none)."""
    return _ESCAPE.sub(_one, text) if "\\" in text else text


def _unescaped(text: str) -> tuple[str, list[int]]:
    """`_unescape(text)` and where in `text` each character of it (and its end) starts."""
    out: list[str] = []
    where: list[int] = []
    pos = 0
    for m in _ESCAPE.finditer(text):
        a = m.start()
        out.append(text[pos:a])
        where.extend(range(pos, a))
        out.append(_one(m))
        where.append(a)
        pos = m.end()
    out.append(text[pos:])
    where.extend(range(pos, len(text) + 1))
    return "".join(out), where


def _replace_spans(text: str, spans: list[tuple[int, int, str]]) -> str:
    out: list[str] = []
    pos = 0
    for start, end, repl in sorted(spans):
        if start < pos:
            continue
        out += [text[pos:start], repl]
        pos = end
    out.append(text[pos:])
    return "".join(out)


def _alert_events(alert: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    ev = alert.get("event")
    evs = alert.get("events")
    out = [ev] if isinstance(ev, Mapping) else []
    return out + [e for e in evs if isinstance(e, Mapping)] if isinstance(evs, list) else out


def _get(record: Mapping[str, Any], path: str) -> Any:
    cur: Any = record
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def _substitute(text: str, subs: Mapping[str, str]) -> str:
    """`text` with each whole occurrence of a key (not inside a longer name) replaced."""
    if not subs:
        return text
    for raw in sorted(subs, key=len, reverse=True):
        if raw in text:
            # Whole names and whole paths only: `/tmp` is not replaced inside `/tmp/x`.
            pattern = re.compile(r"(?<![A-Za-z0-9_./-])" + re.escape(raw) + r"(?![A-Za-z0-9_/-])")
            text = pattern.sub(subs[raw].replace("\\", "\\\\"), text)
    return text


def _unquoted(text: str, secrets: Mapping[str, str]) -> str:
    """`text` with each secret replaced wherever it stands (a short one only as a word of its
    own, so that `ab` leaves `tab` alone); `[REDACTED]` left as it is."""
    for secret in sorted(secrets, key=len, reverse=True):
        if len(secret) < 2 or secret not in text or secret in MASK:
            continue
        repl = secrets[secret]
        if len(secret) >= 4:
            text = text.replace(secret, repl)
        else:
            text = re.sub(r"(?<![A-Za-z0-9])" + re.escape(secret) + r"(?![A-Za-z0-9])", repl.replace("\\", "\\\\"), text)
    return text


_NOTHING: frozenset[str] = frozenset()
_SCALARS = (int, float, bool, type(None))


def _strings(obj: Mapping[str, Any], out: list[str], skip: frozenset[str]) -> None:
    """Every string value of a record, in `out` (type() before isinstance: this runs for
    every event written, and an ABC check per number would double its cost)."""
    for k, v in obj.items():
        if k in skip:
            continue
        t = type(v)
        if t is str:
            out.append(v)
            if _secret_name(k):  # `{"bindpw": "X"}`: X is a secret by its name
                out.append(f"{k}={v}")
        elif t is dict:
            _strings(v, out, _NOTHING)
        elif t is list:
            n = len(out)
            for x in v:
                tx = type(x)
                if tx is str:
                    out.append(x)
                elif tx is dict or (tx not in _SCALARS and isinstance(x, Mapping)):
                    _strings(x, out, _NOTHING)
            if len(out) - n > 1:
                out.append(" ".join(out[n:]))  # arguments are also read as one command line
            if type(k) is str and _secret_name(k):
                out += [f"{k}={x}" for x in v if type(x) is str]
        elif t not in _SCALARS and isinstance(v, Mapping):
            _strings(v, out, _NOTHING)


def _alert_strings(alert: Mapping[str, Any], out: list[str]) -> None:
    """Every string of an alert a redaction could change; an event that is also `events[0]`
    (most alerts) once."""
    seen: set[int] = set()
    for k, v in alert.items():
        if k in _ALERT_PLAIN:
            continue
        if type(v) is str:
            out.append(v)
        elif k in ("event", "events"):
            for e in (v if isinstance(v, list) else [v]):
                if isinstance(e, Mapping) and id(e) not in seen:
                    seen.add(id(e))
                    _strings(e, out, _NEVER_SECRET)
        elif isinstance(v, Mapping):
            _strings(v, out, _NOTHING)
            for sub in v.values():  # an aggregate's paths are the keys of its `paths`
                if isinstance(sub, Mapping):
                    out += [p for p in sub if isinstance(p, str)]


def _generic(path: str) -> str:
    """`events[3].proc.args` -> `events[].proc.args`: counts per field, not per position."""
    out = []
    i = 0
    while i < len(path):
        ch = path[i]
        if ch == "[":
            j = path.find("]", i)
            out.append("[]")
            i = j + 1 if j >= 0 else len(path)
            continue
        out.append(ch)
        i += 1
    return "".join(out)
