"""The event store: SQLite in WAL mode holding events and alerts with the columns that queries
filter on (time, user, type, rule) indexed, the whole dict as JSON, each record once (a digest of
its content is unique), and retention that times from the future cannot fool."""

from __future__ import annotations

import gc
import hashlib
import itertools
import json
import math
import re
import sqlite3
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

import orjson

from secpolicy.errors import InputError, RuntimeFailure
from secpolicy.outfile import check_sqlite_companions, create_private

if TYPE_CHECKING:
    from secpolicy.redaction import Redactor

__all__ = [
    "EventStore",
    "Ingested",
    "JsonLines",
    "Pruned",
    "Retention",
    "alert_row",
    "cycles_paused",
    "event_resource",
    "event_result",
    "event_row",
    "event_user",
    "iso_utc",
    "normalize_ts",
    "row_batches",
]

# 2: the digest column (unique: a record is stored once) and the ingests table. A store of
# schema 1 is converted when opened for writing; readers take both.
_SCHEMA_VERSION = "2"
_READABLE_VERSIONS = ("1", _SCHEMA_VERSION)
_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    type TEXT NOT NULL,
    user TEXT,
    uid INTEGER,
    euid INTEGER,
    host TEXT,
    pid INTEGER,
    session TEXT,
    comm TEXT,
    resource TEXT,
    result TEXT,
    src_ip TEXT,
    json TEXT NOT NULL,
    digest BLOB
);
CREATE TABLE IF NOT EXISTS alerts (
    id INTEGER PRIMARY KEY,
    ts TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    severity TEXT NOT NULL,
    title TEXT,
    kind TEXT,
    user TEXT,
    host TEXT,
    session TEXT,
    src_ip TEXT,
    json TEXT NOT NULL,
    digest BLOB
);
CREATE TABLE IF NOT EXISTS ingests (before TEXT PRIMARY KEY, events_last INTEGER, alerts_last INTEGER);
"""
# An ingests row: the events and alerts up to these ids were stored before this time (the end of
# the hour they were stored in: one row an hour, however many transactions).
_NOTE_INGEST = ("INSERT INTO ingests VALUES (?, (SELECT MAX(id) FROM events), (SELECT MAX(id) FROM alerts)) "
                "ON CONFLICT(before) DO UPDATE SET events_last = excluded.events_last, "
                "alerts_last = excluded.alerts_last")
# What makes ingest idempotent: always built (also with indexes=False), since an insert relies on it.
_IDENTITY = """
CREATE UNIQUE INDEX IF NOT EXISTS events_digest ON events(digest);
CREATE UNIQUE INDEX IF NOT EXISTS alerts_digest ON alerts(digest);
"""
_INDEXES = """
CREATE INDEX IF NOT EXISTS events_ts ON events(ts);
CREATE INDEX IF NOT EXISTS events_user_ts ON events(user, ts);
CREATE INDEX IF NOT EXISTS events_type_ts ON events(type, ts);
CREATE INDEX IF NOT EXISTS events_failed_auth ON events(ts, src_ip, user, type, result) WHERE type = 'auth' AND result = 'failure';
CREATE INDEX IF NOT EXISTS events_privileged ON events(ts, type, euid, uid, comm) WHERE type = 'exec' AND {privileged};
CREATE INDEX IF NOT EXISTS alerts_ts_severity ON alerts(ts, severity, rule_id, kind);
CREATE INDEX IF NOT EXISTS alerts_ts ON alerts(ts);
CREATE INDEX IF NOT EXISTS alerts_rule_ts ON alerts(rule_id, ts);
CREATE INDEX IF NOT EXISTS alerts_user_ts ON alerts(user, ts);
CREATE INDEX IF NOT EXISTS alerts_severity_ts ON alerts(severity, ts);
"""
# An exec that gains privileges: of a non-root user as euid 0, or of a privilege tool. The
# dashboard's query repeats this text, which is what lets SQLite use the partial index; the
# index holds every column the query names, so SQLite never reads the events themselves.
PRIVILEGED_EXEC = "((euid = 0 AND uid IS NOT NULL AND uid != 0) OR comm IN ('sudo', 'su', 'pkexec', 'doas'))"
_INDEXES = _INDEXES.format(privileged=PRIVILEGED_EXEC)
_EVENT_COLUMNS = ("ts", "type", "user", "uid", "euid", "host", "pid", "session", "comm", "resource",
                  "result", "src_ip", "json", "digest")
_ALERT_COLUMNS = ("ts", "rule_id", "severity", "title", "kind", "user", "host", "session", "src_ip", "json",
                  "digest")
# A record whose digest is stored already is skipped (only that conflict: any other is an error).
_INSERT_EVENT = (f"INSERT INTO events ({', '.join(_EVENT_COLUMNS)}) VALUES ({', '.join('?' * len(_EVENT_COLUMNS))})"
                 " ON CONFLICT(digest) DO NOTHING")
_INSERT_ALERT = (f"INSERT INTO alerts ({', '.join(_ALERT_COLUMNS)}) VALUES ({', '.join('?' * len(_ALERT_COLUMNS))})"
                 " ON CONFLICT(digest) DO NOTHING")


def iso_utc(moment: datetime) -> str:
    """A datetime as the event time format: UTC, nanosecond digits, `Z`."""
    if moment.tzinfo is None:
        raise InputError(f"time {moment.isoformat()} has no time zone")
    utc = _to_utc(moment, moment.isoformat())
    return _stored_form(utc, f"{utc.microsecond:06d}000")


def _to_utc(moment: datetime, given: str) -> datetime:
    try:
        return moment.astimezone(UTC)
    except OverflowError:  # 0001-01-01T00:00:00+01:00 is before the first time there is
        raise InputError(f"time {given!r} is outside the years 1 to 9999 in UTC") from None


def _stored_form(utc: datetime, frac: str) -> str:
    # Not strftime: its %Y writes the year 999 as "999", which sorts after "2026" as text.
    return (f"{utc.year:04d}-{utc.month:02d}-{utc.day:02d}T{utc.hour:02d}:{utc.minute:02d}:"
            f"{utc.second:02d}.{frac}Z")


_DAYS: dict[str, bool] = {}


def _stored_form_valid(ts: str) -> bool:
    day = ts[:10]
    ok = _DAYS.get(day)
    if ok is None:
        try:
            datetime.fromisoformat(day)
            ok = True
        except ValueError:
            ok = False
        if len(_DAYS) < 100_000:
            _DAYS[day] = ok
    if not ok:
        raise InputError(f"time {ts!r} is not an ISO 8601 date and time that exists (no such day)")
    hms = ts[11:19]
    if not (hms[2] == ":" == hms[5] and "00" <= hms[0:2] <= "23" and "00" <= hms[3:5] <= "59"
            and "00" <= hms[6:8] <= "59" and (hms[0:2] + hms[3:5] + hms[6:8]).isdigit() and hms.isascii()):
        raise InputError(f"time {ts!r} is not an ISO 8601 date and time that exists (no such time of day)")
    frac = ts[20:29]
    return frac.isdigit() and frac.isascii()  # str.isdigit alone takes "²" and other scripts' digits


def normalize_ts(ts: Any) -> str:
    """Event times are compared as text, so every stored or queried time takes one form:
    UTC, nine fraction digits, `Z` (e.g. 2026-11-21T05:30:00.123456789Z)."""
    # Already in stored form: still checked to be a real date and time (2024-02-30 has the shape).
    if (type(ts) is str and len(ts) == 30 and ts[19] == "." and ts[29] == "Z" and ts[10] == "T"
            and _stored_form_valid(ts)):
        return ts
    if not isinstance(ts, str) or len(ts) < 19 or len(ts) > 64:
        hint = " (a date, a time of day and a time zone: 2026-03-29T00:00:00Z)" if isinstance(ts, str) else ""
        raise InputError(f"time {str(ts)[:40]!r} is not an ISO 8601 timestamp{hint}")
    text = ts.strip()
    frac = ""
    if len(text) > 19 and text[19] in ".,":
        rest = text[20:]
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        frac, text = digits, text[:19] + rest[len(digits):]
        # A separator with no digits ("...:00.Z") or a second fraction ("...:00.5,3Z") is not
        # a time; fromisoformat would read the rest as the fraction, which is then thrown away.
        if not digits or text[19:20] in (".", ","):
            raise InputError(f"time {ts!r} is not an ISO 8601 timestamp (malformed fraction of a second)")
    if text.endswith(("Z", "z")):
        text = text[:-1] + "+00:00"
    try:
        moment = datetime.fromisoformat(text)
    except ValueError as exc:
        raise InputError(f"time {ts!r} is not an ISO 8601 date and time that exists ({exc})") from exc
    offset = moment.utcoffset()
    if offset is None:
        raise InputError(f"time {ts!r} has no time zone")
    if offset.seconds % 60 or offset.microseconds:
        raise InputError(f"time {ts!r} has a time zone offset with seconds (ISO 8601 offsets are hours and minutes)")
    return _stored_form(_to_utc(moment, ts), (frac + "000000000")[:9])


def event_user(event: Mapping[str, Any]) -> str | None:
    """The name queries use for "who": the person behind the event (the login user, who stays
    the same through sudo and su), else the acting user, else the authenticating user, else uid."""
    return _user_name(event.get("user") or {}, event.get("auth") or {}, event.get("proc") or {},
                      event.get("login") or {})


def _user_name(user: Mapping[str, Any], auth: Mapping[str, Any], proc: Mapping[str, Any],
               login: Mapping[str, Any] | None = None) -> str | None:
    login = login if isinstance(login, Mapping) else _EMPTY
    name = login.get("name")
    if name and type(name) is str:
        return name
    # A login uid without a name (an account since removed, a container's user) still names
    # the person behind the event: after sudo the acting user is root, and root is not who.
    login_uid = _int(login.get("uid"), "login.uid")
    if login_uid is not None and login_uid not in _UNSET_IDS:
        return f"uid:{login_uid}"
    name = user.get("name")
    if name and type(name) is str:
        return name
    name = auth.get("user")
    if name and type(name) is str:
        return name
    uid = user.get("uid", proc.get("uid"))
    return None if uid is None else f"uid:{_int(uid, 'user.uid')}"


_EMPTY: Mapping[str, Any] = {}  # what an absent section reads as (never written to)
# The audit login uid of a process no one logged in to (-1 as u32, or as written by some tools).
_UNSET_IDS = (4294967295, -1)
_SECTIONS = (("auth", ("service", "rhost")), ("module", ("name",)), ("account", ("name", "op")),
             ("config", ("key", "op")), ("bpf", ("cmd", "name")), ("mount", ("source", "fstype")),
             ("ptrace", ("request", "target_pid")))
_SECTION_NAMES = frozenset(name for name, _ in _SECTIONS)


def event_resource(event: Mapping[str, Any]) -> str:
    """What the event acted on, in one short string for the timeline's resource column."""
    kind = event.get("type")
    file = event.get("file")
    if file and file.get("path"):
        return f"{file['path']} -> {file['target']}" if file.get("target") else str(file["path"])
    net = event.get("net")
    if net:
        if net.get("dst_ip") is not None and kind == "connect":
            return f"{net['dst_ip']}:{net.get('dst_port', '')}"
        if net.get("src_ip") is not None and kind == "accept":
            return f"{net['src_ip']}:{net.get('src_port', '')} -> :{net.get('dst_port', '')}"
    if not _SECTION_NAMES.isdisjoint(event):
        for section, keys in _SECTIONS:
            sub = event.get(section) or {}
            if sub:
                return " ".join(str(sub[k]) for k in keys if sub.get(k) is not None)
    proc = event.get("proc") or {}
    if kind == "exec":
        return str(proc.get("cmdline") or proc.get("exe") or "")
    if kind in ("setuid", "capset"):
        cred = event.get("cred") or {}
        if cred.get("euid") is not None:
            return f"euid={cred.get('euid')}"
        caps = cred.get("caps")
        if isinstance(caps, list):
            return ",".join(map(str, caps))
        return "" if caps is None else str(caps)
    return str(proc.get("exe") or "")


def event_result(event: Mapping[str, Any]) -> str:
    return _result(event.get("outcome") or {}, event.get("auth") or {})


def _result(outcome: Mapping[str, Any], auth: Mapping[str, Any]) -> str:
    result = outcome.get("result") or auth.get("result")
    return str(result) if result else ""


# Parts of an event that readers treat as objects: anything else there is a malformed event.
_OBJECTS = ("proc", "user", "auth", "net", "file", "cred", "outcome", "module", "account", "config", "bpf",
            "mount", "ptrace", "login", "audit", "source")
_INT64 = (-(1 << 63), (1 << 63) - 1)
# Page cache while bulk loading: index pages stay in memory instead of being re-read.
_INGEST_CACHE_KIB = 256 * 1024


_OBJECT_SET = frozenset(_OBJECTS)


def _checked_event(event: Any, what: str = "event") -> Mapping[str, Any]:
    if type(event) is not dict and not isinstance(event, Mapping):
        raise InputError(f"{what} is not a JSON object")
    for name in _OBJECT_SET.intersection(event):
        value = event[name]
        if value is not None and type(value) is not dict and not isinstance(value, Mapping):
            raise InputError(f"{what} field {name!r} is not an object")
    return event


def _text(value: Any, what: str) -> str | None:
    if value is None or type(value) is str:
        return value  # type: ignore[no-any-return]
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    raise InputError(f"{what} is not text")


def _int(value: Any, what: str) -> int | None:
    if value is None:
        return None
    if type(value) is int and _INT64[0] <= value <= _INT64[1]:
        return value
    if not isinstance(value, int) or isinstance(value, bool) or not _INT64[0] <= value <= _INT64[1]:
        raise InputError(f"{what} is not a 64-bit integer")
    return value


def _src_ip(event: Mapping[str, Any]) -> str | None:
    return _source_address(event.get("auth") or {}, event.get("net") or {})


def _source_address(auth: Mapping[str, Any], net: Mapping[str, Any]) -> str | None:
    rhost = auth.get("rhost")
    if rhost and type(rhost) is str:
        return rhost
    return _text(rhost, "auth.rhost") or _text(net.get("src_ip"), "net.src_ip")


def event_row(event: Mapping[str, Any], text: str | None = None) -> tuple[Any, ...]:
    """The stored columns of one event, in `_EVENT_COLUMNS` order; `text` is its JSON when
    the caller already has it (a line read from a file). InputError for a malformed event.

    Bulk loads spend most of their Python time here: the usual shapes (a decoded JSON
    object, a time in stored form of a second seen before, names present) take the short
    way; everything else goes through the same checks as `normalize_ts`, `_user_name` and
    `_source_address`, in the order their errors are reported."""
    if type(event) is dict:
        for part in _OBJECT_SET.intersection(event):
            value = event[part]
            if value is not None and type(value) is not dict:
                _checked_event(event)  # raises unless it is some other kind of mapping
    else:
        event = _checked_event(event)
    get = event.get
    kind = get("type")
    if type(kind) is not str or not kind:
        raise InputError("event has no type")
    proc = get("proc") or _EMPTY
    user = get("user") or _EMPTY
    auth = get("auth") or _EMPTY
    login = get("login") or _EMPTY
    ts = get("ts")
    if not (type(ts) is str and len(ts) == 30 and ts[:19] in _SECONDS and ts[19] == "." and ts[29] == "Z"
            and (frac := ts[20:29]).isdigit() and frac.isascii()):
        ts = _normalized_remembered(ts)
    name: str | None = login.get("name")
    if not name or type(name) is not str:
        name = None if login else user.get("name")  # a login without a name: its uid names it
        if not name or type(name) is not str:
            name = _user_name(user, auth, proc, login)
    uid = user.get("uid", proc.get("uid"))
    euid, pid, host, comm, session = proc.get("euid"), proc.get("pid"), get("host"), proc.get("comm"), \
        proc.get("session")
    low, high = _INT64
    uid = uid if type(uid) is int and low <= uid <= high else _int(uid, "user.uid")
    euid = euid if type(euid) is int and low <= euid <= high else _int(euid, "proc.euid")
    host = host if type(host) is str else _text(host, "host")
    pid = pid if type(pid) is int and low <= pid <= high else _int(pid, "proc.pid")
    session = None if session is None else (str(session) if type(session) is int
                                            else _text(session, "proc.session"))
    comm = comm if type(comm) is str else _text(comm, "proc.comm")
    resource = event_resource(event)
    result = (get("outcome") or _EMPTY).get("result") or auth.get("result")
    rhost = auth.get("rhost")
    return (
        ts, kind, name, uid, euid, host, pid, session, comm, resource,
        str(result) if result else "",
        rhost if rhost and type(rhost) is str else _source_address(auth, get("net") or _EMPTY),
        text if text is not None else json.dumps(event, separators=(",", ":"), ensure_ascii=False),
        digest(event),
    )


def digest(record: Mapping[str, Any]) -> bytes:
    """The identity of a stored event or alert: 16 bytes of BLAKE2b over its canonical JSON
    (keys sorted, no spaces), so the same record is the same digest however its line was
    written. Nothing else is left out: an auditd event carries its record id (`sec.ms:serial`,
    node) in `source.records`, a live one its time in nanoseconds, pid and tid, and two events
    that differ in any of these are two records. The digest is of the record as stored (after
    redaction): a digest of what redaction removed would let a guessed secret be confirmed."""
    try:
        data = orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
    except TypeError:  # an integer beyond 64 bits, a lone surrogate: Python's encoder writes them
        data = json.dumps(record, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode(
            "utf-8", "backslashreplace")
    return hashlib.blake2b(data, digest_size=16).digest()


# Seconds ("YYYY-MM-DDTHH:MM:SS") of stored-form times found to exist: a time of one of them
# needs only its fraction checked.
_SECONDS: dict[str, bool] = {}


def _normalized_remembered(ts: Any) -> str:
    out = normalize_ts(ts)
    if out is ts:  # in stored form already, and checked
        if len(_SECONDS) >= 100_000:
            _SECONDS.clear()
        _SECONDS[out[:19]] = True
    return out


def alert_row(alert: Mapping[str, Any], text: str | None = None) -> tuple[Any, ...]:
    if not isinstance(alert, Mapping) or not alert.get("rule_id"):
        raise InputError("alert has no rule_id")
    event = _checked_event(alert.get("event") or {}, "alert event")
    if not isinstance(alert.get("context") or {}, Mapping):
        raise InputError("alert field 'context' is not an object")
    if event.get("ts"):
        normalize_ts(event["ts"])  # the timeline shows the alert's event at its own time
    steps = alert.get("events")
    if steps is not None and not isinstance(steps, list):
        raise InputError("alert field 'events' is not a list")
    for i, step in enumerate(steps or ()):
        # A sequence alert's steps are shown as a chain by the timeline and the dashboard.
        step = _checked_event(step, f"alert events[{i}]")
        if step.get("ts"):
            normalize_ts(step["ts"])
        event_user(step)
        event_resource(step)
    proc = event.get("proc") or {}
    session = proc.get("session")
    return (
        normalize_ts(alert.get("ts") or event.get("ts")),
        _text(alert["rule_id"], "rule_id"),
        _text(alert.get("severity", "info"), "severity"),
        _text(alert.get("title"), "title"),
        _text((alert.get("context") or {}).get("kind"), "context.kind"),
        event_user(event) if event else None,
        _text(event.get("host"), "event.host"),
        _text(session, "event.proc.session"),
        _src_ip(event),
        text if text is not None else json.dumps(alert, separators=(",", ":"), ensure_ascii=False),
        digest(alert),
    )


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


_DECODE = json.JSONDecoder(parse_constant=_no_constant).decode
_LONG_DIGITS = re.compile(r"[0-9]{20}")
# Every digit as "0", everything else as ".": a run of 20 zeros in a line so translated is an
# integer orjson may have read as a float (found ten times faster than by _LONG_DIGITS).
_DIGITS_AS_ZERO = bytes(48 if 48 <= i <= 57 else 46 for i in range(256))
_TWENTY_DIGITS = b"0" * 20
_MAX_DEPTH = 256  # nesting of a stored record; real events nest a few levels


def _loads(line: bytes) -> tuple[Any, str]:
    """A JSON line as the store reads it, and its text: orjson is strict and fast on bytes; a
    long line, or one with 20 digits in a row, is read again by Python's decoder, since orjson
    would turn a huge integer quietly into a float (10**20 and 10**20 + 1 would be one record
    to the digest). ValueError (also for bad UTF-8) or RecursionError when it cannot be read."""
    obj = orjson.loads(line)  # rejects lone surrogates, NaN and bad UTF-8 too
    text = line.decode("utf-8")
    if len(line) > 4000 or _TWENTY_DIGITS in line.translate(_DIGITS_AS_ZERO):
        obj = _DECODE(text)
    return obj, text


def _exact(obj: Any, text: str) -> Any:
    """`obj` as Python's decoder reads `text` when it holds 20 digits in a row (an integer
    beyond 64 bits, perhaps, which orjson turns quietly into a float): a record redaction
    rewrites is written from its object, and must keep the integer as written. Only such
    records pay for the search."""
    return _DECODE(text) if _LONG_DIGITS.search(text) else obj


def _depth(obj: Any) -> int:
    """How deeply `obj` nests lists and objects (walked without recursion)."""
    deepest = 0
    todo = [(obj, 1)]
    while todo:
        item, level = todo.pop()
        if isinstance(item, dict):
            item = list(item.values())
        if isinstance(item, list):
            deepest = max(deepest, level)
            todo.extend((child, level + 1) for child in item if isinstance(child, dict | list))
    return deepest
_SCREEN_BATCH = 512  # records screened for redaction by one search


@dataclass
class JsonLines:
    """Events and alerts from JSON-lines files (a line with `rule_id` is an alert, one with
    `type` and `ts` an event). A line that is not UTF-8, not JSON, not an object or not a
    well-formed event or alert is skipped, counted and located: one bad line never ends a run.
    With a `redactor`, what is read is redacted before it is stored or shown."""

    paths: Sequence[str | Path]
    bad: int = 0
    bad_where: list[str] = field(default_factory=list)
    keep: int = 20
    redactor: Redactor | None = None

    def rows(self) -> Iterator[tuple[str, tuple[Any, ...]]]:
        """("event" | "alert", stored columns), the line itself as the JSON column (when
        redaction left it as it was)."""
        redactor = self.redactor
        for batch in self._screened_batches():  # a loop over a list: one generator less a row
            for path, n, text, obj, clean in batch:
                if text is None:
                    self._skip(path, n, obj)
                    continue
                try:
                    if "rule_id" in obj:
                        red = obj if clean or redactor is None else redactor.alert(_exact(obj, text))
                        yield "alert", alert_row(red, text if red is obj else None)
                    else:
                        red = obj if clean or redactor is None else redactor.event(_exact(obj, text))
                        yield "event", event_row(red, text if red is obj else None)
                except InputError as exc:
                    self._skip(path, n, exc.message)

    def __iter__(self) -> Iterator[tuple[str, Mapping[str, Any]]]:
        """("event" | "alert", dict), each one checked as the store would check it."""
        redactor = self.redactor
        for batch in self._screened_batches():
            for path, n, text, obj, clean in batch:
                if text is None:
                    self._skip(path, n, obj)
                    continue
                kind = "alert" if "rule_id" in obj else "event"
                try:
                    red = obj if clean or redactor is None else (
                        redactor.alert(_exact(obj, text)) if kind == "alert" else redactor.event(_exact(obj, text)))
                    (alert_row if kind == "alert" else event_row)(red, text if red is obj else None)
                except InputError as exc:
                    self._skip(path, n, exc.message)
                    continue
                yield kind, red

    def _screened_batches(self) -> Iterator[list[tuple[str, int, str | None, Any, bool]]]:
        """`_objects` in lists of up to _SCREEN_BATCH, each record with whether redaction
        certainly leaves it as it is: decided for a batch at a time by one search over the
        records as orjson writes them (not over the input lines, whose escapes, such as `\\/`,
        orjson never writes and the search does not undo); the others are redacted field by
        field. Bad lines pass through in their place (text None), so they are counted in order."""
        objects = self._objects()
        redactor = self.redactor
        while batch := list(itertools.islice(objects, _SCREEN_BATCH)):
            if redactor is None:
                yield [(*item, False) for item in batch]
                continue
            records = [item[3] for item in batch if item[2] is not None]
            lines: list[bytes] = []
            unwritable: list[int] = []
            for i, record in enumerate(records):
                try:
                    lines.append(orjson.dumps(record))
                except TypeError:  # an integer beyond 64 bits: a walk over it decides
                    lines.append(b"")
                    unwritable.append(i)
            flags = redactor.certainly_clean_many(records, lines)
            for i in unwritable:
                flags[i] = False
            if len(records) == len(batch):  # no bad line among them (the usual case)
                yield [(*item, c) for item, c in zip(batch, flags, strict=True)]
            else:
                clean = iter(flags)
                yield [(*item, next(clean) if item[2] is not None else False) for item in batch]

    def _objects(self) -> Iterator[tuple[str, int, str | None, Any]]:
        """(path, line number, the line, its object) of every line that holds an event or an
        alert, and (path, line number, None, why) of every other non-blank line."""
        for path in map(str, self.paths):
            try:
                f = open(path, "rb")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise InputError(f"cannot read: {exc.strerror}", path) from exc
            with f:
                for n, raw in enumerate(f, 1):
                    line = raw.strip()
                    if not line:
                        continue
                    try:
                        obj, text = _loads(line)  # a record redaction rewrites is read again too: _exact
                    except RecursionError:
                        yield path, n, None, "JSON nested too deeply"
                        continue
                    except ValueError as exc:  # orjson.JSONDecodeError and UnicodeDecodeError are
                        try:
                            line.decode("utf-8")
                        except UnicodeDecodeError as bad:
                            yield path, n, None, f"not UTF-8 (byte {bad.start + 1})"
                            continue
                        yield path, n, None, f"not JSON: {str(exc)[:120]}"
                        continue
                    if line.count(b"[") + line.count(b"{") > _MAX_DEPTH and _depth(obj) > _MAX_DEPTH:
                        # orjson reads 1024 levels; Python's decoder, which the readers of the
                        # store use, fails on fewer.
                        yield path, n, None, f"JSON nested more than {_MAX_DEPTH} deep"
                    elif not isinstance(obj, dict):
                        yield path, n, None, "not a JSON object"
                    elif "rule_id" not in obj and not ("type" in obj and "ts" in obj):
                        yield path, n, None, "neither an event (type, ts) nor an alert (rule_id)"
                    else:
                        yield path, n, text, obj

    def _skip(self, path: str, line: int, why: str) -> None:
        self.bad += 1
        if len(self.bad_where) < self.keep:
            self.bad_where.append(f"{path}:{line}: {why}")


def row_batches(rows: Iterable[tuple[str, tuple[Any, ...]]],
                batch: int) -> Iterator[tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]]:
    """("event" | "alert", row) pairs as (event rows, alert rows) of `batch` rows together,
    the last batch short; nothing more is read from `rows` than the batch handed out."""
    events: list[tuple[Any, ...]] = []
    alerts: list[tuple[Any, ...]] = []
    for kind, row in rows:
        (events if kind == "event" else alerts).append(row)
        if len(events) + len(alerts) >= batch:
            yield events, alerts
            events, alerts = [], []
    if events or alerts:
        yield events, alerts


@contextmanager
def cycles_paused() -> Iterator[None]:
    """The cycle collector paused while bulk loading: parsed lines are trees without cycles,
    freed by reference counting, and the collector would only walk the batch in hand again
    and again."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if collecting:
            gc.enable()


@dataclass(frozen=True)
class Retention:
    """How much to keep: events and alerts older than `days`, and the oldest events beyond
    `max_events`, are deleted by `EventStore.prune`.

    A record dated more than `future_tolerance` after now (a forged time, a clock years
    ahead) has no age to go by: `days` counts from when it was stored instead, and
    `max_events` deletes such events before any other (the furthest ahead first)."""

    days: float | None = 90.0
    max_events: int | None = None
    future_tolerance: timedelta = timedelta(days=1)

    def __post_init__(self) -> None:
        if self.days is not None and not 0 < self.days < math.inf:  # False for NaN too
            raise InputError(f"retention days {self.days} is not a finite number above 0")
        if self.max_events is not None and self.max_events < 1:
            raise InputError("retention max_events must be at least 1")
        if self.future_tolerance < timedelta(0):
            raise InputError("retention future_tolerance must not be negative")


class Ingested(tuple[int, int]):
    """(events stored, alerts stored), and in `duplicate_events` and `duplicate_alerts` those
    not stored because the store held them already (or an earlier line of the same load did)."""

    duplicate_events: int
    duplicate_alerts: int

    def __new__(cls, events: int, alerts: int, duplicate_events: int = 0, duplicate_alerts: int = 0) -> Self:
        new = super().__new__(cls, (events, alerts))
        new.duplicate_events, new.duplicate_alerts = duplicate_events, duplicate_alerts
        return new


class Pruned(tuple[int, int]):
    """(events deleted, alerts deleted), and in `future_events` and `future_alerts` how many of
    them were dated beyond the retention's future tolerance."""

    future_events: int
    future_alerts: int

    def __new__(cls, events: int, alerts: int, future_events: int = 0, future_alerts: int = 0) -> Self:
        new = super().__new__(cls, (events, alerts))
        new.future_events, new.future_alerts = future_events, future_alerts
        return new


class EventStore:
    """One SQLite database of events and alerts; batched inserts in single transactions."""

    def __init__(self, path: str | Path, retention: Retention | None = None, create: bool = True,
                 indexes: bool = True, read_only: bool = False) -> None:
        """With `read_only` (readers: timeline, dashboard, anomaly, export) the file is opened
        read-only and must already be an event store: a reader never creates, converts or
        alters what it is given."""
        self.path = Path(path)
        self.retention = retention or Retention()
        if (read_only or not create) and not self.path.is_file():
            raise InputError("no such event store", str(self.path))
        check_sqlite_companions(str(self.path))
        if read_only:
            self._open_read_only()
            return
        if create:
            create_private(str(self.path))  # 0600 (SQLite would use the umask); -wal and -shm follow it
        try:
            self.conn = sqlite3.connect(self.path, isolation_level=None)
            self.conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode keeps the database consistent on a crash and may only lose the
            # last transactions; FULL would fsync every batch.
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute("PRAGMA temp_store=MEMORY")
            self.conn.executescript(_SCHEMA)
            row = self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is None:
                self.conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema_version', ?)", (_SCHEMA_VERSION,))
            elif row[0] == "1":
                self._convert_from_1()
            elif row[0] != _SCHEMA_VERSION:
                raise InputError(f"event store schema {row[0]} is not {_SCHEMA_VERSION}", str(self.path))
            self.conn.executescript(_IDENTITY)
            if indexes:
                self.conn.executescript(_INDEXES)
        except sqlite3.DatabaseError as exc:
            raise InputError(f"not a usable event store: {exc}", str(self.path)) from exc

    def _convert_from_1(self) -> None:
        """Schema 1 to 2 in one transaction: the digest column and its unique index, a digest
        for every record, and an ingests entry saying everything was stored by now. Nothing is
        deleted: of copies stored before (the defect schema 2 ends), the first takes the digest
        and the others keep none, as does a record whose JSON cannot be read."""
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            row = conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
            if row is not None and row[0] == "1":  # not converted meanwhile by another writer
                for table in ("events", "alerts"):
                    conn.execute(f"ALTER TABLE {table} ADD COLUMN digest BLOB")
                    conn.execute(f"CREATE UNIQUE INDEX {table}_digest ON {table}(digest)")
                    last = 0
                    while page := conn.execute(f"SELECT id, json FROM {table} WHERE id > ? ORDER BY id LIMIT 10000",
                                               (last,)).fetchall():
                        last = page[-1][0]
                        conn.executemany(f"UPDATE OR IGNORE {table} SET digest = ? WHERE id = ?",
                                         [(d, i) for i, text in page if (d := _stored_digest(text)) is not None])
                conn.execute(_NOTE_INGEST, (_hour_end(),))
                conn.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (_SCHEMA_VERSION,))
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise

    def _open_read_only(self) -> None:
        try:
            self.conn = sqlite3.connect(self.path.absolute().as_uri() + "?mode=ro", uri=True, isolation_level=None)
        except sqlite3.Error as exc:
            raise InputError(f"cannot open the event store: {exc}", str(self.path)) from exc
        try:
            self.conn.execute("PRAGMA temp_store=MEMORY")
            tables = {r[0] for r in self.conn.execute("SELECT name FROM sqlite_master WHERE type='table'")}
            row = (self.conn.execute("SELECT value FROM meta WHERE key='schema_version'").fetchone()
                   if "meta" in tables else None)
        except sqlite3.DatabaseError as exc:
            self.conn.close()
            raise InputError(f"not an event store: {exc}", str(self.path)) from exc
        if row is None or not {"events", "alerts"} <= tables:
            self.conn.close()
            raise InputError("not an event store (no events, alerts and schema version in it)", str(self.path))
        if row[0] not in _READABLE_VERSIONS:
            self.conn.close()
            raise InputError(f"event store schema {row[0]} is not {_SCHEMA_VERSION}", str(self.path))

    def create_indexes(self) -> None:
        """For bulk loads made with `indexes=False`: building indexes once is faster."""
        self.conn.executescript(_INDEXES)

    def close(self) -> None:
        self.conn.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- ingest -------------------------------------------------------------------------

    def add_events(self, events: Iterable[Mapping[str, Any]], batch: int = 5000) -> int:
        """Insert events in transactions of `batch`; returns how many were stored (an event
        stored already is not stored again)."""
        return self._add(_INSERT_EVENT, map(event_row, events), batch)

    def add_event_rows(self, rows: Iterable[tuple[Any, ...]], batch: int = 50000) -> int:
        """Insert rows already in column order (bulk loads and benchmarks)."""
        return self._add(_INSERT_EVENT, rows, batch)

    def add_alerts(self, alerts: Iterable[Mapping[str, Any]], batch: int = 5000) -> int:
        return self._add(_INSERT_ALERT, map(alert_row, alerts), batch)

    def ingest(self, rows: Iterable[tuple[str, tuple[Any, ...]]], batch: int = 50_000) -> Ingested:
        """Store ("event" | "alert", row) pairs (as `JsonLines.rows` gives them) in
        transactions of `batch` rows; returns (events, alerts) stored, with the duplicates."""
        n_events = n_alerts = d_events = d_alerts = 0
        self.prepare_bulk_load()
        with cycles_paused():
            for events, alerts in row_batches(rows, batch):
                stored_events, stored_alerts = self.insert(events, alerts)
                n_events, n_alerts = n_events + stored_events, n_alerts + stored_alerts
                d_events, d_alerts = d_events + len(events) - stored_events, d_alerts + len(alerts) - stored_alerts
        return Ingested(n_events, n_alerts, d_events, d_alerts)

    def prepare_bulk_load(self) -> None:
        """A page cache large enough that index pages stay in memory while bulk loading."""
        self.conn.execute(f"PRAGMA cache_size=-{_INGEST_CACHE_KIB}")

    def insert(self, events: list[tuple[Any, ...]], alerts: list[tuple[Any, ...]]) -> tuple[int, int]:
        """Store event and alert rows (as `event_row` and `alert_row` make them) in one
        transaction, or none of them (RuntimeFailure); returns (events, alerts) stored: a
        row whose digest is stored already is skipped."""
        stored = self._transaction([(_INSERT_EVENT, events), (_INSERT_ALERT, alerts)])
        return stored[0], stored[1]

    def _transaction(self, work: list[tuple[str, list[tuple[Any, ...]]]]) -> list[int]:
        """Insert every (statement, rows) pair in one transaction, or none of them; returns
        the rows each statement stored. The ingests table notes when they were stored."""
        n = sum(len(rows) for _, rows in work)
        if not n:
            return [0] * len(work)
        try:
            self.conn.execute("BEGIN")
            stored = [self.conn.executemany(sql, rows).rowcount if rows else 0 for sql, rows in work]
            if any(stored):
                self.conn.execute(_NOTE_INGEST, (_hour_end(),))
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise RuntimeFailure(f"{self.path}: cannot store {n} rows: {exc}") from exc
        return stored

    def _add(self, sql: str, rows: Iterable[tuple[Any, ...]], batch: int) -> int:
        total = 0
        it = iter(rows)
        while chunk := list(itertools.islice(it, batch)):
            total += self._transaction([(sql, chunk)])[0]
        return total

    # -- queries ------------------------------------------------------------------------

    def alert_record(self, text: str) -> dict[str, Any]:
        """A stored alert as a dict, InputError unless it passes the checks ingest makes: a
        store written before them (or by another tool) may hold one whose events are not
        events, which its readers (timeline, dashboard, export) would otherwise crash on."""
        alert = self.record(text)
        try:
            alert_row(alert, "")
        except InputError as exc:
            rule = str(alert.get("rule_id"))[:80] if isinstance(alert, Mapping) else "?"
            when = str(alert.get("ts"))[:40] if isinstance(alert, Mapping) else "?"
            raise InputError(f"the event store holds a malformed alert ({rule} at {when}): {exc.message}",
                             str(self.path)) from exc
        return alert

    def record(self, text: str) -> dict[str, Any]:
        """A stored event or alert (its JSON column) as a dict."""
        try:
            return json.loads(text)  # type: ignore[no-any-return]
        except RecursionError:  # stored before ingest refused such nesting, or by another tool
            raise InputError(f"the event store holds a record nested more than {_MAX_DEPTH} deep",
                             str(self.path)) from None

    def events(self, since: str | None = None, until: str | None = None, user: str | None = None,
               type: str | None = None, limit: int | None = None) -> Iterator[dict[str, Any]]:
        """Events in time order; `since` inclusive, `until` exclusive, both UTC `Z` strings."""
        where, args = _window(since, until)
        if user is not None:
            where.append("user = ?")
            args.append(user)
        if type is not None:
            where.append("type = ?")
            args.append(type)
        sql = "SELECT json FROM events"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        for (text,) in self.conn.execute(sql, args):
            yield self.record(text)

    def session_events(self, sessions: Iterable[tuple[str, str]], since: str | None = None,
                       until: str | None = None, limit: int = 100_000) -> Iterator[dict[str, Any]]:
        """Events of the given (host, session) pairs in the window, whoever the user."""
        wanted = set(sessions)
        if not wanted:
            return
        where, args = _window(since, until)
        names = sorted({s for _, s in wanted})
        where.append(f"session IN ({', '.join('?' * len(names))})")
        args.extend(names)
        sql = f"SELECT host, session, json FROM events WHERE {' AND '.join(where)} ORDER BY ts, id LIMIT ?"
        for host, session, text in self.conn.execute(sql, [*args, limit]):
            if (host or "", session) in wanted:
                yield self.record(text)

    def alerts(self, since: str | None = None, until: str | None = None, rule_id: str | None = None,
               user: str | None = None, severity: str | None = None,
               limit: int | None = None, newest_first: bool = False) -> Iterator[dict[str, Any]]:
        where, args = _window(since, until)
        for column, value in (("rule_id", rule_id), ("user", user), ("severity", severity)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT json FROM alerts"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY ts DESC, id DESC" if newest_first else " ORDER BY ts, id"
        if limit is not None:
            sql += f" LIMIT {int(limit)}"
        for (text,) in self.conn.execute(sql, args):
            yield self.alert_record(text)

    def count_events(self, since: str | None = None, type: str | None = None,
                     result: str | None = None) -> int:
        where, args = _window(since, None)
        for column, value in (("type", type), ("result", result)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        sql = "SELECT COUNT(*) FROM events" + (" WHERE " + " AND ".join(where) if where else "")
        return int(self.conn.execute(sql, args).fetchone()[0])

    # -- retention ----------------------------------------------------------------------

    def prune(self, now: datetime | None = None) -> Pruned:
        """Apply the retention settings in one transaction; returns (events deleted, alerts
        deleted), with how many of them were dated in the future. RuntimeFailure when the store
        cannot be changed (locked by another writer)."""
        moment = now or datetime.now(UTC)
        cutoff = None
        if self.retention.days is not None:
            try:
                cutoff = _shifted(moment, -timedelta(days=self.retention.days))  # None: before the year 1
            except OverflowError:  # more days than a timedelta holds: nothing stored is that old
                cutoff = None
        future = _shifted(moment, self.retention.future_tolerance)  # None: nothing is dated after 9999
        try:
            self.conn.execute("BEGIN IMMEDIATE")
            pruned = self._prune(cutoff, future)
            self.conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self.conn.in_transaction:
                self.conn.execute("ROLLBACK")
            raise RuntimeFailure(f"{self.path}: cannot apply retention: {exc}") from exc
        return pruned

    def _prune(self, cutoff: str | None, future: str | None) -> Pruned:
        conn = self.conn
        events = alerts = future_events = future_alerts = 0
        if cutoff is not None:
            events += conn.execute("DELETE FROM events WHERE ts < ?", (cutoff,)).rowcount
            alerts += conn.execute("DELETE FROM alerts WHERE ts < ?", (cutoff,)).rowcount
            if future is not None:
                # A time in the future is no age: such a record is kept `days` from when it was stored.
                events_last, alerts_last = conn.execute(
                    "SELECT MAX(events_last), MAX(alerts_last) FROM ingests WHERE before <= ?", (cutoff,)).fetchone()
                if events_last is not None:
                    future_events += conn.execute("DELETE FROM events WHERE ts > ? AND id <= ?",
                                                  (future, events_last)).rowcount
                if alerts_last is not None:
                    future_alerts += conn.execute("DELETE FROM alerts WHERE ts > ? AND id <= ?",
                                                  (future, alerts_last)).rowcount
                conn.execute("DELETE FROM ingests WHERE before <= ?", (cutoff,))
        if self.retention.max_events is not None:
            keep = self.retention.max_events
            # Events dated in the future go first (the furthest ahead first), then the oldest.
            present = "" if future is None else " WHERE ts <= ?"
            args: tuple[str, ...] = () if future is None else (future,)
            row = conn.execute(f"SELECT ts, id FROM events{present} ORDER BY ts DESC, id DESC LIMIT 1 OFFSET ?",
                               (*args, keep)).fetchone()
            if row is not None:
                events += conn.execute(
                    "DELETE FROM events WHERE ts < ? OR (ts = ? AND id <= ?)", (row[0], row[0], row[1])
                ).rowcount
                room = 0
            else:
                room = keep - int(conn.execute(f"SELECT COUNT(*) FROM events{present}", args).fetchone()[0])
            if future is not None:
                future_events += conn.execute(
                    "DELETE FROM events WHERE id IN (SELECT id FROM events WHERE ts > ? ORDER BY ts, id "
                    "LIMIT -1 OFFSET ?)", (future, room)).rowcount
        return Pruned(events + future_events, alerts + future_alerts, future_events, future_alerts)


def _shifted(moment: datetime, by: timedelta) -> str | None:
    """`moment + by` in stored form, None when that is outside the years 1 to 9999."""
    try:
        return iso_utc(moment + by)
    except (OverflowError, InputError):
        return None


def _hour_end() -> str:
    """The end of the current hour, as the ingests table notes when records were stored."""
    now = datetime.now(UTC)
    return iso_utc(now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1))


def _stored_digest(text: str) -> bytes | None:
    """The digest of a stored JSON column, read as `JsonLines` reads a line; None when it
    cannot be read (stored by another tool)."""
    try:
        record = _loads(text.encode("utf-8"))[0]
    except (ValueError, RecursionError, UnicodeEncodeError):
        return None
    return digest(record) if isinstance(record, dict) else None


def _window(since: str | None, until: str | None) -> tuple[list[str], list[Any]]:
    where: list[str] = []
    args: list[Any] = []
    if since is not None:
        where.append("ts >= ?")
        args.append(normalize_ts(since))
    if until is not None:
        where.append("ts < ?")
        args.append(normalize_ts(until))
    return where, args
