"""`sysctl(name)`: a kernel parameter's running value (proc/sys) and its persisted value from the
sysctl.d files, applied in systemd-sysctl order, with the file and line that set it."""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import ANY, BOOL, STR, ObjectType
from secpolicy.facts._common import (
    as_value,
    at,
    dropin_files,
    logical_lines,
    read_proc,
    real_path,
    systemd_lines,
)

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["SYSCTL", "Sysctl", "normalize_name", "register"]

SYSCTL = ObjectType(
    "sysctl",
    {
        "name": STR,
        "value": ANY,
        "running": ANY,
        "persisted": ANY,
        "persisted_source": STR,
        "exists": BOOL,
    },
    doc="a kernel parameter: running value from /proc/sys, persisted value from sysctl.d",
    field_docs={
        "value": "the running value when /proc/sys is readable, else the persisted one",
        "running": "the value in /proc/sys (live host, or a root that carries proc/sys)",
        "persisted": "the value the sysctl.d files set at boot (last assignment wins)",
        "persisted_source": "file:line of the winning assignment",
    },
)

# systemd-sysctl's search path; a file name in an earlier directory masks the same name later.
_WHITESPACE = " \t\n\r"  # systemd's WHITESPACE, what its strstrip() removes

SYSCTL_DIRS = (
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
    "/lib/sysctl.d",
)


def normalize_name(name: str) -> str:
    """The dotted form of a sysctl name. As in sysctl(8) and systemd, a name whose first
    separator is `/` uses `/` between levels and `.` inside them (`net/ipv4/conf/eth0.1/...`)."""
    name = name.strip(_WHITESPACE)
    slash, dot = name.find("/"), name.find(".")
    if slash != -1 and (dot == -1 or slash < dot):
        name = name.replace("/", "\0").replace(".", "/").replace("\0", ".")
    return name.strip(".")


def _proc_path(name: str) -> str:
    # dots separate levels; a literal dot inside a level was written as `/` in dotted form
    return "/proc/sys/" + name.replace(".", "\0").replace("/", ".").replace("\0", "/")


@dataclass(frozen=True)
class Assignment:
    value: str
    source: str  # file:line


@dataclass(frozen=True)
class Persisted:
    """Every assignment from the sysctl files, in application order."""

    exact: Mapping[str, Assignment] = field(default_factory=dict)
    globs: tuple[tuple[str, Assignment], ...] = ()
    # applied after systemd-sysctl, over whatever it set: ufw's IPT_SYSCTL file
    later: Mapping[str, Assignment] = field(default_factory=dict)

    def lookup(self, name: str) -> Assignment | None:
        hit = self.later.get(name)
        if hit is not None:
            return hit
        # systemd: an explicit key beats any glob, whatever the order; among globs, last wins.
        hit = self.exact.get(name)
        if hit is not None:
            return hit
        for pattern, assignment in reversed(self.globs):
            if fnmatch.fnmatchcase(name, pattern):
                return assignment
        return None


def _persisted(ctx: FactContext) -> Persisted:
    # systemd-sysctl reads the sysctl.d directories only (Debian's procps.service is an alias
    # of it): /etc/sysctl.conf counts through Debian's /etc/sysctl.d/99-sysctl.conf link, not
    # without it. The link is read once, and evidence names the real file.
    seen: set[str] = set()
    ordered: list[str] = []
    for f in dropin_files(ctx, SYSCTL_DIRS, ".conf"):
        real = real_path(ctx, f)
        if real not in seen:
            seen.add(real)
            ordered.append(real)
    exact: dict[str, Assignment] = {}
    globs: list[tuple[str, Assignment]] = []
    for path in ordered:
        for key, a in _assignments(ctx, path):
            if any(ch in key for ch in "*?["):
                globs.append((key, a))
            else:
                exact[key] = a
    later: dict[str, Assignment] = {}
    ufw_file = _ufw_sysctl_file(ctx)
    if ufw_file is not None:
        later = dict(_assignments(ctx, ufw_file))
    return Persisted(exact, tuple(globs), later)


def _assignments(ctx: FactContext, path: str) -> list[tuple[str, Assignment]]:
    """The `key = value` lines of a sysctl file: lines as read_line() ends them, strstrip()ped
    of " \t\n\r" only, `#` and `;` comments, a `-` before the key ignored."""
    text = ctx.read_text(path)
    if text is None:
        return []
    out = []
    for n, line in logical_lines(systemd_lines(text), blank=_WHITESPACE):
        if line.startswith(";"):
            continue
        key, sep, value = line.partition("=")
        if sep:
            key = normalize_name(key.strip(_WHITESPACE).removeprefix("-"))
            out.append((key, Assignment(value.strip(_WHITESPACE), at(path, n))))
    return out


def _ufw_sysctl_file(ctx: FactContext) -> str | None:
    """The file ufw applies with `sysctl -p` when it starts, after systemd-sysctl: IPT_SYSCTL
    as ufw-init reads /etc/default/ufw and ufw.conf, when ufw is installed and starts."""
    if not ctx.fact("package", ("ufw",)).installed:
        return None
    ufw = ctx.fact("ufw", ())
    return ufw.sysctl_file if ufw.enabled else None


class Sysctl:
    """One kernel parameter. The running value is read on first use."""

    def __init__(self, ctx: FactContext, name: str) -> None:
        self.name = normalize_name(name)
        self._ctx = ctx
        self._proc = _proc_path(self.name)
        assignment = ctx.fact("_sysctl_persisted", ()).lookup(self.name)
        self.persisted: Any = as_value(assignment.value) if assignment else None
        self.persisted_source: str | None = assignment.source if assignment else None
        self._running_read = False
        self._running: Any = None

    def describe(self) -> str:
        return f"sysctl({self.name!r})"

    @property
    def running(self) -> Any:
        if not self._running_read:
            self._running_read = True
            if self._ctx.live or self._ctx.exists("/proc/sys"):
                self._running = as_value(read_proc(self._ctx, self._proc))
        return self._running

    @property
    def value(self) -> Any:
        r = self.running
        return r if r is not None else self.persisted

    @property
    def exists(self) -> bool:
        return self.running is not None or self.persisted is not None

    def where(self, name: str, *args: Any) -> str | None:
        if name in ("persisted", "persisted_source"):
            return self.persisted_source or "no sysctl.d assignment"
        if name == "running":
            return self._proc
        if name in ("value", "exists"):
            if self.running is not None:
                return self._proc
            return self.persisted_source or f"{self._proc} (absent); no sysctl.d assignment"
        return self._proc


def collect_sysctl(ctx: FactContext, name: str) -> Sysctl:
    return Sysctl(ctx, name)


def register(reg: FactRegistry) -> None:
    reg.register(
        "sysctl",
        collect_sysctl,
        params=(STR,),
        returns=SYSCTL,
        doc="a kernel parameter (running from /proc/sys, persisted from sysctl.d)",
    )
    reg.register(
        "_sysctl_persisted",
        lambda ctx: _persisted(ctx),
        returns=ANY,
        doc="internal: parsed sysctl.d",
    )
