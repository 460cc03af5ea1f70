"""`sysctl(name)`: a kernel parameter's running value (proc/sys) and its persisted value from the
sysctl.d files, applied in systemd-sysctl order, with the file and line that set it."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import ANY, BOOL, STR, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import (
    FNM_PERIOD,
    as_value,
    at,
    dropin_files,
    fnmatch_c,
    logical_lines,
    read_proc,
    real_path,
    systemd_lines,
)

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["SYSCTL", "Sysctl", "normalize_name", "register", "sysctl_key"]

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
        "persisted": "the value systemd-sysctl writes from the sysctl.d files at boot (or ufw's"
        " IPT_SYSCTL file after it); null when none writes it",
        "persisted_source": "file:line of the winning assignment",
    },
)

_WHITESPACE = " \t\n\r"  # systemd's WHITESPACE, what its strstrip() removes

# systemd 252's CONF_PATHS_STRV("sysctl.d"), highest priority first: a file name in an earlier
# directory masks the same name in a later one. Debian 12's systemd has no /lib/sysctl.d (on a
# merged-/usr system it is /usr/lib/sysctl.d anyway).
SYSCTL_DIRS = (
    "/etc/sysctl.d",
    "/run/sysctl.d",
    "/usr/local/lib/sysctl.d",
    "/usr/lib/sysctl.d",
)

_GLOB_CHARS = "*?["  # systemd's string_is_glob()
_SWAP = str.maketrans("./", "/.")


def _first_separator(name: str) -> str | None:
    m = re.search(r"[./]", name)
    return m.group() if m else None


def sysctl_key(key: str) -> str:
    """systemd 252's sysctl_normalize() of a stripped sysctl.d key: the slash form relative to
    /proc/sys. When the first separator is a dot, dots and slashes trade places; then
    path_simplify() drops empty and `.` levels (so `net.ipv4..x` is `net/ipv4/x`) but keeps
    `..`, and the leading slash goes."""
    if _first_separator(key) == ".":
        key = key.translate(_SWAP)
    return "/".join(lv for lv in key.split("/") if lv not in ("", "."))


def _parameter_path(name: str) -> str:
    """The /proc/sys path of a policy's parameter name, as sysctl(8) reads it, in slash form.
    sysctl(8) swaps dots and slashes when the first separator is a dot, and the kernel resolves
    repeated separators and `.` levels; a name it cannot read as one parameter is refused."""
    why = None
    if not name or any(ch.isspace() for ch in name):
        why = "empty or contains whitespace (sysctl(8) finds no such parameter)"
    elif any(ch in name for ch in _GLOB_CHARS):
        why = "a glob names no single parameter"
    path = name.translate(_SWAP) if _first_separator(name) == "." else name
    levels = [lv for lv in path.split("/") if lv not in ("", ".")]
    if why is None and path.rsplit("/", 1)[-1] in ("", "."):
        why = "ends with a separator (sysctl(8) cannot read it: not a directory)"
    elif why is None and (".." in levels or not levels):
        why = "a `..` level leaves the parameter tree" if levels else "names no parameter"
    if why is not None:
        raise EvaluationError(f"sysctl({name!r}): not a parameter name: {why}")
    return "/".join(levels)


def normalize_name(name: str) -> str:
    """The dotted form of a sysctl name, as sysctl(8) prints it: `.` between levels and `/`
    for a dot inside one (`net/ipv4/conf/eth0.100/rp_filter` is
    `net.ipv4.conf.eth0/100.rp_filter`). A name that is no parameter is an EvaluationError."""
    return _parameter_path(name).translate(_SWAP)


@dataclass(frozen=True)
class Glob:
    """A sysctl.d key with `*`, `?` or `[`: systemd-sysctl expands it with glob(3) under
    /proc/sys, which matches each level with the C library's fnmatch() and FNM_PERIOD, so a
    wildcard stays within one level and a leading `.` only matches a `.`."""

    key: str
    levels: tuple[str, ...]

    @classmethod
    def compile(cls, key: str) -> Glob:
        return cls(key, tuple(key.split("/")))

    def matches(self, path: str) -> bool:
        parts = path.split("/")
        return len(parts) == len(self.levels) and all(
            fnmatch_c(level, part, FNM_PERIOD) for level, part in zip(self.levels, parts, strict=True)
        )


@dataclass(frozen=True)
class Assignment:
    value: str | None  # None: a `-key` line, which only keeps the key out of the globs
    source: str  # file:line


@dataclass(frozen=True)
class Settings:
    """The keys of a set of sysctl files as systemd-sysctl applies them, in slash form.
    procps 4's `sysctl -p` (ufw) applies a file the same way: tried with both in a namespace."""

    # every key, in systemd's ordered-hashmap order (a key set again to another value moves
    # to the end); a key holding `*?[` is a glob
    entries: Mapping[str, Assignment] = field(default_factory=dict)
    globs: tuple[tuple[Glob, Assignment], ...] = ()

    @classmethod
    def read(cls, ctx: FactContext, paths: list[str]) -> Settings:
        entries: dict[str, Assignment] = {}
        for path in paths:
            for key, a in _assignments(ctx, path):
                # parse_file(): the same value again keeps the first entry and its place;
                # another value (or `-key`, whose value is none) replaces it at the end
                existing = entries.get(key)
                if existing is not None and existing.value == a.value:
                    continue
                entries.pop(key, None)
                entries[key] = a
        globs = tuple(
            (Glob.compile(k), a) for k, a in entries.items() if _is_glob(k) and a.value is not None
        )
        return cls(entries, globs)

    def lookup(self, path: str) -> Assignment | None:
        """The assignment that sets the parameter at `path` (slash form), if any. A `-key`
        line's entry sets nothing and so comes back with value None."""
        # apply_all(): an explicit key is written by its own entry; any key of the map (a
        # `-key` line too) is skipped by every glob; among the globs, the last in map order
        # that matches writes last.
        hit = self.entries.get(path)
        if hit is not None:
            return None if _is_glob(path) else hit
        for glob, assignment in reversed(self.globs):
            if glob.matches(path):
                return assignment
        return None


@dataclass(frozen=True)
class Persisted:
    boot: Settings = field(default_factory=Settings)  # the sysctl.d files, at boot
    later: Settings = field(default_factory=Settings)  # ufw's IPT_SYSCTL file, over them

    def lookup(self, path: str) -> Assignment | None:
        hit = self.later.lookup(path)
        if hit is not None and hit.value is not None:
            return hit
        return self.boot.lookup(path)


def _is_glob(key: str) -> bool:
    return any(ch in key for ch in _GLOB_CHARS)


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
    ufw_file = _ufw_sysctl_file(ctx)
    later = Settings.read(ctx, [ufw_file]) if ufw_file is not None else Settings()
    return Persisted(Settings.read(ctx, ordered), later)


def _assignments(ctx: FactContext, path: str) -> list[tuple[str, Assignment]]:
    """The lines of a sysctl file as systemd 252's parse_file() reads them: lines as
    read_line() ends them, strstrip()ped of " \t\n\r" only, `#` and `;` comments. `key =
    value` (a `-` before the key only ignores a failure to write) or `-key`, which sets nothing
    and keeps the key out of every glob; any other line is ignored."""
    text = ctx.read_text(path)
    if text is None:
        return []
    out = []
    for n, line in logical_lines(systemd_lines(text), blank=_WHITESPACE):
        if line.startswith(";"):
            continue
        key, sep, value = line.partition("=")
        if not sep and not key.startswith("-"):
            continue
        key = sysctl_key(key.removeprefix("-").strip(_WHITESPACE))
        out.append((key, Assignment(value.strip(_WHITESPACE) if sep else None, at(path, n))))
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
        path = _parameter_path(name)
        self.name = path.translate(_SWAP)
        self._ctx = ctx
        self._proc = "/proc/sys/" + path
        assignment = ctx.fact("_sysctl_persisted", ()).lookup(path)
        self.persisted: Any = None
        self.persisted_source: str | None = None
        self._dropped: str | None = None  # the `-key` line that keeps the globs off it
        if assignment is not None and assignment.value is None:
            self._dropped = assignment.source
        elif assignment is not None:
            self.persisted = as_value(assignment.value)
            self.persisted_source = assignment.source
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
            return self.persisted_source or self._unset()
        if name == "running":
            return self._proc
        if name in ("value", "exists"):
            if self.running is not None:
                return self._proc
            return self.persisted_source or f"{self._proc} (absent); {self._unset()}"
        return self._proc

    def _unset(self) -> str:
        if self._dropped is not None:
            return f"no sysctl.d assignment ({self._dropped}: a `-key` line)"
        return "no sysctl.d assignment"


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
