"""Host configuration facts read from files: mounts and fstab, kernel modules, the bootloader,
os-release, firewall presence and ufw, AppArmor, time sync and the running kernel (nftables'
ruleset and rsyslog have modules of their own)."""

from __future__ import annotations

import os
import re
import shlex
import stat
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import ANY, BOOL, INT, MODE, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError, NotApplicable
from secpolicy.facts._common import (
    at,
    c_lines,
    config_parse_files,
    dropin_files,
    fnmatch_c,
    mount_flag,
    read_proc,
    require_proc,
    run_tool,
    sbin_tool,
    split_mount_options,
    systemd_conf_files,
    text_lines,
)
from secpolicy.facts.shell import CannotTell, source

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = [
    "APPARMOR",
    "AUDIT_STATUS_SOURCE",
    "FIREWALL",
    "GRUB",
    "KERNEL",
    "KMOD",
    "MOUNT",
    "TIMESYNC",
    "UFW",
    "audit_enabled_source",
    "register",
]

# --- mounts and fstab ------------------------------------------------------------------------------
MOUNT = ObjectType(
    "mount",
    {"target": STR, "source": STR, "fstype": STR, "options": ListType(STR)},
    methods={
        "has_option": Method(
            (STR,), BOOL, "whether an option is set (`nodev`, or `mode=1777` exactly)"
        ),
        "option": Method((STR,), STR, 'value of `name=value` ("true" for a bare flag), or null'),
    },
    doc="a mounted file system (/proc/self/mounts) or an fstab entry",
)


def _unescape(field: str) -> str:
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


@dataclass(frozen=True)
class Mount:
    target: str
    source: str
    fstype: str
    options: tuple[str, ...]
    origin: str

    def describe(self) -> str:
        return f"{self.target} ({self.fstype})" if self.fstype else self.target

    def has_option(self, opt: str) -> bool:
        """For nodev, nosuid and noexec, whether the mount gets the flag, as mount(8) applies
        the options (`nodev,dev` does not; `user` does); any other option as written."""
        return mount_flag(self.options, opt)

    def option(self, name: str) -> str | None:
        for o in self.options:
            key, sep, value = o.partition("=")
            if key == name:
                return value if sep else "true"
        return None

    def where(self, name: str, *args: Any) -> str | None:
        return self.origin


_BLANKS = re.compile(r"[ \t]+")
_C_BLANKS = re.compile(r"[ \t\n\v\f\r]+")  # isspace() in the C locale
# systemd's config parser strips WHITESPACE (" \t\n\r") around keys and values


def _mount_table(ctx: FactContext, path: str) -> list[Mount]:
    """fstab or /proc/self/mounts as libmount reads them (`findmnt --fstab -F`): lines end at
    `\n` only (a `\r` before it goes), leading blanks go, `#` starts a comment line, fields
    are separated by spaces and tabs only; a line with a NUL, or under three fields, is a
    parse error and ignored (a missing options field reads as no options)."""
    text = ctx.read_text(path) if not path.startswith("/proc/") else read_proc(ctx, path)
    out = []
    for n, raw in enumerate(text_lines(text or ""), 1):
        line = raw.removesuffix("\r").lstrip(" \t")
        if not line or line.startswith("#") or "\0" in line:
            continue
        parts = _BLANKS.split(line.rstrip(" \t"))
        if len(parts) < 3:
            continue
        # every field is unescaped (\040 ...), the options before they are split at commas, as
        # libmount unmangles the field and then parses the option string
        opts = split_mount_options(_unescape(parts[3])) if len(parts) > 3 else ()
        out.append(Mount(_unescape(parts[1]), _unescape(parts[0]), _unescape(parts[2]), opts, at(path, n)))
    return out


def collect_mounts(ctx: FactContext) -> list[Mount]:
    require_proc(ctx, "/proc/self/mounts", "mounts")
    return _mount_table(ctx, "/proc/self/mounts")


def collect_mount(ctx: FactContext, target: str) -> Mount | None:
    hits = [
        m for m in ctx.fact("mounts", ()) if m.target == target.rstrip("/") or m.target == target
    ]
    return hits[-1] if hits else None  # the last mount on a path hides the earlier ones


def collect_fstab(ctx: FactContext) -> list[Mount]:
    return _mount_table(ctx, "/etc/fstab")


def collect_fstab_entry(ctx: FactContext, target: str) -> Mount | None:
    want = target.rstrip("/") or "/"
    hits = [m for m in ctx.fact("fstab", ()) if (m.target.rstrip("/") or "/") == want]
    # the first: systemd-fstab-generator makes the unit of the first entry and refuses a
    # second ("Duplicate entry in /etc/fstab?"); mount(8) looks fstab up from the top
    return hits[0] if hits else None


def collect_mount_at_boot(ctx: FactContext, target: str) -> Mount | None:
    """What systemd mounts on `target` at the next boot (`mount_unit`) as a Mount, its options
    the Options= in force (so has_option() reads them as mount(8) applies them); None where
    no mount unit is made for the path."""
    unit = ctx.fact("mount_unit", (target,))
    if unit.source is None:
        return None
    entry = ctx.fact("fstab_entry", (target,)) if unit.source == "fstab" else None
    return Mount(
        target.rstrip("/") or "/",
        entry.source if entry is not None else unit.name,
        entry.fstype if entry is not None else "",
        split_mount_options(",".join(unit.options)),  # mount_unit splits at every comma, quotes or not
        unit.where("options") or "",
    )


# --- kernel modules ---------------------------------------------------------------------------------
KMOD = ObjectType(
    "kmod",
    {
        "name": STR,
        "loaded": BOOL,
        "builtin": BOOL,
        "blacklisted": BOOL,
        "disabled": BOOL,
        "install": STR,
        "available": BOOL,
    },
    doc="a kernel module: loaded (live /proc/modules), modprobe.d blacklist/install, on disk",
    field_docs={
        "disabled": "an `install NAME /bin/false` (or /bin/true) line keeps modprobe from loading it",
        "install": "the command modprobe runs instead of loading it: the first modprobe.d `install` line "
        "whose name (a shell pattern, as `cram*`) matches it; or null",
        "loaded": "listed in /proc/modules (null under --root without proc/modules)",
    },
)

# where libkmod 30 (Debian 12) reads modprobe.d files, in order of precedence; not
# /usr/lib/modprobe.d (the same directory on a merged-/usr system, unread on another)
MODPROBE_DIRS = (
    "/etc/modprobe.d",
    "/run/modprobe.d",
    "/usr/local/lib/modprobe.d",
    "/lib/modprobe.d",
)
_FALSE = {"/bin/false", "/usr/bin/false", "/bin/true", "/usr/bin/true", "false", "true"}


def _modname(name: str) -> str:
    return name.replace("-", "_")


def _config_modname(name: str) -> str | None:
    """libkmod's underscores() on a module name of modprobe.d: `-` becomes `_` outside `[...]`
    (a pattern's brackets are kept); None for a name it refuses (a `]` alone, a `[` unclosed)."""
    out = []
    i = 0
    while i < len(name):
        ch = name[i]
        if ch == "]":
            return None
        if ch == "[":
            end = name.find("]", i)
            if end < 0:
                return None
            out.append(name[i : end + 1])
            i = end + 1
            continue
        out.append("_" if ch == "-" else ch)
        i += 1
    return "".join(out)


@dataclass(frozen=True)
class _Modprobe:
    blacklist: dict[str, str]
    # (module name or shell pattern, command, where) in the order libkmod reads them; the
    # first one whose pattern matches a module is the command modprobe runs for it
    install: tuple[tuple[str, str, str], ...]

    def install_for(self, modname: str) -> tuple[str, str] | None:
        return next(((cmd, where) for pattern, cmd, where in self.install if fnmatch_c(pattern, modname)), None)


def _modprobe(ctx: FactContext) -> _Modprobe:
    blacklist: dict[str, str] = {}
    install: list[tuple[str, str, str]] = []
    for path in dropin_files(ctx, MODPROBE_DIRS, ".conf"):
        for n, line in _kmod_lines(ctx.read_text(path) or ""):
            if not line or line[0] == "#":
                continue
            cmd, rest = _strtok(line)
            name, command = _strtok(rest)
            modname = _config_modname(name) if name else None
            if modname is None:
                continue
            if cmd == "blacklist":
                blacklist.setdefault(modname, at(path, n))  # an exact name: blacklist takes no patterns
            elif cmd == "install" and command:
                install.append((modname, command.strip(" \t"), at(path, n)))
    return _Modprobe(blacklist, tuple(install))


def _kmod_lines(text: str) -> list[tuple[int, str]]:
    """(first line number, logical line) as libkmod's getline_wrapped() reads modprobe.d: only
    `\n` ends a line, a backslash before it joins the next line (with nothing between), a
    backslash before any other character is dropped, and a NUL ends the C string."""
    out = []
    n = start = 1
    buf: list[str] = []
    i, size = 0, len(text)
    while i < size:
        ch = text[i]
        i += 1
        if ch == "\n":
            out.append((start, "".join(buf).split("\0", 1)[0]))
            buf = []
            n += 1
            start = n
        elif ch == "\\" and i < size:
            if text[i] == "\n":
                n += 1
            else:
                buf.append(text[i])
            i += 1
        else:
            buf.append(ch)
    if buf:
        out.append((start, "".join(buf).split("\0", 1)[0]))
    return out


def _strtok(text: str) -> tuple[str, str]:
    """strtok_r(text, "\\t "): the first word and the rest after the one separator ending it."""
    text = text.lstrip(" \t")
    m = re.search(r"[ \t]", text)
    return (text, "") if m is None else (text[: m.start()], text[m.end() :])


def _module_files(ctx: FactContext) -> dict[str, str]:
    out: dict[str, str] = {}
    for kdir in ctx.glob("/lib/modules/*"):
        for table in ("modules.dep", "modules.builtin"):
            for line in text_lines(ctx.read_text(f"{kdir}/{table}") or ""):  # depmod ends lines at \n only
                rel = line.split(":", 1)[0].strip()
                if not rel:
                    continue
                base = os.path.basename(rel).split(".ko", 1)[0]
                out.setdefault(
                    _modname(base),
                    f"{kdir}/{table}" if table == "modules.builtin" else f"{kdir}/{rel}",
                )
    return out


def _loaded_modules(ctx: FactContext) -> set[str] | None:
    if not ctx.live and not ctx.exists("/proc/modules"):
        return None
    return {
        _modname(line.split()[0])
        for line in text_lines(read_proc(ctx, "/proc/modules") or "")
        if line.split()
    }


@dataclass(frozen=True)
class Kmod:
    name: str
    loaded: bool | None
    builtin: bool
    blacklisted: bool
    disabled: bool
    install: str | None
    available: bool
    _sources: tuple[tuple[str, str], ...]

    def describe(self) -> str:
        return f"kmod({self.name!r})"

    def where(self, name: str, *args: Any) -> str | None:
        return dict(self._sources).get(name)


def collect_kmod(ctx: FactContext, name: str) -> Kmod:
    key = _modname(name)
    mp: _Modprobe = ctx.fact("_modprobe", ())
    files: dict[str, str] = ctx.fact("_module_files", ())
    loaded: set[str] | None = ctx.fact("_loaded_modules", ())
    inst = mp.install_for(key)
    where_file = files.get(key)
    builtin = bool(where_file and where_file.endswith("modules.builtin"))
    sources = {
        "loaded": "/proc/modules"
        if loaded is not None
        else "not known under --root (no proc/modules)",
        "blacklisted": mp.blacklist.get(key, f"no `blacklist {name}` in modprobe.d"),
        "disabled": inst[1] if inst else f"no `install {name}` in modprobe.d",
        "install": inst[1] if inst else f"no `install {name}` in modprobe.d",
        "available": where_file or f"no {name}.ko under /lib/modules",
        "builtin": where_file or f"no {name} under /lib/modules",
    }
    return Kmod(
        name=name,
        loaded=None if loaded is None else key in loaded,
        builtin=builtin,
        blacklisted=key in mp.blacklist,
        # the command runs through sh, which splits words at blanks
        disabled=inst is not None and _BLANKS.split(inst[0])[0] in _FALSE,
        install=inst[0] if inst else None,
        available=where_file is not None,
        _sources=tuple(sources.items()),
    )


# --- bootloader ---------------------------------------------------------------------------------------
GRUB = ObjectType(
    "grub",
    {
        "exists": BOOL,
        "cfg_path": STR,
        "password_set": BOOL,
        "superusers": STR,
        "cmdline": STR,
        "cfg_mode": MODE,
        "cfg_uid": INT,
        "cfg_gid": INT,
    },
    methods={
        "has_arg": Method(
            (STR,),
            BOOL,
            "every kernel line of grub.cfg has the argument (or, with no grub.cfg, etc/default/grub); "
            "for `name=value`, the value the kernel takes: the last one given (`audit=1 audit=0` is 0)",
        ),
        "arg": Method(
            (STR,), STR, "the value the kernel takes for an argument (the last one given on a line; \"\" for "
            "a bare one) when every kernel line of grub.cfg gives the same (or, with no grub.cfg, "
            "etc/default/grub's); null when a line lacks it or lines differ (`audit_backlog_limit`)"
        ),
    },
    doc="GRUB: generated grub.cfg (what GRUB reads at boot: the password, kernel lines), etc/default/grub",
)

# $GRUB_CMDLINE_LINUX or ${GRUB_CMDLINE_LINUX_DEFAULT} in a value: the value assigned before
_GRUB_VAR = re.compile(r"\$(\{)?(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)(?(1)\})(?![A-Za-z0-9_])")
_GRUB_PBKDF2 = re.compile(r"password_pbkdf2[ \t]+[^ \t]+[ \t]+grub\.pbkdf2\.")
GRUB_CFGS = ("/boot/grub/grub.cfg", "/boot/grub2/grub.cfg", "/boot/efi/EFI/debian/grub.cfg")


_GRUB_OPEN = {"if": "if", "while": "loop", "until": "loop", "for": "loop"}
_GRUB_CLOSE = {"fi": "if", "done": "loop"}


def _grub_statements(text: str) -> Iterator[tuple[int, list[str]]]:
    """grub.cfg's commands, each with its line, as grub's lexer splits them: at `;` and at the
    end of a line, words quoted and escaped as in sh, `#` starting a comment."""
    for n, raw in enumerate(text_lines(text), 1):
        lex = shlex.shlex(raw, posix=True, punctuation_chars=";")
        lex.whitespace_split = True
        try:
            tokens = list(lex)
        except ValueError:  # a quote left open: a string that goes on over lines
            tokens = raw.split()
        words: list[str] = []
        for t in [*tokens, ";"]:
            if t.strip(";"):
                words.append(t)
            elif words:
                yield n, words
                words = []


def _grub_superusers(text: str, path: str) -> tuple[str | None, str | None, str | None]:
    """What `superusers` holds once grub.cfg has run top to bottom, where that was set, and a
    note on an assignment that does not settle it. GRUB (normal/auth.c, is_authenticated) asks
    for no password while the variable is unset; set, even to "", it asks, and only a user it
    lists gets in. The last assignment at the top level wins. One in an if/while/until/for
    body runs only when the condition holds: a set there does not protect, an unset there may
    undo an earlier set. A menuentry or submenu body runs in its own scope when chosen, a
    function body only when called: an assignment there is named, never counted."""
    value: str | None = None
    where: str | None = None
    note: str | None = None
    stack: list[str] = []
    for n, words in _grub_statements(text):
        while words and words[0] in ("then", "do", "else", "elif"):
            words = words[1:]
        if not words:
            continue
        head = words[0]
        if head in _GRUB_CLOSE:
            if stack and stack[-1] == _GRUB_CLOSE[head]:
                stack.pop()
            continue
        if head == "}":
            if stack and stack[-1] in ("entry", "function"):
                stack.pop()
            continue
        if head in _GRUB_OPEN:
            stack.append(_GRUB_OPEN[head])
            continue
        if head in ("menuentry", "submenu", "function") and words[-1] == "{":
            stack.append("function" if head == "function" else "entry")
            continue
        if head == "set" and len(words) > 1 and words[1].startswith("superusers="):
            new: str | None = words[1].partition("=")[2]
        elif head.startswith("superusers=") and len(words) == 1:
            new = head.partition("=")[2]
        elif head == "unset" and "superusers" in words[1:]:
            new = None
        else:
            continue
        line = at(path, n)
        verb = "unsets superusers" if new is None else "sets superusers"
        if "entry" in stack or "function" in stack:
            body = "a function body, which runs when it is called" if "function" in stack else \
                "a menuentry or submenu body, which runs in its own scope when it is chosen"
            note = f"{line} {verb} only inside {body}"
        elif stack:
            if new is None and value is not None:
                value, where = None, None
                note = f"{line} unsets superusers inside a conditional block: the menu is protected only when " \
                       "its condition fails, which cannot be told before boot"
            elif new is not None and value is None:
                note = f"{line} sets superusers only inside a conditional block, which runs only when its " \
                       "condition holds"
        else:
            value, where = new, (None if new is None else line)
            note = f"{line} unsets superusers" if new is None else None
    return value, where, note


class Grub:
    def __init__(self, ctx: FactContext) -> None:
        self.cfg_path = next((p for p in GRUB_CFGS if ctx.stat(p) is not None), GRUB_CFGS[0])
        st = ctx.stat(self.cfg_path)
        self.exists = st is not None
        self.cfg_mode = None if st is None else st.st_mode & 0o7777
        self.cfg_uid = None if st is None else st.st_uid
        self.cfg_gid = None if st is None else st.st_gid
        cfg = ctx.read_text(self.cfg_path) if st is not None else None
        self._linux: list[tuple[list[str], str]] = []
        password: str | None = None
        # The password is what GRUB reads at boot, grub.cfg, as the CIS audit greps it. A line
        # in /etc/grub.d takes effect only once update-grub has written it there: it is noted.
        self._pending: str | None = None
        text = (cfg or "").replace("\r", "")  # grub_file_getline() drops every \r
        # grub's lexer ends lines at \n only; its blanks are space and tab
        for n, raw in enumerate(text_lines(text), 1):
            line = raw.strip(" \t")
            # what the CIS audit asks for: a PBKDF2 hash, not a password in clear text
            if _GRUB_PBKDF2.match(line) and password is None:
                password = at(self.cfg_path, n)
            if re.match(r"linux(efi|16)?[ \t]", line):
                self._linux.append((_BLANKS.split(line)[2:], at(self.cfg_path, n)))
        for path in ctx.glob("/etc/grub.d/*"):
            for n, raw in enumerate(text_lines(ctx.read_text(path) or ""), 1):
                if re.match(r"set[ \t]+superusers=", raw.strip(" \t")):
                    self._pending = self._pending or at(path, n)
                    break
        superusers, self._superusers_where, self._superusers_note = _grub_superusers(text, self.cfg_path)
        self.superusers = superusers
        self.password_set = superusers is not None and password is not None
        self._password_where = " and ".join(w for w in (self._superusers_where, password) if w)
        self._default, self._default_where = self._read_default(ctx)
        self.cmdline = " ".join(self._default)

    @staticmethod
    def _read_default(ctx: FactContext) -> tuple[list[str], str]:
        values = {"GRUB_CMDLINE_LINUX": "", "GRUB_CMDLINE_LINUX_DEFAULT": ""}
        where = "/etc/default/grub"
        files = ["/etc/default/grub"] + sorted(ctx.glob("/etc/default/grub.d/*.cfg"))
        for path in files:
            # sourced by sh: lines end at \n only
            for n, raw in enumerate(text_lines(ctx.read_text(path) or ""), 1):
                m = re.match(r"[ \t]*(GRUB_CMDLINE_LINUX(?:_DEFAULT)?)=(.*)$", raw)
                if m:
                    try:
                        words = shlex.split(m.group(2), comments=True)
                    except ValueError:
                        words = [m.group(2)]
                    values[m.group(1)] = _GRUB_VAR.sub(lambda v: values[v.group(2)], " ".join(words))
                    if m.group(1) == "GRUB_CMDLINE_LINUX":
                        where = at(path, n)
        return (
            values["GRUB_CMDLINE_LINUX"] + " " + values["GRUB_CMDLINE_LINUX_DEFAULT"]
        ).split(), where

    def describe(self) -> str:
        return "grub"

    @staticmethod
    def _value(words: list[str], name: str) -> str | None:
        """The value the kernel takes for `name` on one command line: each occurrence calls its
        handler again, so the last one given counts ("" for a bare `name`). Words after `--`
        are init's, and `-` and `_` are the same in a parameter's name."""
        values = _kernel_values(words, name)
        return values[-1] if values else None

    @classmethod
    def _has(cls, words: list[str], arg: str) -> bool:
        name, sep, value = arg.partition("=")
        found = cls._value(words, name)
        return found is not None and (not sep or found == value)

    def kernel_lines(self) -> list[tuple[list[str], str]]:
        """The kernel command lines booted, each with where it is: grub.cfg's, or with no
        grub.cfg, the one /etc/default/grub makes."""
        return self._linux or [(self._default, self._default_where)]

    def has_arg(self, arg: str) -> bool:
        return all(self._has(words, arg) for words, _ in self.kernel_lines())

    def arg(self, name: str) -> str | None:
        values = {self._value(words, name) for words, _ in self.kernel_lines()}
        return values.pop() if len(values) == 1 else None

    def where(self, name: str, *args: Any) -> str | None:
        if name in ("has_arg", "arg") and args:
            lines = self.kernel_lines()
            if name == "has_arg":
                odd = [w for words, w in lines if not self._has(words, str(args[0]))]
            else:
                values = [self._value(words, str(args[0])) for words, _ in lines]
                odd = [w for (_, w), v in zip(lines, values, strict=True) if v is None or v != values[0]]
            return odd[0] if odd else lines[0][1]
        if name == "cmdline":
            return self._default_where
        if name in ("password_set", "superusers"):
            if self.password_set:
                return self._password_where
            note = f"; {self._superusers_note}" if self._superusers_note else ""
            pending = (f"; {self._pending} sets superusers, which takes effect once update-grub writes it there"
                       if self._pending else "")
            return f"{self._password_where or self.cfg_path} (no superusers and password both set){note}{pending}"
        return self.cfg_path


# --- os-release ---------------------------------------------------------------------------------------
OS_RELEASE = ObjectType(
    "os_release",
    {"id": STR, "path": STR},
    doc="the operating system's identification: /etc/os-release, or /usr/lib/os-release where it is absent",
    field_docs={
        "id": "ID=, as sh reads the file (`ID=\"kali\"` is kali); null where the file or the line is missing",
        "path": "the file read",
    },
)
OS_RELEASE_FILES = ("/etc/os-release", "/usr/lib/os-release")  # os-release(5): the first that exists


class OsRelease:
    """The distribution's ID, which the CIS banner audits grep for (with the getty escapes)."""

    def __init__(self, ctx: FactContext) -> None:
        self.path = next((p for p in OS_RELEASE_FILES if ctx.stat(p) is not None), OS_RELEASE_FILES[0])
        text = ctx.read_text(self.path)
        env: dict[str, str] = {}
        if text is not None:
            try:
                source(text, self.path, env, {})
            except CannotTell as e:
                raise EvaluationError(f"{self.path} cannot be read as the sh-compatible file os-release(5) "
                                      f"says it is: {e}") from None
        self.id = env.get("ID") or None

    def describe(self) -> str:
        return "os_release"

    def where(self, name: str, *args: Any) -> str:
        return self.path


# --- firewall -----------------------------------------------------------------------------------------
FIREWALL = ObjectType(
    "firewall",
    {
        "nftables_installed": BOOL,
        "ufw_installed": BOOL,
        "iptables_installed": BOOL,
        "ufw_enabled": BOOL,
        "nftables_enabled": BOOL,
        "iptables_persistent": BOOL,
        "active": STR,
        "count_active": INT,
    },
    doc="which host firewall is installed and enabled at boot (ufw, nftables, iptables)",
    field_docs={
        "active": '"ufw", "nftables", "iptables" or "none": the first enabled in that order',
        "count_active": "how many of them are enabled (CIS: exactly one)",
    },
)


class Firewall:
    def __init__(self, ctx: FactContext) -> None:
        pkg = lambda n: ctx.fact("package", (n,))
        svc = lambda n: ctx.fact("service", (n,))
        self.nftables_installed = pkg("nftables").installed
        self.ufw_installed = pkg("ufw").installed
        self.iptables_installed = pkg("iptables").installed
        self.ufw_enabled = False
        self._ufw_where = "/var/lib/dpkg/status (ufw not installed)"
        if self.ufw_installed:
            ufw = ctx.fact("ufw", ())
            self.ufw_enabled = ufw.enabled
            self._ufw_where = ufw.where("enabled")
        self.nftables_enabled = bool(self.nftables_installed and svc("nftables").enabled)
        self.iptables_persistent = bool(
            pkg("iptables-persistent").installed and svc("netfilter-persistent").enabled
        )
        enabled = [
            n
            for n, on in (
                ("ufw", self.ufw_enabled),
                ("nftables", self.nftables_enabled),
                ("iptables", self.iptables_persistent),
            )
            if on
        ]
        self.active = enabled[0] if enabled else "none"
        self.count_active = len(enabled)

    def describe(self) -> str:
        return "firewall"

    def where(self, name: str, *args: Any) -> str | None:
        if name == "ufw_enabled":
            return self._ufw_where
        if name.endswith("_installed"):
            return "/var/lib/dpkg/status"
        return "/etc/ufw/ufw.conf, /etc/systemd/system/*.wants, /var/lib/dpkg/status"


# --- ufw ------------------------------------------------------------------------------------------------
UFW = ObjectType(
    "ufw",
    {
        "enabled": BOOL,
        "default_input": STR,
        "default_output": STR,
        "default_forward": STR,
        "sysctl_file": STR,
        "ipv6": BOOL,
    },
    doc="ufw's boot configuration as ufw-init (ufw 0.36.2, run by ufw.service) reads it: it sources "
    "/etc/ufw/ufw.conf, then /etc/default/ufw and ufw.conf again, with /bin/sh",
    field_docs={
        "enabled": "ufw-init starts the firewall: ENABLED is yes or YES once it has sourced the files, "
        "and both files exist and are not empty (ufw.service's own enablement is service(\"ufw.service\"))",
        "default_input": "the policy of INPUT ufw-init applies: ACCEPT, DROP or REJECT "
        "(DEFAULT_INPUT_POLICY; REJECT is its own rule at the end of the chain); when one of the three "
        "is none of these, iptables-restore refuses the policies and the other chains keep ACCEPT",
        "default_output": "as default_input, for OUTPUT (DEFAULT_OUTPUT_POLICY)",
        "default_forward": "as default_input, for FORWARD (DEFAULT_FORWARD_POLICY)",
        "sysctl_file": "the file ufw-init applies with `sysctl -p` when it starts the firewall (IPT_SYSCTL, "
        "when it names a file that is not empty), or null",
        "ipv6": "ufw-init loads the IPv6 rules (before6.rules, user6.rules, after6.rules) with ip6tables: IPV6 "
        "is yes or YES once it has sourced the files; with anything else IPv6 traffic is not filtered by ufw",
    },
)
UFW_CONF = "/etc/ufw/ufw.conf"
UFW_DEFAULTS = "/etc/default/ufw"
_UFW_POLICIES = ("ACCEPT", "DROP", "REJECT")
_UFW_CHAINS = (("default_input", "INPUT"), ("default_output", "OUTPUT"), ("default_forward", "FORWARD"))
_SPLIT_OR_GLOB = " \t\n*?["  # what sh splits or globs in a variable ufw-init passes on unquoted


class Ufw:
    """What ufw-init does at boot with its configuration: it sources ufw.conf (and stops there
    when ENABLED is "no"), then, from ufw-init-functions, /etc/default/ufw and ufw.conf again
    (each must exist and not be empty, else it aborts); ufw_start() starts the firewall when
    ENABLED is yes or YES. The files are read as sh reads them (facts/shell.py); where only
    running them could tell, the fact is an error naming the line."""

    def __init__(self, ctx: FactContext) -> None:
        # ufw-init sets these before it sources anything; ufw-init-functions sets PATH and
        # loops over the two files in `s`
        self._env = {"rootdir": "", "datadir": "", "DATA_DIR": ""}
        self._origin: dict[str, str] = {}
        self._read = False  # both passes read: the policies are known
        self._error: EvaluationError | None = None  # why the second pass could not be read
        self._unread = ""  # which file ufw-init cannot source, when one
        self._sysctl: str | EvaluationError | None = None
        self.enabled = False
        self.ipv6 = False
        conf = ctx.read_text(UFW_CONF)
        if conf is None:
            self._enabled_where = self._unread = f"{UFW_CONF} (absent: ufw-init stops at sourcing it)"
            return
        self._source(conf, UFW_CONF)
        stopped = self._env.get("ENABLED") == "no"
        self._enabled_where = self._origin.get("ENABLED", UFW_CONF)
        if stopped:
            self._enabled_where += " (ENABLED=no: ufw-init stops before starting the firewall)"
        self._env["PATH"] = "/sbin:/bin:/usr/sbin:/usr/bin"
        for path in (UFW_DEFAULTS, UFW_CONF):
            text = ctx.read_text(path)
            if not text:
                self._unread = f"{path} ({'absent' if text is None else 'empty'}: ufw-init aborts)"
                if not stopped:
                    self._enabled_where = self._unread
                return
            self._env["s"] = path
            try:
                self._source(text, path)
            except EvaluationError as exc:
                if not stopped:
                    raise
                self._error = exc  # ufw-init never reads it; the policies are what cannot be told
                return
        self._read = True
        self._sysctl = self._sysctl_file(ctx)
        self.ipv6 = self._env.get("IPV6") in ("yes", "YES")  # ufw-init-functions' own test
        if not stopped:
            self.enabled = self._env.get("ENABLED") in ("yes", "YES")
            self._enabled_where = self._origin.get("ENABLED", f"{UFW_CONF} (ENABLED not set)")

    def _source(self, text: str, path: str) -> None:
        try:
            source(text, path, self._env, self._origin)
        except CannotTell as exc:
            raise EvaluationError(f"{exc.where}: cannot tell what ufw-init makes of it: {exc.why}") from None

    def _values(self) -> tuple[str | None, ...]:
        return tuple(self._env.get(f"DEFAULT_{chain}_POLICY") for _, chain in _UFW_CHAINS)

    def _policy(self, field: str) -> str | None:
        if self._error is not None:
            raise self._error
        if not self._read:
            return None
        values = self._values()
        for v, (_, chain) in zip(values, _UFW_CHAINS, strict=True):
            if v is not None and any(c in v for c in _SPLIT_OR_GLOB):
                where = self._origin[f"DEFAULT_{chain}_POLICY"]
                raise EvaluationError(
                    f"{where}: cannot tell what ufw-init applies: DEFAULT_{chain}_POLICY={v!r} is split "
                    "or globbed by the shell where ufw-init passes it to iptables-restore unquoted")
        value = self._env.get(f"DEFAULT_{dict(_UFW_CHAINS)[field]}_POLICY")
        if value == "REJECT":
            return value  # ufw-init adds the chain's reject rule on its own, whatever the others
        if not all(v in _UFW_POLICIES for v in values):
            return "ACCEPT"  # iptables-restore refuses the three policy lines: the chains keep ACCEPT
        return value

    @property
    def default_input(self) -> str | None:
        return self._policy("default_input")

    @property
    def default_output(self) -> str | None:
        return self._policy("default_output")

    @property
    def default_forward(self) -> str | None:
        return self._policy("default_forward")

    def _sysctl_file(self, ctx: FactContext) -> str | EvaluationError | None:
        """IPT_SYSCTL, which ufw-init applies with `sysctl -p $IPT_SYSCTL` when `[ -s ]` finds
        it a file that is not empty (a relative path from ufw-init's working directory, / under
        systemd)."""
        value = self._env.get("IPT_SYSCTL", "")
        if not value:
            return None
        path = value if value.startswith("/") else "/" + value
        st = ctx.stat(path)
        if st is None or st.st_size == 0:
            return None
        if any(c in value for c in _SPLIT_OR_GLOB):
            return EvaluationError(
                f"{self._origin['IPT_SYSCTL']}: cannot tell what ufw-init applies: IPT_SYSCTL={value!r} is split "
                "or globbed by the shell where ufw-init passes it to sysctl -p unquoted")
        return path

    @property
    def sysctl_file(self) -> str | None:
        if self._error is not None:
            raise self._error
        if isinstance(self._sysctl, EvaluationError):
            raise self._sysctl
        return self._sysctl

    def describe(self) -> str:
        return "ufw"

    def where(self, name: str, *args: Any) -> str | None:
        if name == "enabled":
            return self._enabled_where
        if not self._read:
            return self._unread
        if name == "sysctl_file":
            return self._origin.get("IPT_SYSCTL", f"{UFW_DEFAULTS} (IPT_SYSCTL not set)")
        if name == "ipv6":
            return self._origin.get("IPV6", f"{UFW_DEFAULTS} (IPV6 not set)")
        chain = dict(_UFW_CHAINS).get(name)
        if chain is None:
            return f"{UFW_DEFAULTS}, {UFW_CONF}"
        values = self._values()
        if self._env.get(f"DEFAULT_{chain}_POLICY") != "REJECT" and not all(v in _UFW_POLICIES for v in values):
            odd = next(c for v, (_, c) in zip(values, _UFW_CHAINS, strict=True) if v not in _UFW_POLICIES)
            shown = self._origin.get(f"DEFAULT_{odd}_POLICY", f"{UFW_DEFAULTS} (DEFAULT_{odd}_POLICY not set)")
            return f"{shown} (not ACCEPT, DROP or REJECT: iptables-restore refuses the policies, the chains keep ACCEPT)"
        return self._origin[f"DEFAULT_{chain}_POLICY"]


# --- AppArmor -----------------------------------------------------------------------------------------
APPARMOR = ObjectType(
    "apparmor",
    {
        "enabled": BOOL,
        "bootloader_enabled": BOOL,
        "profiles_loaded": INT,
        "profiles_enforce": INT,
        "profiles_complain": INT,
        "profiles_defined": INT,
        "unconfined": ListType(STR),
    },
    doc="AppArmor: kernel state (sys/module, securityfs), boot parameters, profiles on disk",
    field_docs={
        "enabled": "sys/module/apparmor/parameters/enabled is Y (null under --root without sys/)",
        "bootloader_enabled": "every grub.cfg kernel line enables AppArmor by its parameters as the kernel reads "
        "them: the last apparmor= a non-zero number (kstrtoul), and AppArmor in the last lsm= list, or without "
        "lsm= (which supersedes it) the last security= is apparmor",
        "unconfined": "processes running unconfined although a profile exists for their executable (live only: NOT_APPLICABLE under --root)",
        "profiles_defined": "profile files in etc/apparmor.d (top level)",
        "profiles_loaded": "profiles in the kernel: live, or a root carrying sys/kernel/security/apparmor/profiles; else NOT_APPLICABLE",
    },
)


class AppArmor:
    def __init__(self, ctx: FactContext) -> None:
        self._ctx = ctx
        enabled_path = "/sys/module/apparmor/parameters/enabled"
        if ctx.live or ctx.exists("/sys"):
            flag = read_proc(ctx, enabled_path)
            self.enabled: bool | None = flag is not None and flag.strip().upper().startswith("Y")
        else:
            self.enabled = None
        grub: Grub = ctx.fact("grub", ())
        # every kernel line grub.cfg boots (or, without one, the line /etc/default/grub makes)
        self._boot_refusal = next(
            (f"{where}: {why}" for words, where in grub.kernel_lines() if (why := apparmor_boot_refusal(words))), None
        )
        self.bootloader_enabled = self._boot_refusal is None
        self.profiles_defined = sum(
            1
            for p in ctx.glob("/etc/apparmor.d/*")
            if (st := ctx.stat(p)) is not None and not stat.S_ISDIR(st.st_mode)
        )
        self._profiles = self._loaded()

    def _loaded(self) -> dict[str, str] | None:
        path = "/sys/kernel/security/apparmor/profiles"
        if not (self._ctx.live or self._ctx.exists(path)):
            return None
        text = read_proc(self._ctx, path)
        if text is None:
            return {} if self.enabled is False else None
        out = {}
        for line in text_lines(text):
            m = re.match(r"(.+) \((\w+)\)$", line.strip())
            if m:
                out[m.group(1)] = m.group(2)
        return out

    def _count(self, mode: str | None) -> int:
        if self._profiles is None:
            if not self._ctx.live:
                raise NotApplicable(
                    f"apparmor profiles: only known on the live host (no sys/kernel/security/apparmor under --root {self._ctx.root})"
                )
            raise EvaluationError(
                "apparmor profiles: /sys/kernel/security/apparmor/profiles is not readable (securityfs not mounted?)"
            )
        return sum(1 for m in self._profiles.values() if mode is None or m == mode)

    @property
    def profiles_loaded(self) -> int:
        return self._count(None)

    @property
    def profiles_enforce(self) -> int:
        return self._count("enforce")

    @property
    def profiles_complain(self) -> int:
        return self._count("complain")

    @property
    def unconfined(self) -> tuple[str, ...]:
        self._ctx.require_live("apparmor.unconfined")
        names = set(self._profiles or {})
        out = []
        for pid in os.listdir("/proc"):
            if not pid.isdigit():
                continue
            try:
                with open(f"/proc/{pid}/attr/current") as f:
                    label = f.read().strip()
                exe = os.readlink(f"/proc/{pid}/exe")
            except OSError:
                continue
            if label == "unconfined" and exe in names:
                out.append(f"{pid} {exe}")
        return tuple(sorted(out))

    def describe(self) -> str:
        return "apparmor"

    def where(self, name: str, *args: Any) -> str | None:
        if name == "enabled":
            return "/sys/module/apparmor/parameters/enabled"
        if name == "bootloader_enabled":
            return self._boot_refusal or self._ctx.fact("grub", ()).where("has_arg", "apparmor")
        if name == "profiles_defined":
            return "/etc/apparmor.d"
        return "/sys/kernel/security/apparmor/profiles"


# --- time synchronisation -------------------------------------------------------------------------------
CHRONY_CONF = "/etc/chrony/chrony.conf"  # what Debian's chronyd reads (not /etc/chrony.conf)
_CHRONY_SOURCES = ("server", "pool", "peer")


def _chrony_file(ctx: FactContext, path: str, out: list[tuple[str, str]], depth: int, sources: bool = False) -> None:
    """The server, pool and peer names of a chrony configuration file as chronyd reads it: a
    line whose first non-blank is `!`, `;`, `#` or `%` is a comment (anywhere else they are
    words); directive names in any case; `include` globs, `confdir` (*.conf) and `sourcedir`
    (*.sources, holding sources only) followed where they are named, not otherwise."""
    if depth > 10:
        raise EvaluationError(f"{path}: chrony includes nested too deep")
    for n, raw in enumerate(c_lines(ctx.read_text(path) or ""), 1):
        words = [w for w in _C_BLANKS.split(raw) if w]
        if len(words) < 2 or words[0][0] in "!;#%":
            continue
        name = words[0].lower()
        if name in _CHRONY_SOURCES:
            out.append((words[1], at(path, n)))
        elif sources:
            continue
        elif name == "include":
            for f in ctx.glob(words[1]):
                _chrony_file(ctx, f, out, depth + 1)
        elif name in ("confdir", "sourcedir"):
            suffix = ".conf" if name == "confdir" else ".sources"
            for f in dropin_files(ctx, words[1:], suffix):  # the first directory wins a name
                _chrony_file(ctx, f, out, depth + 1, sources=name == "sourcedir")


_CHRONYD_FATAL = re.compile(r"Fatal error : (.*)")


def chronyd_refusal(ctx: FactContext) -> str | None:
    """On the live host with chronyd installed, why `chronyd -p` refuses chrony's configuration:
    chronyd stops at the first line it cannot parse (an unknown directive, a misspelt option,
    a missing argument) and does not start. None where it takes the configuration, and under
    --root, where there is no chronyd to ask: the reader above knows the sources, not every
    directive's arguments."""
    if not ctx.live:
        return None
    chronyd = sbin_tool("chronyd")
    if chronyd is None:
        return None
    done = run_tool([chronyd, "-p"], f"{chronyd} -p")
    if done.returncode == 0:
        return None
    said = _CHRONYD_FATAL.search(done.stderr)
    return said.group(1).strip() if said else (done.stderr.strip().splitlines() or [f"exit {done.returncode}"])[-1]


TIMESYNC = ObjectType(
    "timesync",
    {
        "chrony": BOOL,
        "systemd_timesyncd": BOOL,
        "ntp": BOOL,
        "active": STR,
        "count_active": INT,
        "servers": ListType(STR),
        "chrony_servers": ListType(STR),
        "timesyncd_servers": ListType(STR),
    },
    doc="time synchronisation: which daemon is installed/enabled and the servers it uses",
    field_docs={
        "chrony": "chrony is installed and its service enabled",
        "active": '"chrony", "systemd-timesyncd", "ntp" or "none"',
        "servers": "server/pool names configured for the active daemon (all daemons when none is)",
        "chrony_servers": "server/pool/peer names in /etc/chrony/chrony.conf and the files it names with include, "
        "confdir (*.conf) and sourcedir (*.sources), as chronyd reads them; on the live host an error where "
        "`chronyd -p` refuses the configuration (chronyd then does not start)",
        "timesyncd_servers": "NTP= names in timesyncd.conf and its drop-ins (the last NTP= line wins)",
    },
)


class Timesync:
    def __init__(self, ctx: FactContext) -> None:
        pkg = lambda n: ctx.fact("package", (n,)).installed
        svc = lambda n: ctx.fact("service", (n,)).enabled
        self.chrony = pkg("chrony") and svc("chrony")
        self.systemd_timesyncd = svc("systemd-timesyncd") and (
            pkg("systemd-timesyncd") or pkg("systemd")
        )
        self.ntp = (pkg("ntp") or pkg("ntpsec")) and (svc("ntp") or svc("ntpsec"))
        enabled = [
            n
            for n, on in (
                ("chrony", self.chrony),
                ("systemd-timesyncd", self.systemd_timesyncd),
                ("ntp", self.ntp),
            )
            if on
        ]
        self.active = enabled[0] if enabled else "none"
        self.count_active = len(enabled)
        per = {
            "chrony": self._chrony(ctx),
            "systemd-timesyncd": self._timesyncd(ctx),
            "ntp": self._ntp(ctx),
        }
        self._chrony_servers = tuple(dict.fromkeys(s for s, _ in per["chrony"]))
        refused = chronyd_refusal(ctx)
        self._chrony_refused = None if refused is None else (
            f"chronyd -p refuses the configuration ({refused}): chronyd does not start, so it uses no server")
        self.timesyncd_servers = tuple(dict.fromkeys(s for s, _ in per["systemd-timesyncd"]))
        self._where = {
            "chrony_servers": ", ".join(dict.fromkeys(w for _, w in per["chrony"]))
            or "/etc/chrony/chrony.conf (no server, pool or peer line)",
            "timesyncd_servers": ", ".join(dict.fromkeys(w for _, w in per["systemd-timesyncd"]))
            or "/etc/systemd/timesyncd.conf and drop-ins (no NTP= line)",
        }
        chosen = [per[self.active]] if self.active != "none" else list(per.values())
        self._servers = tuple(dict.fromkeys(s for group in chosen for s, _ in group))
        self._servers_where = (
            ", ".join(dict.fromkeys(w for group in chosen for _, w in group))
            or "no server/pool lines"
        )

    @property
    def chrony_servers(self) -> tuple[str, ...]:
        if self._chrony_refused is not None:
            raise EvaluationError(self._chrony_refused)
        return self._chrony_servers

    @property
    def servers(self) -> tuple[str, ...]:
        if self._chrony_refused is not None and self.active in ("chrony", "none"):  # chrony's servers are among them
            raise EvaluationError(self._chrony_refused)
        return self._servers

    @staticmethod
    def _directives(
        ctx: FactContext, files: list[str], words: tuple[str, ...]
    ) -> list[tuple[str, str]]:
        out = []
        for path in files:
            # chronyd and ntpd read fgets() lines and split words at C blanks
            for n, raw in enumerate(c_lines(ctx.read_text(path) or ""), 1):
                parts = [w for w in _C_BLANKS.split(raw.split("#", 1)[0]) if w]
                if len(parts) >= 2 and parts[0] in words:
                    out.append((parts[1], at(path, n)))
        return out

    def _chrony(self, ctx: FactContext) -> list[tuple[str, str]]:
        out: list[tuple[str, str]] = []
        _chrony_file(ctx, CHRONY_CONF, out, 0)
        return out

    def _ntp(self, ctx: FactContext) -> list[tuple[str, str]]:
        return self._directives(
            ctx, ["/etc/ntpsec/ntp.conf", "/etc/ntp.conf"], ("server", "pool", "peer")
        )

    def _timesyncd(self, ctx: FactContext) -> list[tuple[str, str]]:
        files = systemd_conf_files(ctx, "systemd/timesyncd.conf")
        servers: list[tuple[str, str]] = []
        for path, a in config_parse_files(ctx, files, {"Time"})[0]:
            if a.key == "NTP":
                servers = [(s, at(path, a.line)) for s in _C_BLANKS.split(a.value) if s]  # a later NTP= replaces
        return servers

    def describe(self) -> str:
        return "timesync"

    def where(self, name: str, *args: Any) -> str | None:
        if name == "servers":
            return self._servers_where
        if name in self._where:
            return self._where[name]
        return "/var/lib/dpkg/status, /etc/systemd/system/*.wants"


# --- the running kernel ---------------------------------------------------------------------------------
KERNEL = ObjectType(
    "kernel",
    {"release": STR, "lockdown": STR, "audit_enabled": BOOL, "cmdline": STR, "btf": BOOL},
    methods={
        "has_arg": Method(
            (STR,), BOOL, "whether the running kernel's command line has the argument"
        )
    },
    doc="the running kernel (live, or a root that carries proc/ and sys/ copies)",
    field_docs={
        "lockdown": '"none", "integrity" or "confidentiality" (the bracketed mode of sys/kernel/security/lockdown)',
        "audit_enabled": "audit= on the command line (0 or off anywhere: false), else the kernel's audit flag (live)",
    },
)


class Kernel:
    def __init__(self, ctx: FactContext) -> None:
        self._ctx = ctx
        require_proc(ctx, "/proc/cmdline", "kernel")
        rel = read_proc(ctx, "/proc/sys/kernel/osrelease")
        self.release = rel.strip() if rel else (os.uname().release if ctx.live else None)
        self.cmdline = (read_proc(ctx, "/proc/cmdline") or "").strip()
        lock = (
            read_proc(ctx, "/sys/kernel/security/lockdown")
            if (ctx.live or ctx.exists("/sys"))
            else None
        )
        m = re.search(r"\[(\w+)\]", lock or "")
        self.lockdown = m.group(1) if m else ("none" if lock is not None else None)
        self.btf = (
            ctx.exists("/sys/kernel/btf/vmlinux") if (ctx.live or ctx.exists("/sys")) else None
        )

    @property
    def audit_enabled(self) -> bool | None:
        flag = _cmdline_audit(self.cmdline)
        if flag is not None or not self._ctx.live:
            return flag
        from secpolicy.facts.audit_rules import audit_status

        return audit_status()["enabled"] != 0

    def has_arg(self, arg: str) -> bool:
        return Grub._has(kernel_words(self.cmdline), arg)

    def describe(self) -> str:
        return "kernel"

    def where(self, name: str, *args: Any) -> str | None:
        if name == "audit_enabled":
            return audit_enabled_source(self.cmdline, live=self._ctx.live)
        return {
            "release": "/proc/sys/kernel/osrelease",
            "lockdown": "/sys/kernel/security/lockdown",
            "btf": "/sys/kernel/btf/vmlinux",
        }.get(name, "/proc/cmdline")


AUDIT_STATUS_SOURCE = "netlink AUDIT_GET"  # as audit_rules.enabled names it
_KERNEL_BLANKS = " \t\n\v\f\r"  # the kernel's isspace()


def kernel_words(cmdline: str) -> list[str]:
    """A kernel command line split as the kernel's parse_args()/next_arg() split it: at blanks
    outside double quotes, with the quotes around a word or a value taken off; up to `--`,
    where the kernel stops (what follows is init's)."""
    out = []
    rest = cmdline.lstrip(_KERNEL_BLANKS)
    while rest:
        quoted = rest.startswith('"')
        rest = rest[int(quoted):]
        i, in_quote, equals = 0, quoted, 0  # equals 0: none yet (an `=` first is part of the name)
        while i < len(rest) and (in_quote or rest[i] not in _KERNEL_BLANKS):
            if equals == 0 and rest[i] == "=":
                equals = i
            if rest[i] == '"':
                in_quote = not in_quote
            i += 1
        value_quoted = equals > 0 and rest[equals + 1:equals + 2] == '"'
        end = i - 1 if i > 0 and rest[i - 1] == '"' and (quoted or value_quoted) else i
        if equals:
            start = equals + 1 + int(value_quoted)
            word = f"{rest[:equals]}={rest[start:max(end, start)]}"
        else:
            word = rest[:end]
        rest = rest[i + 1:].lstrip(_KERNEL_BLANKS)
        if word == "--" and not equals:
            break
        out.append(word)
    return out


def _kernel_values(words: list[str], name: str) -> list[str]:
    """Every value `name` is given, in order ("" for a bare `name`): parameter names compare
    with `-` and `_` the same (parameq()); the words end at `--` (kernel_words() has already
    stopped there; a grub.cfg line's words may still hold it)."""
    want = name.replace("-", "_")
    found = []
    for w in words:
        if w == "--":
            break
        key, _, value = w.partition("=")
        if key.replace("-", "_") == want:
            found.append(value)
    return found


def _kstrtoul(text: str) -> int | None:
    """`text` as the kernel's kstrtoul(text, 0) reads it: an optional `+`, then hexadecimal after
    `0x` (a hex digit must follow), octal after another leading `0`, else decimal; the whole
    text (one trailing newline allowed) and below 2**64; None where it refuses it."""
    digits = text.removeprefix("+").removesuffix("\n").lower()
    if digits[:2] == "0x" and digits[2:3] and digits[2:3] in _DIGITS[16]:
        base, digits = 16, digits[2:]
    else:
        base = 8 if digits.startswith("0") else 10
    if not digits or any(c not in _DIGITS[base] for c in digits):
        return None
    value = int(digits, base)
    return value if value < 1 << 64 else None


_DIGITS = {8: "01234567", 10: "0123456789", 16: "0123456789abcdef"}


def apparmor_boot_refusal(words: list[str]) -> str | None:
    """Why one kernel command line does not enable AppArmor by its parameters, as the kernel
    reads them, or None when it does: the last `apparmor=` a number kstrtoul reads, not 0
    (`apparmor=10` enables it), and AppArmor the chosen major security module: in the last
    `lsm=` list when there is one (it supersedes `security=`), else the last `security=`."""
    flag = _kernel_values(words, "apparmor")
    if not flag:
        return "no apparmor= parameter"
    if not _kstrtoul(flag[-1]):
        return f"apparmor={flag[-1]} (the kernel reads 0 or refuses it)"
    lsm = _kernel_values(words, "lsm")
    if lsm:
        return None if "apparmor" in lsm[-1].split(",") else f"lsm={lsm[-1]} leaves AppArmor out (security= is ignored)"
    security = _kernel_values(words, "security")
    if not security:
        return "no security=apparmor (nor an lsm= list naming it)"
    return None if security[-1] == "apparmor" else f"security={security[-1]}"


def _cmdline_audit(cmdline: str) -> bool | None:
    """What `audit=` on the command line makes of auditing (kernel/audit.c audit_enable(), Linux
    4.15 and later): "0" or "off" (any case) disables it until reboot, even when a later
    `audit=` turns it back on; any other value enables it. None with no `audit=`."""
    values = _kernel_values(kernel_words(cmdline), "audit")
    if not values:
        return None
    return not any(v == "0" or v.lower() == "off" for v in values)


def audit_enabled_source(cmdline: str, *, live: bool) -> str:
    """Where `kernel.audit_enabled` comes from: the command line when it sets audit=, else
    (live) the kernel's audit status; under --root the unknown value points at the command line."""
    if _cmdline_audit(cmdline) is None and live:
        return AUDIT_STATUS_SOURCE
    return "/proc/cmdline"


def register(reg: FactRegistry) -> None:
    reg.register(
        "mounts",
        collect_mounts,
        returns=ListType(MOUNT),
        doc="mounted file systems (/proc/self/mounts)",
    )
    reg.register(
        "mount",
        collect_mount,
        params=(STR,),
        returns=MOUNT,
        doc="what is mounted on a path, or null",
    )
    reg.register("fstab", collect_fstab, returns=ListType(MOUNT), doc="etc/fstab entries")
    reg.register(
        "fstab_entry",
        collect_fstab_entry,
        params=(STR,),
        returns=MOUNT,
        doc="the fstab entry for a mount point, or null",
    )
    reg.register(
        "mount_at_boot",
        collect_mount_at_boot,
        params=(STR,),
        returns=MOUNT,
        doc="what systemd mounts on a path at the next boot (its mount unit's options, drop-ins applied), or null",
    )
    reg.register(
        "kmod",
        collect_kmod,
        params=(STR,),
        returns=KMOD,
        doc="a kernel module: loaded, blacklisted, disabled",
    )
    reg.register("_modprobe", _modprobe, returns=ANY, doc="internal: modprobe.d blacklist/install")
    reg.register(
        "_module_files", _module_files, returns=ANY, doc="internal: modules under lib/modules"
    )
    reg.register("_loaded_modules", _loaded_modules, returns=ANY, doc="internal: /proc/modules")
    reg.register("grub", Grub, returns=GRUB, doc="the GRUB bootloader configuration")
    reg.register("os_release", OsRelease, returns=OS_RELEASE, doc="the operating system's os-release ID")
    reg.register(
        "firewall", Firewall, returns=FIREWALL, doc="host firewall presence and enablement"
    )
    reg.register("ufw", Ufw, returns=UFW, doc="ufw's boot configuration, as ufw-init reads it")
    reg.register("apparmor", AppArmor, returns=APPARMOR, doc="AppArmor state and profiles")
    reg.register(
        "timesync", Timesync, returns=TIMESYNC, doc="time synchronisation daemon and servers"
    )
    reg.register("kernel", Kernel, returns=KERNEL, doc="the running kernel")
