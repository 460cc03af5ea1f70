"""The Sink interface, a JSON-lines stream sink (stdout or file), an in-memory twin for tests,
and a fan-out to several sinks that keeps going when one of them fails."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import IO, Any, Protocol

from secpolicy.auditlog.sinks.formats import format_alert
from secpolicy.errors import InputError, RuntimeFailure, SecpolicyError

__all__ = ["FanOut", "MemorySink", "Sink", "StreamSink"]


class Sink(Protocol):
    def emit(self, alert: Mapping[str, Any]) -> None: ...

    def close(self) -> None: ...


class StreamSink:
    """One formatted alert per line to a text stream (stdout) or a file opened for append."""

    def __init__(self, fmt: str = "json", path: str | Path | None = None, stream: IO[str] | None = None,
                 fsync: bool = False) -> None:
        format_alert({"rule_id": "probe", "severity": "info"}, fmt)  # rejects an unknown format now
        self.fmt = fmt
        self.fsync = fsync
        self._owned = False
        if path is not None:
            try:
                self._out: IO[str] = open(path, "a", encoding="utf-8")  # noqa: SIM115 - closed by the caller
            except OSError as exc:
                raise InputError(f"cannot open for alerts: {exc.strerror}", str(path)) from exc
            self._owned = True
        else:
            self._out = stream if stream is not None else sys.stdout

    def emit(self, alert: Mapping[str, Any]) -> None:
        line = format_alert(alert, self.fmt)
        try:
            self._out.write(line + "\n")
            self._out.flush()
            if self.fsync and self._owned:
                os.fsync(self._out.fileno())
        except OSError as exc:
            raise RuntimeFailure(f"cannot write alert: {exc}") from exc

    def close(self) -> None:
        if self._owned:
            self._out.close()


class MemorySink:
    """Keeps what it is given, formatted and raw (a twin for tests and for the dashboard)."""

    def __init__(self, fmt: str = "json") -> None:
        self.fmt = fmt
        self.alerts: list[dict[str, Any]] = []
        self.lines: list[str] = []
        self.closed = False

    def emit(self, alert: Mapping[str, Any]) -> None:
        self.lines.append(format_alert(alert, self.fmt))
        self.alerts.append(dict(alert))

    def close(self) -> None:
        self.closed = True


class FanOut:
    """Sends every alert to every sink; a failing sink does not starve the others, and the
    failures are kept for the caller to record (AU-5)."""

    def __init__(self, sinks: Sequence[Sink]) -> None:
        self.sinks = list(sinks)
        self.failures: list[tuple[int, str]] = []

    def emit(self, alert: Mapping[str, Any]) -> None:
        for i, sink in enumerate(self.sinks):
            try:
                sink.emit(alert)
            except SecpolicyError as exc:
                self.failures.append((i, exc.render()))

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
