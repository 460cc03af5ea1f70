"""`services` and `service(name)`: systemd units read from their unit files and enablement links
as `systemctl is-enabled` (systemd 252) reads them, plus whether they run, on the live host only;
`mount_unit(path)`: the mount unit systemd makes of a unit file or an fstab entry, with its
drop-ins."""

from __future__ import annotations

import os
import re
import stat
import subprocess
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import ANY, BOOL, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import config_parse, dropin_files, mount_flag, split_mount_options

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["MOUNT_UNIT", "SERVICE", "MountUnit", "Service", "register", "unit_name", "unit_name_escape", "unit_path_name"]

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
        "state": "what `systemctl is-enabled` prints: enabled, enabled-runtime, linked, linked-runtime, "
        "masked, masked-runtime, static, indirect, disabled, generated or transient; not-found, or bad "
        "where systemctl fails on the name (a unit file it cannot read). A service with no unit file "
        "outside the generator directories but a SysV script /etc/init.d/NAME is enabled or disabled as "
        "systemd-sysv-install says: enabled with an S??NAME link in /etc/rcS.d or /etc/rc5.d",
        "enabled": "state is enabled or enabled-runtime: symlinks make systemd start it (at every boot, or "
        "in this boot only)",
        "active": "whether it runs: live host only, null under --root",
        "path": "the unit file systemd loads (for a SysV service, the /etc/init.d script)",
        "alias_of": "the unit this name is an alias of (its state is reported), or null",
    },
)

# systemd 252's unit search path for the system (`systemd-analyze unit-paths`), highest
# priority first: a name found in an earlier directory hides it in the later ones.
UNIT_PATH = (
    "/etc/systemd/system.control",
    "/run/systemd/system.control",
    "/run/systemd/transient",
    "/run/systemd/generator.early",
    "/etc/systemd/system",
    "/etc/systemd/system.attached",
    "/run/systemd/system",
    "/run/systemd/system.attached",
    "/run/systemd/generator",
    "/usr/local/lib/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
    "/run/systemd/generator.late",
)
_CONFIG = "/etc/systemd/system"  # where `systemctl enable` links: "enabled" (in /run: "enabled-runtime")
_RUNTIME = "/run/systemd/system"
_TRANSIENT = "/run/systemd/transient"
_GENERATORS = frozenset({"/run/systemd/generator.early", "/run/systemd/generator", "/run/systemd/generator.late"})
_NATIVE_PATH = tuple(d for d in UNIT_PATH if d not in _GENERATORS)
_GENERATOR_RANK = UNIT_PATH.index("/run/systemd/generator")  # where systemd-fstab-generator writes
_ELOOP = "Too many levels of symbolic links"
_ENOENT = "No such file or directory"
# systemd-sysv-install is-enabled (Debian): a start link in rcS.d or rc5.d
_SYSV_SCRIPTS = "/etc/init.d"
_SYSV_START_DIRS = ("/etc/rcS.d", "/etc/rc5.d")
_MAX_HOPS = 64  # symlinks followed from a name to its unit file (UNIT_FILE_FOLLOW_SYMLINK_MAX)
_UNIT_TYPES = ("service", "socket", "target", "device", "mount", "automount", "swap", "timer", "path", "slice", "scope")
_UNIT_SUFFIXES = tuple(f".{t}" for t in _UNIT_TYPES)
_NAME_CHARS = re.compile(r"[A-Za-z0-9:_.\\-]+\Z")
_INSTANCE_CHARS = re.compile(r"[A-Za-z0-9:_.\\@-]+\Z")
# names readdir() loops of systemd skip (hidden_or_backup_file())
_BACKUP_SUFFIXES = ("~", ".rpmnew", ".rpmsave", ".rpmorig", ".dpkg-old", ".dpkg-new", ".dpkg-tmp", ".dpkg-dist",
                    ".dpkg-bak", ".dpkg-backup", ".dpkg-remove", ".ucf-new", ".ucf-old", ".ucf-dist", ".swp",
                    ".bak", ".old", ".new")
# the [Install] keys systemctl reads in 252 (UpheldBy= is not among them: "Unknown key")
_INSTALL_LISTS = ("Alias", "WantedBy", "RequiredBy", "Also")


def unit_name(name: str) -> str:
    return name if name.endswith(_UNIT_SUFFIXES) else name + ".service"


def _name_kind(name: str) -> str | None:
    """"plain", "template" (`getty@.service`), "instance" (`getty@tty1.service`), or None for
    a name systemd refuses (unit_name_is_valid())."""
    base, dot, suffix = name.rpartition(".")
    if len(name) > 255 or not dot or suffix not in _UNIT_TYPES or not base:
        return None
    prefix, at, instance = base.partition("@")
    if not prefix or not _NAME_CHARS.match(prefix):
        return None
    if not at:
        return "plain"
    if not instance:
        return "template"
    return "instance" if _INSTANCE_CHARS.match(instance) else None


def _template_of(name: str) -> str | None:
    """`getty@tty1.service` -> `getty@.service`."""
    if _name_kind(name) != "instance":
        return None
    base, _, suffix = name.rpartition(".")
    return base.split("@", 1)[0] + "@." + suffix


def _with_instance(template: str, instance_of: str) -> str:
    """`getty@.service` with the instance of `serial@ttyS0.service`: `getty@ttyS0.service`."""
    instance = instance_of.rpartition(".")[0].split("@", 1)[1]
    base, _, suffix = template.rpartition(".")
    return f"{base}{instance}.{suffix}"


# unit_type_may_alias() and unit_type_may_template()
_MAY_ALIAS = frozenset({"service", "socket", "target", "device", "timer", "path"})
_MAY_TEMPLATE = frozenset({"service", "socket", "target", "timer", "path"})


def _alias_refused(src: str, dst: str) -> str | None:
    """Why systemd refuses the alias symlink `src` -> `dst` inside the search path
    (unit_validate_alias_symlink_or_warn()), as strerror() words it; None when it takes it."""
    src_kind, dst_kind = _name_kind(src), _name_kind(dst)
    src_type, dst_type = src.rpartition(".")[2], dst.rpartition(".")[2]
    if src_kind is None or src_type not in _MAY_ALIAS or (src_kind != "plain" and src_type not in _MAY_TEMPLATE):
        return "Invalid argument"
    if src == dst:
        return _ELOOP
    if dst_kind is None or not (dst_kind == src_kind or (src_kind, dst_kind) == ("instance", "template")):
        return "Invalid cross-device link"
    if dst_kind == "instance" and src.rpartition(".")[0].split("@", 1)[1] != dst.rpartition(".")[0].split("@", 1)[1]:
        return "Invalid cross-device link"
    if dst_type != src_type:
        return "Invalid cross-device link"
    return None


def _hidden(name: str) -> bool:
    return name.startswith(".") or name.endswith(_BACKUP_SUFFIXES)


def _null_or_empty(st: os.stat_result) -> bool:
    """null_or_empty(): an empty regular file or a device node masks a unit."""
    return (stat.S_ISREG(st.st_mode) and st.st_size == 0) or stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)


class _Bad(Exception):
    """A name systemctl cannot resolve to a unit file (it prints an error, no state)."""


@dataclass(frozen=True)
class _Install:
    """The [Install] section of a unit file and its drop-ins, as `systemctl` reads it."""

    alias: tuple[str, ...] = ()
    wanted_by: tuple[str, ...] = ()
    required_by: tuple[str, ...] = ()
    also: tuple[str, ...] = ()
    default_instance: str | None = None


@dataclass(frozen=True)
class UnitState:
    """What `systemctl is-enabled NAME` says, and from which files."""

    asked: str  # the unit name asked about
    name: str  # the unit it resolves to (another one for an alias)
    state: str  # is-enabled's word; "not-found", or "bad" when systemctl fails on the name
    path: str | None = None  # the unit file (for a masked unit, what masks it)
    link: str | None = None  # the symlink that made the state enabled, linked or indirect
    why: str | None = None  # for "bad": systemctl's error
    sysv: bool = False  # no native unit file: the state of a SysV script, as systemd-sysv-install says it


class _UnitFiles:
    """systemd 252's unit file lookup (install.c: unit_file_lookup_state()) over a root: the
    unit file a name resolves to through the search path, drop-ins and symlinks, and the
    enablement symlinks that make its state."""

    def __init__(self, ctx: FactContext) -> None:
        self.ctx = ctx
        self._dirs: dict[str, list[tuple[str, bool, bool]]] = {}
        self._names: dict[str, frozenset[str] | None] = {}
        self._states: dict[str, UnitState] = {}

    def entries(self, d: str) -> list[tuple[str, bool, bool]]:
        """(name, is a directory, is a symlink) of each entry of `d` readdir() hands systemd."""
        if d not in self._dirs:
            self._dirs[d] = sorted(self._read_dir(d))
        return self._dirs[d]

    def _read_dir(self, d: str) -> list[tuple[str, bool, bool]]:
        try:
            fd = self.ctx.open_dir(d)
        except (FileNotFoundError, NotADirectoryError):
            return []
        except PermissionError:
            raise EvaluationError(f"{d}: permission denied") from None
        try:
            with os.scandir(fd) as it:
                return [(e.name, e.is_dir(follow_symlinks=False), e.is_symlink()) for e in it if not _hidden(e.name)]
        finally:
            os.close(fd)

    def _target(self, path: str) -> str | None:
        """Where the symlink `path` points, absolute inside the root and without `.`/`..`."""
        try:
            dest = self.ctx.readlink(path)
        except OSError:
            return None
        return os.path.normpath(os.path.join(os.path.dirname(path), dest))

    def _masks(self, target: str) -> bool:
        if target == "/dev/null":
            return True
        try:
            st = self.ctx.stat(target)
        except (OSError, EvaluationError):
            return False
        return st is not None and _null_or_empty(st)

    def _load(self, path: str, dirs: tuple[str, ...]) -> tuple[str, str | None]:
        """What the file at `path` is to systemctl: ("missing" | "regular" | "masked", None), or
        for a symlink ("alias" | "linked", its target): an alias names a unit inside the
        search path `dirs`, a linked unit file lies outside it. Raises _Bad for what it
        refuses."""
        try:
            st = self.ctx.lstat(path)
        except PermissionError:
            return "missing", None
        if st is None:
            return "missing", None
        if stat.S_ISLNK(st.st_mode):
            target = self._target(path)
            if target is None:
                return "missing", None
            if any(target.startswith(d + "/") for d in dirs):
                why = _alias_refused(os.path.basename(path), os.path.basename(target))
                if why is not None:
                    raise _Bad(why)
                return "alias", target  # an empty file it leads to masks the unit there
            if self._masks(target):
                return "masked", None
            return "linked", target
        if _null_or_empty(st):
            return "masked", None
        if stat.S_ISDIR(st.st_mode):
            raise _Bad("Is a directory")
        if not stat.S_ISREG(st.st_mode):
            raise _Bad("Inappropriate ioctl for device")
        return "regular", None

    def _listed(self, d: str) -> frozenset[str] | None:
        """Every name in `d` (none where it does not exist), read once; None where it cannot
        be listed, and each path in it is looked up on its own."""
        if d not in self._names:
            try:
                self._names[d] = frozenset(self.ctx.listdir(d))
            except EvaluationError:
                self._names[d] = None
        return self._names[d]

    def _search(self, name: str, dirs: tuple[str, ...]) -> tuple[str, str, str | None] | None:
        """unit_file_search(): the first file named `name` in `dirs` (an instance falls back
        to its template), as (path, kind, symlink target)."""
        for candidate in (name, _template_of(name)):
            if candidate is None:
                continue
            for d in dirs:
                listed = self._listed(d)
                if listed is not None and candidate not in listed:
                    continue  # missing there: a lookup of the path would say so
                path = f"{d}/{candidate}"
                kind, target = self._load(path, dirs)
                if kind != "missing":
                    return path, kind, target
        return None

    def native_file(self, name: str) -> str | None:
        """The unit file of `name` outside the generator directories, if any (a mask is none)."""
        try:
            found = self._search(name, _NATIVE_PATH)
        except _Bad:
            return None
        return found[0] if found is not None and found[1] != "masked" else None

    def dropins(self, name: str) -> list[str]:
        """The drop-ins of `name` (`NAME.d/*.conf`, and its template's) in the search path."""
        template = _template_of(name)
        dirs = [f"{d}/{name}.d" for d in UNIT_PATH] + ([f"{d}/{template}.d" for d in UNIT_PATH] if template else [])
        return dropin_files(self.ctx, dirs, ".conf")

    def install(self, name: str, files: list[str]) -> _Install:
        """The [Install] lists `files` give in this order, an empty assignment clearing a list
        as config_parse_strv() does (not Also=)."""
        lists: dict[str, list[str]] = {k: [] for k in _INSTALL_LISTS}
        default_instance: str | None = None
        for p in files:
            try:
                text = self.ctx.read_text(p) or ""
            except EvaluationError as e:
                raise _Bad(str(e)) from None  # systemctl fails on a file it cannot read
            for a in config_parse(text, {"Install"})[0]:
                if a.key in lists:
                    if a.value:
                        lists[a.key].extend(a.value.split())
                    elif a.key != "Also":  # config_parse_also() has no reset
                        lists[a.key].clear()
                elif a.key == "DefaultInstance" and _name_kind(name) == "template":
                    default_instance = a.value or None
        return _Install(tuple(lists["Alias"]), tuple(lists["WantedBy"]), tuple(lists["RequiredBy"]),
                        tuple(lists["Also"]), default_instance)

    def lookup(self, asked: str) -> UnitState:
        if asked not in self._states:
            try:
                self._states[asked] = self._lookup(asked)
            except _Bad as e:
                self._states[asked] = UnitState(asked, asked, "bad", why=str(e))
        return self._states[asked]

    def _discover(self, asked: str, dirs: tuple[str, ...], *,
                  follow_config: bool) -> tuple[str, str, str, list[str]] | None:
        """install_info_discover(): (the unit's name, its file, "regular" or "masked", the
        files its [Install] section is read from, in the order systemctl reads them) for the
        name `asked`, following aliases and linked unit files (install_info_traverse());
        None when no file has the name. Raises _Bad for what systemctl fails on."""
        name = asked
        found = self._search(name, dirs)
        if found is None:
            return None
        path, kind, target = found
        # unit_file_search() reads the file it finds, then the drop-ins of the name; a symlink
        # has no content: its drop-ins come before the file it leads to.
        sources = self._sources(name, path, kind)
        hops = 0
        while kind in ("alias", "linked"):
            assert target is not None
            hops += 1
            if hops > _MAX_HOPS:
                raise _Bad(_ELOOP)
            if not follow_config and os.path.dirname(path) in (_CONFIG, _RUNTIME):
                raise _Bad(_ELOOP)
            tail = os.path.basename(target)
            if kind == "alias" and _name_kind(name) == "instance" and _name_kind(tail) == "template":
                tail = _with_instance(tail, name)
            if kind == "alias" and tail != name:
                name = tail  # an alias: the unit it names is searched for by name
                found = self._search(name, dirs)
                if found is None:
                    raise _Bad("Link has been severed")
                path, kind, target = found
                sources = self._sources(name, path, kind)
                continue
            path = target  # a linked unit file, or a link to a file of the same name: that file
            kind, target = self._load(path, dirs)
            if kind == "missing":
                raise _Bad(_ENOENT)
            if kind == "regular":
                sources.append(path)
        return name, path, kind, sources

    def _sources(self, name: str, path: str, kind: str) -> list[str]:
        if kind == "masked":
            return []
        return [path, *self.dropins(name)] if kind == "regular" else self.dropins(name)

    def _lookup(self, asked: str) -> UnitState:
        if _name_kind(asked) is None:
            raise _Bad("Invalid argument")
        # For a service, systemctl first asks whether it exists outside the generator
        # directories (unit_file_exists(), before its SysV fallback), without following the
        # symlinks of /etc/systemd/system and /run/systemd/system; what fails there fails
        # is-enabled.
        # A service without such a file but with a SysV script in /etc/init.d is not looked up
        # at all: systemctl asks systemd-sysv-install (enable_sysv_units()).
        if asked.endswith(".service"):
            try:
                native = self._discover(asked, _NATIVE_PATH, follow_config=False) is not None
            except _Bad as e:
                if str(e) not in (_ELOOP, _ENOENT):
                    raise
                native = str(e) == _ELOOP  # unit_file_exists() says -ELOOP: not 0, so native
            sysv = None if native else self._sysv(asked)
            if sysv is not None:
                return sysv
        found = self._discover(asked, UNIT_PATH, follow_config=True)
        if found is None:
            return UnitState(asked, asked, "not-found")
        name, path, kind, sources = found
        if kind == "masked":
            return UnitState(asked, name, "masked-runtime" if path.startswith("/run/") else "masked", path)
        if asked != os.path.basename(path) and _name_kind(name) != "instance":
            return UnitState(asked, name, "alias", path)
        parent = os.path.dirname(path)
        if parent in _GENERATORS:
            return UnitState(asked, name, "generated", path)
        if parent == _TRANSIENT:
            return UnitState(asked, name, "transient", path)
        install = self.install(name, sources)
        for match_name in (True, False):
            state, link = self._find_links(name, path, install, match_name)
            if state is not None:
                return UnitState(asked, name, state if match_name else "indirect", path, link)
        if install.alias or install.wanted_by or install.required_by:
            return UnitState(asked, name, "disabled", path)
        return UnitState(asked, name, "indirect" if install.also else "static", path)

    def _sysv(self, asked: str) -> UnitState | None:
        """The state systemctl prints for a service that is only a SysV script: Debian's
        systemd-sysv-install says enabled when `ls /etc/rc[S5].d/S??NAME` lists anything (a
        dangling link or a plain file too), else disabled. None without /etc/init.d/NAME
        (access(F_OK): followed to what it names). Unlike systemctl --root, links are resolved
        inside the root, as the booted image resolves them."""
        script = f"{_SYSV_SCRIPTS}/{asked.removesuffix('.service')}"
        try:
            if self.ctx.stat(script) is None:
                return None
        except (OSError, EvaluationError):
            return None  # access() fails: a loop, a permission
        base = os.path.basename(script)
        for d in _SYSV_START_DIRS:
            try:
                entries = self.ctx.listdir(d)
            except EvaluationError:
                continue  # ls lists nothing there
            for entry in entries:
                if len(entry) == len(base) + 3 and entry.startswith("S") and entry.endswith(base):
                    return UnitState(asked, asked, "enabled", script, f"{d}/{entry}", sysv=True)
        return UnitState(asked, asked, "disabled", script, sysv=True)

    def _find_links(self, name: str, path: str, install: _Install, match_name: bool) -> tuple[str | None, str | None]:
        """find_symlinks_in_scope(): the state the symlinks of the search path give `name`."""
        ignore_same_name = False
        runtime: str | None = None
        elsewhere: str | None = None
        same_config: str | None = None
        same_runtime: str | None = None
        for d in UNIT_PATH:
            link, same = self._links_in(d, name, install, match_name, ignore_same_name)
            if link is not None:
                if d == _CONFIG:
                    return "enabled", link
                if d.startswith("/run/"):
                    runtime = runtime or link
                else:
                    elsewhere = elsewhere or link
            elif same is not None:
                if d == _CONFIG:
                    same_config = same_config or same
                elif d.startswith("/run/"):
                    same_runtime = same_runtime or same
            if not ignore_same_name and path.startswith(d + "/"):
                ignore_same_name = True  # the directories below the unit file's own
        if runtime is not None:
            return "enabled-runtime", runtime
        if elsewhere is not None and _name_kind(name) == "instance":
            return "static", elsewhere
        if same_config is not None:
            return "linked", same_config
        if same_runtime is not None:
            return "linked-runtime", same_runtime
        return None, None

    def _links_in(self, d: str, name: str, install: _Install, match_name: bool,
                  ignore_same_name: bool) -> tuple[str | None, str | None]:
        """find_symlinks(): a symlink of `d` that names the unit (in its `*.wants` and
        `*.requires` directories by the link's own name; in `d` itself by name or target),
        and a same-name link in `d` (a linked unit file)."""
        for sub, is_dir, _ in self.entries(d):
            if is_dir and sub.rpartition(".")[2] in ("wants", "requires") and "." in sub:
                link, _same = self._links_of(f"{d}/{sub}", d, name, install, match_name, ignore_same_name, True)
                if link is not None:
                    return link, None
        return self._links_of(d, d, name, install, match_name, ignore_same_name, False)

    def _links_of(self, where: str, config: str, name: str, install: _Install, match_name: bool,
                  ignore_same_name: bool, by_name_only: bool) -> tuple[str | None, str | None]:
        same: str | None = None
        for entry, _, is_link in self.entries(where):
            if not is_link:
                continue
            link = f"{where}/{entry}"
            found_dest = False
            if not by_name_only:
                target = self._target(link)
                if target is None:
                    continue
                found_dest = os.path.basename(target) == name
            found_path = entry == name if by_name_only or not ignore_same_name else False
            if not found_path and by_name_only:
                found_dest = _template_of(entry) == name
            if found_path and found_dest and link == f"{config}/{name}":
                same = link
            elif (found_path or found_dest) and (not match_name or self._known_name(name, install, entry)):
                return link, None
        return None, same

    @staticmethod
    def _known_name(name: str, install: _Install, link_name: str) -> bool:
        """is_symlink_with_known_name(): the unit's own name, an Alias=, or its
        DefaultInstance= instance."""
        if link_name == name or link_name in install.alias:
            return True
        return install.default_instance is not None and link_name == _with_instance(name, f"x@{install.default_instance}.x")


def _unit_sections(ctx: FactContext, path: str) -> dict[str, list[tuple[str, str]]]:
    """The assignments of a unit file by section, as systemd's config parser reads them (a
    file it stops reading gives what came before; one it cannot read, nothing)."""
    try:
        text = ctx.read_text(path) or ""
    except EvaluationError:
        return {}
    sections: dict[str, list[tuple[str, str]]] = {}
    for a in config_parse(text, None)[0]:
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
    def __init__(self, ctx: FactContext, name: str, units: _UnitFiles) -> None:
        self._ctx = ctx
        found = units.lookup(unit_name(name))
        # an alias (sshd.service -> ssh.service) reports the state of the unit it names
        if found.state == "alias":
            self.alias_of: str | None = found.name
            found = units.lookup(found.name)
        else:
            self.alias_of = None
        self.name = found.name
        self._unit = found
        self.state = found.state
        self.masked = found.state in ("masked", "masked-runtime")
        self.exists = found.state != "not-found"
        self.path = found.path if found.state not in ("masked", "masked-runtime", "bad") else None
        # a SysV script is no unit file: its ExecStart= is made by systemd-sysv-generator at boot
        service = _unit_sections(ctx, self.path).get("Service", []) if self.path and not found.sysv else []
        self.exec_start = next((v for k, v in service if k == "ExecStart" and v), None)
        # what `systemctl is-enabled NAME | grep enabled` counts: links that start it at boot,
        # in /etc, or for this boot, in /run (state "enabled-runtime")
        self.enabled = self.state in ("enabled", "enabled-runtime")

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
        unit = self._unit
        if unit.state == "bad":
            return f"systemctl cannot read {unit.asked}: {unit.why}"
        if self.masked:
            assert unit.path is not None
            try:
                return f"{unit.path} -> {self._ctx.readlink(unit.path)}"
            except OSError:
                return f"{unit.path} (empty, or a device node: a mask)"
        if unit.sysv:
            how = f"start link {unit.link}" if unit.link else "no S??NAME start link in /etc/rcS.d or /etc/rc5.d"
            return f"{unit.path}: a SysV script, no unit file ({how}; systemd-sysv-install is-enabled)"
        if name in ("state", "enabled") and unit.link is not None:
            return unit.link
        if unit.state == "generated":
            return (f"{unit.path}: made by a systemd generator at boot, which also decides whether it starts "
                    "(its own .wants links); not enablement, and generators are not run under --root")
        if unit.path is None:
            return f"no unit file for {unit.asked} in the unit search path ({UNIT_PATH[4]}, {UNIT_PATH[10]}, ...)"
        return unit.path


MOUNT_UNIT = ObjectType(
    "mount_unit",
    {"name": STR, "source": STR, "options": ListType(STR), "at_boot": BOOL, "masked": BOOL},
    methods={"has_option": Method((STR,), BOOL, "whether `options` holds the option")},
    doc="the mount unit of a path as systemd 252 will mount it at the next boot: a unit file in the "
    "unit search path, else the unit systemd-fstab-generator makes of /etc/fstab; then its drop-ins",
    field_docs={
        "name": "the unit's name (`systemd-escape --path`, .mount)",
        "source": '"unit" (a unit file in /etc/systemd/system or /run/systemd/system, or one further down '
        'the search path with no fstab entry), "fstab" (the unit systemd-fstab-generator makes of the first '
        "/etc/fstab entry for the path), or null: no mount unit (a masked one is none either)",
        "options": "the Options= in force: the unit file's or the fstab entry's, then the last Options= of "
        "its `NAME.mount.d/*.conf` drop-ins (an empty one clears them)",
        "at_boot": "mounted at boot: an fstab entry without noauto (local-fs.target requires its unit), or a "
        "unit file that `systemctl is-enabled` does not call disabled, as the CIS audit reads it; never when masked",
        "masked": "the unit is masked: nothing is mounted there by systemd, fstab or not",
    },
)


def unit_name_escape(name: str) -> str:
    """systemd's unit_name_escape(): `/` becomes `-`, a leading `.` and every byte outside
    [0-9A-Za-z:_.] becomes `\\xHH`."""
    out = []
    for i, b in enumerate(name.encode("utf-8", "surrogateescape")):
        c = chr(b)
        if c == "/":
            out.append("-")
        elif (c == "." and i == 0) or c not in _UNIT_NAME_CHARS:
            out.append(f"\\x{b:02x}")
        else:
            out.append(c)
    return "".join(out)


_UNIT_NAME_CHARS = frozenset("0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ:_.")


def unit_path_name(path: str) -> str:
    """`systemd-escape --path PATH`: slashes trimmed and folded, then unit_name_escape(); `-`
    for /."""
    trimmed = "/".join(part for part in path.split("/") if part)
    return unit_name_escape(trimmed) if trimmed else "-"


def _mount_options(ctx: FactContext, path: str, options: str | None) -> str | None:
    """The Options= a unit file (or drop-in) leaves in force after `options`: its [Mount]
    assignments in order, the last one winning and an empty one clearing."""
    for key, value in _unit_sections(ctx, path).get("Mount", []):
        if key == "Options":
            options = value or None
    return options


class MountUnit:
    """What systemd will mount on a path at the next boot. systemd-fstab-generator makes a unit
    of the first /etc/fstab entry for the path (it refuses a second) in /run/systemd/generator,
    and makes local-fs.target require it unless the entry says noauto. A unit file in a
    directory before the generator's in the search path (/etc/systemd/system, /run/systemd/system)
    wins over that unit; one after it (/usr/lib/systemd/system) loses. A generated unit found
    on the host (from the last boot) is not taken as the configuration: the fstab entry is read
    again, as the next boot's generator will."""

    def __init__(self, ctx: FactContext, where: str) -> None:
        units: _UnitFiles = ctx.fact("_units", ())
        self.name = unit_path_name(where) + ".mount"
        found = units.lookup(self.name)
        if found.state == "bad":
            raise EvaluationError(f"systemctl cannot read {self.name}: {found.why}")
        self.masked = found.state in ("masked", "masked-runtime")
        want = where.rstrip("/") or "/"
        entry = next((m for m in ctx.fact("fstab", ()) if (m.target.rstrip("/") or "/") == want), None)
        native = units.native_file(self.name)
        before_generator = native is not None and UNIT_PATH.index(os.path.dirname(native)) < _GENERATOR_RANK
        self.source: str | None = None
        options: str | None = None
        self._where = f"no unit file for {self.name}, no /etc/fstab entry for {where}"
        if self.masked:
            self._where = f"{found.path} (masked)"
        elif native is not None and (entry is None or before_generator):
            self.source = "unit"
            options = _mount_options(ctx, native, None)
            self._where = native
        elif entry is not None:
            self.source = "fstab"
            options = ",".join(entry.options) or None
            self._where = entry.origin
        self.at_boot = not self.masked and (
            (entry is not None and "noauto" not in entry.options)
            or (native is not None and found.state != "disabled")  # the CIS audit: not masked or disabled
        )
        self._dropins: list[str] = []
        if self.source is not None:
            for f in units.dropins(self.name):
                before = options
                options = _mount_options(ctx, f, options)
                if options != before:
                    self._dropins.append(f)
        self.options = split_mount_options(options or "")

    def has_option(self, option: str) -> bool:
        return mount_flag(self.options, option)

    def describe(self) -> str:
        return f"mount unit {self.name!r}"

    def where(self, name: str, *args: Any) -> str | None:
        if name in ("options", "has_option") and self._dropins:
            return self._dropins[-1]
        return self._where


def collect_mount_unit(ctx: FactContext, where: str) -> MountUnit:
    return MountUnit(ctx, where)


def collect_services(ctx: FactContext) -> list[Service]:
    """Every .service unit of the search path, under its own name (aliases and templates
    left out)."""
    units: _UnitFiles = ctx.fact("_units", ())
    names = {
        n
        for d in UNIT_PATH
        for n, is_dir, _ in units.entries(d)
        if n.endswith(".service") and not is_dir and _name_kind(n) == "plain"
    }
    return [ctx.fact("service", (n,)) for n in sorted(names) if units.lookup(n).state != "alias"]


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
        "mount_unit",
        collect_mount_unit,
        params=(STR,),
        returns=MOUNT_UNIT,
        doc="what systemd mounts on a path at boot: a .mount unit file or the fstab entry, with drop-ins",
    )
    reg.register(
        "_units", _UnitFiles, returns=ANY, doc="internal: unit files and enablement links"
    )
    reg.register(
        "_running_units", lambda ctx: _Running(), returns=ANY, doc="internal: running units (live)"
    )
