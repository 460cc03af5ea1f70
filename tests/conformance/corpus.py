"""The conformance corpus: root trees built the way the CIS Debian 12 audit procedures read a
host, as data. One compliant base tree and, per control, variants that break it or stay
compliant in a tricky way, each with the verdicts the benchmark (and the real component) give.

The tables here import nothing from secpolicy: `record.py` scans the same trees with any
version of the code (the baseline of verdicts on `main` comes from it).

A variant is a list of edits applied to a copy of the base tree and a map of expectations:
`"5.1.16": "fail"` means every bundled rule whose `references.cis` names 5.1.16 must fail;
a key naming a rule id sets that rule alone. Every rule not named keeps its verdict on the
base tree. `oracle` names the real tool the conformance tests also ask about the tree.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent / "fixtures" / "packs"))
import roots  # the hardened Debian 12 root of the packs tests

__all__ = ["BASE_EXPECT", "VARIANTS", "Variant", "build", "build_base", "controls_covered"]

P, F, NA, E = "pass", "fail", "not_applicable", "error"

Edit = tuple  # ("write", path, text) ... see _apply


@dataclass(frozen=True)
class Variant:
    id: str
    expect: dict[str, str]
    edits: tuple[Edit, ...]
    oracle: str | None = None
    kind: str = "break"  # break | compliant | component
    note: str = ""
    extra: dict = field(default_factory=dict, compare=False)


# --- edits --------------------------------------------------------------------------------------
def write(
    path: str, text: str, mode: int | None = None, owner: tuple[int, int] | None = None
) -> Edit:
    return ("write", path, text, mode, owner)


def append(path: str, text: str) -> Edit:
    return ("append", path, text)


def replace(path: str, old: str, new: str) -> Edit:
    return ("replace", path, old, new)


def delete(path: str) -> Edit:
    return ("delete", path)


def chmod(path: str, mode: int) -> Edit:
    return ("mode", path, mode)


def chown(path: str, uid: int, gid: int) -> Edit:
    return ("owner", path, uid, gid)


def symlink(path: str, target: str) -> Edit:
    return ("symlink", path, target)


def mkdir(path: str, mode: int = 0o755) -> Edit:
    return ("mkdir", path, mode)


def install(package: str, version: str = "1.0-1") -> Edit:
    return ("install", package, version)


def remove(package: str) -> Edit:
    return ("remove", package)


def enable(unit: str, target: str = "multi-user.target", exec_start: str | None = None) -> Edit:
    return ("enable", unit, target, exec_start)


def unit(
    name: str, exec_start: str | None = None, target: str | None = "multi-user.target"
) -> Edit:
    return ("unit", name, exec_start, target)


def disable(name: str) -> Edit:
    return ("disable", name)


def mask(name: str) -> Edit:
    return ("mask", name)


def age(path: str, days: float) -> Edit:
    return ("age", path, days)


def dconf_update() -> Edit:
    """What `dconf update` does to the tree: each etc/dconf/db/NAME.d compiled into
    etc/dconf/db/NAME by the real dconf (apply it after the keyfile edits)."""
    return ("dconf_update", "etc/dconf/db")


def _status_path(root: Path) -> Path:
    return root / "var/lib/dpkg/status"


def _stanza(name: str, version: str) -> str:
    return (
        f"Package: {name}\nStatus: install ok installed\nPriority: optional\nSection: admin\n"
        f"Installed-Size: 1024\nMaintainer: Debian Developers <debian-devel@lists.debian.org>\n"
        f"Architecture: amd64\nVersion: {version}\nDescription: {name} package\n"
        f" A corpus entry describing {name}.\n"
    )


def _install(root: Path, name: str, version: str) -> None:
    st = _status_path(root)
    _detach(st)
    blocks = [b.strip("\n") for b in st.read_text().split("\n\n") if b.strip()]
    blocks = [b for b in blocks if not b.startswith(f"Package: {name}\n")]
    blocks.append(_stanza(name, version).rstrip("\n"))
    st.write_text("\n\n".join(blocks) + "\n")
    rel = f"usr/share/doc/{name}/copyright"
    text = f"{name}: copyright file of the corpus root\n"
    (root / rel).parent.mkdir(parents=True, exist_ok=True)
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True, exist_ok=True)
    for p in (root / rel, info / f"{name}.md5sums", info / f"{name}.list"):
        _detach(p)
    (root / rel).write_text(text)
    (info / f"{name}.md5sums").write_text(f"{hashlib.md5(text.encode()).hexdigest()}  {rel}\n")
    (info / f"{name}.list").write_text(
        f"/.\n/usr\n/usr/share\n/usr/share/doc\n/usr/share/doc/{name}\n/{rel}\n"
    )


def _remove(root: Path, name: str) -> None:
    st = _status_path(root)
    _detach(st)
    out = []
    for b in st.read_text().split("\n\n"):
        if b.lstrip("\n").startswith(f"Package: {name}\n"):
            b = b.replace("Status: install ok installed", "Status: deinstall ok config-files")
        out.append(b)
    st.write_text("\n\n".join(out))
    for suffix in ("md5sums", "list"):
        p = root / f"var/lib/dpkg/info/{name}.{suffix}"
        if p.exists():
            p.unlink()


_SYSTEMD = "usr/lib/systemd/system"


def _unit(root: Path, name: str, exec_start: str | None, target: str | None) -> None:
    path = root / _SYSTEMD / name
    if path.exists():
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    kind = name.rsplit(".", 1)[-1]
    body = f"[Unit]\nDescription={name}\n\n"
    if kind == "service":
        body += f"[Service]\nExecStart={exec_start or '/usr/sbin/' + name.split('.')[0]}\n\n"
    elif kind == "socket":
        body += "[Socket]\nListenStream=0\n\n"
    elif kind == "timer":
        body += "[Timer]\nOnCalendar=daily\n\n"
    if target:
        body += f"[Install]\nWantedBy={target}\n"
    path.write_text(body)


def _enable(root: Path, name: str, target: str, exec_start: str | None) -> None:
    _unit(root, name, exec_start, target)
    wants = root / "etc/systemd/system" / f"{target}.wants"
    wants.mkdir(parents=True, exist_ok=True)
    link = wants / name
    if not link.is_symlink():
        link.symlink_to(f"/lib/systemd/system/{name}")


def _disable(root: Path, name: str) -> None:
    for wants in (root / "etc/systemd/system").glob("*.wants"):
        link = wants / name
        if link.is_symlink():
            link.unlink()


def _detach(path: Path) -> None:
    """Give a hard-linked file (a tree copied from the base by links) its own inode before an
    edit, so that editing one variant never changes the base."""
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(st.st_mode) or st.st_nlink < 2:
        return
    tmp = path.with_name(path.name + ".corpus-tmp")
    shutil.copy2(path, tmp)
    if os.geteuid() == 0:
        os.chown(tmp, st.st_uid, st.st_gid)
    os.chmod(tmp, stat.S_IMODE(st.st_mode))
    os.replace(tmp, path)


# dconf-cli 0.40, unpacked into the virtual environment by scripts/setup.sh --with-test-tools
DCONF = Path(sys.prefix) / "oracles/usr/bin/dconf"


def _dconf_update(db: Path) -> None:
    """`dconf update` on the tree: every NAME.d below `db` compiled to NAME by the real
    `dconf compile`; a database it refuses keeps its old compiled file (or none), as there."""
    if not DCONF.is_file():
        raise RuntimeError(
            f"corpus: dconf_update() needs dconf-cli at {DCONF.relative_to(sys.prefix)} in the "
            "virtual environment (scripts/setup.sh --with-test-tools unpacks it)"
        )
    for source in sorted(db.glob("*.d")):
        if not source.is_dir() or source.is_symlink():
            continue
        out = db / source.name.removesuffix(".d")
        tmp = out.with_name(out.name + ".corpus-tmp")
        done = subprocess.run(
            [str(DCONF), "compile", str(tmp), str(source)], capture_output=True, timeout=60, check=False
        )
        if done.returncode == 0:
            os.chmod(tmp, 0o644)
            os.replace(tmp, out)  # a new inode: a file hard-linked from the base stays as it was
        elif tmp.exists():
            tmp.unlink()


def _apply_tree_op(root: Path, e: Edit) -> bool:
    """The edits on packages, units and dconf databases (not on one path); False for others."""
    op = e[0]
    if op == "dconf_update":
        _dconf_update(root / e[1])
        return True
    if op in ("install", "remove", "enable", "unit", "disable", "mask"):
        if op == "install":
            _install(root, e[1], e[2])
        elif op == "remove":
            _remove(root, e[1])
        elif op == "enable":
            _enable(root, e[1], e[2], e[3])
        elif op == "unit":
            _unit(root, e[1], e[2], e[3])
        elif op == "disable":
            _disable(root, e[1])
        else:
            _disable(root, e[1])
            p = root / "etc/systemd/system" / e[1]
            if p.exists() or p.is_symlink():
                p.unlink()
            p.symlink_to("/dev/null")
        return True
    return False


def _apply(root: Path, e: Edit) -> None:
    op = e[0]
    if _apply_tree_op(root, e):
        return
    path = root / e[1].lstrip("/")
    if op in ("write", "append", "replace", "mode", "owner", "age"):
        _detach(path)
    if op == "write":
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.is_symlink():
            path.unlink()
        path.write_text(e[2])
        os.chmod(path, e[3] if e[3] is not None else 0o644)
        if e[4] is not None and os.geteuid() == 0:
            os.lchown(path, *e[4])
    elif op == "append":
        with open(path, "a") as f:
            f.write(e[2])
    elif op == "replace":
        text = path.read_text()
        if e[2] not in text:
            raise ValueError(f"corpus: {e[2]!r} is not in {e[1]}")
        path.write_text(text.replace(e[2], e[3], 1))
    elif op == "delete":
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif path.exists() or path.is_symlink():
            path.unlink()
    elif op == "mode":
        os.chmod(path, e[2])
    elif op == "owner":
        if os.geteuid() == 0:
            os.lchown(path, e[2], e[3])
    elif op == "symlink":
        path.parent.mkdir(parents=True, exist_ok=True)
        if path.exists() or path.is_symlink():
            path.unlink()
        path.symlink_to(e[2])
    elif op == "age":
        when = time.time() - e[2] * 86400
        os.utime(path, (when, when))
    elif op == "mkdir":
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, e[2])
    else:
        raise ValueError(f"corpus: unknown edit {op!r}")


# --- the base tree ------------------------------------------------------------------------------
# The packs' hardened Debian 12 root, with the few things the audit procedures look at that it
# lacks: a log file of rsyslog's, a setuid program with its audit rule.
_SUDO_RULE = "-a always,exit -F path=/usr/bin/sudo -F perm=x -F auid>=1000 -F auid!=unset -k privileged\n"
BASE_EDITS: tuple[Edit, ...] = (
    write("var/log/syslog", "Jan  1 00:00:00 host kernel: booted\n", 0o640),
    mkdir("usr/bin"),
    write("usr/bin/sudo", "#!/bin/true\n", 0o4755),
    append("etc/audit/rules.d/50-cis.rules", "\n# 6.2.3.6 privileged commands\n" + _SUDO_RULE),
    # audit.rules stays what augenrules writes from rules.d (6.2.3.21: `augenrules --check`)
    replace(
        "etc/audit/audit.rules",
        "-k kernel_modules\n-a always,exit -F arch=b64 -S execve -F euid=0",
        "-k kernel_modules\n" + _SUDO_RULE + "-a always,exit -F arch=b64 -S execve -F euid=0",
    ),
)


def build_base(dest: str | os.PathLike[str], name: str = "base") -> Path:
    root = roots.build_hardened(dest, name)
    for e in BASE_EDITS:
        _apply(root, e)
    return root


def build(dest: str | os.PathLike[str], variant: Variant | None, base: Path | None = None) -> Path:
    """The base tree with the variant's edits, at dest/<variant id with / as __>. With `base`
    (a tree from build_base), the variant is a copy of it made of hard links: cheap, and edits
    give the files they touch their own inode."""
    name = "base" if variant is None else variant.id.replace("/", "__")
    if base is None:
        root = build_base(dest, name)
    else:
        root = Path(dest) / name
        _link_copy(base, root)
    for e in variant.edits if variant else ():
        _apply(root, e)
    return root


def edited_copy(parent: Path, base: Path, edits: Iterable[Edit]) -> Path:
    """A hard-link copy of the tree `base` at parent/t with `edits` applied (an edit gives
    the files it touches their own inode): one tree a probe compares a verdict on."""
    root = parent / "t"
    _link_copy(base, root)
    for e in edits:
        _apply(root, e)
    return root


def _link_copy(src: Path, dst: Path) -> None:
    """Directories recreated with their modes and owners, files hard-linked, links copied."""
    for dirpath, dirnames, filenames in os.walk(src):
        rel = os.path.relpath(dirpath, src)
        target = dst if rel == "." else dst / rel
        st = os.lstat(dirpath)
        target.mkdir(exist_ok=True)
        for name in filenames + [d for d in dirnames if os.path.islink(os.path.join(dirpath, d))]:
            s_path = os.path.join(dirpath, name)
            if os.path.islink(s_path):
                os.symlink(os.readlink(s_path), target / name)
            else:
                os.link(s_path, target / name)
        os.chmod(target, stat.S_IMODE(st.st_mode))
        if os.geteuid() == 0:
            os.lchown(target, st.st_uid, st.st_gid)


# What the base tree gives: every rule passes except these (live-only state under --root, and
# components the base host does not use).
BASE_EXPECT: dict[str, str] = {
    # live-only: which processes run unconfined, BPF, processes
    "cis-1.3.1.3-apparmor-profiles-loaded": NA,
    "cis-1.3.1.4-apparmor-profiles-enforcing": NA,
    "soc2-cc6.8-bpf-loader-uid": NA,
    "soc2-cc6.8-bpf-root-programs-known": NA,
    "soc2-cc6.8-bpf-helper-allowlist": NA,
    "soc2-cc6.8-bpf-maps-bounded": NA,
    "soc2-cc6.8-bpf-config-maps-frozen": NA,
    "soc2-cc6.3-process-capabilities-allowlist": NA,
    "soc2-cc6.3-no-cap-sys-admin-for-bpf": NA,
    # components the base host does not use: GDM, ufw, iptables, timesyncd, journald-only
    # logging (rsyslog is the logging system), at
    **{
        c: NA
        for c in ("1.7.2", "1.7.3", "1.7.4", "1.7.5", "1.7.6", "1.7.7", "1.7.8", "1.7.9", "1.7.10")
    },
    **{c: NA for c in ("4.2.1", "4.2.2", "4.2.3", "4.2.4", "4.2.7")},
    **{
        c: NA for c in ("4.4.1.1", "4.4.1.2", "4.4.1.3", "4.4.2.1", "4.4.2.2", "4.4.3.1", "4.4.3.2")
    },
    **{c: NA for c in ("2.3.2.1", "2.3.2.2")},
    **{c: NA for c in ("6.1.2.1.2", "6.1.2.1.3", "6.1.2.2", "6.1.2.3", "6.1.2.4")},
    "2.4.2.1": NA,
}


# --- the tables ---------------------------------------------------------------------------------
def _v(
    id: str,
    expect: dict[str, str],
    *edits: Edit,
    oracle: str | None = None,
    kind: str = "break",
    note: str = "",
    extra_expect: dict[str, str] | None = None,
) -> Variant:
    expect = dict(expect) | dict(extra_expect or {})
    # augenrules --check (6.2.3.21) fails once rules.d changes and audit.rules is left as it was
    # (test_oracles runs the real augenrules --check on every variant that touches etc/audit)
    touched = {e[1] for e in edits if e[0] in ("write", "replace", "append", "delete", "symlink")
               and e[1].startswith("etc/audit")}
    if ("6.2.3.21" not in expect and "etc/audit/audit.rules" not in touched
            and any(p.startswith("etc/audit/rules.d") for p in touched)):
        expect["6.2.3.21"] = F
    return Variant(id, expect, tuple(edits), oracle, kind, note)


def _modules() -> Iterator[Variant]:
    mods = [
        ("1.1.1.1", "cramfs", "kernel/fs/cramfs/cramfs.ko", True),
        ("1.1.1.2", "freevxfs", "kernel/fs/freevxfs/freevxfs.ko", False),
        ("1.1.1.3", "hfs", "kernel/fs/hfs/hfs.ko", False),
        ("1.1.1.4", "hfsplus", "kernel/fs/hfsplus/hfsplus.ko", False),
        ("1.1.1.5", "jffs2", "kernel/fs/jffs2/jffs2.ko", False),
        ("1.1.1.6", "overlay", "kernel/fs/overlayfs/overlay.ko", False),
        ("1.1.1.7", "squashfs", "kernel/fs/squashfs/squashfs.ko", True),
        ("1.1.1.8", "udf", "kernel/fs/udf/udf.ko", True),
        ("1.1.1.9", "usb-storage", "kernel/drivers/usb/storage/usb-storage.ko", True),
        ("3.2.1", "dccp", "kernel/net/dccp/dccp.ko", True),
        ("3.2.2", "tipc", "kernel/net/tipc/tipc.ko", False),
        ("3.2.3", "rds", "kernel/net/rds/rds.ko", False),
        ("3.2.4", "sctp", "kernel/net/sctp/sctp.ko", True),
    ]
    kdir = "usr/lib/modules/6.1.0-18-amd64"
    conf = "etc/modprobe.d/cis.conf"
    for ctl, name, ko, shipped in mods:
        ship: tuple[Edit, ...] = (
            ()
            if shipped
            else (
                write(f"{kdir}/{ko}", "\x7fELF\n"),
                append(f"{kdir}/modules.dep", f"{ko}:\n"),
            )
        )
        has_install = name != "overlay"
        if has_install:
            yield _v(
                f"{ctl}/loadable",
                {ctl: F},
                *ship,
                replace(conf, f"install {name} /bin/false\n", ""),
            )
            yield _v(
                f"{ctl}/not-blacklisted", {ctl: F}, *ship, replace(conf, f"blacklist {name}\n", "")
            )
            yield _v(
                f"{ctl}/install-true-usr-bin",
                {ctl: P},
                *ship,
                replace(conf, f"install {name} /bin/false", f"install {name} /usr/bin/true"),
                kind="compliant",
            )
        else:
            # the base does not configure overlay: shipping it makes it loadable
            yield _v(f"{ctl}/loadable", {ctl: F}, *ship)
            yield _v(
                f"{ctl}/disabled-in-usr-lib",
                {ctl: P},
                *ship,
                write(
                    "usr/lib/modprobe.d/overlay.conf",
                    "install overlay /bin/false\nblacklist overlay\n",
                ),
                kind="compliant",
            )
        if not shipped and has_install:
            yield _v(
                f"{ctl}/not-shipped-no-config",
                {ctl: P},
                replace(conf, f"install {name} /bin/false\nblacklist {name}\n", ""),
                kind="compliant",
            )
    # names with _ and -, drop-ins in /usr/lib and their masking by /etc
    yield _v(
        "1.1.1.9/underscore-name",
        {"1.1.1.9": P},
        replace(
            conf,
            "install usb-storage /bin/false\nblacklist usb-storage\n",
            "install usb_storage /bin/false\nblacklist usb_storage\n",
        ),
        kind="compliant",
    )
    yield _v(
        "1.1.1.1/install-by-pattern",
        {"1.1.1.1": P},
        replace(conf, "install cramfs /bin/false\n", "install cram* /bin/false\n"),
        kind="compliant",
        note="modprobe matches install names as shell patterns (fnmatch): cram* keeps cramfs from loading",
    )
    all_lines = (Path(roots.BASE) / conf).read_text()
    yield _v(
        "modprobe/usr-lib-only",
        {},
        delete(conf),
        write("usr/lib/modprobe.d/cis.conf", all_lines),
        kind="compliant",
        note="the same lines in /usr/lib/modprobe.d count",
    )
    yield _v(
        "modprobe/etc-masks-usr-lib",
        {c: F for c, _n, _k, s in mods if s},
        delete(conf),
        write("usr/lib/modprobe.d/cis.conf", all_lines),
        write("etc/modprobe.d/cis.conf", "# local: nothing\n"),
        note="a file of the same name in /etc/modprobe.d hides the one in /usr/lib",
    )
    yield _v(
        "modprobe/devnull-mask",
        {c: F for c, _n, _k, s in mods if s},
        delete(conf),
        write("usr/lib/modprobe.d/cis.conf", all_lines),
        symlink("etc/modprobe.d/cis.conf", "/dev/null"),
    )


_MOUNTS = {
    "/tmp": ("1.1.2.1", "tmp", ("nodev", "nosuid", "noexec")),
    "/dev/shm": ("1.1.2.2", "dev-shm", ("nodev", "nosuid", "noexec")),
    "/home": ("1.1.2.3", "home", ("nodev", "nosuid")),
    "/var": ("1.1.2.4", "var", ("nodev", "nosuid")),
    "/var/tmp": ("1.1.2.5", "var-tmp", ("nodev", "nosuid", "noexec")),
    "/var/log": ("1.1.2.6", "var-log", ("nodev", "nosuid", "noexec")),
    "/var/log/audit": ("1.1.2.7", "var-log-audit", ("nodev", "nosuid", "noexec")),
}


def _fstab_line(mp: str) -> str:
    for line in (Path(roots.BASE) / "etc/fstab").read_text().splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[1] == mp and not line.startswith("#"):
            return line + "\n"
    raise KeyError(mp)


def _mounts_line(mp: str) -> str:
    for line in (Path(roots.BASE) / "proc/self/mounts").read_text().splitlines():
        parts = line.split()
        if parts[1] == mp:
            return line + "\n"
    raise KeyError(mp)


def _without(line: str, opt: str) -> str:
    parts = line.split()
    parts[3] = ",".join(o for o in parts[3].split(",") if o != opt)
    return " ".join(parts) + "\n"


def _partitions() -> Iterator[Variant]:
    for mp, (sec, slug, opts) in _MOUNTS.items():
        fl, ml = _fstab_line(mp), _mounts_line(mp)
        n = {"nodev": 2, "nosuid": 3, "noexec": 4}
        if sec == "1.1.2.3" or sec == "1.1.2.4":
            n = {"nodev": 2, "nosuid": 3}
        for opt in opts:
            ctl = f"{sec}.{n[opt]}"
            yield _v(
                f"{ctl}/fstab-without-{opt}",
                {f"cis-{ctl}-{slug}-{opt}-configured": F},
                replace("etc/fstab", fl, _without(fl, opt)),
            )
            yield _v(
                f"{ctl}/mounted-without-{opt}",
                {f"cis-{ctl}-{slug}-{opt}-mounted": F},
                replace("proc/self/mounts", ml, _without(ml, opt)),
            )
        options_configured = {f"cis-{sec}.{n[o]}-{slug}-{o}-configured": NA for o in opts}
        options_mounted = {f"cis-{sec}.{n[o]}-{slug}-{o}-mounted": NA for o in opts}
        if mp == "/dev/shm":
            # no fstab line: systemd mounts /dev/shm nodev,nosuid but not noexec
            yield _v(
                "1.1.2.2/no-fstab-entry",
                {
                    "cis-1.1.2.2.2-dev-shm-nodev-configured": P,
                    "cis-1.1.2.2.3-dev-shm-nosuid-configured": P,
                    "cis-1.1.2.2.4-dev-shm-noexec-configured": F,
                },
                replace("etc/fstab", fl, ""),
            )
            yield _v(
                "1.1.2.2/not-mounted",
                {"cis-1.1.2.2.1-dev-shm-partition-mounted": F, **options_mounted},
                replace("proc/self/mounts", ml, ""),
            )
            continue
        # no separate partition: x.1 fails, its option controls do not apply
        yield _v(
            f"{sec}.1/no-fstab-entry",
            {f"cis-{sec}.1-{slug}-partition-configured": F, **options_configured},
            replace("etc/fstab", fl, ""),
        )
        yield _v(
            f"{sec}.1/not-mounted",
            {f"cis-{sec}.1-{slug}-partition-mounted": F, **options_mounted},
            replace("proc/self/mounts", ml, ""),
        )
    # tricky compliant spellings of fstab
    fl = _fstab_line("/var/tmp")
    parts = fl.split()
    yield _v(
        "1.1.2.5/options-reordered-tabs",
        {},
        replace(
            "etc/fstab", fl, f"{parts[0]}\t{parts[1]}\t{parts[2]}\tnoexec,nosuid,rw,nodev\t0\t2\n"
        ),
        kind="compliant",
    )
    yield _v(
        "1.1.2.5/commented-weaker-line",
        {},
        replace("etc/fstab", fl, f"#{parts[0]} {parts[1]} {parts[2]} defaults 0 2\n{fl}"),
        kind="compliant",
    )
    tmp = _fstab_line("/tmp")
    unit_text = "[Unit]\nDescription=Temporary Directory /tmp\n\n[Mount]\nWhat=tmpfs\nWhere=/tmp\nType=tmpfs\nOptions=mode=1777,strictatime,nosuid,nodev,noexec,size=50%\n\n[Install]\nWantedBy=local-fs.target\n"
    tmp_unit = (
        replace("etc/fstab", tmp, ""),
        write("etc/systemd/system/tmp.mount", unit_text),
        symlink("etc/systemd/system/local-fs.target.wants/tmp.mount", "/etc/systemd/system/tmp.mount"),
    )
    yield _v(
        "1.1.2.1/tmp-mount-unit",
        {},
        *tmp_unit,
        kind="compliant",
        note="/tmp from systemd's tmp.mount instead of fstab",
    )
    yield _v(
        "1.1.2.1/tmp-mount-unit-exec",
        {"cis-1.1.2.1.4-tmp-noexec-configured": F},
        *tmp_unit,
        write("etc/systemd/system/tmp.mount", unit_text.replace("noexec,", "")),
    )
    # what systemd mounts on /tmp at boot: asked of systemd-fstab-generator and config_parse
    # (test_oracles)
    nodev_ok = {c: NA for c in ("cis-1.1.2.1.2-tmp-nodev-configured", "cis-1.1.2.1.3-tmp-nosuid-configured",
                                "cis-1.1.2.1.4-tmp-noexec-configured")}
    for vid, edits, expect in (
        ("tmp-mount-unit-disabled", (*tmp_unit, delete("etc/systemd/system/local-fs.target.wants/tmp.mount")),
         {"cis-1.1.2.1.1-tmp-partition-configured": F}),
        ("tmp-unit-file-in-usr-lib-loses", (replace("etc/fstab", tmp, tmp.replace("nodev", "dev")),
                                            write("usr/lib/systemd/system/tmp.mount", unit_text)),
         {"cis-1.1.2.1.2-tmp-nodev-configured": F}),
        ("tmp-unit-file-in-etc-wins", (replace("etc/fstab", tmp, tmp.replace("nodev", "dev")),
                                       write("etc/systemd/system/tmp.mount", unit_text)), {}),
        ("tmp-noauto", (replace("etc/fstab", tmp, tmp.replace("nodev", "noauto,nodev")),),
         {"cis-1.1.2.1.1-tmp-partition-configured": F}),
        ("tmp-masked", (symlink("etc/systemd/system/tmp.mount", "/dev/null"),),
         {"cis-1.1.2.1.1-tmp-partition-configured": F, **nodev_ok}),
        ("tmp-drop-in-drops-noexec", (write("etc/systemd/system/tmp.mount.d/override.conf",
                                            "[Mount]\nOptions=\nOptions=nodev,nosuid\n"),),
         {"cis-1.1.2.1.4-tmp-noexec-configured": F}),
        ("tmp-second-fstab-line", (replace("etc/fstab", tmp, tmp.replace("nodev,", "") + tmp),),
         {"cis-1.1.2.1.2-tmp-nodev-configured": F}),
    ):
        yield _v(f"1.1.2.1/{vid}", expect, *edits, oracle="fstab-generator", kind="break" if expect else "compliant")


def _boot() -> Iterator[Variant]:
    yield _v("1.3.1.1/apparmor-utils-missing", {"1.3.1.1": F}, remove("apparmor-utils"))
    yield _v(
        "1.3.1.2/recovery-entry-without-apparmor",
        {"1.3.1.2": F},
        replace("boot/grub/grub.cfg", "ro single apparmor=1 ", "ro single "),
    )
    yield _v(
        "1.4.1/no-password",
        {"1.4.1": F},
        replace("boot/grub/grub.cfg", 'set superusers="grubadmin"\n', ""),
        write("etc/grub.d/01_password", "#!/bin/sh\n"),
    )
    yield _v(
        "1.4/no-grub",
        {"1.4.1": NA, "1.4.2": NA},
        delete("boot/grub/grub.cfg"),
        kind="component",
        note="booted without GRUB: no boot menu to protect; the kernel arguments come from /etc/default/grub",
    )
    yield _v("1.4.2/grub-cfg-0644", {"1.4.2": F}, chmod("boot/grub/grub.cfg", 0o644))
    yield _v("1.4.2/grub-cfg-0600", {}, chmod("boot/grub/grub.cfg", 0o600), kind="compliant")
    yield _v("1.4.2/grub-cfg-owner", {"1.4.2": F}, chown("boot/grub/grub.cfg", 1000, 0))
    lim = "etc/security/limits.conf"
    yield _v("1.5.3/no-core-limit", {"1.5.3": F}, write(lim, "# nothing\n"))
    yield _v(
        "1.5.3/core-limit-in-limits-d",
        {},
        write(lim, "# nothing\n"),
        write("etc/security/limits.d/60-core.conf", "*  hard  core  0\n"),
        kind="compliant",
    )
    yield _v("1.5.3/soft-core-only", {"1.5.3": F}, write(lim, "*  soft  core  0\n"))
    # the limits pam_limits sets for each user: asked of pam_limits through pamtester (test_oracles)
    for vid, edits, expect in (
        ("core-raised-in-limits-d", (write("etc/security/limits.d/90-dev.conf", "* hard core unlimited\n"),), F),
        ("core-raised-for-sudo-group", (append(lim, "@sudo hard core 1024\n"),), F),
        ("core-no-limits-for-bob", (append(lim, "bob -\n"),), F),
        ("core-zero-per-uid-range", (write(lim, "1: - core 0\n"),), None),
        ("core-line-past-1023-bytes", (write(lim, "#" + "x" * 1022 + "* hard core 0\n"),), None),
    ):
        yield _v(f"1.5.3/{vid}", {"1.5.3": expect} if expect else {}, *edits, oracle="pam_limits",
                 kind="break" if expect else "compliant")
    yield _v("1.5.4/prelink", {"1.5.4": F}, install("prelink"))
    yield _v(
        "1.5.5/apport-enabled",
        {"1.5.5": F},
        install("apport"),
        enable("apport.service"),
        write("etc/default/apport", "enabled=1\n"),
    )
    yield _v(
        "1.5.5/apport-disabled",
        {},
        install("apport"),
        write("etc/default/apport", "enabled=0\n"),
        kind="compliant",
    )
    for ctl, ctl_mode, path in (
        ("1.6.1", "1.6.4", "etc/motd"),
        ("1.6.2", "1.6.5", "etc/issue"),
        ("1.6.3", "1.6.6", "etc/issue.net"),
    ):
        yield _v(f"{ctl}/os-name", {ctl: F}, write(path, "Debian GNU/Linux 12\n"))
        yield _v(f"{ctl}/kernel-escape", {ctl: F}, write(path, "Welcome to \\s \\r\n"))
        yield _v(
            f"{ctl}/plain-text", {}, write(path, "Authorised access only.\n"), kind="compliant"
        )
        yield _v(f"{ctl_mode}/world-writable", {ctl_mode: F, "7.1.11": F}, chmod(path, 0o666))
        yield _v(f"{ctl_mode}/owner", {ctl_mode: F}, chown(path, 1000, 1000))
        yield _v(f"{ctl_mode}/0600", {}, chmod(path, 0o600), kind="compliant")


_GDM_DCONF = {
    "1.7.2": (
        "etc/dconf/db/gdm.d/01-banner-message",
        "[org/gnome/login-screen]\nbanner-message-enable=true\nbanner-message-text='Authorized uses only'\n",
    ),
    "1.7.3": (
        "etc/dconf/db/gdm.d/00-login-screen",
        "[org/gnome/login-screen]\ndisable-user-list=true\n",
    ),
    "1.7.4": (
        "etc/dconf/db/local.d/00-screensaver",
        "[org/gnome/desktop/session]\nidle-delay=uint32 900\n[org/gnome/desktop/screensaver]\nlock-delay=uint32 5\n",
    ),
    "1.7.5": (
        "etc/dconf/db/local.d/locks/00-screensaver",
        "/org/gnome/desktop/session/idle-delay\n/org/gnome/desktop/screensaver/lock-delay\n",
    ),
    "1.7.6": (
        "etc/dconf/db/local.d/00-media-automount",
        "[org/gnome/desktop/media-handling]\nautomount=false\nautomount-open=false\n",
    ),
    "1.7.7": (
        "etc/dconf/db/local.d/locks/00-media-automount",
        "/org/gnome/desktop/media-handling/automount\n/org/gnome/desktop/media-handling/automount-open\n",
    ),
    "1.7.8": (
        "etc/dconf/db/local.d/00-media-autorun",
        "[org/gnome/desktop/media-handling]\nautorun-never=true\n",
    ),
    "1.7.9": (
        "etc/dconf/db/local.d/locks/00-media-autorun",
        "/org/gnome/desktop/media-handling/autorun-never\n",
    ),
}


# The profiles CIS's remediation writes: the greeter reads the gdm database, sessions the local one
# (without them dconf reads neither: Debian's gdm3 ships a gdm profile of its own without it).
_DCONF_PROFILES = (
    write("etc/dconf/profile/gdm", "user-db:user\nsystem-db:gdm\nfile-db:/usr/share/gdm/greeter-dconf-defaults\n"),
    write("etc/dconf/profile/user", "user-db:user\nsystem-db:local\n"),
)


def _gdm() -> Iterator[Variant]:
    # dconf reads only the compiled databases: the keyfiles, then `dconf update`
    keyfiles = _DCONF_PROFILES + tuple(write(p, t) for p, t in _GDM_DCONF.values())
    hardened = (*keyfiles, dconf_update())
    settings = {c: P for c in _GDM_DCONF} | {"1.7.10": P}
    yield _v(
        "1.7/gdm-hardened",
        {"1.7.1": F, **settings},
        install("gdm3"),
        *hardened,
        kind="component",
        note="GDM installed and configured",
    )
    yield _v(
        "1.7/gdm-bare",
        {"1.7.1": F, **{c: F for c in _GDM_DCONF}, "1.7.10": P},
        install("gdm3"),
        kind="component",
        note="GDM installed, nothing configured (XDMCP is off by default)",
    )
    for ctl, (path, _t) in _GDM_DCONF.items():
        yield _v(
            f"{ctl}/gdm-missing-setting",
            {"1.7.1": F, **settings, ctl: F},
            install("gdm3"),
            *(e for e in hardened if e[1] != path),
        )
    yield _v(
        "1.7/keyfiles-never-compiled",
        {"1.7.1": F, **{c: F for c in _GDM_DCONF}, "1.7.10": P},
        install("gdm3"),
        *keyfiles,
        note="the keyfiles are written but `dconf update` never ran: dconf reads no database",
    )
    idle_path, idle_text = _GDM_DCONF["1.7.4"]
    yield _v(
        "1.7.4/keyfile-weakened-after-update",
        {"1.7.1": F, **settings},
        install("gdm3"),
        *hardened,
        write(idle_path, idle_text.replace("idle-delay=uint32 900", "idle-delay=uint32 0")),
        kind="compliant",
        note="idle-delay set to 0 in the keyfile after `dconf update`: the compiled 900 stays in force",
    )
    yield _v(
        "1.7.10/xdmcp-enabled",
        {"1.7.1": F, **settings, "1.7.10": F},
        install("gdm3"),
        *hardened,
        write("etc/gdm3/daemon.conf", "[daemon]\n[security]\n[xdmcp]\nEnable=true\n"),
    )
    yield _v(
        "1.7.10/xdmcp-in-custom-conf",
        {"1.7.1": F, **settings},
        install("gdm3"),
        *hardened,
        write("etc/gdm3/custom.conf", "[daemon]\n[security]\n[xdmcp]\nEnable=true\n"),
        kind="compliant",
        note="Debian's gdm3 reads /etc/gdm3/daemon.conf (and /run/gdm3/custom.conf), never /etc/gdm3/custom.conf",
    )
    yield _v(
        "1.7/dconf-no-profiles",
        {"1.7.1": F, **{c: F for c in _GDM_DCONF}, "1.7.10": P},
        install("gdm3"),
        *(e for e in hardened if e not in _DCONF_PROFILES),
        note="the databases are written but no profile names them: dconf reads none of them",
    )
    yield _v(
        "1.7.10/xdmcp-commented",
        {"1.7.1": F, **settings},
        install("gdm3"),
        *hardened,
        write("etc/gdm3/daemon.conf", "[daemon]\n[xdmcp]\n#Enable=true\n"),
        kind="compliant",
    )


_SERVICES = [
    ("2.1.1", ["autofs"], ["autofs.service"]),
    ("2.1.2", ["avahi-daemon"], ["avahi-daemon.service", "avahi-daemon.socket"]),
    ("2.1.3", ["isc-dhcp-server"], ["isc-dhcp-server.service", "isc-dhcp-server6.service"]),
    ("2.1.4", ["bind9"], ["named.service"]),
    ("2.1.5", ["dnsmasq"], ["dnsmasq.service"]),
    ("2.1.6", ["vsftpd"], ["vsftpd.service"]),
    ("2.1.7", ["slapd"], ["slapd.service"]),
    ("2.1.8", ["dovecot-imapd", "dovecot-pop3d"], ["dovecot.service", "dovecot.socket"]),
    ("2.1.9", ["nfs-kernel-server"], ["nfs-server.service"]),
    ("2.1.10", ["ypserv"], ["ypserv.service"]),
    ("2.1.11", ["cups"], ["cups.service", "cups.socket"]),
    ("2.1.12", ["rpcbind"], ["rpcbind.service", "rpcbind.socket"]),
    ("2.1.13", ["rsync"], ["rsync.service"]),
    ("2.1.14", ["samba"], ["smbd.service"]),
    ("2.1.15", ["snmpd"], ["snmpd.service"]),
    ("2.1.16", ["tftpd-hpa"], ["tftpd-hpa.service"]),
    ("2.1.17", ["squid"], ["squid.service"]),
    ("2.1.18", ["apache2", "nginx"], ["apache2.service", "nginx.service"]),
    ("2.1.19", ["xinetd"], ["xinetd.service"]),
    ("3.1.3", ["bluez"], ["bluetooth.service"]),
]


def _services() -> Iterator[Variant]:
    for ctl, pkgs, units in _SERVICES:
        pkg, first = pkgs[0], units[0]
        target = "sockets.target" if first.endswith(".socket") else "multi-user.target"
        yield _v(f"{ctl}/installed-enabled", {ctl: F}, install(pkg), enable(first, target))
        yield _v(
            f"{ctl}/installed-disabled",
            {},
            install(pkg),
            *(unit(u) for u in units),
            kind="compliant",
        )
        yield _v(
            f"{ctl}/installed-masked",
            {},
            install(pkg),
            *(unit(u) for u in units),
            *(mask(u) for u in units),
            kind="compliant",
        )
        for u in units[1:]:
            tgt = "sockets.target" if u.endswith(".socket") else "multi-user.target"
            yield _v(f"{ctl}/{u}-enabled", {ctl: F}, install(pkgs[-1]), unit(first), enable(u, tgt))
    yield _v("2.1.20/x-server", {"2.1.20": F}, install("xserver-common"))
    yield _v(
        "2.1.21/postfix-all-interfaces",
        {"cis-2.1.21-mta-local-only-configured": F},
        install("postfix"),
        write("etc/postfix/main.cf", "inet_interfaces = all\n"),
    )
    yield _v(
        "2.1.21/postfix-loopback",
        {},
        install("postfix"),
        write("etc/postfix/main.cf", "myhostname = h\ninet_interfaces = loopback-only\n"),
        kind="compliant",
    )
    yield _v(
        "2.1.21/listening-on-any",
        {"cis-2.1.21-mta-local-only-listening": F},
        append(
            "proc/net/tcp",
            "   9: 00000000:0019 00000000:0000 0A 00000000:00000000 00:00000000 00000000     0        0 31337 1 0000000000000000 100 0 0 10 0\n",
        ),
    )
    for ctl, pkg in (
        ("2.2.1", "nis"),
        ("2.2.2", "rsh-client"),
        ("2.2.3", "talk"),
        ("2.2.4", "telnet"),
        ("2.2.4", "inetutils-telnet"),
        ("2.2.5", "ldap-utils"),
        ("2.2.6", "ftp"),
        ("2.2.6", "tnftp"),
    ):
        yield _v(f"{ctl}/{pkg}-installed", {ctl: F}, install(pkg))
    # an interrupted dpkg run: nis unpacked (its files on disk), recorded in dpkg's journal only
    yield _v(
        "2.2.1/nis-unpacked-by-an-interrupted-run",
        {"2.2.1": F},
        write("var/lib/dpkg/updates/0000", "Package: nis\nStatus: install ok unpacked\nArchitecture: amd64\n"
              "Version: 4.17\nMaintainer: m\nDescription: d\n\n"),
        note="dpkg-query applies var/lib/dpkg/updates; apt lists an unpacked package as installed",
    )


_TIMESYNCD = (
    remove("chrony"),
    disable("chrony.service"),
    install("systemd-timesyncd"),
    enable("systemd-timesyncd.service", "sysinit.target", "/lib/systemd/systemd-timesyncd"),
    write("etc/systemd/timesyncd.conf", "[Time]\n#NTP=\n"),
    write(
        "etc/systemd/timesyncd.conf.d/60-cis.conf",
        "[Time]\nNTP=ntp1.example.internal ntp2.example.internal\nFallbackNTP=ntp3.example.internal\n",
    ),
)
_CHRONY_NA = {"2.3.3.1": NA, "2.3.3.2": NA, "2.3.3.3": NA}


def _time() -> Iterator[Variant]:
    yield _v(
        "2.3.3.1/no-servers",
        {"2.3.3.1": F},
        replace("etc/chrony/chrony.conf", "pool 2.debian.pool.ntp.org iburst\n", ""),
        delete("etc/chrony/sources.d/corp.sources"),
    )
    yield _v(
        "2.3.3.1/server-in-conf-d",
        {},
        delete("etc/chrony/sources.d/corp.sources"),
        replace("etc/chrony/chrony.conf", "pool 2.debian.pool.ntp.org iburst\n", ""),
        write("etc/chrony/conf.d/corp.conf", "server ntp1.example.internal iburst\n"),
        kind="compliant",
    )
    yield _v(
        "2.3.3.2/runs-as-root",
        {"2.3.3.2": F},
        replace("etc/chrony/chrony.conf", "user _chrony", "user root"),
    )
    yield _v(
        "2.3.3.2/user-line-absent",
        {},
        replace("etc/chrony/chrony.conf", "user _chrony\n", ""),
        kind="compliant",
        note="chronyd's compiled-in default on Debian is _chrony",
    )
    yield _v("2.3.3.3/chrony-disabled", {"2.3.3.3": F, "2.3.1.1": F}, disable("chrony.service"))
    yield _v(
        "2.3/timesyncd",
        {"2.3.2.1": P, "2.3.2.2": P, **_CHRONY_NA, "pci-10.6.3-time-settings-protected": P},
        *_TIMESYNCD,
        kind="component",
    )
    yield _v(
        "2.3.2.1/timesyncd-no-ntp",
        {"2.3.2.1": F, "2.3.2.2": P, **_CHRONY_NA},
        *_TIMESYNCD[:-1],
        write("etc/systemd/timesyncd.conf.d/60-cis.conf", "[Time]\n#NTP=\n"),
    )
    yield _v(
        "2.3.2.1/timesyncd-ntp-in-usr-lib-masked-by-etc",
        {"2.3.2.1": F, "2.3.2.2": P, **_CHRONY_NA},
        *_TIMESYNCD[:-1],
        write(
            "usr/lib/systemd/timesyncd.conf.d/60-cis.conf", "[Time]\nNTP=ntp1.example.internal\n"
        ),
        write("etc/systemd/timesyncd.conf.d/60-cis.conf", "[Time]\n# site: nothing\n"),
        oracle="systemd-analyze",
    )
    yield _v(
        "2.3.2.1/timesyncd-ntp-emptied-in-usr-local-lib",
        {"2.3.2.1": F, "2.3.2.2": P, **_CHRONY_NA},
        *_TIMESYNCD,
        write("usr/local/lib/systemd/timesyncd.conf.d/70-local.conf", "[Time]\nNTP=\n"),
        oracle="systemd-analyze",
    )
    yield _v(
        "2.3.2.2/timesyncd-disabled",
        {"2.3.1.1": F, "2.3.2.2": F, "2.3.2.1": P, **_CHRONY_NA},
        *_TIMESYNCD[:3],
        write("etc/systemd/timesyncd.conf.d/60-cis.conf", "[Time]\nNTP=ntp1.example.internal\n"),
    )
    yield _v(
        "2.3.1.1/no-time-daemon",
        {"2.3.1.1": F, **_CHRONY_NA},
        remove("chrony"),
        disable("chrony.service"),
        kind="component",
    )
    yield _v(
        "2.3.1.1/two-time-daemons",
        {"2.3.1.1": F},
        install("systemd-timesyncd"),
        enable("systemd-timesyncd.service", "sysinit.target", "/lib/systemd/systemd-timesyncd"),
        write("etc/systemd/timesyncd.conf.d/60-cis.conf", "[Time]\nNTP=ntp1.example.internal\n"),
    )


def _cron() -> Iterator[Variant]:
    yield _v("2.4.1.1/cron-disabled", {"2.4.1.1": F}, disable("cron.service"))
    yield _v("2.4.1.2/crontab-0644", {"2.4.1.2": F}, chmod("etc/crontab", 0o644))
    for ctl, d in (
        ("2.4.1.3", "cron.hourly"),
        ("2.4.1.4", "cron.daily"),
        ("2.4.1.5", "cron.weekly"),
        ("2.4.1.6", "cron.monthly"),
        ("2.4.1.7", "cron.d"),
    ):
        yield _v(f"{ctl}/{d}-0755", {ctl: F}, chmod(f"etc/{d}", 0o755))
        yield _v(f"{ctl}/{d}-group-owned", {ctl: F}, chown(f"etc/{d}", 0, 4))
    yield _v("2.4.1.8/no-cron-allow", {"2.4.1.8": F}, delete("etc/cron.allow"))
    yield _v("2.4.1.8/cron-allow-0644", {"2.4.1.8": F}, chmod("etc/cron.allow", 0o644))
    yield _v("2.4.1.8/cron-deny-also", {}, write("etc/cron.deny", "", 0o640), kind="compliant")
    yield _v(
        "2.4/cron-removed",
        {
            c: NA
            for c in (
                "2.4.1.1",
                "2.4.1.2",
                "2.4.1.3",
                "2.4.1.4",
                "2.4.1.5",
                "2.4.1.6",
                "2.4.1.7",
                "2.4.1.8",
            )
        },
        remove("cron"),
        disable("cron.service"),
        kind="component",
    )
    yield _v("2.4.2.1/at-without-allow", {"2.4.2.1": F}, install("at"), delete("etc/at.allow"))
    yield _v("2.4.2.1/at-restricted", {"2.4.2.1": P}, install("at"), kind="component")
    yield _v(
        "2.4.2.1/at-allow-world-readable",
        {"2.4.2.1": F},
        install("at"),
        chmod("etc/at.allow", 0o644),
    )


# rule id, key, compliant value, non-compliant value
_SYSCTL = [
    ("cis-1.5.1-aslr-enabled", "kernel.randomize_va_space", "2", "0"),
    ("cis-1.5.2-ptrace-scope-restricted", "kernel.yama.ptrace_scope", "1", "0"),
    ("cis-1.5.3-core-dumps-restricted", "fs.suid_dumpable", "0", "2"),
    ("cis-3.3.1-ipv4-ip-forward", "net.ipv4.ip_forward", "0", "1"),
    ("cis-3.3.1-ipv6-all-forwarding", "net.ipv6.conf.all.forwarding", "0", "1"),
    ("cis-3.3.2-ipv4-all-send-redirects", "net.ipv4.conf.all.send_redirects", "0", "1"),
    ("cis-3.3.2-ipv4-default-send-redirects", "net.ipv4.conf.default.send_redirects", "0", "1"),
    (
        "cis-3.3.3-ipv4-icmp-ignore-bogus-error-responses",
        "net.ipv4.icmp_ignore_bogus_error_responses",
        "1",
        "0",
    ),
    (
        "cis-3.3.4-ipv4-icmp-echo-ignore-broadcasts",
        "net.ipv4.icmp_echo_ignore_broadcasts",
        "1",
        "0",
    ),
    ("cis-3.3.5-ipv4-all-accept-redirects", "net.ipv4.conf.all.accept_redirects", "0", "1"),
    ("cis-3.3.5-ipv4-default-accept-redirects", "net.ipv4.conf.default.accept_redirects", "0", "1"),
    ("cis-3.3.5-ipv6-all-accept-redirects", "net.ipv6.conf.all.accept_redirects", "0", "1"),
    ("cis-3.3.5-ipv6-default-accept-redirects", "net.ipv6.conf.default.accept_redirects", "0", "1"),
    ("cis-3.3.6-ipv4-all-secure-redirects", "net.ipv4.conf.all.secure_redirects", "0", "1"),
    ("cis-3.3.6-ipv4-default-secure-redirects", "net.ipv4.conf.default.secure_redirects", "0", "1"),
    ("cis-3.3.7-ipv4-all-rp-filter", "net.ipv4.conf.all.rp_filter", "1", "0"),
    ("cis-3.3.7-ipv4-default-rp-filter", "net.ipv4.conf.default.rp_filter", "1", "0"),
    ("cis-3.3.8-ipv4-all-accept-source-route", "net.ipv4.conf.all.accept_source_route", "0", "1"),
    (
        "cis-3.3.8-ipv4-default-accept-source-route",
        "net.ipv4.conf.default.accept_source_route",
        "0",
        "1",
    ),
    ("cis-3.3.8-ipv6-all-accept-source-route", "net.ipv6.conf.all.accept_source_route", "0", "1"),
    (
        "cis-3.3.8-ipv6-default-accept-source-route",
        "net.ipv6.conf.default.accept_source_route",
        "0",
        "1",
    ),
    ("cis-3.3.9-ipv4-all-log-martians", "net.ipv4.conf.all.log_martians", "1", "0"),
    ("cis-3.3.9-ipv4-default-log-martians", "net.ipv4.conf.default.log_martians", "1", "0"),
    ("cis-3.3.10-ipv4-tcp-syncookies", "net.ipv4.tcp_syncookies", "1", "0"),
    ("cis-3.3.11-ipv6-all-accept-ra", "net.ipv6.conf.all.accept_ra", "0", "1"),
    ("cis-3.3.11-ipv6-default-accept-ra", "net.ipv6.conf.default.accept_ra", "0", "1"),
    ("soc2-cc6.8-unprivileged-bpf-disabled", "kernel.unprivileged_bpf_disabled", "1", "0"),
    ("soc2-cc6.8-bpf-jit-harden", "net.core.bpf_jit_harden", "2", "0"),
]
_SYSCTL_FILE = {
    k: (
        "etc/sysctl.d/60-cis-kernel.conf"
        if k.startswith(("kernel.", "fs.", "net.core."))
        else "etc/sysctl.d/60-cis-network.conf"
    )
    for _r, k, _g, _b in _SYSCTL
}


def _sysctl() -> Iterator[Variant]:
    for rule, key, good, bad in _SYSCTL:
        short = key.replace("net.", "").replace(".", "-")
        src = _SYSCTL_FILE[key]
        yield _v(
            f"sysctl/{short}/later-file-bad",
            {rule: F},
            write("etc/sysctl.d/99-zz-local.conf", f"{key} = {bad}\n"),
            oracle="sysctl",
        )
        yield _v(
            f"sysctl/{short}/earlier-file-bad",
            {},
            write("etc/sysctl.d/10-early.conf", f"{key}={bad}\n"),
            oracle="sysctl",
            kind="compliant",
        )
        yield _v(
            f"sysctl/{short}/running-bad",
            {rule: F},
            write("proc/sys/" + key.replace(".", "/"), f"{bad}\n"),
        )
        yield _v(
            f"sysctl/{short}/not-persisted",
            {rule: F},
            replace(src, f"{key} = {good}\n", ""),
            oracle="sysctl",
        )
    slash = "net/ipv4/conf/all/rp_filter"
    yield _v(
        "sysctl/slash-notation",
        {},
        replace(
            _SYSCTL_FILE["net.ipv4.conf.all.rp_filter"],
            "net.ipv4.conf.all.rp_filter = 1",
            f"{slash}=1",
        ),
        oracle="sysctl",
        kind="compliant",
    )
    yield _v(
        "sysctl/sysctl-conf-read-last-bad",
        {"cis-3.3.1-ipv4-ip-forward": F},
        write("etc/sysctl.conf", "net.ipv4.ip_forward=1\n"),
        oracle="sysctl",
    )
    yield _v(
        "sysctl/usr-lib-good-etc-masks",
        {r: F for r, k, _g, _b in _SYSCTL if _SYSCTL_FILE[k].endswith("network.conf")},
        write(
            "usr/lib/sysctl.d/60-cis-network.conf",
            (Path(roots.BASE) / "etc/sysctl.d/60-cis-network.conf").read_text(),
        ),
        symlink("etc/sysctl.d/60-cis-network.conf", "/dev/null"),
        oracle="sysctl",
        note="a /dev/null link in /etc/sysctl.d masks the file of the same name in /usr/lib/sysctl.d",
    )
    yield _v(
        "sysctl/usr-lib-only",
        {},
        write(
            "usr/lib/sysctl.d/60-cis-network.conf",
            (Path(roots.BASE) / "etc/sysctl.d/60-cis-network.conf").read_text(),
        ),
        delete("etc/sysctl.d/60-cis-network.conf"),
        oracle="sysctl",
        kind="compliant",
    )
    yield _v(
        "sysctl/usr-lib-later-name-bad",
        {"cis-3.3.1-ipv4-ip-forward": F},
        write("usr/lib/sysctl.d/99-forward.conf", "net.ipv4.ip_forward = 1\n"),
        oracle="sysctl",
        note="files from every sysctl.d directory are applied in file-name order",
    )
    yield _v(
        "sysctl/hidden-file-not-read",
        {"cis-3.3.1-ipv4-ip-forward": F},
        replace("etc/sysctl.d/60-cis-network.conf", "net.ipv4.ip_forward = 0\n", ""),
        write("etc/sysctl.d/.60-forward.conf", "net.ipv4.ip_forward = 0\n"),
        oracle="sysctl",
        note="systemd-sysctl skips hidden files (conf_files_list): a setting there is never applied",
    )
    yield _v(
        "sysctl/glob-key-bad",
        {"cis-3.3.7-ipv4-all-rp-filter": P, "cis-3.3.7-ipv4-default-rp-filter": P},
        write("etc/sysctl.d/99-zz-glob.conf", "net.ipv4.conf.*.rp_filter = 2\n"),
        oracle="sysctl",
        kind="compliant",
        note="systemd-sysctl: an explicit key beats a glob, whatever the file order",
    )
    ipv6_off = (
        replace(
            "boot/grub/grub.cfg",
            "audit_backlog_limit=8192 quiet",
            "audit_backlog_limit=8192 quiet ipv6.disable=1",
        ),
        replace(
            "boot/grub/grub.cfg",
            "audit_backlog_limit=8192\n",
            "audit_backlog_limit=8192 ipv6.disable=1\n",
        ),
    )
    # ... and the kernel booted so: the ipv6 module's `disable` is 1, and proc/sys has no net/ipv6
    # (the benchmark's audit reads the running kernel, not grub.cfg).
    booted_off = (
        write("sys/module/ipv6/parameters/disable", "1\n"),
        *(delete(str(p.relative_to(roots.BASE))) for p in sorted((Path(roots.BASE) / "proc/sys/net/ipv6").rglob("*"))
          if p.is_file()),
    )
    v6 = [(r, k) for r, k, _g, _b in _SYSCTL if ".ipv6." in k]
    yield _v(
        "sysctl/ipv6-disabled-unset",
        {},
        *ipv6_off,
        *booted_off,
        *(replace("etc/sysctl.d/60-cis-network.conf", f"{k} = 0\n", "") for _r, k in v6),
        kind="compliant",
    )


def _firewall() -> Iterator[Variant]:
    nft = "etc/nftables.conf"
    yield _v(
        "4.3.4/no-table",
        {"4.3.4": F, "4.3.5": F, "4.3.6": F, "4.3.8": F, "4.3.10": F},
        write(nft, "flush ruleset\n"),
    )
    yield _v(
        "4.3.5/no-forward-hook",
        {"4.3.5": F, "4.3.8": F},
        replace(
            nft,
            "\tchain forward {\n\t\ttype filter hook forward priority filter; policy drop;\n\t}\n",
            "",
        ),
    )
    yield _v("4.3.6/no-loopback-accept", {"4.3.6": F}, replace(nft, '\t\tiif "lo" accept\n', ""))
    yield _v(
        "4.3.6/no-ipv6-loopback-drop",
        {"4.3.6": F},
        replace(nft, "\t\tip6 saddr ::1 counter drop\n", ""),
    )
    yield _v(
        "4.3.8/input-accept",
        {"4.3.8": F},
        replace(
            nft,
            "hook input priority filter; policy drop;",
            "hook input priority filter; policy accept;",
        ),
    )
    yield _v(
        "4.3.8/rules-in-include",
        {},
        write(nft, 'flush ruleset\ninclude "/etc/nftables.d/*.nft"\n'),
        write(
            "etc/nftables.d/filter.nft",
            (Path(roots.BASE) / nft).read_text().replace("flush ruleset\n", ""),
        ),
        kind="compliant",
    )
    # nothing in use: every "tool installed" control of the three sections applies (and the
    # tools that are not installed fail it), as 4.1.1 does
    yield _v(
        "4.3.9/nftables-disabled",
        {"4.3.9": F, "4.1.1": F, "4.2.1": F, "4.4.1.1": F},
        disable("nftables.service"),
    )
    yield _v(
        "4.3.2/ufw-enabled-too",
        {"4.3.2": F, "4.1.1": F, "4.3.1": NA, "4.2.2": P, "4.2.3": F, "4.2.4": F, "4.2.7": F},
        install("ufw"),
        write("etc/ufw/ufw.conf", "ENABLED=yes\n"),
        write("etc/default/ufw", 'DEFAULT_INPUT_POLICY="DROP"\nDEFAULT_OUTPUT_POLICY="ACCEPT"\nDEFAULT_FORWARD_POLICY="DROP"\n'),
        note="both firewalls are in use: both sections apply",
    )
    yield _v(
        "4.3.2/ufw-installed-disabled",
        {},
        install("ufw"),
        write("etc/ufw/ufw.conf", "ENABLED=no\n"),
        kind="compliant",
    )
    nft_na = {
        c: NA for c in ("4.3.1", "4.3.2", "4.3.4", "4.3.5", "4.3.6", "4.3.8", "4.3.9", "4.3.10")
    }
    yield _v(
        "4.1.1/no-firewall",
        {"4.1.1": F, **nft_na, "4.2.1": F, "4.3.1": F, "4.4.1.1": F},
        remove("nftables"),
        disable("nftables.service"),
        kind="component",
    )
    ufw = (
        remove("nftables"),
        disable("nftables.service"),
        install("ufw"),
        write("etc/ufw/ufw.conf", "# /etc/ufw/ufw.conf\nENABLED=yes\nLOGLEVEL=low\n"),
        enable("ufw.service", "multi-user.target", "/lib/ufw/ufw-init start quiet"),
        write(
            "etc/default/ufw",
            'IPV6=yes\nDEFAULT_INPUT_POLICY="DROP"\nDEFAULT_OUTPUT_POLICY="DROP"\nDEFAULT_FORWARD_POLICY="DROP"\n',
        ),
        write(
            "etc/ufw/before.rules",
            "*filter\n-A ufw-before-input -i lo -j ACCEPT\n-A ufw-before-output -o lo -j ACCEPT\nCOMMIT\n",
        ),
        write("etc/ufw/user.rules", "*filter\n-A ufw-user-input -s 127.0.0.0/8 -j DROP\nCOMMIT\n"),
        write("etc/ufw/user6.rules", "*filter\n-A ufw6-user-input -s ::1 -j DROP\nCOMMIT\n"),
    )
    ufw_ok = {c: P for c in ("4.2.1", "4.2.2", "4.2.3", "4.2.4", "4.2.7")}
    yield _v("4.2/ufw", {**ufw_ok, **nft_na}, *ufw, kind="component")
    yield _v(
        "4.2.2/ufw-with-iptables-persistent",
        {**ufw_ok, **nft_na, "4.2.2": F},
        *ufw,
        install("iptables-persistent"),
    )
    yield _v(
        "4.2.3/ufw-service-disabled", {**ufw_ok, **nft_na, "4.2.3": F}, *ufw, disable("ufw.service")
    )
    yield _v(
        "4.2.4/ufw-no-loopback",
        {**ufw_ok, **nft_na, "4.2.4": F},
        *ufw,
        write("etc/ufw/before.rules", "*filter\nCOMMIT\n"),
    )
    yield _v(
        "4.2.7/ufw-default-allow-out",
        {**ufw_ok, **nft_na, "4.2.7": F},
        *ufw,
        replace(
            "etc/default/ufw", 'DEFAULT_OUTPUT_POLICY="DROP"', 'DEFAULT_OUTPUT_POLICY="ACCEPT"'
        ),
    )
    # ufw.conf and /etc/default/ufw as ufw-init sources them: asked of ufw-init (test_oracles)
    for vid, edit, expect in (
        ("4.2.3/ufw-enabled-then-no", append("etc/ufw/ufw.conf", "ENABLED=no\n"),
         {"4.2.3": F, "4.1.1": F, "4.3.1": F, "4.4.1.1": F}),
        ("4.2.3/ufw-enabled-quoted", replace("etc/ufw/ufw.conf", "ENABLED=yes", 'ENABLED="yes"'), {}),
        ("4.2.3/ufw-no-defaults-file", delete("etc/default/ufw"),
         {"4.2.3": F, "4.1.1": F, "4.3.1": F, "4.4.1.1": F, "4.2.7": F, "4.2.4": F}),
        ("4.2.7/ufw-input-accept-last", append("etc/default/ufw", 'DEFAULT_INPUT_POLICY="ACCEPT"\n'), {"4.2.7": F}),
        ("4.2.7/ufw-output-accept-in-ufw-conf", append("etc/ufw/ufw.conf", "DEFAULT_OUTPUT_POLICY=ACCEPT\n"),
         {"4.2.7": F}),
        ("4.2.7/ufw-unquoted-and-reject", replace("etc/default/ufw", '"DROP"', "REJECT"), {}),
        ("4.2.7/ufw-lowercase-policy", replace("etc/default/ufw", 'DEFAULT_OUTPUT_POLICY="DROP"',
                                               'DEFAULT_OUTPUT_POLICY="drop"'), {"4.2.7": F}),
    ):
        yield _v(vid, {**ufw_ok, **nft_na, **expect}, *ufw, edit, oracle="ufw-init",
                 kind="compliant" if not expect else "break")
    v4 = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -s 127.0.0.0/8 -j DROP\n-A OUTPUT -o lo -j ACCEPT\nCOMMIT\n"
    v6 = "*filter\n:INPUT DROP [0:0]\n:FORWARD DROP [0:0]\n:OUTPUT DROP [0:0]\n-A INPUT -i lo -j ACCEPT\n-A INPUT -s ::1/128 -j DROP\n-A OUTPUT -o lo -j ACCEPT\nCOMMIT\n"
    ipt = (
        remove("nftables"),
        disable("nftables.service"),
        install("iptables"),
        install("iptables-persistent"),
        enable(
            "netfilter-persistent.service",
            "multi-user.target",
            "/usr/sbin/netfilter-persistent start",
        ),
        write("etc/iptables/rules.v4", v4),
        write("etc/iptables/rules.v6", v6),
    )
    ipt_ok = {
        c: P for c in ("4.4.1.1", "4.4.1.2", "4.4.1.3", "4.4.2.1", "4.4.2.2", "4.4.3.1", "4.4.3.2")
    }
    yield _v("4.4/iptables", {**ipt_ok, **nft_na}, *ipt, kind="component")
    yield _v(
        "4.4.2.1/input-accept",
        {**ipt_ok, **nft_na, "4.4.2.1": F},
        *ipt,
        write("etc/iptables/rules.v4", v4.replace(":INPUT DROP", ":INPUT ACCEPT")),
    )
    yield _v(
        "4.4.2.2/no-loopback",
        {**ipt_ok, **nft_na, "4.4.2.2": F},
        *ipt,
        write("etc/iptables/rules.v4", v4.replace("-A INPUT -i lo -j ACCEPT\n", "")),
    )
    yield _v(
        "4.4.3.1/v6-output-accept",
        {**ipt_ok, **nft_na, "4.4.3.1": F},
        *ipt,
        write("etc/iptables/rules.v6", v6.replace(":OUTPUT DROP", ":OUTPUT ACCEPT")),
    )
    yield _v(
        "4.4.3.2/v6-no-loopback-drop",
        {**ipt_ok, **nft_na, "4.4.3.2": F},
        *ipt,
        write("etc/iptables/rules.v6", v6.replace("-A INPUT -s ::1/128 -j DROP\n", "")),
    )
    yield _v(
        "4.4.1.3/ufw-enabled-too",
        {
            **ipt_ok,
            **nft_na,
            "4.4.1.3": F,
            "4.1.1": F,
            "4.4.1.1": NA,
            "4.2.1": NA,
            "4.2.2": F,
            "4.2.3": F,
            "4.2.4": F,
            "4.2.7": F,
        },
        *ipt,
        install("ufw"),
        write("etc/ufw/ufw.conf", "ENABLED=yes\n"),
        write("etc/default/ufw", 'DEFAULT_INPUT_POLICY="DROP"\nDEFAULT_OUTPUT_POLICY="ACCEPT"\nDEFAULT_FORWARD_POLICY="DROP"\n'),
        note="ufw and iptables-persistent both in use: both sections apply",
    )
    yield _v(
        "4.4.1.2/nftables-enabled-too",
        {**ipt_ok, "4.4.1.2": F, "4.1.1": F, "4.3.1": NA, "4.4.1.1": NA},
        *ipt,
        install("nftables"),
        enable("nftables.service", "sysinit.target"),
    )


# rule control, keyword, compliant value (for tricky spellings), non-compliant value
_SSHD = [
    ("5.1.5", "Banner", "/etc/issue.net", "none"),
    ("5.1.6", "Ciphers", "aes256-ctr,aes128-ctr", "aes256-ctr,aes128-cbc"),
    ("5.1.7", "ClientAliveInterval", "300", "0"),
    ("5.1.7", "ClientAliveCountMax", "3", "0"),
    ("5.1.8", "DisableForwarding", "yes", "no"),
    ("5.1.9", "GSSAPIAuthentication", "no", "yes"),
    ("5.1.10", "HostbasedAuthentication", "no", "yes"),
    ("5.1.11", "IgnoreRhosts", "yes", "no"),
    (
        "5.1.12",
        "KexAlgorithms",
        "curve25519-sha256",
        "curve25519-sha256,diffie-hellman-group14-sha1",
    ),
    ("5.1.13", "LoginGraceTime", "60", "2m"),
    ("5.1.14", "LogLevel", "INFO", "DEBUG3"),
    ("5.1.15", "MACs", "hmac-sha2-512", "hmac-sha2-512,hmac-md5"),
    ("5.1.16", "MaxAuthTries", "3", "10"),
    ("5.1.17", "MaxSessions", "4", "20"),
    ("5.1.18", "MaxStartups", "10:30:60", "100:30:200"),
    ("5.1.19", "PermitEmptyPasswords", "no", "yes"),
    ("5.1.20", "PermitRootLogin", "no", "prohibit-password"),
    ("5.1.21", "PermitUserEnvironment", "no", "yes"),
    ("5.1.22", "UsePAM", "yes", "no"),
]
# keywords sshd accepts inside a Match block (sshd_config(5)); the others are global only
_MATCHABLE = {
    "Banner",
    "ClientAliveInterval",
    "ClientAliveCountMax",
    "DisableForwarding",
    "GSSAPIAuthentication",
    "HostbasedAuthentication",
    "IgnoreRhosts",
    "LogLevel",
    "MaxAuthTries",
    "MaxSessions",
    "PermitEmptyPasswords",
    "PermitRootLogin",
}
_SSHD_MAIN = "etc/ssh/sshd_config"
_LAST_WINS = {"MaxStartups"}
_SET_IN_50_CIS = {
    line.split()[0]
    for line in (Path(roots.BASE) / "etc/ssh/sshd_config.d/50-cis.conf").read_text().splitlines()
    if line.strip() and not line.startswith("#")
}


def _sshd() -> Iterator[Variant]:
    # a value sshd refuses: sshd -T fails and sshd does not start with the configuration, so no
    # rule on its values can hold (the file and host key modes, 5.1.1-5.1.3, still can)
    refused = {**{f"5.1.{n}": F for n in range(4, 23)}, "pci-8.4.2-ssh-multi-factor": F}
    for line in ("MaxAuthTries 4x", "LoginGraceTime 1x", "MaxStartups 10:30", "PermitRootLogin nope",
                 "UsePAM maybe", "Frobnicate yes"):
        yield _v(
            f"5.1/refused-{line.split()[0].lower()}",
            refused,
            write("etc/ssh/sshd_config.d/50-local.conf", f"{line}\n", 0o600),
            note=f"sshd -T: '{line}' is refused",
        )
    for ctl, kw, good, bad in _SSHD:
        slug = kw.lower()
        # sshd keeps the first value of a keyword, except the few its parser sets every time
        # (MaxStartups): there the last file read wins
        last_wins = kw in _LAST_WINS
        first = {} if last_wins else {ctl: F}
        yield _v(
            f"{ctl}/{slug}/dropin-sorting-first",
            first,
            write("etc/ssh/sshd_config.d/00-first.conf", f"{kw} {bad}\n", 0o600),
            oracle="sshd",
            kind="break" if first else "compliant",
        )
        # a later drop-in loses to 50-cis.conf; a keyword only the main file sets after the
        # Include line loses to every drop-in
        late = {ctl: F} if last_wins or kw not in _SET_IN_50_CIS else {}
        yield _v(
            f"{ctl}/{slug}/dropin-sorting-last",
            late,
            write("etc/ssh/sshd_config.d/99-last.conf", f"{kw} {bad}\n", 0o600),
            oracle="sshd",
            kind="break" if late else "compliant",
        )
        yield _v(
            f"{ctl}/{slug}/commented",
            {},
            write("etc/ssh/sshd_config.d/00-first.conf", f"#{kw} {bad}\n  # {kw} {bad}\n", 0o600),
            oracle="sshd",
            kind="compliant",
        )
        yield _v(
            f"{ctl}/{slug}/case-and-equals",
            first,
            write("etc/ssh/sshd_config.d/00-first.conf", f"  {kw.upper()} =  {bad}\n", 0o600),
            oracle="sshd",
            kind="break" if first else "compliant",
        )
        if kw in _MATCHABLE:
            yield _v(
                f"{ctl}/{slug}/match-address",
                {ctl: F},
                append(_SSHD_MAIN, f"\nMatch Address 10.0.0.0/8\n    {kw} {bad}\n"),
                oracle="sshd",
            )
            yield _v(
                f"{ctl}/{slug}/match-user-good",
                {},
                append(_SSHD_MAIN, f"\nMatch User backup\n    {kw} {good}\n"),
                oracle="sshd",
                kind="compliant",
            )
    # a pattern list, not `no`: PermitUserEnvironment compares yes and no case-sensitively
    yield _v(
        "5.1.21/permituserenvironment/pattern-in-capitals",
        {"5.1.21": F},
        write("etc/ssh/sshd_config.d/00-first.conf", "PermitUserEnvironment NO\n", 0o600),
        oracle="sshd",
    )
    # a global-only keyword in a Match block: sshd does not start
    yield _v(
        "5.1/refused-port-in-match",
        refused,
        append(_SSHD_MAIN, "\nMatch User backup\n    Port 2222\n"),
        note="sshd -T: 'Port' is not allowed within a Match block",
    )
    # Match flavours on one keyword
    for crit in (
        "User alice",
        "Group sshusers",
        "Host *.example.internal",
        "LocalPort 2222",
        "Address 192.0.2.0/24,!192.0.2.1",
        "all",
    ):
        slug = crit.split()[0].lower()
        yield _v(
            f"5.1.16/match-{slug}",
            {"5.1.16": F},
            append(_SSHD_MAIN, f"\nMatch {crit}\n\tMaxAuthTries 10\n"),
            oracle="sshd",
        )
    yield _v(
        "5.1.16/match-in-included-dropin",
        {"5.1.16": F},
        write(
            "etc/ssh/sshd_config.d/95-match.conf", "Match User deploy\n  MaxAuthTries 12\n", 0o600
        ),
        oracle="sshd",
        note="a Match block in a drop-in applies to that drop-in's lines only",
    )
    yield _v(
        "5.1.5/match-ends-at-include-end",
        {"5.1.5": F},
        write(
            "etc/ssh/sshd_config.d/05-match.conf",
            "Match User deploy\n  PasswordAuthentication no\n",
            0o600,
        ),
        write("etc/ssh/sshd_config.d/06-global.conf", "Banner none\n", 0o600),
        oracle="sshd",
        note="the Match block of 05-match.conf ends with that file: 06-global.conf is global again, and first",
    )
    yield _v(
        "5.1.20/match-sets-yes-after-good-match",
        {"5.1.20": F},
        append(
            _SSHD_MAIN,
            "\nMatch User admin\n  PermitRootLogin no\nMatch Address 10.0.0.0/8\n  PermitRootLogin yes\n",
        ),
        oracle="sshd",
    )
    yield _v(
        "5.1.4/no-allow-or-deny",
        {"5.1.4": F},
        replace("etc/ssh/sshd_config.d/50-cis.conf", "AllowGroups sshusers\n", ""),
        oracle="sshd",
    )
    yield _v(
        "5.1.4/denyusers-only",
        {},
        replace(
            "etc/ssh/sshd_config.d/50-cis.conf", "AllowGroups sshusers\n", "DenyUsers nobody\n"
        ),
        oracle="sshd",
        kind="compliant",
    )
    yield _v(
        "5.1.6/ciphers-default",
        {"5.1.6": F},
        replace(
            "etc/ssh/sshd_config.d/50-cis.conf",
            "Ciphers aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr\n",
            "",
        ),
        oracle="sshd",
        note="OpenSSH's default list has chacha20-poly1305",
    )
    yield _v(
        "5.1.6/ciphers-minus-chacha",
        {},
        replace(
            "etc/ssh/sshd_config.d/50-cis.conf",
            "Ciphers aes256-gcm@openssh.com,aes128-gcm@openssh.com,aes256-ctr,aes192-ctr,aes128-ctr\n",
            "Ciphers -chacha20*\n",
        ),
        oracle="sshd",
        kind="compliant",
    )
    yield _v(
        "5.1.13/login-grace-default",
        {"5.1.13": F},
        replace("etc/ssh/sshd_config.d/50-cis.conf", "LoginGraceTime 1m\n", ""),
        oracle="sshd",
    )
    yield _v(
        "5.1.20/prohibit-password-default",
        {"5.1.20": F},
        replace("etc/ssh/sshd_config.d/50-cis.conf", "PermitRootLogin no\n", ""),
        delete("etc/ssh/sshd_config.d/90-local.conf"),
        oracle="sshd",
    )
    yield _v(
        "5.1.19/empty-passwords-default",
        {},
        replace("etc/ssh/sshd_config.d/50-cis.conf", "PermitEmptyPasswords no\n", ""),
        oracle="sshd",
        kind="compliant",
    )
    yield _v(
        "5.1/relative-include",
        {"5.1.16": F},
        write("etc/ssh/local.d/a.conf", "MaxAuthTries 9\n", 0o600),
        replace(
            _SSHD_MAIN,
            "Include /etc/ssh/sshd_config.d/*.conf",
            "Include local.d/*.conf\nInclude /etc/ssh/sshd_config.d/*.conf",
        ),
        oracle="sshd",
    )
    # permissions (5.1.1-5.1.3)
    yield _v("5.1.1/sshd-config-0644", {"5.1.1": F}, chmod(_SSHD_MAIN, 0o644))
    yield _v("5.1.1/dropin-0644", {"5.1.1": F}, chmod("etc/ssh/sshd_config.d/50-cis.conf", 0o644))
    yield _v(
        "5.1.2/host-key-0640-root",
        {"5.1.2": F},
        write("etc/ssh/ssh_host_ed25519_key", "KEY\n", 0o640),
    )
    yield _v(
        "5.1.2/host-key-0600",
        {},
        write("etc/ssh/ssh_host_ed25519_key", "KEY\n", 0o600),
        kind="compliant",
    )
    yield _v(
        "5.1.3/pub-key-0666",
        {"5.1.3": F, "7.1.11": F},
        write("etc/ssh/ssh_host_ed25519_key.pub", "ssh-ed25519 AAAA\n", 0o666),
    )
    sshd_rules = [
        c
        for c in (
            "5.1.4",
            "5.1.5",
            "5.1.6",
            "5.1.7",
            "5.1.8",
            "5.1.9",
            "5.1.10",
            "5.1.11",
            "5.1.12",
            "5.1.13",
            "5.1.14",
            "5.1.15",
            "5.1.16",
            "5.1.17",
            "5.1.18",
            "5.1.19",
            "5.1.20",
            "5.1.21",
            "5.1.22",
        )
    ]
    yield _v(
        "5.1/openssh-server-removed",
        {
            **{c: NA for c in sshd_rules},
            "5.1.1": NA,
            "5.1.2": NA,
            "5.1.3": NA,
            "pci-8.4.2-ssh-multi-factor": NA,
        },
        remove("openssh-server"),
        delete("etc/ssh"),
        disable("ssh.service"),
        kind="component",
    )


_SUDOERS = "etc/sudoers"


def _sudo() -> Iterator[Variant]:
    yield _v(
        "5.2.1/sudo-removed",
        {
            "5.2.1": F,
            "5.2.2": NA,
            "5.2.3": NA,
            "5.2.4": NA,
            "5.2.5": NA,
            "5.2.6": NA,
            "6.2.3.3": NA,
        },
        remove("sudo"),
        delete(_SUDOERS),
        delete("etc/sudoers.d"),
        kind="component",
    )
    yield _v("5.2.2/no-use-pty", {"5.2.2": F}, replace(_SUDOERS, "Defaults\tuse_pty\n", ""))
    yield _v(
        "5.2.2/use-pty-in-dropin",
        {},
        replace(_SUDOERS, "Defaults\tuse_pty\n", ""),
        write("etc/sudoers.d/cis", "Defaults use_pty\n", 0o440),
        kind="compliant",
        oracle="sudo",
    )
    yield _v(
        "5.2.2/use-pty-in-ignored-dropin",
        {"5.2.2": F},
        replace(_SUDOERS, "Defaults\tuse_pty\n", ""),
        write("etc/sudoers.d/cis.conf", "Defaults use_pty\n", 0o440),
        oracle="sudo",
        note="sudo skips sudoers.d files whose name contains a dot",
    )
    yield _v(
        "5.2.2/negated-later",
        {"5.2.2": F},
        write("etc/sudoers.d/zz-local", "Defaults !use_pty\n", 0o440),
        oracle="sudo",
    )
    yield _v(
        "5.2.2/in-list",
        {},
        replace(_SUDOERS, "Defaults\tuse_pty\n", "Defaults\tenv_reset, use_pty,mail_badpass\n"),
        kind="compliant",
        oracle="sudo",
    )
    yield _v(
        "5.2.2/commented",
        {"5.2.2": F},
        replace(_SUDOERS, "Defaults\tuse_pty\n", "#Defaults\tuse_pty\n"),
    )
    yield _v(
        "5.2.3/no-logfile",
        {"5.2.3": F, "6.2.3.3": F},
        replace(_SUDOERS, 'Defaults\tlogfile="/var/log/sudo.log"\n', ""),
    )
    yield _v(
        "5.2.3/logfile-elsewhere-audited",
        {},
        replace(_SUDOERS, 'Defaults\tlogfile="/var/log/sudo.log"\n', ""),
        write("etc/sudoers.d/logging", "Defaults logfile=/var/log/sudo/sudo.log\n", 0o440),
        replace(
            "etc/audit/rules.d/50-cis.rules",
            "-w /var/log/sudo.log -p wa",
            "-w /var/log/sudo/sudo.log -p wa",
        ),
        replace("etc/audit/audit.rules", "-w /var/log/sudo.log -p wa", "-w /var/log/sudo/sudo.log -p wa"),
        kind="compliant",
        oracle="sudo",
    )
    yield _v(
        "6.2.3.3/logfile-elsewhere-not-audited",
        {"6.2.3.3": F},
        replace(
            _SUDOERS,
            'Defaults\tlogfile="/var/log/sudo.log"\n',
            'Defaults\tlogfile="/var/log/sudo-io.log"\n',
        ),
        note="the audit rule watches /var/log/sudo.log, sudo logs to /var/log/sudo-io.log",
    )
    yield _v(
        "5.2.4/nopasswd",
        {"5.2.4": F},
        write("etc/sudoers.d/deploy", "deploy ALL=(ALL) NOPASSWD: ALL\n", 0o440),
        oracle="sudo",
    )
    yield _v(
        "5.2.4/nopasswd-in-ignored-file",
        {},
        write("etc/sudoers.d/deploy~", "deploy ALL=(ALL) NOPASSWD: ALL\n", 0o440),
        kind="compliant",
        oracle="sudo",
    )
    yield _v(
        "5.2.4/nopasswd-commented",
        {},
        write("etc/sudoers.d/deploy", "# deploy ALL=(ALL) NOPASSWD: ALL\n", 0o440),
        kind="compliant",
        oracle="sudo",
    )
    yield _v(
        "5.2.5/not-authenticate",
        {"5.2.5": F},
        write("etc/sudoers.d/ops", "Defaults:ops !authenticate\n", 0o440),
        oracle="sudo",
    )
    yield _v(
        "5.2.2/use-pty-continued-line",
        {},
        replace(_SUDOERS, "Defaults\tuse_pty\n", "Defaults\tmail_badpass, \\\n\t\tuse_pty\n"),
        kind="compliant",
        oracle="sudo",
        note="a backslash joins the next line to the Defaults line",
    )
    yield _v(
        "5.2.2/old-includedir-form",
        {},
        replace(_SUDOERS, "Defaults\tuse_pty\n", ""),
        replace(_SUDOERS, "@includedir /etc/sudoers.d", "#includedir /etc/sudoers.d"),
        write("etc/sudoers.d/cis", "Defaults use_pty\n", 0o440),
        kind="compliant",
        oracle="sudo",
        note="#includedir is an include, not a comment",
    )
    yield _v(
        "5.2.2/includedir-commented",
        {"5.2.2": F},
        replace(_SUDOERS, "Defaults\tuse_pty\n", ""),
        replace(_SUDOERS, "@includedir /etc/sudoers.d", "# includedir /etc/sudoers.d"),
        write("etc/sudoers.d/cis", "Defaults use_pty\n", 0o440),
        oracle="sudo",
        note="with a space after # the line is a comment and sudoers.d is not read",
    )
    yield _v(
        "5.2.2/use-pty-for-one-command-off",
        {"5.2.2": F},
        write("etc/sudoers.d/su", "Defaults!/usr/bin/su !use_pty\n", 0o440),
        oracle="sudo",
    )
    yield _v(
        "5.2.3/logfile-relative-include",
        {},
        replace(_SUDOERS, 'Defaults\tlogfile="/var/log/sudo.log"\n', "@include sudoers.local\n"),
        write("etc/sudoers.local", 'Defaults logfile="/var/log/sudo.log"\n', 0o440),
        kind="compliant",
        oracle="sudo",
        note="a relative @include is read from the including file's directory",
    )
    yield _v(
        "5.2.3/logfile-unset-later",
        {"5.2.3": F, "6.2.3.3": F},
        write("etc/sudoers.d/zz-nolog", "Defaults !logfile\n", 0o440),
        oracle="sudo",
    )
    yield _v(
        "5.2.3/logfile-for-one-host-only",
        {"5.2.3": F, "6.2.3.3": F},
        replace(
            _SUDOERS,
            'Defaults\tlogfile="/var/log/sudo.log"\n',
            'Defaults@web1\tlogfile="/var/log/sudo.log"\n',
        ),
        oracle="sudo",
        note="a host-scoped Defaults does not set the global value",
    )
    yield _v(
        "5.2.4/nopasswd-group-in-list",
        {"5.2.4": F},
        write(
            "etc/sudoers.d/ops",
            "%ops ALL=(ALL) /usr/bin/systemctl, NOPASSWD: /usr/bin/journalctl\n",
            0o440,
        ),
        oracle="sudo",
    )
    yield _v(
        "5.2.5/not-authenticate-globally",
        {"5.2.5": F},
        write("etc/sudoers.d/zz", "Defaults !authenticate\n", 0o440),
        oracle="sudo",
    )
    yield _v(
        "5.2.6/timeout-in-dropin-30",
        {"5.2.6": F},
        write("etc/sudoers.d/zz", "Defaults timestamp_timeout=30\n", 0o440),
        oracle="sudo",
    )
    yield _v(
        "5.2.6/timeout-in-ignored-dropin",
        {},
        write("etc/sudoers.d/zz.bak", "Defaults timestamp_timeout=30\n", 0o440),
        kind="compliant",
        oracle="sudo",
    )
    yield _v(
        "5.2.6/timeout-fraction",
        {},
        replace(_SUDOERS, "timestamp_timeout=15", "timestamp_timeout=2.5"),
        kind="compliant",
        oracle="sudo",
        note="sudo reads minutes with a fraction",
    )
    yield _v(
        "5.2.6/timeout-with-unit",
        {"5.2.6": F},
        replace(_SUDOERS, "timestamp_timeout=15", "timestamp_timeout=5m"),
        note="visudo refuses 5m: not a number of minutes",
    )
    yield _v(
        "5.2.6/timeout-30",
        {"5.2.6": F},
        replace(_SUDOERS, "timestamp_timeout=15", "timestamp_timeout=30"),
    )
    yield _v(
        "5.2.6/timeout-negative",
        {"5.2.6": F},
        replace(_SUDOERS, "timestamp_timeout=15", "timestamp_timeout=-1"),
    )
    yield _v(
        "5.2.6/timeout-unset",
        {},
        replace(_SUDOERS, "Defaults\ttimestamp_timeout=15\n", ""),
        kind="compliant",
        note="sudo's default is 15 minutes",
    )
    su = "etc/pam.d/su"
    yield _v(
        "5.2.7/no-pam-wheel",
        {"5.2.7": F},
        replace(su, "auth       required   pam_wheel.so use_uid group=sugroup\n", ""),
    )
    yield _v(
        "5.2.7/group-has-members",
        {"5.2.7": F},
        replace("etc/group", "sugroup:x:1002:", "sugroup:x:1002:alice"),
    )
    yield _v(
        "5.2.7/commented-pam-wheel",
        {"5.2.7": F},
        replace(su, "auth       required   pam_wheel.so", "# auth       required   pam_wheel.so"),
    )


_PW = "etc/security/pwquality.conf.d/50-cis.conf"
_CP = "etc/pam.d/common-password"
_CA = "etc/pam.d/common-auth"
_FL = "etc/security/faillock.conf"
_PWQ_LINE = "password\trequisite\t\t\tpam_pwquality.so retry=3"


def _pam() -> Iterator[Variant]:
    yield _v("5.3.1.1/libpam-runtime-old", {"5.3.1.1": F}, install("libpam-runtime", "1.5.2-5"))
    yield _v("5.3.1.2/libpam-modules-missing", {"5.3.1.2": F}, remove("libpam-modules"))
    yield _v("5.3.1.3/libpam-pwquality-missing", {"5.3.1.3": F}, remove("libpam-pwquality"))
    yield _v(
        "5.3.2.1/no-unix-session",
        {"5.3.2.1": F},
        replace("etc/pam.d/common-session", "session\trequired\tpam_unix.so\n", ""),
    )
    yield _v(
        "5.3.2.2/no-authfail",
        # no failure is ever counted: pam_faillock never locks (pamtester, test_faillock_oracle.py)
        {"5.3.2.2": F, "pci-8.3.4-lockout-policy": F},
        replace(_CA, "auth\t[default=die]\t\t\tpam_faillock.so authfail\n", ""),
    )
    yield _v(
        "5.3.2.3/no-pwquality",
        {
            "5.3.2.3": F,
            **{
                c: NA
                for c in (
                    "5.3.3.2.1",
                    "5.3.3.2.2",
                    "5.3.3.2.4",
                    "5.3.3.2.5",
                    "5.3.3.2.6",
                    "5.3.3.2.7",
                    "5.3.3.2.8",
                )
            },
            "pci-8.3.6-password-composition": F,
        },
        replace(_CP, _PWQ_LINE + "\n", ""),
    )
    yield _v(
        "5.3.2.4/no-pwhistory",
        {"5.3.2.4": F, "5.3.3.3.1": NA, "5.3.3.3.2": NA, "5.3.3.3.3": NA},
        replace(
            _CP,
            "password\trequired\t\t\tpam_pwhistory.so remember=24 enforce_for_root \\\n\tuse_authtok\n",
            "",
        ),
    )
    yield _v("5.3.3.1.1/deny-10", {"5.3.3.1.1": F}, replace(_FL, "deny = 5", "deny = 10"))
    yield _v(
        "5.3.3.1.1/deny-on-pam-line",
        # pam_faillock: authfail stops counting at faillock.conf's 5 (it checks first) and preauth
        # waits for 8, so the right password always gets in (test_faillock_oracle.py)
        {"5.3.3.1.1": F, "pci-8.3.4-lockout-policy": F},
        replace(_CA, "pam_faillock.so preauth", "pam_faillock.so preauth deny=8"),
    )
    yield _v(
        "5.3.3.1.1/deny-unset",
        {"5.3.3.1.1": P, "pci-8.3.4-lockout-policy": P},
        replace(_FL, "deny = 5\n", ""),
        kind="compliant",
        note="pam_faillock's default is deny=3",
    )
    yield _v(
        "5.3.3.1.2/unlock-600",
        {"5.3.3.1.2": F, "pci-8.3.4-lockout-policy": F},
        replace(_FL, "unlock_time = 1800", "unlock_time = 600"),
    )
    yield _v(
        "5.3.3.1.2/unlock-never",
        {},
        replace(_FL, "unlock_time = 1800", "unlock_time = 0"),
        kind="compliant",
    )
    yield _v(
        "5.3.3.1.2/unlock-unset",
        {"5.3.3.1.2": F, "pci-8.3.4-lockout-policy": F},
        replace(_FL, "unlock_time = 1800\n", ""),
        note="pam_faillock's default is 600 seconds",
    )
    # pam_faillock's reader (set_conf_opt): case-sensitive names, sscanf numbers, bad values ignored
    yield _v(
        "5.3.3.1.2/upper-case-name-ignored",
        {"5.3.3.1.2": F, "pci-8.3.4-lockout-policy": F},
        replace(_FL, "unlock_time = 1800", "UNLOCK_TIME = 1800"),
        note="pam_faillock compares option names case-sensitively: the default 600 s applies",
    )
    yield _v(
        "5.3.3.1.2/unlock-never-word",
        {},
        replace(_FL, "unlock_time = 1800", "unlock_time = never"),
        kind="compliant",
        note="never is 0: an administrator unlocks",
    )
    yield _v(
        "5.3.3.1.2/unlock-beyond-a-week-ignored",
        {"5.3.3.1.2": F, "pci-8.3.4-lockout-policy": F},
        replace(_FL, "unlock_time = 1800", "unlock_time = 700000"),
        note="more than 604800 s is refused and the default 600 s stays",
    )
    yield _v(
        "5.3.3.1.2/pam-arg-lowers-it-on-authfail",
        {"5.3.3.1.2": F, "pci-8.3.4-lockout-policy": F},
        replace(_CA, "pam_faillock.so authfail", "pam_faillock.so authfail unlock_time=300"),
    )
    yield _v(
        "5.3.3.1.1/deny-trailing-comment-and-junk",
        {},
        replace(_FL, "deny = 5", "deny = 4abc   # CIS"),
        kind="compliant",
        note="sscanf reads the leading digits",
    )
    yield _v(
        "5.3.3.1.1/pam-arg-not-a-number",
        {},
        replace(_CA, "pam_faillock.so preauth", "pam_faillock.so preauth deny=abc"),
        kind="compliant",
        note="pam_faillock logs the bad number and keeps faillock.conf's deny",
    )
    yield _v(
        "5.3.3.1.1/deny-negative-wraps",
        {"5.3.3.1.1": F, "pci-8.3.4-lockout-policy": F},
        replace(_FL, "deny = 5", "deny = -1"),
        note="%hu reads -1 as 65535",
    )
    yield _v(
        "5.3.3.1.3/root-unlock-follows-unlock-time",
        {},
        replace(_FL, "root_unlock_time = 60\n", ""),
        kind="compliant",
        note="root_unlock_time unset follows unlock_time (1800)",
    )
    yield _v(
        "5.3.3.1.3/root-unlock-follows-short-unlock-time",
        {"5.3.3.1.3": F, "5.3.3.1.2": F, "pci-8.3.4-lockout-policy": F},
        replace(_FL, "root_unlock_time = 60\n", ""),
        replace(_FL, "unlock_time = 1800", "unlock_time = 30"),
    )
    yield _v(
        "5.3.3.1.3/root-not-locked",
        {"5.3.3.1.3": F},
        replace(_FL, "even_deny_root\n", ""),
        replace(_FL, "root_unlock_time = 60\n", ""),
    )
    yield _v(
        "5.3.3.1.3/root-unlock-30",
        {"5.3.3.1.3": F},
        replace(_FL, "even_deny_root\n", ""),
        replace(_FL, "root_unlock_time = 60", "root_unlock_time = 30"),
    )
    for ctl, key, good_arg, bad_conf, bad_arg in (
        ("5.3.3.2.1", "difok", "difok=4", "difok = 1", "difok=1"),
        ("5.3.3.2.2", "minlen", "minlen=16", "minlen = 8", "minlen=10"),
        ("5.3.3.2.4", "maxrepeat", "maxrepeat=2", "maxrepeat = 0", "maxrepeat=5"),
        ("5.3.3.2.5", "maxsequence", "maxsequence=2", "maxsequence = 0", "maxsequence=6"),
    ):
        line = next(
            ln for ln in (Path(roots.BASE) / _PW).read_text().splitlines() if ln.startswith(key)
        )
        extra = {"pci-8.3.6-password-composition": F} if key == "minlen" else {}
        yield _v(f"{ctl}/conf-weak", {ctl: F, **extra}, replace(_PW, line, bad_conf))
        yield _v(
            f"{ctl}/pam-arg-weak",
            {ctl: F, **extra},
            replace(_CP, _PWQ_LINE, f"{_PWQ_LINE} {bad_arg}"),
        )
        yield _v(
            f"{ctl}/pam-arg-compliant",
            {},
            replace(_CP, _PWQ_LINE, f"{_PWQ_LINE} {good_arg}"),
            kind="compliant",
        )
        yield _v(
            f"{ctl}/pam-arg-compliant-conf-unset",
            {},
            replace(_PW, line + "\n", ""),
            replace(_CP, _PWQ_LINE, f"{_PWQ_LINE} {good_arg}"),
            kind="compliant",
        )
        yield _v(
            f"{ctl}/unset",
            {ctl: F, **extra},
            replace(_PW, line + "\n", ""),
            note="libpwquality's default is weaker than the benchmark",
        )
    yield _v(
        "5.3.3.2.2/main-conf-overrides-dropin",
        {"5.3.3.2.2": F, "pci-8.3.6-password-composition": F},
        append("etc/security/pwquality.conf", "minlen = 8\n"),
        note="pwquality.conf is read after pwquality.conf.d and wins",
    )
    # how libpwquality reads what it reads: asked of the library (test_oracles)
    # libpwquality reads lines with fgets() into 1024 bytes: a longer line (a comment too)
    # makes it give up there, on this file and pwquality.conf after it: what follows is never
    # read, and the defaults stand
    yield _v(
        "5.3.3.2.2/minlen-after-a-line-too-long",
        {"5.3.3.2.1": F, "5.3.3.2.2": F, "5.3.3.2.4": F, "5.3.3.2.5": F, "5.3.3.2.8": F,
         "pci-8.3.6-password-composition": F},
        replace(_PW, "minlen = 14", "# " + "x" * 1021 + "\nminlen = 14"),
        oracle="pwquality",
    )
    yield _v(
        "5.3.3.2.2/minlen-after-the-longest-line",
        {},
        replace(_PW, "minlen = 14", "# " + "x" * 1020 + "\nminlen = 14"),
        oracle="pwquality",
        kind="compliant",
    )
    yield _v(
        "5.3.3.2.2/upper-case-key",
        {},
        replace(_PW, "minlen = 14", "MINLEN = 14"),
        oracle="pwquality",
        kind="compliant",
    )
    yield _v(
        "5.3.3.2.2/trailing-comment",
        {},
        replace(_PW, "minlen = 14", "minlen = 14   # CIS"),
        oracle="pwquality",
        kind="compliant",
    )
    yield _v(
        "5.3.3.2.2/no-spaces-and-tabs",
        {},
        replace(_PW, "minlen = 14", "\tminlen=14"),
        oracle="pwquality",
        kind="compliant",
    )
    yield _v(
        "5.3.3.2.2/dropin-not-conf",
        {"5.3.3.2.2": F, "pci-8.3.6-password-composition": F},
        replace(_PW, "minlen = 14\n", ""),
        write("etc/security/pwquality.conf.d/60-cis.conf.disabled", "minlen = 14\n"),
        oracle="pwquality",
        note="only *.conf files of pwquality.conf.d are read",
    )
    yield _v(
        "5.3.3.2.2/later-dropin-weaker",
        {"5.3.3.2.2": F, "pci-8.3.6-password-composition": F},
        write("etc/security/pwquality.conf.d/99-local.conf", "minlen = 10\n"),
        oracle="pwquality",
    )
    yield _v(
        "5.3.3.2.2/pam-arg-twice-last-weak",
        {"5.3.3.2.2": F, "pci-8.3.6-password-composition": F},
        replace(_CP, _PWQ_LINE, f"{_PWQ_LINE} minlen=16 minlen=8"),
        oracle="pwquality",
        note="pam_pwquality applies its arguments in order: the last minlen wins",
    )
    yield _v(
        "5.3.3.2.2/pam-arg-twice-last-good",
        {},
        replace(_CP, _PWQ_LINE, f"{_PWQ_LINE} minlen=8 minlen=16"),
        oracle="pwquality",
        kind="compliant",
    )
    stopped = {
        **{c: F for c in ("5.3.3.2.1", "5.3.3.2.2", "5.3.3.2.4", "5.3.3.2.5", "5.3.3.2.8")},
        "pci-8.3.6-password-composition": F,
    }
    yield _v(
        "5.3.3.2/unknown-setting-stops-reading",
        stopped,
        replace(_PW, "minlen = 14", "min_len = 14\nminlen = 14"),
        oracle="pwquality",
        note="libpwquality stops at a line it refuses: nothing after it, in any file, is applied",
    )
    yield _v(
        "5.3.3.2/semicolon-comment-stops-reading",
        stopped,
        replace(_PW, "minlen = 14", "; CIS\nminlen = 14"),
        oracle="pwquality",
    )
    yield _v(
        "5.3.3.2/bad-number-stops-reading",
        stopped,
        replace(_PW, "minlen = 14", "minclass = four\nminlen = 14"),
        oracle="pwquality",
    )
    yield _v(
        "5.3.3.2.2/minlen-below-6",
        {"5.3.3.2.2": F, "pci-8.3.6-password-composition": F},
        replace(_PW, "minlen = 14", "minlen = 3"),
        oracle="pwquality",
        note="libpwquality raises a minlen below 6 to 6",
    )
    yield _v(
        "5.3.3.2.2/pam-arg-not-a-number",
        {},
        replace(_CP, _PWQ_LINE, f"{_PWQ_LINE} minlen=abc"),
        oracle="pwquality",
        kind="compliant",
        note="pam_pwquality logs the argument it cannot use and keeps the configured value",
    )
    yield _v(
        "5.3.3.2.8/enforce-for-root-in-dropin",
        {},
        replace("etc/security/pwquality.conf", "enforce_for_root\n", ""),
        append(_PW, "enforce_for_root\n"),
        oracle="pwquality",
        kind="compliant",
    )
    yield _v(
        "5.3.3.2.8/enforce-for-root-commented",
        {"5.3.3.2.8": F},
        replace("etc/security/pwquality.conf", "enforce_for_root\n", "# enforce_for_root\n"),
        oracle="pwquality",
    )
    for ctl, key in (("5.3.3.2.6", "dictcheck"), ("5.3.3.2.7", "enforcing")):
        # enforcing 0: pam_pwquality only warns, and pamtester stores a weak password
        # (test_pwquality_enforced_oracle.py); a dictionary check off still enforces the rest
        off = {ctl: F, "pci-8.3.6-password-composition": F} if key == "enforcing" else {ctl: F}
        yield _v(f"{ctl}/conf-off", off, append(_PW, f"{key} = 0\n"))
        yield _v(
            f"{ctl}/pam-arg-off-conf-unset",
            off,
            replace(_PW, "dictcheck = 1\n", ""),
            replace(_CP, _PWQ_LINE, f"{_PWQ_LINE} {key}=0"),
            note="operator precedence: dictcheck=0 on the PAM line with the key unset in the files",
        )
        yield _v(
            f"{ctl}/unset",
            {},
            replace(_PW, "dictcheck = 1\n", ""),
            kind="compliant",
            note="libpwquality enables it by default",
        )
        yield _v(
            f"{ctl}/pam-arg-on",
            {},
            replace(_CP, _PWQ_LINE, f"{_PWQ_LINE} {key}=1"),
            kind="compliant",
        )
    yield _v(
        "5.3.3.2.8/no-enforce-for-root",
        {"5.3.3.2.8": F},
        replace("etc/security/pwquality.conf", "enforce_for_root\n", ""),
    )
    yield _v(
        "5.3.3.2.8/enforce-for-root-on-pam-line",
        {},
        replace("etc/security/pwquality.conf", "enforce_for_root\n", ""),
        replace(_CP, _PWQ_LINE, f"{_PWQ_LINE} enforce_for_root"),
        kind="compliant",
    )
    hist = "pam_pwhistory.so remember=24 enforce_for_root \\\n\tuse_authtok"
    yield _v(
        "5.3.3.3.1/remember-5",
        {"5.3.3.3.1": F},
        replace(_CP, hist, hist.replace("remember=24", "remember=5")),
    )
    yield _v(
        "5.3.3.3.1/remember-trailing-junk",
        {},
        replace(_CP, hist, hist.replace("remember=24", "remember=24x")),
        kind="compliant",
        note="pam_pwhistory reads remember= with strtol: 24",
    )
    yield _v(
        "5.3.3.3.1/remember-not-a-number",
        {"5.3.3.3.1": F},
        replace(_CP, hist, hist.replace("remember=24", "remember=all")),
        note="strtol reads no digits: 0, no history",
    )
    yield _v(
        "5.3.3.3.2/no-enforce-for-root",
        {"5.3.3.3.2": F},
        replace(_CP, hist, hist.replace(" enforce_for_root", "")),
    )
    yield _v(
        "5.3.3.3.3/no-use-authtok",
        {"5.3.3.3.3": F},
        replace(_CP, hist, hist.replace(" \\\n\tuse_authtok", "")),
    )
    unix_pw = "pam_unix.so obscure use_authtok try_first_pass yescrypt"
    yield _v(
        "5.3.3.4.1/nullok",
        {"5.3.3.4.1": F},
        replace(
            _CA,
            "[success=2 default=ignore]\tpam_unix.so",
            "[success=2 default=ignore]\tpam_unix.so nullok",
        ),
    )
    yield _v("5.3.3.4.2/remember", {"5.3.3.4.2": F}, replace(_CP, unix_pw, unix_pw + " remember=5"))
    yield _v(
        "5.3.3.4.3/md5", {"5.3.3.4.3": F}, replace(_CP, unix_pw, unix_pw.replace("yescrypt", "md5"))
    )
    yield _v(
        "5.3.3.4.3/sha512",
        {},
        replace(_CP, unix_pw, unix_pw.replace("yescrypt", "sha512")),
        kind="compliant",
    )
    yield _v(
        "5.3.3.4.4/no-use-authtok",
        {"5.3.3.4.4": F},
        replace(_CP, unix_pw, unix_pw.replace(" use_authtok", "")),
    )
    yield _v(
        "5.3/pam-control-jump-2",
        {},
        replace(
            _CA,
            "auth\t[success=2 default=ignore]\tpam_unix.so",
            "auth\t[success=3 default=ignore]\tpam_unix.so\nauth\t[success=2 default=ignore]\tpam_sss.so",
        ),
        kind="compliant",
    )


_LD = "etc/login.defs"


def _login_defs() -> Iterator[Variant]:
    yield _v(
        "5.4.1.1/max-days-99999",
        {"5.4.1.1": F, "pci-8.3.9-password-max-age": F},
        replace(_LD, "PASS_MAX_DAYS\t90", "PASS_MAX_DAYS\t99999"),
        oracle="login.defs",
    )
    # shadow reads login.defs with fgets() into 1024 bytes: what follows byte 1023 of a
    # longer line is a line of its own, so a setting there counts, even after a `#`
    yield _v(
        "5.4.1.1/max-days-past-byte-1023-of-a-comment",
        {"5.4.1.1": F, "pci-8.3.9-password-max-age": F},
        append(_LD, "# " + "x" * 1021 + "PASS_MAX_DAYS\t99999\n"),
        oracle="login.defs",
    )
    yield _v(
        "5.4.1.1/max-days-unset",
        {"5.4.1.1": F, "pci-8.3.9-password-max-age": F},
        replace(_LD, "PASS_MAX_DAYS\t90\n", ""),
        oracle="login.defs",
        note="shadow's default is no maximum (-1)",
    )
    yield _v(
        "5.4.1.1/max-days-not-a-number",
        {"5.4.1.1": F, "pci-8.3.9-password-max-age": F},
        replace(_LD, "PASS_MAX_DAYS\t90", "PASS_MAX_DAYS\t90d"),
        oracle="login.defs",
        note="shadow cannot parse 90d: it logs a configuration error and uses its default (-1)",
    )
    yield _v(
        "5.4.1.2/min-days-hex",
        {},
        replace(_LD, "PASS_MIN_DAYS\t1", "PASS_MIN_DAYS\t0x1"),
        oracle="login.defs",
        kind="compliant",
        note="shadow reads numbers with strtol base 0",
    )
    yield _v(
        "5.4.3.3/umask-not-a-number",
        {},
        replace(_LD, "UMASK\t\t027", "UMASK\t\tu=rwx,g=rx"),
        oracle="login.defs",
        kind="compliant",
        note="shadow cannot parse it and uses 022; the umask line of /etc/profile.d still gives 027",
    )
    yield _v(
        "5.4.1.1/user-max-days-99999",
        {"5.4.1.1": F, "pci-8.3.9-password-max-age": F},
        replace("etc/shadow", ":19810:1:90:7:30::", ":19810:1:99999:7:30::"),
    )
    yield _v(
        "5.4.1.1/max-days-defined-twice",
        {"5.4.1.1": F, "pci-8.3.9-password-max-age": F},
        append(_LD, "PASS_MAX_DAYS 99999\n"),
        oracle="login.defs",
        note="the last definition wins",
    )
    yield _v(
        "5.4.1.2/min-days-0",
        {"5.4.1.2": F},
        replace(_LD, "PASS_MIN_DAYS\t1", "PASS_MIN_DAYS\t0"),
        oracle="login.defs",
    )
    yield _v(
        "5.4.1.2/min-days-unset",
        {"5.4.1.2": F},
        replace(_LD, "PASS_MIN_DAYS\t1\n", ""),
        oracle="login.defs",
    )
    yield _v(
        "5.4.1.3/warn-age-3",
        {"5.4.1.3": F},
        replace(_LD, "PASS_WARN_AGE\t7", "PASS_WARN_AGE\t3"),
        oracle="login.defs",
    )
    yield _v(
        "5.4.1.3/warn-age-unset",
        {"5.4.1.3": F},
        replace(_LD, "PASS_WARN_AGE\t7\n", ""),
        oracle="login.defs",
    )
    yield _v(
        "5.4.1.4/md5",
        {"5.4.1.4": F},
        replace(_LD, "ENCRYPT_METHOD YESCRYPT", "ENCRYPT_METHOD MD5"),
        oracle="login.defs",
    )
    yield _v(
        "5.4.1.4/unset",
        {"5.4.1.4": F},
        replace(_LD, "ENCRYPT_METHOD YESCRYPT\n", ""),
        oracle="login.defs",
        note="without ENCRYPT_METHOD (and MD5_CRYPT_ENAB) shadow falls back to DES",
    )
    yield _v(
        "5.4.1.4/lower-case",
        {"5.4.1.4": F},
        replace(_LD, "ENCRYPT_METHOD YESCRYPT", "ENCRYPT_METHOD yescrypt"),
        oracle="login.defs",
        note="shadow compares the method case-sensitively and falls back to DES",
    )
    yield _v(
        "5.4.1.4/sha512",
        {},
        replace(_LD, "ENCRYPT_METHOD YESCRYPT", "ENCRYPT_METHOD SHA512"),
        oracle="login.defs",
        kind="compliant",
    )
    yield _v(
        "5.4.1.5/inactive-unset",
        {"5.4.1.5": F},
        replace("etc/default/useradd", "INACTIVE=45\n", ""),
    )
    yield _v(
        "5.4.1.5/inactive-never",
        {"5.4.1.5": F},
        replace("etc/default/useradd", "INACTIVE=45", "INACTIVE=-1"),
    )
    # /etc/default/useradd as useradd reads it: asked of `useradd -D` (test_oracles)
    for vid, text, expect in (
        ("inactive-set-twice", "INACTIVE=45\nINACTIVE=-1", {"5.4.1.5": F}),
        ("inactive-blanks-around-equals", "INACTIVE = 45", {"5.4.1.5": F}),
        ("inactive-indented", "  INACTIVE=45", {"5.4.1.5": F}),
        ("inactive-trailing-blank", "INACTIVE=45 ", {"5.4.1.5": F}),
        ("inactive-crlf", "INACTIVE=45\r", {"5.4.1.5": F}),
        ("inactive-octal", "INACTIVE=055", {}),
        ("inactive-hex", "INACTIVE=0x1e", {}),
    ):
        yield _v(f"5.4.1.5/{vid}", expect, replace("etc/default/useradd", "INACTIVE=45", text),
                 oracle="useradd", kind="compliant" if not expect else "break")
    yield _v(
        "5.4.1.5/user-inactive-empty",
        {"5.4.1.5": F},
        replace(
            "etc/shadow",
            "bob:$y$j9T$7uRk2VbN1mQ0sLz9AaBcD.$RTobnAuDF.O/uU/jMt96xPeUI.UEUcsshAgT.JeqhND:19812:1:90:7:30::",
            "bob:$y$j9T$7uRk2VbN1mQ0sLz9AaBcD.$RTobnAuDF.O/uU/jMt96xPeUI.UEUcsshAgT.JeqhND:19812:1:90:7:::",
        ),
    )


def _accounts() -> Iterator[Variant]:
    yield _v(
        "5.4.2.1/second-uid-0",
        {"5.4.2.1": F, "7.2.5": F},
        append("etc/passwd", "toor:x:0:1001::/root:/usr/sbin/nologin\n"),
        append("etc/shadow", "toor:!:19800::::::\n"),
    )
    yield _v(
        "5.4.2.2/gid-0-user",
        {"5.4.2.2": F, "7.2.10": F},
        replace("etc/passwd", "bob:x:1001:1001:", "bob:x:1001:0:"),
    )
    yield _v(
        "5.4.2.3/gid-0-group", {"5.4.2.3": F, "7.2.6": F}, append("etc/group", "wheel0:x:0:\n")
    )
    yield _v(
        "5.4.2.4/root-no-password",
        {"5.4.2.4": F, "7.2.2": F},
        replace("etc/shadow", "root:!*:", "root::"),
    )
    yield _v(
        "5.4.2.4/root-password-set",
        {"pci-8.3.9-password-max-age": F},
        replace("etc/shadow", "root:!*:", "root:$y$j9T$abc$def:"),
        kind="compliant",
    )
    yield _v("5.4.2.6/root-umask-022", {"5.4.2.6": F}, write("root/.bashrc", "umask 022\n", 0o600))
    yield _v(
        "5.4.2.6/root-umask-077", {}, write("root/.bashrc", "umask 077\n", 0o600), kind="compliant"
    )
    yield _v(
        "5.4.2.7/system-account-with-shell",
        # 7.2.9's audit script takes every user with a login shell: daemon's home /usr/sbin is root's, 0755
        {"5.4.2.7": F, "7.2.9": F},
        replace(
            "etc/passwd",
            "daemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin",
            "daemon:x:1:1:daemon:/usr/sbin:/bin/bash",
        ),
    )
    yield _v(
        "5.4.2.8/nologin-account-unlocked",
        {"5.4.2.8": F},
        replace("etc/shadow", "sshd:!:19800::::::", "sshd:$y$j9T$abc$def:19800:1:90:7:30::"),
    )
    yield _v(
        "5.4.3.1/nologin-in-shells", {"5.4.3.1": F}, append("etc/shells", "/usr/sbin/nologin\n")
    )
    yield _v("5.4.3.2/no-tmout", {"5.4.3.2": F}, delete("etc/profile.d/60-tmout.sh"))
    yield _v(
        "5.4.3.2/tmout-1800",
        {"5.4.3.2": F},
        replace("etc/profile.d/60-tmout.sh", "TMOUT=900", "TMOUT=1800"),
    )
    yield _v(
        "5.4.3.2/tmout-not-readonly",
        {"5.4.3.2": F},
        replace("etc/profile.d/60-tmout.sh", "readonly TMOUT\n", ""),
    )
    yield _v(
        "5.4.3.2/tmout-in-bashrc",
        {},
        delete("etc/profile.d/60-tmout.sh"),
        append("etc/bash.bashrc", "readonly TMOUT=600 ; export TMOUT\n"),
        kind="compliant",
    )
    yield _v(
        "5.4.3.3/profile-umask-022",
        {"5.4.3.3": F},
        replace("etc/profile", "umask 027", "umask 022"),
    )
    yield _v(
        "5.4.3.3/umask-from-profile-d",
        {},
        replace("etc/profile", "umask 027\n", ""),
        replace(_LD, "UMASK\t\t027", "UMASK\t\t022"),
        write("etc/profile.d/50-umask.sh", "umask 027\n"),
        kind="compliant",
        note="the issue's case: umask set in /etc/profile.d only",
    )
    yield _v(
        "5.4.3.3/login-defs-only",
        {},
        replace("etc/profile", "umask 027\n", ""),
        kind="compliant",
        note="pam_umask applies UMASK from login.defs",
    )
    yield _v(
        "5.4.3.3/login-defs-unset-no-umask",
        {"5.4.3.3": F},
        replace("etc/profile", "umask 027\n", ""),
        replace(_LD, "UMASK\t\t027\n", ""),
        note="shadow's default UMASK is 022",
    )
    yield _v(
        "5.4.3.3/weak-umask-in-profile-d",
        {"5.4.3.3": F},
        write("etc/profile.d/zz-umask.sh", "umask 002\n"),
    )
    yield _v(
        "5.4.3.3/umask-symbolic",
        {},
        replace("etc/profile", "umask 027", "umask u=rwx,g=rx,o="),
        kind="compliant",
    )


_AR = "etc/audit/rules.d/50-cis.rules"
_AUDIT_RULE_CONTROLS = (
    "6.2.3.1",
    "6.2.3.2",
    "6.2.3.3",
    "6.2.3.4",
    "6.2.3.5",
    "6.2.3.6",
    "6.2.3.7",
    "6.2.3.8",
    "6.2.3.9",
    "6.2.3.10",
    "6.2.3.11",
    "6.2.3.12",
    "6.2.3.13",
    "6.2.3.14",
    "6.2.3.15",
    "6.2.3.16",
    "6.2.3.17",
    "6.2.3.18",
    "6.2.3.19",
)
_PCI_AUDIT = (
    "pci-10.2.1.2-admin-commands-audited",
    "pci-10.2.1.3-audit-log-access-audited",
    "pci-10.2.1.6-audit-config-changes-audited",
)


def _audit_rule_order() -> list[tuple[str, str]]:
    """(rule line, CIS control) of the base tree's 50-cis.rules, in file order."""
    text = (Path(roots.BASE) / _AR).read_text() + "\n# 6.2.3.6 privileged commands\n" + _SUDO_RULE
    out: list[tuple[str, str]] = []
    ctl = ""
    for line in text.splitlines():
        m = re.match(r"#\s*(6\.2\.3\.\d+)", line)
        if m:
            ctl = m.group(1)
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        c = ctl
        for name, cc in (
            ("chcon", "6.2.3.15"),
            ("setfacl", "6.2.3.16"),
            ("chacl", "6.2.3.17"),
            ("usermod", "6.2.3.18"),
        ):
            if f"/{name} " in line:
                c = cc
        out.append((line, c))
    return out


def _after(line: str) -> dict[str, str]:
    """The controls whose rules sit at or after `line` in 50-cis.rules, and those of the files
    read after it: auditctl stops at the first line it cannot load, so none of them is loaded,
    nor the final -e 2."""
    order = _audit_rule_order()
    idx = [ln for ln, _c in order].index(line.rstrip("\n"))
    return {c: F for _ln, c in order[idx:]} | {r: F for r in _PCI_AUDIT} | {"6.2.3.20": F}


def _audit() -> Iterator[Variant]:
    conf = "etc/audit/auditd.conf"
    yield _v("6.2.1.1/no-audispd-plugins", {"6.2.1.1": F}, remove("audispd-plugins"))
    yield _v("6.2.1.2/auditd-disabled", {"6.2.1.2": F}, disable("auditd.service"))
    yield _v(
        "6.2.1.3/no-audit-1-in-recovery",
        {"6.2.1.3": F},
        replace(
            "boot/grub/grub.cfg",
            "ro single apparmor=1 security=apparmor audit=1",
            "ro single apparmor=1 security=apparmor",
        ),
    )
    yield _v(
        "6.2.1.4/backlog-1024",
        {"6.2.1.4": F},
        replace("etc/default/grub", "audit_backlog_limit=8192", "audit_backlog_limit=1024"),
        replace(
            "boot/grub/grub.cfg", "audit_backlog_limit=8192 quiet", "audit_backlog_limit=1024 quiet"
        ),
    )
    yield _v(
        "6.2.2.1/max-log-file-unset",
        {"6.2.2.1": F},
        replace(conf, "max_log_file = 32\n", ""),
        note="the benchmark wants the size configured; auditd's default is 8 MB",
    )
    yield _v(
        "6.2.2.2/rotate",
        {"6.2.2.2": F},
        replace(conf, "max_log_file_action = keep_logs", "max_log_file_action = ROTATE"),
    )
    yield _v(
        "6.2.2.2/upper-case",
        {},
        replace(conf, "max_log_file_action = keep_logs", "max_log_file_action = KEEP_LOGS"),
        kind="compliant",
    )
    yield _v(
        "6.2.2.2/unset",
        {"6.2.2.2": F},
        replace(conf, "max_log_file_action = keep_logs\n", ""),
        note="auditd's default is ROTATE",
    )
    yield _v(
        "6.2.2.3/disk-full-unset",
        {"6.2.2.3": F},
        replace(conf, "disk_full_action = halt\n", ""),
        note="auditd's default is SUSPEND",
    )
    yield _v(
        "6.2.2.3/disk-error-unset",
        {},
        replace(conf, "disk_error_action = halt\n", ""),
        note="auditd's default is SYSLOG, which the benchmark accepts",
        kind="compliant",
    )
    yield _v(
        "6.2.2.3/disk-full-suspend",
        {"6.2.2.3": F},
        replace(conf, "disk_full_action = halt", "disk_full_action = SUSPEND"),
    )
    yield _v(
        "6.2.2.3/single",
        {},
        replace(conf, "disk_full_action = halt", "disk_full_action = single"),
        kind="compliant",
    )
    yield _v(
        "6.2.2.4/space-left-ignore",
        {"6.2.2.4": F},
        replace(conf, "space_left_action = email", "space_left_action = ignore"),
    )
    yield _v(
        "6.2.2.4/space-left-unset",
        {"6.2.2.4": F},
        replace(conf, "space_left_action = email\n", ""),
        note="auditd's default is SYSLOG",
    )
    yield _v(
        "6.2.2.4/admin-space-left-unset",
        {"6.2.2.4": F},
        replace(conf, "admin_space_left_action = single\n", ""),
        note="auditd's default is SUSPEND",
    )
    yield _v(
        "6.2.2.4/mail-acct-unset",
        {},
        replace(conf, "action_mail_acct = root\n", ""),
        kind="compliant",
        note="auditd's default is root",
    )
    yield _v(
        "6.2.2/auditd-conf-absent",
        {"6.2.2.1": F, "6.2.2.2": F, "6.2.2.3": F, "6.2.2.4": F, "6.2.4.3": P},
        delete(conf),
        note="auditd runs on its built-in defaults: ROTATE, SUSPEND, SYSLOG, log_group root",
    )
    yield _v(
        "6.2.2/keys-mixed-case",
        {},
        replace(conf, "disk_full_action = halt", "Disk_Full_Action = HALT"),
        kind="compliant",
    )
    refused = {"6.2.2.1": F, "6.2.2.2": F, "6.2.2.3": F, "6.2.2.4": F, "6.2.4.3": F}
    yield _v(
        "6.2.2/equals-without-spaces",
        refused,
        replace(conf, "disk_full_action = halt", "disk_full_action=halt"),
        note="auditd wants ' = ' between words: it refuses the file and does not start",
    )
    yield _v(
        "6.2.2/tab-separated",
        refused,
        replace(conf, "max_log_file = 32", "max_log_file\t=\t32"),
        note="auditd splits at spaces only",
    )
    yield _v("6.2.2/unknown-keyword", refused, append(conf, "disk_full_actions = halt\n"))
    all_audit = {
        c: NA
        for c in (
            *_AUDIT_RULE_CONTROLS,
            "6.2.3.20",
            "6.2.2.1",
            "6.2.2.2",
            "6.2.2.3",
            "6.2.2.4",
            "6.2.4.1",
            "6.2.4.2",
            "6.2.4.3",
            "6.2.4.4",
            "6.2.4.5",
            "6.2.4.6",
            "6.2.4.7",
            "6.2.4.8",
            "6.2.4.9",
            "6.2.4.10",
        )
    }
    yield _v(
        "6.2/auditd-removed",
        {"6.2.1.1": F, "6.2.1.2": F, **all_audit, **{r: NA for r in _PCI_AUDIT}, "6.2.3.21": NA},
        remove("auditd"),
        remove("audispd-plugins"),
        disable("auditd.service"),
        delete("etc/audit"),
        delete("var/log/audit"),
        kind="component",
    )
    # one rule per control removed (b64 or b32 half of a pair, or a watch)
    removals = [
        ("6.2.3.1", "-w /etc/sudoers.d -p wa -k scope\n"),
        (
            "6.2.3.2",
            "-a always,exit -F arch=b32 -C euid!=uid -F auid!=unset -S execve -k user_emulation\n",
        ),
        ("6.2.3.3", "-w /var/log/sudo.log -p wa -k sudo_log_file\n"),
        ("6.2.3.4", "-a always,exit -F arch=b32 -S clock_settime -F a0=0x0 -k time-change\n"),
        ("6.2.3.5", "-w /etc/hosts -p wa -k system-locale\n"),
        (
            "6.2.3.6",
            "-a always,exit -F path=/usr/bin/sudo -F perm=x -F auid>=1000 -F auid!=unset -k privileged\n",
        ),
        (
            "6.2.3.7",
            "-a always,exit -F arch=b64 -S creat,open,openat,truncate,ftruncate -F exit=-EPERM -F auid>=1000 -F auid!=unset -k access\n",
        ),
        ("6.2.3.8", "-w /etc/gshadow -p wa -k identity\n"),
        (
            "6.2.3.9",
            "-a always,exit -F arch=b32 -S setxattr,lsetxattr,fsetxattr,removexattr,lremovexattr,fremovexattr -F auid>=1000 -F auid!=unset -F key=perm_mod\n",
        ),
        (
            "6.2.3.10",
            "-a always,exit -F arch=b64 -S mount -F auid>=1000 -F auid!=unset -k mounts\n",
        ),
        ("6.2.3.11", "-w /var/log/btmp -p wa -k session\n"),
        ("6.2.3.12", "-w /var/run/faillock -p wa -k logins\n"),
        (
            "6.2.3.13",
            "-a always,exit -F arch=b32 -S rename,unlink,unlinkat,renameat -F auid>=1000 -F auid!=unset -F key=delete\n",
        ),
        ("6.2.3.14", "-w /etc/apparmor.d/ -p wa -k MAC-policy\n"),
        (
            "6.2.3.15",
            "-a always,exit -F path=/usr/bin/chcon -F perm=x -F auid>=1000 -F auid!=unset -k perm_chng\n",
        ),
        (
            "6.2.3.16",
            "-a always,exit -F path=/usr/bin/setfacl -F perm=x -F auid>=1000 -F auid!=unset -k perm_chng\n",
        ),
        (
            "6.2.3.17",
            "-a always,exit -F path=/usr/bin/chacl -F perm=x -F auid>=1000 -F auid!=unset -k perm_chng\n",
        ),
        (
            "6.2.3.18",
            "-a always,exit -F path=/usr/sbin/usermod -F perm=x -F auid>=1000 -F auid!=unset -k usermod\n",
        ),
        (
            "6.2.3.19",
            "-a always,exit -F path=/usr/bin/kmod -F perm=x -F auid>=1000 -F auid!=unset -k kernel_modules\n",
        ),
    ]
    for ctl, line in removals:
        yield _v(f"{ctl}/rule-missing", {ctl: F}, replace(_AR, line, ""), oracle="auditctl")
    # a rule split with `\`: auditctl reads one rule per line, fails on the first half and stops
    split_at = "-a always,exit -F arch=b64 -S adjtimex,settimeofday -k time-change\n"
    yield _v(
        "6.2.3.4/split-with-backslash",
        _after(split_at),
        replace(
            _AR,
            split_at,
            "-a always,exit -F arch=b64 -S adjtimex,settimeofday \\\n  -k time-change\n",
        ),
        oracle="auditctl",
        note="the first half is not a rule, so auditctl -R stops: none of the later rules nor -e 2 is loaded",
    )
    yield _v(
        "6.2.3.4/split-with-backslash-continue",
        {"6.2.3.4": F},
        replace("etc/audit/rules.d/10-base-config.rules", "-f 1\n", "-f 1\n-c\n"),
        replace(
            _AR,
            split_at,
            "-a always,exit -F arch=b64 -S adjtimex,settimeofday \\\n  -k time-change\n",
        ),
        oracle="auditctl",
        note="with -c auditctl reports both halves and goes on: only the split rule is missing",
    )
    yield _v(
        "6.2.3.8/trailing-comment",
        _after("-w /etc/passwd -p wa -k identity\n"),
        replace(
            _AR, "-w /etc/passwd -p wa -k identity\n", "-w /etc/passwd -p wa -k identity # passwd\n"
        ),
        oracle="auditctl",
        note="auditctl only skips lines that start with #",
    )
    yield _v(
        "6.2.3.10/unknown-syscall",
        _after("-a always,exit -F arch=b32 -S mount -F auid>=1000 -F auid!=unset -k mounts\n"),
        replace(
            _AR,
            "-a always,exit -F arch=b32 -S mount -F auid>=1000",
            "-a always,exit -F arch=b32 -S mount,mountx -F auid>=1000",
        ),
        oracle="auditctl",
    )
    yield _v(
        "6.2.3.2/arch-after-syscall",
        _after(
            "-a always,exit -F arch=b64 -C euid!=uid -F auid!=unset -S execve -k user_emulation\n"
        ),
        replace(
            _AR,
            "-a always,exit -F arch=b64 -C euid!=uid -F auid!=unset -S execve -k user_emulation",
            "-a always,exit -S execve -F arch=b64 -C euid!=uid -F auid!=unset -k user_emulation",
        ),
        oracle="auditctl",
    )
    yield _v(
        "6.2.3.8/rules-in-disabled-file",
        {"6.2.3.8": F},
        replace(_AR, "-w /etc/group -p wa -k identity\n", ""),
        write(
            "etc/audit/rules.d/55-identity.rules.disabled",
            "-w /etc/group -p wa -k identity\n",
            0o640,
        ),
        oracle="auditctl",
        note="augenrules reads *.rules only",
    )
    yield _v(
        "6.2.3.8/rule-in-own-file",
        {},
        replace(_AR, "-w /etc/group -p wa -k identity\n", ""),
        write("etc/audit/rules.d/55-identity.rules", "-w /etc/group -p wa -k identity\n", 0o640),
        oracle="auditctl",
        kind="compliant",
    )
    yield _v(
        "6.2.3.4/b32-b64-other-spelling",
        {},
        replace(
            _AR,
            "-a always,exit -F arch=b64 -S adjtimex,settimeofday -k time-change\n-a always,exit -F arch=b32 -S adjtimex,settimeofday -k time-change\n",
            "-a exit,always -F arch=b32 -S settimeofday -S adjtimex -F key=time-change\n-a always,exit -F arch=x86_64 -S settimeofday,adjtimex -k time-change\n",
        ),
        oracle="auditctl",
        kind="compliant",
    )
    yield _v(
        "6.2.3.7/auid-spellings",
        {},
        replace(
            _AR,
            "-F exit=-EPERM -F auid>=1000 -F auid!=unset -k access",
            "-F exit=-1 -F auid>=1000 -F auid!=4294967295 -k access",
        ),
        oracle="auditctl",
        kind="compliant",
    )
    yield _v(
        "6.2.3.1/watch-trailing-slash",
        {},
        replace(_AR, "-w /etc/sudoers.d -p wa", "-w /etc/sudoers.d/ -p aw"),
        oracle="auditctl",
        kind="compliant",
    )
    yield _v(
        "6.2.3.4/b32-missing",
        {"6.2.3.4": F},
        replace(_AR, "-a always,exit -F arch=b32 -S adjtimex,settimeofday -k time-change\n", ""),
        oracle="auditctl",
    )
    yield _v(
        "6.2.3.20/no-immutable",
        {"6.2.3.20": F},
        replace("etc/audit/rules.d/99-finalize.rules", "-e 2", "# -e 2"),
        oracle="auditctl",
    )
    yield _v(
        "6.2.3.20/immutable-in-first-file",
        {"6.2.3.21": P},  # augenrules moves the line: audit.rules is unchanged
        replace("etc/audit/rules.d/99-finalize.rules", "-e 2\n", ""),
        append("etc/audit/rules.d/10-base-config.rules", "-e 2\n"),
        oracle="auditctl",
        kind="compliant",
        note="augenrules moves the last -e line to the end",
    )
    yield _v(
        "6.2.3.20/later-e-1",
        {"6.2.3.20": F},
        write("etc/audit/rules.d/99-zz-local.rules", "-e 1\n", 0o640),
        oracle="auditctl",
        note="the last -e wins",
    )
    yield _v(
        "6.2.3/delete-all-in-last-file",
        {"6.2.3.21": P},  # augenrules moves the line: audit.rules is unchanged
        write("etc/audit/rules.d/98-reset.rules", "-D\n", 0o640),
        oracle="auditctl",
        kind="compliant",
        note="augenrules moves the last bare -D to the top, so it clears nothing of rules.d",
    )
    yield _v(
        "6.2.3/only-audit-rules-file",
        {c: F for c in (*_AUDIT_RULE_CONTROLS, "6.2.3.20", "6.2.3.21")} | {r: F for r in _PCI_AUDIT},
        append("etc/audit/audit.rules", (Path(roots.BASE) / _AR).read_text()),
        *(
            delete(f"etc/audit/rules.d/{n}")
            for n in ("50-cis.rules", "60-pci.rules", "99-finalize.rules")
        ),
        oracle="auditctl",
        note="augenrules regenerates audit.rules from rules.d at every start: rules only in audit.rules are lost",
    )
    yield _v(
        "6.2.3.6/setuid-without-rule",
        {"6.2.3.6": F},
        write("usr/local/bin/backup-helper", "#!/bin/true\n", 0o4755),
    )
    yield _v(
        "6.2.3.6/setgid-with-rule",
        {},
        write("usr/local/bin/report", "#!/bin/true\n", 0o2755),
        append(
            _AR,
            "-a always,exit -F path=/usr/local/bin/report -F perm=x -F auid>=1000 -F auid!=-1 -k privileged\n",
        ),
        kind="compliant",
    )
    # log and configuration files
    yield _v(
        "6.2.4.1/log-0644", {"6.2.4.1": F, "6.1.4.1": F}, chmod("var/log/audit/audit.log", 0o644)
    )
    yield _v(
        "6.2.4.2/log-owner",
        {"6.2.4.2": F, "6.1.4.1": F, **refused},
        chown("var/log/audit/audit.log", 1000, 0),
    )
    yield _v(
        "6.2.4.3/log-group-wheel",
        {"6.2.4.3": F},
        replace(conf, "log_group = adm", "log_group = staff"),
    )
    yield _v("6.2.4.3/log-file-group", {"6.2.4.3": F}, chown("var/log/audit/audit.log", 0, 50))
    yield _v(
        "6.2.4.3/log-group-unset",
        {},
        replace(conf, "log_group = adm\n", ""),
        kind="compliant",
        note="auditd's default log_group is root",
    )
    yield _v("6.2.4.4/dir-0755", {"6.2.4.4": F}, chmod("var/log/audit", 0o755))
    yield _v("6.2.4.5/conf-0644", {"6.2.4.5": F}, chmod(conf, 0o644))
    yield _v("6.2.4.5/rules-0644", {"6.2.4.5": F}, chmod(_AR, 0o644))
    yield _v("6.2.4.6/conf-owner", {"6.2.4.6": F, **refused}, chown(conf, 1000, 0))
    yield _v("6.2.4.7/rules-group", {"6.2.4.7": F}, chown(_AR, 0, 4))
    for ctl, how in (
        ("6.2.4.8", ("mode", 0o777)),
        ("6.2.4.9", ("owner", 1000, 0)),
        ("6.2.4.10", ("owner", 0, 4)),
    ):
        yield _v(
            f"{ctl}/auditctl",
            {ctl: F},
            write("usr/sbin/auditctl", "#!/bin/true\n", 0o755),
            symlink("sbin", "usr/sbin"),
            ("mode" if how[0] == "mode" else "owner", "usr/sbin/auditctl", *how[1:]),
        )


def _logging() -> Iterator[Variant]:
    jd = "etc/systemd/journald.conf.d/60-cis.conf"
    yield _v("6.1.1.1/journald-masked", {"6.1.1.1": F}, mask("systemd-journald.service"))
    yield _v(
        "6.1.1.4/rsyslog-installed-disabled",
        # a disabled rsyslog forwards nothing, and nothing else sends the logs off the host
        {"6.1.1.4": F, "6.1.3.2": F, "pci-10.3.3-logs-sent-off-host": F},
        disable("rsyslog.service"),
    )
    yield _v(
        "6.1.3.3/no-forward",
        {"6.1.3.3": F},
        replace(jd, "ForwardToSyslog=yes", "ForwardToSyslog=no"),
        oracle="systemd-analyze",
    )
    # Debian builds journald with ForwardToSyslog=yes: unset, it forwards
    yield _v(
        "6.1.3.3/forward-default",
        {},
        replace(jd, "ForwardToSyslog=yes\n", ""),
        note="Debian's journald forwards to syslog by default",
        oracle="systemd-analyze",
        kind="compliant",
    )
    yield _v(
        "6.1.3.3/later-dropin-overrides",
        {"6.1.3.3": F},
        write("etc/systemd/journald.conf.d/90-local.conf", "[Journal]\nForwardToSyslog=no\n"),
        oracle="systemd-analyze",
    )
    yield _v(
        "6.1.3.3/usr-lib-dropin-masked",
        {"6.1.3.3": F},
        replace(jd, "ForwardToSyslog=yes\n", ""),
        write("usr/lib/systemd/journald.conf.d/70-vendor.conf", "[Journal]\nForwardToSyslog=no\n"),
        write("etc/systemd/journald.conf.d/10-vendor.conf", "[Journal]\nForwardToSyslog=no\n"),
        symlink("etc/systemd/journald.conf.d/70-vendor.conf", "/dev/null"),
        oracle="systemd-analyze",
        note="the /usr/lib drop-in is masked by a /dev/null link; 10-vendor.conf still turns forwarding off",
    )
    yield _v(
        "6.1.3.3/other-section",
        {"6.1.3.3": F},
        replace(jd, "ForwardToSyslog=yes", "ForwardToSyslog=no"),
        append(jd, "[Upload]\nForwardToSyslog=yes\n"),
        oracle="systemd-analyze",
        note="a key in another section does not count",
    )
    yield _v(
        "6.1.2.2/forward-default",
        {
            "6.1.2.2": F,
            "6.1.2.3": P,
            "6.1.2.4": P,
            "6.1.3.2": NA,
            "6.1.3.3": NA,
            "6.1.3.4": NA,
            "6.1.3.7": NA,
            "6.1.2.1.2": NA,
            "6.1.2.1.3": NA,
            "pci-10.3.3-logs-sent-off-host": F,
            "6.1.3.1": F,
            "6.1.2.1.1": F,
        },
        replace(jd, "ForwardToSyslog=yes\n", ""),
        remove("rsyslog"),
        disable("rsyslog.service"),
        oracle="systemd-analyze",
        note="journald-only host: Debian's default forwards to a syslog daemon that is not there",
    )
    yield _v(
        "6.1.3.4/file-create-mode-0644",
        {"6.1.3.4": F},
        replace("etc/rsyslog.conf", "$FileCreateMode 0640", "$FileCreateMode 0644"),
    )
    yield _v(
        "6.1.3.4/file-create-mode-unset",
        {"6.1.3.4": F},
        replace("etc/rsyslog.conf", "$FileCreateMode 0640\n", ""),
        note="rsyslog's default is 0644",
    )
    yield _v(
        "6.1.3.4/later-include-0644",
        {"6.1.3.4": F},
        write("etc/rsyslog.d/90-local.conf", "$FileCreateMode 0644\n"),
    )
    yield _v(
        "6.1.3.7/imtcp",
        {"6.1.3.7": F},
        write(
            "etc/rsyslog.d/10-recv.conf", 'module(load="imtcp")\ninput(type="imtcp" port="514")\n'
        ),
    )
    yield _v(
        "6.1.3.7/imtcp-commented",
        {},
        write(
            "etc/rsyslog.d/10-recv.conf", '#module(load="imtcp")\n#input(type="imtcp" port="514")\n'
        ),
        kind="compliant",
    )
    yield _v("6.1.4.1/syslog-0644", {"6.1.4.1": F}, chmod("var/log/syslog", 0o644))
    # 6.1.3.1 (rsyslog or journal-remote installed) and 6.1.2.1.1 (the same) are the choice of
    # a remote-logging component: they apply whichever is used
    rsyslog_na = {c: NA for c in ("6.1.3.2", "6.1.3.3", "6.1.3.4", "6.1.3.7")}
    journal_only = (
        remove("rsyslog"),
        disable("rsyslog.service"),
        delete("etc/rsyslog.conf"),
        delete("etc/rsyslog.d"),
        write(jd, "[Journal]\nStorage=persistent\nCompress=yes\nForwardToSyslog=no\n"),
        install("systemd-journal-remote"),
        write(
            "etc/systemd/journal-upload.conf",
            "[Upload]\nURL=https://loghost.example.internal:19532\nServerKeyFile=/etc/ssl/private/journal-upload.pem\nServerCertificateFile=/etc/ssl/certs/journal-upload.pem\nTrustedCertificateFile=/etc/ssl/ca/trusted.pem\n",
        ),
        enable(
            "systemd-journal-upload.service",
            "multi-user.target",
            "/lib/systemd/systemd-journal-upload",
        ),
        unit("systemd-journal-remote.service", "/lib/systemd/systemd-journal-remote", None),
        unit("systemd-journal-remote.socket", None, "sockets.target"),
    )
    jok = {
        c: P
        for c in (
            "6.1.2.1.1",
            "6.1.2.1.2",
            "6.1.2.1.3",
            "6.1.2.1.4",
            "6.1.2.2",
            "6.1.2.3",
            "6.1.2.4",
        )
    }
    pci_fwd = {"pci-10.3.3-logs-sent-off-host": P}
    yield _v(
        "6.1.2/journald-only", {**jok, **rsyslog_na, **pci_fwd}, *journal_only, kind="component"
    )
    yield _v(
        "6.1.2.2/forwards-to-syslog",
        {**jok, **rsyslog_na, "6.1.2.2": F},
        *journal_only,
        replace(jd, "ForwardToSyslog=no", "ForwardToSyslog=yes"),
        oracle="systemd-analyze",
    )
    yield _v(
        "6.1.2.3/compress-default",
        {**jok, **rsyslog_na},
        *journal_only,
        replace(jd, "Compress=yes\n", ""),
        kind="compliant",
        note="journald compresses by default",
        oracle="systemd-analyze",
    )
    yield _v(
        "6.1.2.3/compress-no",
        {**jok, **rsyslog_na, "6.1.2.3": F},
        *journal_only,
        replace(jd, "Compress=yes", "Compress=no"),
        oracle="systemd-analyze",
    )
    yield _v(
        "6.1.2.4/storage-default",
        {**jok, **rsyslog_na, "6.1.2.4": F},
        *journal_only,
        replace(jd, "Storage=persistent\n", ""),
        note="journald's default is auto",
        oracle="systemd-analyze",
    )
    yield _v(
        "6.1.2.4/storage-volatile-later",
        {**jok, **rsyslog_na, "6.1.2.4": F},
        *journal_only,
        write("etc/systemd/journald.conf.d/99-tmp.conf", "[Journal]\nStorage=volatile\n"),
        oracle="systemd-analyze",
    )
    # systemd joins a line ending in a backslash with the next one: Storage= is part of
    # MaxRetentionSec='s (invalid) value and journald keeps its default, auto
    yield _v(
        "6.1.2.4/storage-behind-a-continued-line",
        {**jok, **rsyslog_na, "6.1.2.4": F},
        *journal_only,
        replace(jd, "Storage=persistent\n", ""),
        write("etc/systemd/journald.conf.d/70-local.conf", "[Journal]\nMaxRetentionSec=1month \\\nStorage=persistent\n"),
        oracle="systemd-analyze",
    )
    # a hidden drop-in is not read by journald (conf_files_list skips it)
    yield _v(
        "6.1.2.4/hidden-drop-in-not-read",
        {**jok, **rsyslog_na, "6.1.2.4": F},
        *journal_only,
        replace(jd, "Storage=persistent\n", ""),
        write("etc/systemd/journald.conf.d/.60-storage.conf", "[Journal]\nStorage=persistent\n"),
        oracle="systemd-analyze",
    )
    # a broken section header stops systemd reading that file and every file after it: the
    # CIS drop-in is never read (Storage stays auto, ForwardToSyslog yes)
    yield _v(
        "6.1.2.4/broken-header-before-the-cis-drop-in",
        {**jok, **rsyslog_na, "6.1.2.4": F, "6.1.2.2": F},
        *journal_only,
        write("etc/systemd/journald.conf.d/10-local.conf", "[Journal\n"),
        oracle="systemd-analyze",
    )
    yield _v(
        "6.1.2.4/storage-in-a-usr-lib-main-file",
        {**jok, **rsyslog_na, "6.1.2.4": F},
        *journal_only,
        replace(jd, "Storage=persistent\n", ""),
        delete("etc/systemd/journald.conf"),
        write("usr/lib/systemd/journald.conf", "[Journal]\nStorage=persistent\n"),
        oracle="systemd-analyze",
        note="systemd-analyze cat-config shows it, but journald 252 opens only /etc's journald.conf",
    )
    yield _v(
        "6.1.2.4/storage-in-run",
        {**jok, **rsyslog_na},
        *journal_only,
        replace(jd, "Storage=persistent\n", ""),
        write("run/systemd/journald.conf.d/50-storage.conf", "[Journal]\nStorage=persistent\n"),
        kind="compliant",
        oracle="systemd-analyze",
    )
    yield _v(
        "6.1.2.1.1/no-journal-remote",
        {
            **jok,
            **rsyslog_na,
            "6.1.2.1.1": F,
            "6.1.3.1": F,
            "6.1.2.1.2": NA,
            "6.1.2.1.3": NA,
            "pci-10.3.3-logs-sent-off-host": F,
        },
        *journal_only,
        remove("systemd-journal-remote"),
        disable("systemd-journal-upload.service"),
        delete("etc/systemd/journal-upload.conf"),
    )
    yield _v(
        "6.1.2.1.2/upload-http",
        {**jok, **rsyslog_na, "6.1.2.1.2": F},
        *journal_only,
        replace("etc/systemd/journal-upload.conf", "URL=https://", "URL=http://"),
    )
    upload_tls = "[Upload]\nURL=https://loghost.example.internal:19532\nServerKeyFile=/etc/ssl/private/journal-upload.pem\nServerCertificateFile=/etc/ssl/certs/journal-upload.pem\nTrustedCertificateFile=/etc/ssl/ca/trusted.pem\n"
    yield _v(
        "6.1.2.1.2/upload-http-in-a-drop-in",
        {**jok, **rsyslog_na, "6.1.2.1.2": F},
        *journal_only,
        write("etc/systemd/journal-upload.conf.d/50-site.conf", "[Upload]\nURL=http://loghost.example.internal:19532\n"),
        oracle="systemd-analyze",
    )
    yield _v(
        "6.1.2.1.2/upload-tls-in-a-usr-local-lib-drop-in",
        {**jok, **rsyslog_na},
        *journal_only,
        delete("etc/systemd/journal-upload.conf"),
        write("usr/local/lib/systemd/journal-upload.conf.d/tls.conf", upload_tls),
        oracle="systemd-analyze",
        kind="compliant",
    )
    yield _v(
        "6.1.2.1.2/upload-settings-in-a-usr-lib-main-file",
        {**jok, **rsyslog_na, "6.1.2.1.2": F, "pci-10.3.3-logs-sent-off-host": F},  # the uploader has no URL: it sends nothing
        *journal_only,
        delete("etc/systemd/journal-upload.conf"),
        write("usr/lib/systemd/journal-upload.conf", upload_tls),
        oracle="journal-upload",
        note="systemd-journal-upload 252 opens only /etc's journal-upload.conf, never /usr/lib's",
    )
    yield _v(
        "6.1.2.1.2/upload-url-without-scheme",
        {**jok, **rsyslog_na},
        *journal_only,
        replace("etc/systemd/journal-upload.conf", "URL=https://loghost.example.internal:19532", "URL=192.168.50.42"),
        oracle="journal-upload",
        kind="compliant",
        note="the CIS example: the uploader sends to https://192.168.50.42:19532/upload",
    )
    yield _v(
        "6.1.2.1.2/upload-http-quoted-in-a-drop-in",
        {**jok, **rsyslog_na},
        *journal_only,
        write("etc/systemd/journal-upload.conf.d/50-site.conf", '[Upload]\nURL="http://loghost.example.internal"\n'),
        oracle="journal-upload",
        kind="compliant",
        note="the uploader ignores a URL with a quote in it and keeps the https one",
    )
    yield _v(
        "6.1.2.1.2/upload-drop-in-systemd-cannot-parse",
        {**jok, **rsyslog_na, "6.1.2.1.2": F, "pci-10.3.3-logs-sent-off-host": F},  # the uploader does not start
        *journal_only,
        write("etc/systemd/journal-upload.conf.d/90-broken.conf", "[Upload]\nURL=loghost.example.internal\n[Upload\n"),
        oracle="journal-upload",
        note="a file systemd cannot parse: the uploader does not start",
    )
    yield _v(
        "6.1.2.1.2/upload-ca-emptied",
        {**jok, **rsyslog_na, "6.1.2.1.2": F},
        *journal_only,
        append("etc/systemd/journal-upload.conf", "TrustedCertificateFile=\n"),
        oracle="systemd-analyze",
    )
    yield _v(
        "6.1.2.1.3/upload-disabled",
        {**jok, **rsyslog_na, "6.1.2.1.3": F, "pci-10.3.3-logs-sent-off-host": F},
        *journal_only,
        disable("systemd-journal-upload.service"),
    )
    yield _v(
        "6.1.2.1.4/remote-listening",
        {**jok, **rsyslog_na, "6.1.2.1.4": F},
        *journal_only,
        enable("systemd-journal-remote.socket", "sockets.target"),
    )
    yield _v(
        "6.1.1.4/no-logging-system",
        {
            "6.1.1.4": F,
            "6.1.1.1": F,
            **rsyslog_na,
            "6.1.2.1.1": F,
            "6.1.3.1": F,
            "6.1.2.1.2": NA,
            "6.1.2.1.3": NA,
            "6.1.2.1.4": P,
            "6.1.2.2": P,
            "6.1.2.3": P,
            "6.1.2.4": P,
            "pci-10.3.3-logs-sent-off-host": F,
        },
        remove("rsyslog"),
        disable("rsyslog.service"),
        delete("etc/rsyslog.conf"),
        delete("etc/rsyslog.d"),
        write(jd, "[Journal]\nStorage=persistent\nCompress=yes\nForwardToSyslog=no\n"),
        mask("systemd-journald.service"),
        kind="component",
    )


_AUDIT_TOOLS = ("auditctl", "auditd", "ausearch", "aureport", "autrace", "augenrules")


def _aide() -> Iterator[Variant]:
    yield _v("6.3.1/aide-common-missing", {"6.3.1": F}, remove("aide-common"))
    yield _v("6.3.2/not-scheduled", {"6.3.2": F}, disable("dailyaidecheck.timer"))
    yield _v(
        "6.3.2/cron-daily",
        {},
        disable("dailyaidecheck.timer"),
        write("etc/cron.daily/aide", "#!/bin/sh\n/usr/bin/aide --check\n", 0o700),
        kind="compliant",
    )
    cis = "etc/aide/aide.conf.d/70_aide_cis"
    rules = "".join(f"/usr/sbin/{t} p+i+n+u+g+s+b+acl+xattrs+sha512\n" for t in _AUDIT_TOOLS)
    yield _v("6.3.3/auditctl-not-checksummed", {"6.3.3": F},
             replace(cis, "/usr/sbin/auditctl p+i+n+u+g+s+b+acl+xattrs+sha512\n", ""), oracle="aide")
    yield _v("6.3.3/no-sha512", {"6.3.3": F}, replace(cis, "ausearch p+i+n+u+g+s+b+acl+xattrs+sha512",
                                                      "ausearch p+i+n+u+g+s+b+acl+xattrs+sha256"), oracle="aide")
    yield _v("6.3.3/cis-remediation-where-sbin-links-to-usr-sbin", {"6.3.3": F},
             write(cis, rules.replace("/usr/sbin/", "/sbin/")), oracle="aide",
             note="AIDE does not follow the /sbin link: a /sbin/auditctl rule checks nothing")
    yield _v("6.3.3/drop-in-aide-never-reads", {"6.3.3": F}, delete(cis), write(cis + ".conf", rules),
             oracle="aide", note="Debian's aide.conf includes only names of letters, digits, - and _")
    yield _v("6.3.3/negative-rule", {"6.3.3": F}, append(cis, "!/usr/sbin/autrace$\n"), oracle="aide")
    yield _v("6.3.3/rules-in-a-false-branch", {"6.3.3": F},
             write(cis, "@@ifdef CIS\n" + rules + "@@endif\n"), oracle="aide")
    # AIDE refuses the configuration: where it reads its database from cannot be told either
    refused = {"6.3.3": E, "pci-10.3.4-log-change-detection": E, "hipaa-164.312-c-1-integrity-baseline": E,
               "pci-11.5.2-fim-baseline-checked-weekly": E}
    yield _v("6.3.3/undefined-group", refused, append(cis, "/usr/bin Ful\n"), oracle="aide",
             note="AIDE refuses the configuration and checks nothing")
    yield _v("6.3.3/report-path-without-file-url", refused,
             append(cis, "report_url=/var/log/aide/aide.log\n"), oracle="aide",
             note="AIDE wants a URL (file:/var/log/...): it refuses the configuration and checks nothing")
    yield _v("6.3.3/second-database-ignored", {}, append(cis, "database_out=/var/lib/aide/aide.db.new\n"),
             oracle="aide", kind="compliant", note="AIDE keeps the first database_out and never reads this one")
    # a system where /sbin is a directory of its own (not merged into /usr)
    unmerged = (delete("sbin"), mkdir("sbin"), *(write(f"sbin/{t}", "", 0o755) for t in _AUDIT_TOOLS))
    sbin_rules = rules.replace("/usr/sbin/", "/sbin/")
    yield _v("6.3.3/sbin-of-its-own", {}, *unmerged, write(cis, sbin_rules), oracle="aide", kind="compliant")
    yield _v("6.3.3/sbin-of-its-own-drop-in-never-read", {"6.3.3": F}, *unmerged, delete(cis),
             write(cis + ".conf", sbin_rules), oracle="aide")
    yield _v("6.3.3/sbin-of-its-own-negative-rule", {"6.3.3": F}, *unmerged,
             write(cis, sbin_rules + "!/sbin/au(ditd|search)$\n"), oracle="aide")
    yield _v("6.3.3/debian-catch-all", {}, write(cis, "/ 0 Full\n"), oracle="aide", kind="compliant")
    yield _v("6.3.3/one-rule-for-the-directory", {}, write(cis, "=/usr/sbin/ p+i+n+u+g+s+b+acl+xattrs+sha512\n"),
             oracle="aide", kind="compliant")


_PERMS = [
    ("7.1.1", "etc/passwd", 0o666, None),
    ("7.1.3", "etc/group", 0o664, None),
    ("7.1.5", "etc/shadow", 0o644, None),
    ("7.1.7", "etc/gshadow", 0o644, None),
    ("7.1.9", "etc/shells", 0o666, None),
    ("7.1.10", "etc/security/opasswd", 0o644, None),
]


def _files() -> Iterator[Variant]:
    for ctl, path, bad, _ in _PERMS:
        extra = {"7.1.11": F} if bad & 0o002 else {}
        yield _v(f"{ctl}/mode-{bad:o}", {ctl: F, **extra}, chmod(path, bad))
        yield _v(f"{ctl}/owner", {ctl: F}, chown(path, 1000, 0))
    for ctl, path, src in (
        ("7.1.2", "etc/passwd-", "etc/passwd"),
        ("7.1.4", "etc/group-", "etc/group"),
        ("7.1.6", "etc/shadow-", "etc/shadow"),
        ("7.1.8", "etc/gshadow-", "etc/gshadow"),
    ):
        good = 0o600 if "shadow" in path else 0o644
        yield _v(
            f"{ctl}/backup-compliant",
            {},
            write(path, (Path(roots.BASE) / src).read_text(), good),
            kind="compliant",
        )
        yield _v(
            f"{ctl}/backup-0666",
            {ctl: F, "7.1.11": F},
            write(path, (Path(roots.BASE) / src).read_text(), 0o666),
        )
    yield _v("7.1.11/etc-file-world-writable", {"7.1.11": F}, write("etc/app.conf", "x\n", 0o666))
    yield _v("7.1.11/var-tmp-no-sticky", {"7.1.11": F}, mkdir("var/tmp", 0o777))
    yield _v("7.1.11/var-tmp-sticky", {}, mkdir("var/tmp", 0o1777), kind="compliant")
    yield _v(
        "7.1.11/srv-dir-no-sticky",
        {"7.1.11": F},
        mkdir("srv/share", 0o777),
        note="outside /etc and the temporary directories",
    )
    yield _v(
        "7.1.11/opt-file-world-writable",
        {"7.1.11": F},
        write("opt/app/run.sh", "#!/bin/sh\n", 0o777),
    )
    yield _v("7.1.11/usr-local-file", {"7.1.11": F}, write("usr/local/lib/x.so", "x\n", 0o646))
    yield _v(
        "7.1.11/symlink-0777", {}, symlink("etc/alternatives-x", "/usr/bin/true"), kind="compliant"
    )
    yield _v(
        "7.1.11/proc-not-walked",
        {},
        write("proc/sys/kernel/zz", "1\n", 0o666),
        kind="compliant",
        note="the benchmark excludes /proc and /sys",
    )
    yield _v(
        "7.1.12/etc-unowned",
        {"7.1.12": F},
        write("etc/orphan.conf", "x\n"),
        chown("etc/orphan.conf", 4242, 4242),
    )


def _users() -> Iterator[Variant]:
    yield _v(
        "7.2.1/hash-in-passwd",
        {"7.2.1": F},
        replace("etc/passwd", "bob:x:1001", "bob:$y$j9T$abc$def:1001"),
    )
    yield _v(
        "7.2.2/empty-password",
        {"7.2.2": F},
        replace(
            "etc/shadow",
            "bob:$y$j9T$7uRk2VbN1mQ0sLz9AaBcD.$RTobnAuDF.O/uU/jMt96xPeUI.UEUcsshAgT.JeqhND:",
            "bob::",
        ),
    )
    yield _v(
        "7.2.3/missing-group",
        {"7.2.3": F, "7.2.10": F},
        replace("etc/passwd", "bob:x:1001:1001:", "bob:x:1001:1999:"),
    )
    yield _v(
        "7.2.4/shadow-member", {"7.2.4": F}, replace("etc/group", "shadow:x:42:", "shadow:x:42:bob")
    )
    yield _v(
        "7.2.4/shadow-primary",
        {"7.2.4": F, "7.2.10": F},
        replace("etc/passwd", "bob:x:1001:1001:", "bob:x:1001:42:"),
    )
    yield _v(
        "7.2.5/duplicate-uid",
        {"7.2.5": F},
        append("etc/passwd", "carol:x:1001:1001::/home/carol:/usr/sbin/nologin\n"),
        append("etc/shadow", "carol:!:19800::::::\n"),
    )
    yield _v("7.2.6/duplicate-gid", {"7.2.6": F}, append("etc/group", "ops:x:1001:\n"))
    yield _v(
        "7.2.7/duplicate-name",
        {"7.2.7": F, "5.4.2.8": F},
        append("etc/passwd", "bob:x:1005:1001::/home/bob:/usr/sbin/nologin\n"),
    )
    yield _v("7.2.8/duplicate-group-name", {"7.2.8": F}, append("etc/group", "bob:x:1009:\n"))
    yield _v("7.2.9/home-0755", {"7.2.9": F}, chmod("home/alice", 0o755))
    yield _v("7.2.9/home-owner", {"7.2.9": F}, chown("home/alice", 1001, 1001))
    yield _v(
        "7.2.9/home-missing",
        {"7.2.9": F, "7.2.10": P},
        replace("etc/passwd", "/home/bob:/bin/bash", "/home/robert:/bin/bash"),
    )
    yield _v(
        "7.2.10/netrc-0644",
        {"7.2.10": F},
        write("home/alice/.netrc", "machine x login a password b\n", 0o644, (1000, 1000)),
    )
    yield _v(
        "7.2.10/netrc-0600",
        {},
        write("home/alice/.netrc", "machine x login a password b\n", 0o600, (1000, 1000)),
        kind="compliant",
    )
    yield _v(
        "7.2.10/forward",
        {"7.2.10": F},
        write("home/bob/.forward", "bob@example.com\n", 0o600, (1001, 1001)),
    )
    yield _v("7.2.10/bashrc-group-writable", {"7.2.10": F}, chmod("home/alice/.bashrc", 0o664))


def _frameworks() -> Iterator[Variant]:
    yield _v(
        "pci-10.3.4/var-log-not-in-aide",
        {"pci-10.3.4-log-change-detection": F},
        delete("etc/aide/aide.conf.d/31_aide_var_log"),
        oracle="aide",
    )
    yield _v("pci-10.3.4/audit-log-excluded", {"pci-10.3.4-log-change-detection": F},
             append("etc/aide/aide.conf.d/31_aide_var_log", "!/var/log/audit/audit\\.log$\n"), oracle="aide")
    yield _v(
        "pci-11.5.2/aide-check-stale",
        {"pci-11.5.2-fim-baseline-checked-weekly": F},
        age("var/log/aide/aide.log", 9),
    )
    yield _v(
        "hipaa-c-1/no-aide-baseline",
        {"hipaa-164.312-c-1-integrity-baseline": F, "pci-11.5.2-fim-baseline-checked-weekly": F},
        delete("var/lib/aide/aide.db"),
    )
    yield _v(
        "hipaa-a-2-iv/no-encrypted-volume",
        {"hipaa-164.312-a-2-iv-storage-encryption": F},
        write("etc/crypttab", "# <target> <source> <key> <options>\n", 0o600),
    )
    yield _v(
        "hipaa-c-2/sudo-file-modified",
        {"hipaa-164.312-c-2-package-integrity": F},
        append("usr/share/doc/sudo/copyright", "tampered\n"),
    )
    yield _v(
        "pci-8.4.2/no-second-factor",
        {"pci-8.4.2-ssh-multi-factor": F},
        replace("etc/pam.d/sshd", "auth       required     pam_google_authenticator.so\n", ""),
        replace(
            "etc/ssh/sshd_config.d/50-cis.conf",
            "AuthenticationMethods publickey,keyboard-interactive\n",
            "",
        ),
    )
    yield _v(
        "pci-10.6.3/timesync-config-writable",
        {"pci-10.6.3-time-settings-protected": F},
        chmod("etc/chrony/chrony.conf", 0o666),
        note="also world-writable",
        extra_expect={"7.1.11": F},
    )
    yield _v(
        "soc2-cc7.2/audit-0-on-cmdline",
        {"soc2-cc7.2-audit-enabled": F},
        write("proc/cmdline", "BOOT_IMAGE=/vmlinuz root=/dev/vda1 ro audit=0\n"),
    )


def _variants() -> list[Variant]:
    out: list[Variant] = []
    for gen in (
        _modules,
        _partitions,
        _boot,
        _gdm,
        _services,
        _time,
        _cron,
        _sysctl,
        _firewall,
        _sshd,
        _sudo,
        _pam,
        _login_defs,
        _accounts,
        _audit,
        _logging,
        _aide,
        _files,
        _users,
        _frameworks,
    ):
        out.extend(gen())
    ids = [v.id for v in out]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise ValueError(f"corpus: duplicate variant ids {sorted(dupes)}")
    return out


VARIANTS: list[Variant] = _variants()


def controls_covered(variants: Iterable[Variant] = VARIANTS) -> set[str]:
    """The CIS control numbers some variant names in its expectations (or its id)."""
    out: set[str] = set()
    for v in variants:
        head = v.id.split("/")[0]
        if head[:1].isdigit():
            out.add(head)
        out.update(k for k in v.expect if k[:1].isdigit())
    return out
