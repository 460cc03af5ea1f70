"""Sink URIs: one string says where alerts go (`-`, `file:`, `syslog+udp|tcp|tls://`,
`webhook+http(s)://`); parsed and checked before anything opens, then built into sinks."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

from secpolicy.auditlog.sinks.base import FanOut, Sink, StreamSink
from secpolicy.auditlog.sinks.dedup import Deduplicator, RateLimiter
from secpolicy.auditlog.sinks.formats import FORMATS
from secpolicy.auditlog.sinks.syslog import FACILITIES, MAX_MESSAGE, MESSAGE_LIMITS, SyslogSink
from secpolicy.auditlog.sinks.webhook import WebhookSink
from secpolicy.errors import InputError, RuntimeFailure, SecpolicyError

__all__ = ["SinkChain", "SinkSpec", "build_chain", "parse_rate_limit", "parse_sink_uri"]

_SYSLOG_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}
# Query parameters each kind understands; anything else is a mistake, except that a webhook
# keeps unknown parameters in the URL it posts to.
_PARAMS = {
    "stdout": {"format"},
    "file": {"format"},
    "syslog+udp": {"format", "facility", "app", "max"},
    "syslog": {"format", "facility", "app", "max", "spool", "drain"},
    "syslog+tls": {"format", "facility", "app", "max", "spool", "drain", "ca", "cert", "key", "name"},
    "webhook": {"format", "spool", "ca", "drain"},
}
DEFAULT_DRAIN = 10.0  # seconds a closing sink waits for its queue to be delivered


@dataclass(frozen=True)
class SinkSpec:
    """A checked sink URI: what kind of sink, in which format, with which settings."""

    uri: str
    kind: str  # stdout | file | syslog | webhook
    fmt: str
    path: str | None = None
    host: str | None = None
    port: int | None = None
    transport: str | None = None
    url: str | None = None
    params: Mapping[str, str] = field(default_factory=dict)

    def open(self) -> Sink:
        p = self.params
        if self.kind == "stdout":
            return StreamSink(self.fmt)
        if self.kind == "file":
            return StreamSink(self.fmt, path=self.path)
        if self.kind == "syslog":
            assert self.host is not None and self.port is not None and self.transport is not None
            return SyslogSink(self.host, self.port, self.transport, self.fmt,
                              facility=p.get("facility", "audit"), app_name=p.get("app", "secpolicy"),
                              ca_file=p.get("ca"), cert_file=p.get("cert"), key_file=p.get("key"),
                              server_name=p.get("name"), max_message=int(p.get("max", MAX_MESSAGE)),
                              spool_dir=p.get("spool"), drain_timeout=float(p.get("drain", DEFAULT_DRAIN)))
        assert self.url is not None
        return WebhookSink(self.url, p["spool"], self.fmt, ca_file=p.get("ca"),
                           drain_timeout=float(p.get("drain", DEFAULT_DRAIN)))


def _bad(uri: str, why: str) -> InputError:
    return InputError(f"--sink {uri!r}: {why}")


def _query(uri: str, text: str) -> dict[str, str]:
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=bool(text))
    except ValueError:
        raise _bad(uri, f"malformed query {text!r} (expected key=value&key=value)") from None
    out: dict[str, str] = {}
    for k, v in pairs:
        if k in out:
            raise _bad(uri, f"parameter {k!r} is given twice")
        out[k] = v
    return out


def _check_params(uri: str, kind: str, params: Mapping[str, str]) -> None:
    unknown = sorted(set(params) - _PARAMS[kind])
    if unknown:
        allowed = ", ".join(sorted(_PARAMS[kind])) or "none"
        raise _bad(uri, f"unknown parameter {unknown[0]!r} (allowed: {allowed})")
    for k, v in params.items():
        if not v:
            raise _bad(uri, f"parameter {k!r} is empty")


def _check_numbers(uri: str, params: Mapping[str, str], transport: str) -> None:
    if "max" in params:
        lo, hi = MESSAGE_LIMITS[transport]
        if not params["max"].isdigit() or not lo <= int(params["max"]) <= hi:
            raise _bad(uri, f"max={params['max']}: the largest message must be {lo} to {hi} bytes for {transport}")
    if "drain" in params:
        try:
            drain = float(params["drain"])
        except ValueError:
            drain = -1.0
        if not 0 <= drain <= 3600:
            raise _bad(uri, f"drain={params['drain']}: seconds to wait for delivery at the end, 0 to 3600")


def _format(uri: str, params: Mapping[str, str], default: str) -> str:
    fmt = params.get("format", default)
    if fmt not in FORMATS:
        raise _bad(uri, f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")
    return fmt


def parse_sink_uri(uri: str, default_format: str = "json") -> SinkSpec:
    """`-` (stdout), `file:///abs/path` or `file:rel/path`, `syslog+udp://HOST[:PORT]`,
    `syslog+tcp://...`, `syslog+tls://...?ca=FILE`, `webhook+http(s)://HOST[:PORT]/PATH?spool=DIR`;
    every kind takes `format=json|cef|leef|ocsf`. Raises InputError naming the URI."""
    if default_format not in FORMATS:
        raise InputError(f"--sink-format {default_format!r} is not one of {', '.join(FORMATS)}")
    if uri in ("-", "stdout:"):
        return SinkSpec(uri, "stdout", default_format)
    scheme, sep, _ = uri.partition(":")
    if not sep or not scheme:
        raise _bad(uri, "not a sink URI (use -, file:PATH, syslog+udp|tcp|tls://HOST:PORT or "
                        "webhook+http(s)://HOST/PATH?spool=DIR)")
    scheme = scheme.lower()
    try:
        parts = urlsplit(uri)
    except ValueError as exc:
        raise _bad(uri, str(exc)) from None
    if parts.fragment:
        raise _bad(uri, "a fragment (#...) means nothing here")
    params = _query(uri, parts.query)
    if scheme == "file":
        if parts.netloc not in ("", "localhost"):
            raise _bad(uri, f"a file URI names no host ({parts.netloc!r}); use file:///abs/path or file:rel/path")
        path = unquote(parts.path)
        if not path or path.endswith("/"):
            raise _bad(uri, "no file name")
        _check_params(uri, "file", params)
        return SinkSpec(uri, "file", _format(uri, params, default_format), path=path, params=params)
    if scheme in ("syslog+udp", "syslog+tcp", "syslog+tls"):
        transport = scheme.partition("+")[2]
        kind = {"tls": "syslog+tls", "udp": "syslog+udp"}.get(transport, "syslog")
        _check_params(uri, kind, params)
        _check_numbers(uri, params, transport)
        if parts.username is not None or parts.password is not None:
            raise _bad(uri, "syslog takes no user or password")
        if parts.path not in ("", "/"):
            raise _bad(uri, f"syslog takes no path ({parts.path!r})")
        host = parts.hostname
        if not host:
            raise _bad(uri, "no host")
        try:
            port = parts.port or _SYSLOG_PORTS[transport]
        except ValueError:
            raise _bad(uri, "the port is not a number from 1 to 65535") from None
        if "facility" in params and params["facility"] not in FACILITIES:
            raise _bad(uri, f"unknown facility {params['facility']!r} (one of {', '.join(sorted(FACILITIES))})")
        for k in ("ca", "cert", "key"):
            if k in params and not Path(params[k]).is_file():
                raise _bad(uri, f"{k}={params[k]}: no such file")
        if "key" in params and "cert" not in params:
            raise _bad(uri, "key= needs cert=")
        return SinkSpec(uri, "syslog", _format(uri, params, default_format), host=host, port=port,
                        transport=transport, params=params)
    if scheme in ("webhook+http", "webhook+https"):
        ours = {k: v for k, v in params.items() if k in _PARAMS["webhook"]}
        theirs = {k: v for k, v in params.items() if k not in _PARAMS["webhook"]}
        _check_params(uri, "webhook", ours)
        _check_numbers(uri, ours, "tcp")
        if "spool" not in ours:
            raise _bad(uri, "a webhook needs spool=DIR (alerts wait there until delivered)")
        if "ca" in ours and scheme != "webhook+https":
            raise _bad(uri, "ca= is for webhook+https")
        if "ca" in ours and not Path(ours["ca"]).is_file():
            raise _bad(uri, f"ca={ours['ca']}: no such file")
        if not parts.hostname:
            raise _bad(uri, "no host")
        try:
            _ = parts.port
        except ValueError:
            raise _bad(uri, "the port is not a number from 1 to 65535") from None
        target = urlunsplit((scheme.partition("+")[2], parts.netloc, parts.path or "/",
                             urlencode(theirs), ""))
        return SinkSpec(uri, "webhook", _format(uri, ours, default_format), url=target, params=ours)
    raise _bad(uri, f"unknown scheme {scheme!r} (file, syslog+udp, syslog+tcp, syslog+tls, "
                    "webhook+http, webhook+https, or - for stdout)")


def parse_rate_limit(text: str) -> tuple[int, float]:
    """`N/SECONDS` (e.g. `100/60`): at most N alerts per rule per period."""
    n, sep, period = text.partition("/")
    try:
        limit, seconds = int(n), float(period) if sep else 60.0
    except ValueError:
        raise InputError(f"--rate-limit {text!r}: expected N/SECONDS, e.g. 100/60") from None
    if limit < 1 or not seconds > 0:
        raise InputError(f"--rate-limit {text!r}: needs N >= 1 and a positive period")
    return limit, seconds


class SinkChain:
    """Deduplication, then rate limiting, then every sink (a FanOut: one failing sink does not
    stop the others). `failures` are the sinks' errors since the last `take_failures()`."""

    def __init__(self, sinks: Sequence[Sink], specs: Sequence[SinkSpec], dedup_window: float | None = None,
                 rate_limit: tuple[int, float] | None = None) -> None:
        self.fanout = FanOut(sinks)
        self.specs = list(specs)
        self._stages: list[Any] = []
        head: Any = self.fanout
        if rate_limit is not None:
            head = RateLimiter(head, rate_limit[0], rate_limit[1])
            self._stages.append(head)
        if dedup_window is not None:
            head = Deduplicator(head, dedup_window)
            self._stages.append(head)
        self._head = head
        self._seen_failures = 0
        self._reported: dict[str, str] = {}

    def emit(self, alert: Mapping[str, Any]) -> None:
        self._head.emit(alert)

    def tick(self) -> None:
        for stage in reversed(self._stages):  # dedup first, so what it releases is rate limited now
            stage.tick()

    def close(self) -> None:
        """Release what dedup and rate limiting hold, then close every sink; a sink that fails
        to close is a failure like any other, and the others are still closed."""
        for stage in reversed(self._stages):
            stage.flush()
        for i, sink in enumerate(self.fanout.sinks):
            try:
                sink.close()
            except SecpolicyError as exc:
                self.fanout.failures.append((i, exc.render()))

    def delivery_problems(self) -> list[tuple[str, str, int]]:
        """(sink URI, error, alerts waiting) for each queued sink whose delivery failed since the
        last call with an error not reported yet: a receiver that is down is told at once."""
        out = []
        for i, sink in enumerate(self.fanout.sinks):
            error = getattr(getattr(sink, "inner", sink), "last_error", "")
            uri = self.specs[i].uri if i < len(self.specs) else str(i)
            if error and self._reported.get(uri) != error:
                out.append((uri, error, sink.pending()[0] if hasattr(sink, "pending") else 0))
            self._reported[uri] = error
        return out

    def pending(self) -> dict[str, tuple[int, str | None, str]]:
        """After `close`: per sink URI, the alerts it still holds undelivered, the spool
        directory keeping them for the next run (None: they are lost with this process) and
        the last delivery error."""
        out: dict[str, tuple[int, str | None, str]] = {}
        for i, sink in enumerate(self.fanout.sinks):
            n, where = sink.pending() if hasattr(sink, "pending") else (0, None)
            if n:
                error = str(getattr(getattr(sink, "inner", sink), "last_error", ""))
                out[self.specs[i].uri if i < len(self.specs) else str(i)] = (n, where, error)
        return out

    def take_failures(self) -> list[tuple[str, str]]:
        """(sink URI, error) of the failures not taken yet: an alert a sink did not take, or
        one its receiver refused (a webhook's 4xx)."""
        for i, sink in enumerate(self.fanout.sinks):
            take = getattr(getattr(sink, "inner", sink), "take_rejected", None)
            if take is not None:
                self.fanout.failures.extend((i, msg) for msg in take())
        new = self.fanout.failures[self._seen_failures:]
        self._seen_failures = len(self.fanout.failures)
        return [(self.specs[i].uri if i < len(self.specs) else str(i), msg) for i, msg in new]


class _Guarded:
    """A sink whose OS-level errors (disk full on a spool, ...) become RuntimeFailure, so the
    fan-out records them and carries on with the other sinks."""

    def __init__(self, inner: Sink, uri: str) -> None:
        self.inner = inner
        self.uri = uri

    def emit(self, alert: Mapping[str, Any]) -> None:
        try:
            self.inner.emit(alert)
        except OSError as exc:
            raise RuntimeFailure(f"{exc.strerror or exc}") from exc

    def close(self) -> None:
        try:
            self.inner.close()
        except OSError as exc:
            raise RuntimeFailure(f"closing {self.uri}: {exc.strerror or exc}") from exc

    def pending(self) -> tuple[int, str | None]:
        spool = getattr(self.inner, "spool", None)
        if spool is None:
            return 0, None
        directory = getattr(spool, "directory", None)
        return len(spool), None if directory is None else str(directory)


def build_chain(specs: Sequence[SinkSpec], dedup_window: float | None = None,
                rate_limit: tuple[int, float] | None = None,
                opener: Callable[[SinkSpec], Sink] | None = None) -> SinkChain:
    """Open every sink (closing those already open if one fails) behind dedup and rate limit."""
    sinks: list[Sink] = []
    try:
        for spec in specs:
            sinks.append(_Guarded(opener(spec) if opener else spec.open(), spec.uri))
    except BaseException:
        for s in sinks:
            s.close()
        raise
    return SinkChain(sinks, specs, dedup_window, rate_limit)
