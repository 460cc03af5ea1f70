"""Live file integrity monitoring: file events under watched paths re-check just those entries
against the baseline (debounced, on a worker thread) and become alerts that say who did it."""

from __future__ import annotations

import calendar
import os
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from secpolicy.errors import InputError, IntegrityError, RuntimeFailure, SecpolicyError
from secpolicy.fim.config import CompiledRule, FimConfig
from secpolicy.fim.record import display_path
from secpolicy.fim.scan import CheckResult, EntryChange, recheck_paths
from secpolicy.fim.status import FimStatus, fim_status
from secpolicy.fim.store import Key

__all__ = [
    "FIM_ERROR_RULE_ID",
    "FIM_FAILURE_RULE_ID",
    "FIM_RULE_ID",
    "LIVE_FIM_TYPES",
    "LiveFim",
]

FIM_RULE_ID = "fim-change"
FIM_ERROR_RULE_ID = "fim-error"  # an entry an event pointed at could not be re-checked
FIM_FAILURE_RULE_ID = "fim-failure"  # the baseline stopped verifying: live FIM stops

# Event types that can change an entry: a `write` is an open for writing or creating.
LIVE_FIM_TYPES = frozenset({"write", "rename", "chmod", "chown", "unlink"})
_SEVERITIES = ("info", "low", "medium", "high", "critical")
_MAX_REPORTED = 100_000  # paths whose last alerted state is remembered (to not repeat it)
_MAX_LATENCIES = 10_000
_MAX_FDS = 65_536  # descriptors of one writer looked at before assuming it still writes


@dataclass
class _Pending:
    """Events on one path waiting for it to settle."""

    first: float  # monotonic time the first event was seen
    last: float  # ... and the last one
    events: list[dict[str, Any]] = field(default_factory=list)
    dropped: int = 0
    writers: set[int] = field(default_factory=set)
    not_before: float = 0.0
    retried: bool = False
    changed_at: float = 0.0  # the entry's ctime when last looked at (epoch seconds)

    def merge(self, newer: _Pending, cap: int) -> None:
        self.last = max(self.last, newer.last)
        self.changed_at = max(self.changed_at, newer.changed_at)
        self.writers |= newer.writers
        for ev in newer.events:
            _keep(self, ev, cap)
        self.dropped += newer.dropped


def _keep(p: _Pending, ev: dict[str, Any], cap: int) -> None:
    # The first events show who started, the last one who finished: drop from the middle.
    if len(p.events) >= cap:
        del p.events[-2]
        p.dropped += 1
    p.events.append(ev)


def _ts_seconds(ts: str) -> float | None:
    """Seconds since the epoch of an event's `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`."""
    # By hand: time.strptime's first call is not safe on a second thread.
    try:
        fields = (int(ts[0:4]), int(ts[5:7]), int(ts[8:10]), int(ts[11:13]), int(ts[14:16]), int(ts[17:19]))
        return calendar.timegm((*fields, 0, 0, 0)) + int(ts[20:29]) / 1e9
    except (ValueError, IndexError):
        return None


def _holds_open(pid: int, path: str) -> bool:
    """Whether process `pid` still has `path` open (it may still be writing it)."""
    base = f"/proc/{pid}/fd"
    try:
        with os.scandir(base) as it:
            for n, entry in enumerate(it):
                if n >= _MAX_FDS:
                    return True
                try:
                    if os.readlink(entry.path) == path:
                        return True
                except OSError:
                    continue
    except OSError:
        return False  # gone, or not ours to look at: nothing to wait for
    return False


def who(event: Mapping[str, Any]) -> str:
    """`/usr/bin/vi (pid 42, user alice uid 1000, auid 1000, session 3)` from an event."""
    proc = event.get("proc") or {}
    user = event.get("user") or {}
    parts = [f"pid {proc.get('pid', '?')}"]
    if "uid" in user:
        parts.append(f"user {user['name']} uid {user['uid']}" if user.get("name") else f"uid {user['uid']}")
    if "auid" in proc:
        parts.append(f"auid {proc['auid']}")
    if "session" in proc:
        parts.append(f"session {proc['session']}")
    return f"{proc.get('exe') or proc.get('comm') or '?'} ({', '.join(parts)})"


def _actors(events: list[dict[str, Any]]) -> str:
    last = events[-1]
    others = {(e.get("proc") or {}).get("pid") for e in events} - {(last.get("proc") or {}).get("pid")}
    text = who(last)
    if others:
        text += f" and {len(others)} other process{'es' if len(others) > 1 else ''}"
    return text


class LiveFim:
    """Re-checks watched entries named by live file events. `observe(event)` runs on the event
    loop and only notes the path; a worker thread waits until the path settles (no event for
    `settle` seconds, its ctime older than that, no writer still holding it open; at most
    `max_wait` seconds after the first event), re-checks the paths that are due in one
    `recheck_paths` call and hands an alert per change to `emit`. The baseline is never
    written: like `fim check --no-record`."""

    def __init__(
        self,
        config: FimConfig,
        db: str | os.PathLike[str] | None,
        key: Key,
        *,
        root: str = "/",
        severity: str = "high",
        settle: float = 0.5,
        max_wait: float = 10.0,
        max_events: int = 100,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if severity not in _SEVERITIES:
            raise InputError(f"FIM severity must be one of {', '.join(_SEVERITIES)}, not {severity!r}")
        if settle <= 0 or max_wait < settle or max_events < 2:
            raise InputError("live FIM needs settle > 0, max_wait >= settle and max_events >= 2")
        self.config = config
        db = db if db is not None else config.database
        if db is None:
            raise InputError("no baseline database given (--fim-db, or `database:` in the configuration)")
        self.db = os.path.realpath(os.fspath(db))  # where writes go: links resolved, as `fim` does
        self.key = key
        self.root = root
        self.severity = severity
        self.settle = settle
        self.max_wait = max_wait
        self.max_events = max_events
        self._clock = clock
        self._rules: dict[str, CompiledRule] = config.compiled()
        self.prefixes: tuple[str, ...] = tuple(sorted({r.path for r in config.rules}))
        self._prefix_test = tuple(p if p == "/" else p.rstrip("/") for p in self.prefixes)
        d, b = os.path.split(self.db)
        self._own = (self.db, os.path.join(d, "." + b + ".tmp-"))
        self.status: FimStatus | None = None
        self._pending: dict[str, _Pending] = {}
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None
        self._emit: Callable[[dict[str, Any]], None] | None = None
        self._reported: dict[str, tuple[Any, ...]] = {}
        self.failure: SecpolicyError | None = None
        self._counts: Counter[str] = Counter()
        self._by_kind: Counter[str] = Counter()
        self._latency: list[float] = []

    # -- setup ------------------------------------------------------------------------------

    def verify(self) -> FimStatus:
        """Verify the whole baseline (header, history and every entry) for this configuration
        and root; IntegrityError when it does not verify, InputError when there is none."""
        st = fim_status(self.db, self.key, deep=True, config=self.config, root=self.root)
        if not st.exists:
            raise InputError("no FIM baseline here: make one with `secpolicy fim init`", self.db)
        if not st.verified:
            raise IntegrityError(st.reason or f"{self.db}: baseline does not verify")
        self.status = st
        return st

    def watches(self, path: str) -> bool:
        """Whether a walk of the configuration would record `path` (watched, included, not
        excluded, not beneath an excluded directory) and it is not the baseline's own file."""
        if not path.startswith(self._prefix_test):
            return False
        if path.startswith(self._own):  # the database, its journal, .prev and temporaries
            return False
        rule = self.config.rule_for(path)
        if rule is None:
            return False
        crule = self._rules[rule.path]
        p = os.path.dirname(path)
        while len(p) >= len(rule.path) and p != path:
            if crule.excluded(p):
                return False
            if p == rule.path or p == "/":
                break
            p = os.path.dirname(p)
        return crule.selects(path)

    # -- the event loop's side --------------------------------------------------------------

    def observe(self, event: Mapping[str, Any]) -> None:
        """Note the watched paths an event touched (cheap: runs on the event loop)."""
        etype = event.get("type")
        if etype not in LIVE_FIM_TYPES or self.failure is not None:
            return
        if (event.get("outcome") or {}).get("result") == "failure":
            return  # a refused call changed nothing
        f = event.get("file") or {}
        paths = [p for p in (f.get("path"), f.get("target") if etype == "rename" else None)
                 if isinstance(p, str) and p.startswith("/")]
        wanted = [os.path.normpath(p) for p in paths]
        wanted = [p for p in wanted if self.watches(p)]
        if not wanted:
            return
        now = self._clock()
        pid = (event.get("proc") or {}).get("pid")
        ev = dict(event)
        with self._cond:
            self._counts["events"] += 1
            fresh = False
            for p in wanted:
                pend = self._pending.get(p)
                if pend is None:
                    pend = self._pending[p] = _Pending(now, now)
                    fresh = True
                pend.last = now
                _keep(pend, ev, self.max_events)
                if etype == "write" and isinstance(pid, int):
                    pend.writers.add(pid)
            if fresh:
                self._cond.notify()

    # -- worker -----------------------------------------------------------------------------

    def start(self, emit: Callable[[dict[str, Any]], None]) -> None:
        """Start the worker; `emit(alert)` is called from it for every alert."""
        if self._thread is not None:
            return
        self._emit = emit
        self._thread = threading.Thread(target=self._run, name="secpolicy-fim", daemon=True)
        self._thread.start()

    def close(self) -> None:
        """Re-check whatever is still pending (without waiting for it to settle), then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    due = self._take_due()
                    while not due and not self._closing:
                        self._cond.wait(self._next_wake())
                        due = self._take_due()
                    final = self._closing
                    if final:
                        due.update(self._pending)
                        self._pending.clear()
                if not final:
                    due = self._settled(due)
                if due and self.failure is None:
                    self._recheck(due, final)
                if final:
                    return
        except BaseException as exc:  # noqa: BLE001 - becomes the run's failure, not a dead thread
            self._fail(exc if isinstance(exc, SecpolicyError)
                       else RuntimeFailure(f"live FIM failed: {type(exc).__name__}: {exc}"), {})

    def _take_due(self) -> dict[str, _Pending]:
        now = self._clock()
        due = {p: e for p, e in self._pending.items() if now - e.last >= self.settle and now >= e.not_before}
        for p in due:
            del self._pending[p]
        return due

    def _next_wake(self) -> float | None:
        if not self._pending:
            return None
        now = self._clock()
        at = min(max(e.last + self.settle, e.not_before) for e in self._pending.values())
        return max(at - now, 0.005)

    def _settled(self, due: dict[str, _Pending]) -> dict[str, _Pending]:
        """The entries that are done changing; the others go back to wait a little more."""
        now = self._clock()
        wall = time.time()
        ready: dict[str, _Pending] = {}
        later: dict[str, _Pending] = {}
        for path, pend in due.items():
            wait = 0.0
            try:
                st = os.lstat(path)
                pend.changed_at = st.st_ctime_ns / 1e9
                age = wall - pend.changed_at
                if age < self.settle:
                    wait = self.settle - age  # changed moments ago: more may follow
            except OSError:
                pass
            if not wait and any(_holds_open(pid, path) for pid in pend.writers):
                wait = min(self.settle, 0.25)
            if wait and now - pend.first >= self.max_wait:
                self._counts["forced"] += 1  # still changing or held open: looked at anyway
                wait = 0.0
            if wait:
                pend.not_before = now + wait
                later[path] = pend
            else:
                ready[path] = pend
        if later:
            self._counts["deferred"] += len(later)
            with self._cond:
                for path, pend in later.items():
                    newer = self._pending.get(path)
                    if newer is not None:
                        pend.merge(newer, self.max_events)
                    self._pending[path] = pend
        return ready

    def _recheck(self, due: dict[str, _Pending], final: bool) -> None:
        try:
            result = recheck_paths(self.config, self.db, self.root, self.key, list(due))
        except InputError as exc:
            # It verified at start: gone or unreadable now is what a swap or a deletion looks like.
            self._fail(IntegrityError(f"{self.db}: the baseline verified at start is gone or unreadable: "
                                      f"{exc.render()}"), due)
            return
        except SecpolicyError as exc:
            self._fail(exc, due)
            return
        self._counts["rechecks"] += 1
        self._counts["paths_rechecked"] += len(due)
        self._report(result, due, final)

    def _report(self, result: CheckResult, due: dict[str, _Pending], final: bool) -> None:
        changes = {c.path: c for c in (*result.added, *result.removed, *result.changed)}
        errors = {i.path: i.message for i in result.errors}
        retry: dict[str, _Pending] = {}
        for path, pend in due.items():
            change = changes.get(path)
            if change is None and path in errors:
                if not pend.retried and not final:
                    # Often a file still being written (it changed while hashed): once more.
                    pend.retried = True
                    pend.not_before = self._clock() + self.settle
                    retry[path] = pend
                    continue
                self._counts["errors"] += 1
                self._send(self._error_alert(path, errors[path], pend), pend)
                continue
            if change is None:
                self._counts["unchanged"] += 1
                self._reported.pop(path, None)  # back to its baseline state
                continue
            state = (change.kind, tuple((c.name, repr(c.old), repr(c.new)) for c in change.changes))
            if self._reported.get(path) == state:
                self._counts["repeats"] += 1  # nothing new since the last alert on it
                continue
            if len(self._reported) >= _MAX_REPORTED:
                self._reported.pop(next(iter(self._reported)))
            self._reported[path] = state
            alert = self._change_alert(change, pend)
            self._by_kind[change.kind] += 1
            self._send(alert, pend)
        if retry:
            with self._cond:
                for path, pend in retry.items():
                    newer = self._pending.get(path)
                    if newer is not None:
                        pend.merge(newer, self.max_events)
                    self._pending[path] = pend

    def _send(self, alert: dict[str, Any], pend: _Pending) -> None:
        assert self._emit is not None
        self._counts["alerts"] += 1
        # From the last change (the last event, or the entry's ctime when later) to the alert.
        when = max(_ts_seconds(alert["ts"]) or 0.0, pend.changed_at)
        if when and len(self._latency) < _MAX_LATENCIES:
            self._latency.append(time.time() - when)
        self._emit(alert)

    def _fail(self, exc: SecpolicyError, due: Mapping[str, _Pending]) -> None:
        """Live FIM stops at the first failure of the baseline itself; the run reports it."""
        if self.failure is not None:
            return
        self.failure = exc
        with self._cond:
            self._pending.clear()
        pend = next(iter(due.values()), None)
        if pend is None or not pend.events or self._emit is None:
            return
        what = "does not verify" if isinstance(exc, IntegrityError) else "cannot be used"
        alert = self._alert(FIM_FAILURE_RULE_ID, "critical", f"FIM baseline {what}: live file integrity stopped",
                            f"{self.db}: live file integrity monitoring stopped: {exc.render()}",
                            next(iter(due)), pend, ["fim", "fim:failure"])
        try:
            self._send(alert, pend)
        except Exception:  # noqa: BLE001 - the failure itself is what the run reports
            self._counts["alerts_not_delivered"] += 1

    # -- alerts -----------------------------------------------------------------------------

    def _alert(self, rule_id: str, severity: str, title: str, message: str, path: str,
               pend: _Pending, tags: list[str]) -> dict[str, Any]:
        events = pend.events
        last = events[-1]
        context: dict[str, Any] = {"kind": "match", "key": {"file.path": display_path(path)},
                                   "count": len(events) + pend.dropped,
                                   "window": [events[0]["ts"], last["ts"]]}
        if pend.dropped:
            context["events_dropped"] = pend.dropped
        return {"rule_id": rule_id, "severity": severity, "title": title, "message": message,
                "ts": last["ts"], "event": last, "events": list(events), "context": context,
                "tags": tags + [f"fim-config:{self.config.name}"], "references": {}}

    def _change_alert(self, change: EntryChange, pend: _Pending) -> dict[str, Any]:
        shown = display_path(change.path)
        text = f"{shown} {change.kind} by {_actors(pend.events)}"
        if change.kind == "changed":
            text += ": " + "; ".join(f"{c.name} {c.old} -> {c.new}" for c in change.changes)
        elif change.kind == "added":
            text += f" (a new {change.ftype})"
        noun = change.ftype if change.ftype in ("file", "directory", "symlink") else "entry"
        tags = ["fim", f"fim:{change.kind}"] + [f"fim-attr:{c.name}" for c in change.changes]
        alert = self._alert(FIM_RULE_ID, self.severity, f"Watched {noun} {change.kind}", text, change.path,
                            pend, tags)
        # The structured change travels with the alert: sinks, the store and the audit log
        # (a `fim_change` record) all get every attribute's old and new value.
        alert["fim"] = {"path": shown, "change": change.kind, "type": change.ftype,
                        "attributes": [c.to_dict() for c in change.changes],
                        "config": self.config.name, "baseline": str(self.db)}
        return alert

    def _error_alert(self, path: str, message: str, pend: _Pending) -> dict[str, Any]:
        shown = display_path(path)
        return self._alert(FIM_ERROR_RULE_ID, "medium", "Watched entry could not be re-checked",
                           f"{shown} could not be re-checked after {_actors(pend.events)} touched it: {message}",
                           path, pend, ["fim", "fim:error"])


    # -- accounting -------------------------------------------------------------------------

    def stats(self) -> dict[str, Any]:
        c = self._counts
        lat = sorted(self._latency)
        st = self.status
        return {
            "config": self.config.name,
            "db": self.db,
            "baseline_id": st.baseline_id if st else None,
            "generation": st.generation if st else None,
            "entries": st.entries if st else None,
            "watched": list(self.prefixes),
            "events": c["events"],
            "rechecks": c["rechecks"],
            "paths_rechecked": c["paths_rechecked"],
            "alerts": c["alerts"],
            "alerts_by_kind": dict(sorted(self._by_kind.items())),
            "unchanged": c["unchanged"],
            "repeats": c["repeats"],
            "errors": c["errors"],
            "deferred": c["deferred"],
            "forced": c["forced"],
            "pending": len(self._pending),
            "latency_s": ({"median": round(statistics.median(lat), 3), "max": round(lat[-1], 3)}
                          if lat else None),
            "failure": self.failure.render() if self.failure else None,
        }
