"""Applies a redaction policy to what leaves the process: events, alerts, audit-log details
and scan evidence. Originals are never modified; every output copy says what was redacted."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from secpolicy.models import Evidence
from secpolicy.redaction.detectors import (
    MASK,
    TextDetector,
    argv_secrets,
    builtin_detectors,
    may_hold_secret,
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


# A string literal in a rule's expression naming a secret setting: the value read for it is
# masked whole, whatever it looks like (`option("bindpw")`, `kv("/etc/x").get("db_password")`).
SECRET_SETTING = re.compile(
    r"[\"'](?:[A-Za-z0-9_.-]*[_.-])?(?:password|passwd|passphrase|pwd|secret|token|bindpw|rootpw|credentials?"
    r"|api_?key|private_?key|psk|community)[\"']",
    re.IGNORECASE,
)

# Fields whose values are produced by secpolicy or the kernel, never by a user.
_NEVER_SECRET = frozenset({"ts", "type", "source", "outcome", "redacted"})


@dataclass(frozen=True)
class RedactionSettings:
    """A checked redaction policy (see `secpolicy.redaction.policy.load_policy`)."""

    enabled: bool = True
    credentials: bool = True
    payment_cards: bool = True
    custom: tuple[TextDetector, ...] = ()
    fields: Mapping[str, str] = field(default_factory=dict)  # dotted event path -> action
    key: bytes | None = None  # pseudonym key; None: a random key for this run only
    source: str = "built-in default"


class Redactor:
    """Redacts copies of records. `stats` counts redacted field paths over the run."""

    def __init__(self, settings: RedactionSettings | None = None) -> None:
        self.settings = settings or RedactionSettings()
        s = self.settings
        self.detectors: tuple[TextDetector, ...] = (
            builtin_detectors(credentials=s.credentials, payment_cards=s.payment_cards) + s.custom
        )
        self.ephemeral_key = s.key is None
        self._key = s.key if s.key is not None else secrets.token_bytes(32)
        # Most strings (paths, program names) hold nothing a built-in detector looks for: one
        # search over them decides; custom patterns have no such shortcut.
        self._prefilter = may_hold_secret if not s.custom else None
        self.stats: Counter[str] = Counter()
        self._records = 0
        self._pseudo_cache: dict[tuple[str, str], str] = {}
        actions: dict[str, Callable[[str, str], str | None]] = {
            "mask": lambda _path, _v: MASK,
            "pseudonym": self._pseudonym,
            "basename": lambda _path, v: v.rstrip("/").rsplit("/", 1)[-1] or v,
        }
        self._field_actions = {p: a for p, a in s.fields.items() if a not in ("keep", "scan")}
        self._keep = frozenset(p for p, a in s.fields.items() if a == "keep")
        self._actions = actions

    @property
    def enabled(self) -> bool:
        return self.settings.enabled

    @property
    def records_redacted(self) -> int:
        return self._records

    def summary(self) -> dict[str, Any]:
        """What results and run summaries say about redaction: the policy, and how many
        records and which fields had something masked (never the values)."""
        return {"enabled": self.enabled, "policy": self.settings.source, "records": self._records,
                "fields": dict(sorted(self.stats.items())), "pseudonym_key": "per run" if self.ephemeral_key else "file"}

    # -- text --------------------------------------------------------------------------------

    def text(self, value: str) -> str:
        """`value` with every detected secret replaced (the same string if none)."""
        if self._prefilter is not None and not self._prefilter(value):
            return value
        spans: list[tuple[int, int, str]] = []
        lowered = value.lower()
        for d in self.detectors:
            spans += d.spans(value, lowered)
        if not spans:
            return value
        spans.sort()
        out: list[str] = []
        pos = 0
        for start, end, repl in spans:
            if start < pos:  # overlapping finds: the earlier (wider) one already covers it
                continue
            out += [value[pos:start], repl]
            pos = end
        out.append(value[pos:])
        return "".join(out)

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

    def event(self, event: Mapping[str, Any]) -> dict[str, Any]:
        """A redacted copy of an Event (the input is left as it is), with `redacted` listing
        the dotted paths changed or dropped, when any were."""
        changed: list[str] = []
        out = self._walk(event, "", changed, event)
        if changed:
            out["redacted"] = sorted(set(changed))
            self._count(changed)
        return out

    def alert(self, alert: Mapping[str, Any]) -> dict[str, Any]:
        """A redacted copy of an Alert: its message, its events and its correlation key."""
        changed: list[str] = []
        out = dict(alert)
        if not self.enabled:
            return out
        for k in ("message", "title"):
            v = alert.get(k)
            if isinstance(v, str):
                nv = self._field_text(v)
                if nv != v:
                    out[k] = nv
                    changed.append(k)
        sub: list[str] = []
        ev = alert.get("event")
        if isinstance(ev, Mapping):
            red = self._walk(ev, "", sub, ev)
            if sub:
                red["redacted"] = sorted(set(sub))
                changed += ["event." + p for p in sub]
            out["event"] = red
        evs = alert.get("events")
        if isinstance(evs, list):
            new_events = []
            for i, e in enumerate(evs):
                if isinstance(e, Mapping):
                    sub = []
                    red = self._walk(e, "", sub, e)
                    if sub:
                        red["redacted"] = sorted(set(sub))
                        changed += [f"events[{i}].{p}" for p in sub]
                    new_events.append(red)
                else:
                    new_events.append(e)
            out["events"] = new_events
        ctx = alert.get("context")
        if isinstance(ctx, Mapping) and isinstance(ctx.get("key"), Mapping):
            key_changed: list[str] = []
            new_key = {}
            for k, v in ctx["key"].items():
                kv = self._value(k, v, key_changed) if isinstance(v, str) else v
                if kv is not None:
                    new_key[k] = kv
            if key_changed:
                out["context"] = {**ctx, "key": new_key}
                changed += [f"context.key.{p}" for p in key_changed]
        if changed:
            out["redacted"] = sorted(set(changed))
            self._count(changed)
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
                new = self._field_text(value)
                if new != value:
                    changed[name] = new
        observed = changed.get("observed", ev.observed)
        if (observed not in (None, "", '""', "null", "[]") and SECRET_SETTING.search(ev.expression)
                and observed != MASK):
            changed["observed"] = MASK
        if not changed:
            return ev
        self._count([f"evidence.{k}" for k in changed])
        return replace(ev, expected=changed.get("expected", ev.expected), observed=changed.get("observed", ev.observed),
                       source=changed.get("source", ev.source), message=changed.get("message", ev.message),
                       redacted=tuple(sorted(set(ev.redacted) | set(changed))))

    def details(self, details: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
        """Free-form record details (audit-log records, evidence): every string scanned by
        the detectors; returns the copy and the paths changed."""
        changed: list[str] = []
        out = self._scan_any(details, "", changed)
        return out, changed

    def _count(self, paths: list[str]) -> None:
        self._records += 1
        for p in set(paths):
            self.stats[_generic(p)] += 1

    def _field_text(self, v: str) -> str:
        return self.text(v) if self.detectors else v

    def _value(self, path: str, v: str, changed: list[str]) -> str | None:
        action = self._field_actions.get(path)
        if action == "drop":
            changed.append(path)
            return None
        nv: str | None
        if action is not None:
            nv = self._actions[action](path, v)
        elif path in self._keep:
            return v
        else:
            nv = self._field_text(v)
        if nv != v:
            changed.append(path)
        return nv

    def _walk(self, obj: Mapping[str, Any], prefix: str, changed: list[str], root: Mapping[str, Any]) -> dict[str, Any]:
        if not self.enabled:
            return dict(obj)
        out: dict[str, Any] = {}
        for k, v in obj.items():
            path = prefix + k
            if path in _NEVER_SECRET:
                out[k] = v
            elif isinstance(v, str):
                nv = self._value(path, v, changed)
                if nv is not None:
                    out[k] = nv
            elif isinstance(v, Mapping):
                if self._field_actions.get(path) == "drop":
                    changed.append(path)
                    continue
                out[k] = self._walk(v, path + ".", changed, root)
            elif isinstance(v, list):
                if self._field_actions.get(path) == "drop":
                    changed.append(path)
                    continue
                if path == "proc.args":
                    out[k] = self._args(v, root, changed)
                else:
                    out[k] = [self._scan_any(x, f"{path}[]", changed) for x in v]
            elif self._field_actions.get(path) == "drop":
                changed.append(path)
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
        raw = root.get("proc")
        proc: Mapping[str, Any] = raw if isinstance(raw, Mapping) else {}
        program = str(proc.get("exe") or (args[0] if args else ""))
        strs = [str(a) for a in args]
        hidden = set(argv_secrets(program, strs))
        if strs and not hidden:
            hidden = set(argv_secrets(strs[0], strs))
        out: list[Any] = []
        for i, a in enumerate(args):
            if i in hidden:
                flag = _attached_flag(program, strs[i])
                out.append(flag + MASK if flag else MASK)
                changed.append("proc.args")
            elif isinstance(a, str):
                na = self._field_text(a)
                if na != a:
                    changed.append("proc.args")
                out.append(na)
            else:
                out.append(a)
        return out

    def _scan_any(self, v: Any, path: str, changed: list[str]) -> Any:
        if isinstance(v, str):
            nv = self._field_text(v)
            if nv != v:
                changed.append(path or "value")
            return nv
        if isinstance(v, Mapping):
            return {k: self._scan_any(x, f"{path}.{k}" if path else str(k), changed) for k, x in v.items()}
        if isinstance(v, list):
            return [self._scan_any(x, f"{path}[]", changed) for x in v]
        return v


def _attached_flag(program: str, arg: str) -> str:
    """`-p` of `-pS3cret`, so the masked argument still reads as the option it was."""
    for flag in ("-p", "-a"):
        if arg.startswith(flag) and len(arg) > 2 and not arg.startswith("--"):
            return flag
    return ""


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
