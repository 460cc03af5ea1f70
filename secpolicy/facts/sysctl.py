"""`sysctl(name)`: a kernel parameter's running value (proc/sys) and its persisted value from the
sysctl.d files, applied in systemd-sysctl order, with the file and line that set it; for a
`net.ipv{4,6}.conf.all.` key, what the kernel uses on each interface (`interfaces`)."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import ANY, BOOL, STR, ListType, ObjectType
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

__all__ = ["SYSCTL", "SYSCTL_INTERFACE", "Sysctl", "normalize_name", "register", "sysctl_key"]

SYSCTL_INTERFACE = ObjectType(
    "sysctl_interface",
    {"name": STR, "value": ANY, "all": ANY, "forwarding": ANY, "effective": ANY},
    doc="one network interface's running value of a conf.all. key and what the kernel uses on it",
    field_docs={
        "name": "the interface (its directory under /proc/sys/net/ipv4/conf or ipv6/conf)",
        "value": "the interface's own running value of the key",
        "all": "the running value of the key under conf/all",
        "forwarding": "the interface's own running `forwarding` value (read only for keys it gates)",
        "effective": "what the kernel acts on for this interface: `value` combined with `all` by the"
        " key's rule (see docs/facts.md)",
    },
)

SYSCTL = ObjectType(
    "sysctl",
    {
        "name": STR,
        "value": ANY,
        "running": ANY,
        "persisted": ANY,
        "persisted_source": STR,
        "exists": BOOL,
        "interfaces": ListType(SYSCTL_INTERFACE),
        "persisted_interfaces": ListType(SYSCTL_INTERFACE),
    },
    doc="a kernel parameter: running value from /proc/sys, persisted value from sysctl.d",
    field_docs={
        "value": "the running value when /proc/sys is readable, else the persisted one",
        "running": "the value in /proc/sys (live host, or a root that carries proc/sys)",
        "persisted": "the value systemd-sysctl writes from the sysctl.d files at boot (or ufw's"
        " IPT_SYSCTL file after it); null when none writes it",
        "persisted_source": "file:line of the winning assignment",
        "interfaces": "for a net.ipv4.conf.all. or net.ipv6.conf.all. key the kernel combines with each"
        " interface's own value: every interface's running values and what the kernel uses on it (empty"
        " without a running kernel to read: under a root without proc/sys); any other key is an error",
        "persisted_interfaces": "for the same keys, the interfaces a sysctl.d key names explicitly"
        " (`net.ipv4.conf.eth0.send_redirects`), with the value systemd-sysctl writes there, the persisted"
        " `all` and `forwarding`, and what the kernel uses on that interface once it exists",
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



# How the kernel combines a `conf/all` value with an interface's own, per key, as Linux 6.x
# does it (include/linux/inetdevice.h for IPv4: IN_DEV_ORCONF, IN_DEV_ANDCONF, IN_DEV_MAXCONF;
# IPv6 reads the interface's own value, except accept_source_route: min(all, interface) in
# ipv6_rthdr_rcv). The redirect and RA rules were watched in network namespaces
# (tests/conformance/test_sysctl_interfaces_oracle.py). `forwarding`: the rule reads the
# interface's own forwarding value too.
_OR, _AND, _MAX, _MIN = "or", "and", "max", "min"
_RX_REDIRECTS, _V6_ONLY, _V6_REDIRECTS, _V6_RA = "rx_redirects", "own", "v6_redirects", "v6_ra"
_COMBINE = {
    ("ipv4", "send_redirects"): _OR,
    ("ipv4", "secure_redirects"): _OR,
    ("ipv4", "log_martians"): _OR,
    ("ipv4", "accept_redirects"): _RX_REDIRECTS,
    ("ipv4", "accept_source_route"): _AND,
    ("ipv4", "rp_filter"): _MAX,
    ("ipv6", "accept_redirects"): _V6_REDIRECTS,
    ("ipv6", "accept_ra"): _V6_RA,
    ("ipv6", "accept_source_route"): _MIN,
}
_RULE_TEXT = {
    _OR: "the kernel uses all OR the interface's value",
    _AND: "the kernel uses all AND the interface's value",
    _MAX: "the kernel uses the larger of all and the interface's value",
    _MIN: "the kernel uses the smaller of all and the interface's value",
    _RX_REDIRECTS: "the kernel uses all OR the interface's value where the interface does not"
    " forward, all AND it where it forwards",
    _V6_REDIRECTS: "IPv6 uses the interface's own value (all is not read), none where the"
    " interface forwards",
    _V6_RA: "IPv6 uses the interface's own value (all is not read); where the interface forwards,"
    " only 2 accepts",
}


def _int(value: Any, path: str) -> int:
    if isinstance(value, int):
        return value
    raise EvaluationError(f"{path}: {value!r} is not an integer")


def _effective(rule: str, all_value: int, value: int, forwarding: int | None) -> int:
    if rule == _OR:
        return int(bool(all_value) or bool(value))
    if rule == _AND:
        return int(bool(all_value) and bool(value))
    if rule == _MAX:
        return max(all_value, value)
    if rule == _MIN:
        return min(all_value, value)
    if rule == _RX_REDIRECTS:
        return _effective(_AND if forwarding else _OR, all_value, value, None)
    if rule == _V6_REDIRECTS:
        return 0 if forwarding else value
    # _V6_RA
    return value if not forwarding or value == 2 else 0


@dataclass(frozen=True)
class Interface:
    """One interface's running value of a conf.all. key and what the kernel makes of it."""

    name: str
    value: int
    all: int
    forwarding: int | None
    effective: int
    _dir: str  # /proc/sys/net/<family>/conf
    _key: str
    _rule: str

    def describe(self) -> str:
        return f"interface {self.name}"

    def where(self, name: str, *args: Any) -> str | None:
        own = f"{self._dir}/{self.name}/{self._key}"
        every = f"{self._dir}/all/{self._key}"
        if name == "value":
            return own
        if name == "all":
            return every
        if name == "forwarding":
            return f"{self._dir}/{self.name}/forwarding"
        if name == "effective":
            fwd = ""
            if self.forwarding is not None:
                fwd = f", {self._dir}/{self.name}/forwarding = {self.forwarding}"
            return f"{own} = {self.value}, {every} = {self.all}{fwd} ({_RULE_TEXT[self._rule]})"
        return f"{self._dir}/{self.name}"


def _combined(path: str, member: str) -> tuple[str, str, str]:
    """(family, key, the kernel's rule) of a conf.all. key the kernel combines with each
    interface's own value; an error for any other key."""
    levels = path.split("/")
    rule = None
    if len(levels) == 5 and levels[0] == "net" and levels[2:4] == ["conf", "all"]:
        rule = _COMBINE.get((levels[1], levels[4]))
    if rule is None:
        known = ", ".join(f"net.{f}.conf.all.{k}" for f, k in _COMBINE)
        raise EvaluationError(
            f"sysctl({path.translate(_SWAP)!r}).{member}: only for a key the kernel combines with each"
            f" interface's own value: {known}"
        )
    return levels[1], levels[4], rule


def _interfaces(ctx: FactContext, path: str) -> tuple[Interface, ...]:
    family, key, rule = _combined(path, "interfaces")
    if not (ctx.live or ctx.exists("/proc/sys")):
        return ()  # no running kernel to read: the persisted values are all there is
    conf = f"/proc/sys/net/{family}/conf"
    if not ctx.exists(conf):
        if family == "ipv6" and not ctx.exists("/proc/sys/net/ipv6"):
            return ()  # IPv6 is off (ipv6.disable=1): no interface has IPv6
        if not ctx.live:
            return ()  # a captured root without it: nothing running to read
        raise EvaluationError(f"{conf}: does not exist: the interfaces' values cannot be read")
    out = []
    all_value: int | None = None
    for name in ctx.listdir(conf):
        if name in ("all", "default"):
            continue
        raw = read_proc(ctx, f"{conf}/{name}/{key}")
        if raw is None:
            continue  # the interface went away while we read
        if all_value is None:
            all_raw = read_proc(ctx, f"{conf}/all/{key}")
            if all_raw is None:
                raise EvaluationError(
                    f"{conf}/all/{key}: does not exist: the interfaces' values cannot be combined"
                )
            all_value = _int(as_value(all_raw), f"{conf}/all/{key}")
        value = _int(as_value(raw), f"{conf}/{name}/{key}")
        forwarding = None
        if rule in (_RX_REDIRECTS, _V6_REDIRECTS, _V6_RA):
            fwd_raw = read_proc(ctx, f"{conf}/{name}/forwarding")
            if fwd_raw is None:
                continue
            forwarding = _int(as_value(fwd_raw), f"{conf}/{name}/forwarding")
        effective = _effective(rule, all_value, value, forwarding)
        out.append(Interface(name, value, all_value, forwarding, effective, conf, key, rule))
    return tuple(out)


@dataclass(frozen=True)
class PersistedInterface:
    """An interface a sysctl.d key names, with the value systemd-sysctl writes there (when the
    interface is there at boot, or later through its udev hook) and what the kernel makes of it
    with the persisted `all` (None where `all` is not persisted)."""

    name: str
    value: int
    all: int | None
    forwarding: int | None
    effective: int | None
    _source: str
    _all_source: str | None

    def describe(self) -> str:
        return f"interface {self.name} (sysctl.d)"

    def where(self, name: str, *args: Any) -> str | None:
        if name == "all":
            return self._all_source or "no sysctl.d assignment"
        return self._source


def _persisted_interfaces(ctx: FactContext, path: str) -> tuple[PersistedInterface, ...]:
    """The explicit sysctl.d keys `net.<family>.conf.<interface>.<key>` of a conf.all. key
    (globs name no interface: which ones a host will have is not in its files)."""
    family, key, rule = _combined(path, "persisted_interfaces")
    persisted = ctx.fact("_sysctl_persisted", ())
    names: list[str] = []
    for settings in (persisted.boot, persisted.later):
        for k in settings.entries:
            parts = k.split("/")
            if (len(parts) == 5 and parts[:3] == ["net", family, "conf"] and parts[4] == key
                    and parts[3] not in ("all", "default") and not _is_glob(k) and parts[3] not in names):
                names.append(parts[3])
    every = persisted.lookup(f"net/{family}/conf/all/{key}")
    all_value = as_value(every.value) if every is not None and every.value is not None else None
    out = []
    for name in names:
        own = persisted.lookup(f"net/{family}/conf/{name}/{key}")
        value = as_value(own.value) if own is not None and own.value is not None else None
        if own is None or not isinstance(value, int):
            continue  # a `-key` line sets nothing; a value systemd-sysctl cannot write is not an integer
        forwarding = None
        if rule in (_RX_REDIRECTS, _V6_REDIRECTS, _V6_RA):
            fwd = persisted.lookup(f"net/{family}/conf/{name}/forwarding") or persisted.lookup(
                f"net/{family}/conf/all/forwarding")
            fwd_value = as_value(fwd.value) if fwd is not None and fwd.value is not None else 0
            forwarding = fwd_value if isinstance(fwd_value, int) else 0
        effective = None
        if isinstance(all_value, int) or rule in (_V6_REDIRECTS, _V6_RA):
            effective = _effective(rule, all_value if isinstance(all_value, int) else 0, value, forwarding)
        out.append(PersistedInterface(name, value, all_value if isinstance(all_value, int) else None, forwarding,
                                      effective, own.source, every.source if every is not None else None))
    return tuple(out)


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
        self._path = path
        self._running_read = False
        self._running: Any = None
        self._interfaces: tuple[Interface, ...] | None = None
        self._persisted_interfaces: tuple[PersistedInterface, ...] | None = None

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
    def interfaces(self) -> tuple[Interface, ...]:
        if self._interfaces is None:
            self._interfaces = _interfaces(self._ctx, self._path)
        return self._interfaces

    @property
    def persisted_interfaces(self) -> tuple[PersistedInterface, ...]:
        if self._persisted_interfaces is None:
            self._persisted_interfaces = _persisted_interfaces(self._ctx, self._path)
        return self._persisted_interfaces

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
        if name == "interfaces":
            levels = self._path.split("/")
            return f"/proc/sys/{'/'.join(levels[:3])}/*/{levels[-1]}"
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
