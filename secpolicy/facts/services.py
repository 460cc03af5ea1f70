"""`services` and `service(name)`: systemd units read from their unit files and enablement links
(enabled, disabled, masked, static), plus whether they run, on the live host only."""

from __future__ import annotations

import os
import subprocess
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import ANY, BOOL, STR, ListType, ObjectType
from secpolicy.facts._common import config_parse, is_devnull

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["SERVICE", "Service", "register", "unit_name"]

SERVICE = ObjectType(
    "service",
    {
        "name": STR,
        "exists": BOOL,
        "state": STR,
        "enabled": BOOL,
        "masked": BOOL,
        "active": BOOL,
        "path": STR,
        "exec_start": STR,
        "alias_of": STR,
    },
    doc="a systemd unit (a name without suffix means NAME.service)",
    field_docs={
        "state": '"enabled", "disabled", "masked", "static" or "not-found" (as `systemctl is-enabled`)',
        "active": "whether it runs: live host only, null under --root",
        "path": "the unit file systemd loads",
        "alias_of": "the unit this name is an alias of (its state is reported), or null",
    },
)

# systemd's unit search path, highest priority first
UNIT_DIRS = (
    "/etc/systemd/system",
    "/run/systemd/system",
    "/usr/local/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/lib/systemd/system",
)
# where `systemctl enable` leaves its links (.wants/.requires/.upholds of some unit)
ENABLE_DIRS = ("/etc/systemd/system", "/run/systemd/system")
_UNIT_SUFFIXES = (
    ".service",
    ".socket",
    ".timer",
    ".target",
    ".path",
    ".mount",
    ".automount",
    ".swap",
    ".slice",
    ".scope",
    ".device",
)


def unit_name(name: str) -> str:
    return name if name.endswith(_UNIT_SUFFIXES) else name + ".service"


def _template_of(name: str) -> str | None:
    """`getty@tty1.service` -> `getty@.service`."""
    base, _, suffix = name.rpartition(".")
    if "@" in base and not base.endswith("@"):
        return base.split("@", 1)[0] + "@." + suffix
    return None


@dataclass(frozen=True)
class _Units:
    files: dict[str, str] = field(
        default_factory=dict
    )  # unit name -> unit file path (first in search order)
    masked: dict[str, str] = field(default_factory=dict)  # unit name -> masking link
    enabled: dict[str, str] = field(default_factory=dict)  # unit name -> the enablement link
    aliases: dict[str, str] = field(default_factory=dict)  # alias name -> unit it names


def _scan_units(ctx: FactContext) -> _Units:
    units = _Units()
    for d in UNIT_DIRS:
        for name in ctx.listdir(d):
            if not name.endswith(_UNIT_SUFFIXES) or name in units.files or name in units.masked:
                continue
            path = os.path.join(d, name)
            if is_devnull(ctx, path):
                units.masked[name] = path
                continue
            if ctx.stat(path) is None:
                continue
            units.files[name] = path
            try:
                target = os.path.basename(os.readlink(ctx.host_path(path, follow=False)))
            except OSError:
                continue  # a plain file
            if target != name and target.endswith(_UNIT_SUFFIXES):
                units.aliases[name] = target
    for d in ENABLE_DIRS:
        for sub in ctx.listdir(d):
            if not sub.endswith((".wants", ".requires", ".upholds")):
                continue
            wants = os.path.join(d, sub)
            for name in ctx.listdir(wants):
                link = os.path.join(wants, name)
                units.enabled.setdefault(name, link)
                # an alias enabled under another name still enables the target unit
                try:
                    target = os.path.basename(os.readlink(ctx.host_path(link, follow=False)))
                except OSError:
                    continue
                units.enabled.setdefault(target, link)
    return units


def _unit_sections(ctx: FactContext, path: str) -> dict[str, list[tuple[str, str]]]:
    """The assignments of a unit file by section, as systemd's config parser reads them (a
    file it stops reading gives what came before)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    for a in config_parse(ctx.read_text(path) or "", None)[0]:
        sections.setdefault(a.section or "", []).append((a.key, a.value))
    return sections


class _Running:
    """Which units run right now: asked of systemd once per scan when it is PID 1, else
    approximated by matching each unit's ExecStart binary against running processes."""

    def __init__(self) -> None:
        self.systemd = os.path.isdir("/run/systemd/system")
        self.active: set[str] | None = None
        self.exes: set[str] | None = None
        self.source = ""

    def units(self) -> set[str]:
        if self.active is None:
            self.active = set()
            self.source = "systemctl list-units --state=active"
            try:
                out = subprocess.run(
                    [
                        "systemctl",
                        "list-units",
                        "--all",
                        "--state=active",
                        "--no-legend",
                        "--plain",
                        "--no-pager",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=False,
                ).stdout
            except (OSError, subprocess.TimeoutExpired):
                out = ""
            for line in out.splitlines():
                parts = line.split()
                if parts:
                    self.active.add(parts[0])
        return self.active

    def running_exes(self) -> set[str]:
        if self.exes is None:
            self.exes = set()
            self.source = "/proc/*/exe (systemd is not PID 1: ExecStart binary running)"
            for pid in os.listdir("/proc"):
                if pid.isdigit():
                    try:
                        self.exes.add(os.readlink(f"/proc/{pid}/exe").removesuffix(" (deleted)"))
                    except OSError:
                        continue
        return self.exes


class Service:
    def __init__(self, ctx: FactContext, name: str, units: _Units) -> None:
        self._ctx = ctx
        self.name = unit_name(name)
        # an alias (sshd.service -> ssh.service) reports the state of the unit it names
        self.alias_of = units.aliases.get(self.name) if self.name not in units.masked else None
        if self.alias_of:
            self.name = self.alias_of
        template = _template_of(self.name)
        self._masked_by = units.masked.get(self.name)
        self.path = units.files.get(self.name) or (units.files.get(template) if template else None)
        self.masked = self._masked_by is not None
        self.exists = self.masked or self.path is not None
        self._link = units.enabled.get(self.name)
        sections = _unit_sections(ctx, self.path) if self.path and not self.masked else {}
        install = sections.get("Install", [])
        service = sections.get("Service", [])
        self.exec_start = next((v for k, v in service if k == "ExecStart" and v), None)
        if self.masked:
            self.state = "masked"
        elif not self.exists:
            self.state = "not-found"
        elif self._link is not None:
            self.state = "enabled"
        elif not any(
            k in ("WantedBy", "RequiredBy", "UpheldBy", "Alias", "Also") and v for k, v in install
        ):
            self.state = "static"
        else:
            self.state = "disabled"
        self.enabled = self.state == "enabled"

    def describe(self) -> str:
        return f"service {self.name!r}"

    @property
    def active(self) -> bool | None:
        if not self._ctx.live or not self.exists:
            return None if not self._ctx.live else False
        running: _Running = self._ctx.fact("_running_units", ())
        if running.systemd:
            return self.name in running.units()
        if not self.exec_start:
            return None
        exe = (
            self.exec_start.lstrip("@-:+!").split()[0]
            if self.exec_start.lstrip("@-:+!").split()
            else ""
        )
        return exe in running.running_exes() or os.path.realpath(exe) in running.running_exes()

    def where(self, name: str, *args: Any) -> str | None:
        if name == "active":
            if not self._ctx.live:
                return "not known under --root"
            running: _Running = self._ctx.fact("_running_units", ())
            return running.source or None
        if self.masked:
            return f"{self._masked_by} -> /dev/null"
        if name in ("state", "enabled") and self._link:
            return self._link
        if self.path is None:
            return f"no unit file for {self.name} in {', '.join(UNIT_DIRS[:1] + UNIT_DIRS[3:4])}"
        return self.path


def collect_services(ctx: FactContext) -> list[Service]:
    units: _Units = ctx.fact("_units", ())
    names = sorted(
        n
        for n in set(units.files) | set(units.masked)
        if n.endswith(".service") and not n.endswith("@.service") and n not in units.aliases
    )
    return [ctx.fact("service", (n,)) for n in names]


def collect_service(ctx: FactContext, name: str) -> Service:
    return Service(ctx, name, ctx.fact("_units", ()))


def register(reg: FactRegistry) -> None:
    reg.register(
        "services", collect_services, returns=ListType(SERVICE), doc="every systemd .service unit"
    )
    reg.register(
        "service", collect_service, params=(STR,), returns=SERVICE, doc="a systemd unit by name"
    )
    reg.register(
        "_units", _scan_units, returns=ANY, doc="internal: unit files and enablement links"
    )
    reg.register(
        "_running_units", lambda ctx: _Running(), returns=ANY, doc="internal: running units (live)"
    )
