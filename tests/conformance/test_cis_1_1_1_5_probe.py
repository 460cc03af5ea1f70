"""CIS Debian 12 sections 1.1.2 (partitions and their mount options) and 1.5.3 (core dumps) on
corpus trees, asked of the real components: what systemd-fstab-generator makes of the tree's
fstab, then the flags the kernel gives a mount made with those options (mount(8) in a private
mount namespace, read back with the benchmark's `findmnt -kn | grep -v OPTION`); and
coredump.conf in the order `systemd-analyze cat-config --root` shows it, less the assignments
systemd-coredump itself refuses. The verdicts must be the ones they give."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from secpolicy.engine import scan

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import corpus
import systemd_conf
from corpus import install, replace, symlink, write

_GENERATOR = Path("/usr/lib/systemd/system-generators/systemd-fstab-generator")
_ROOT = os.geteuid() == 0


def _verdict(bundle, root: Path, rule_id: str) -> str:
    ps, reg = bundle
    (finding,) = scan(ps, reg, root=str(root), rule_ids=[rule_id]).findings
    return finding.status.value


def _run(cmd: list[str], **kw) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=60, check=False, **kw)


# --- 1.1.2.x: what systemd mounts at boot, and the flags the kernel gives that mount -------------
def _unit_name(mp: str) -> str:
    return _run(["systemd-escape", "--path", "--suffix=mount", mp]).stdout.strip()


def _generated(root: Path, out: Path, mp: str) -> tuple[str | None, bool]:
    """(the Options= systemd-fstab-generator writes for `mp`'s unit or None when it makes none,
    whether local-fs.target requires the unit: mounted at boot)."""
    for d in ("", ".early", ".late"):
        Path(f"{out}{d}").mkdir(parents=True, exist_ok=True)
    _run([str(_GENERATOR), str(out), f"{out}.early", f"{out}.late"],
         env={"SYSTEMD_FSTAB": str(root / "etc/fstab"), "SYSTEMD_PROC_CMDLINE": "", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})
    unit = out / _unit_name(mp)
    if not unit.exists():
        return None, False
    options = ""
    for line in unit.read_text().splitlines():
        if line.startswith("Options="):
            options = line.removeprefix("Options=")
    return options, (out / "local-fs.target.requires" / unit.name).exists()


# The benchmark's audit, on a tmpfs mounted with the unit's options in a private namespace.
_MOUNT_AUDIT = r"""
mount -t tmpfs -o "$2" tmpfs "$1" || exit 1
findmnt -kn "$1" | grep -v "$3" >/dev/null && echo fail || echo pass
"""


def _kernel_gives(where: Path, options: str, flag: str) -> str:
    where.mkdir(exist_ok=True)
    done = _run(["unshare", "--mount", "--propagation", "private", "bash", "-c", _MOUNT_AUDIT, "bash", str(where),
                 options or "defaults", flag])
    assert done.stdout.strip() in ("pass", "fail"), done.stderr
    return done.stdout.strip()


_SLUG = {"/tmp": ("1.1.2.1", "tmp", ("nodev", "nosuid", "noexec")),
         "/home": ("1.1.2.3", "home", ("nodev", "nosuid")),
         "/var/tmp": ("1.1.2.5", "var-tmp", ("nodev", "nosuid", "noexec"))}
_NUMBER = {"nodev": 2, "nosuid": 3, "noexec": 4}


def _line(base: Path, mp: str) -> str:
    for line in (base / "etc/fstab").read_text().splitlines(keepends=True):
        parts = line.split()
        if len(parts) > 3 and parts[1] == mp and not line.startswith("#"):
            return line
    raise KeyError(mp)


def _with_options(line: str, options: str) -> str:
    parts = line.split()
    parts[3] = options
    return " ".join(parts) + "\n"


# Left out: an options field with a `#` word after it (systemd 252's generator reads fstab with
# glibc's getmntent(), which keeps the line; findmnt and mount -a drop it as a parse error) and
# SELinux `context=` options (the tmpfs mount needs SELinux).
_OPTION_CASES: dict[str, object] = {
    "base": None,
    # the red team's false PASS: mount(8) applies the options in order, the later `dev` wins
    "nodev then dev": "nodev,nosuid,noexec,dev",
    "dev then nodev": "dev,nodev,nosuid,noexec",
    "suid after nosuid": "nodev,nosuid,noexec,suid",
    "exec after noexec": "nodev,nosuid,noexec,exec",
    # `user` sets nodev, nosuid and noexec; `owner` nodev and nosuid (a false FAIL before)
    "user": "user",
    "user, then exec": "user,exec",
    "exec, then user": "exec,user",
    "owner, noexec": "owner,noexec",
    "user=name sets nothing": "user=bob",
    "defaults after the flags": "nodev,nosuid,noexec,defaults",
    # the red team's false PASSes: systemd mounts the first of two entries, and none with noauto
    "two entries, the first weaker": "second",
    "noauto": "noauto,nodev,nosuid,noexec",
}


def _option_edits(base: Path, mp: str, case: str) -> list[tuple]:
    spec = _OPTION_CASES[case]
    if spec is None:
        return []
    line = _line(base, mp)
    if spec == "second":
        return [replace("etc/fstab", line, _with_options(line, "defaults") + line)]
    return [replace("etc/fstab", line, _with_options(line, str(spec)))]


@pytest.mark.skipif(not _ROOT or not _GENERATOR.exists(), reason="needs root (mount namespaces) and systemd-fstab-generator")
@pytest.mark.parametrize("mp", list(_SLUG))
@pytest.mark.parametrize("case", list(_OPTION_CASES))
def test_configured_mount_options_are_what_the_kernel_gives_the_boot_mount(bundle, base_tree, tmp_path, mp, case) -> None:
    sec, slug, flags = _SLUG[mp]
    root = corpus.edited_copy(tmp_path, base_tree, _option_edits(base_tree, mp, case))
    options, at_boot = _generated(root, tmp_path / "generator", mp)
    assert _verdict(bundle, root, f"cis-{sec}.1-{slug}-partition-configured") == ("pass" if at_boot else "fail")
    for flag in flags:
        want = "not_applicable" if options is None else _kernel_gives(tmp_path / "mnt", options, flag)
        assert _verdict(bundle, root, f"cis-{sec}.{_NUMBER[flag]}-{slug}-{flag}-configured") == want, flag


# --- 1.5.3: systemd-coredump's Storage= and ProcessSizeMax= ---------------------------------------
def _coredump_binary() -> str | None:
    """systemd-coredump: installed, or unpacked from its Debian package by scripts/setup.sh
    --with-test-tools (installing it would change the host's kernel.core_pattern)."""
    for p in (f"{sys.prefix}/oracles/lib/systemd/systemd-coredump", "/lib/systemd/systemd-coredump",
              "/usr/lib/systemd/systemd-coredump"):
        if os.access(p, os.X_OK):
            return p
    return None


# systemd-coredump reads its configuration first thing and logs what it refuses to /dev/kmsg;
# started with no arguments it then stops ("Not enough arguments passed by the kernel").
_REFUSALS = r"""
mount --bind "$2" /dev/kmsg || exit 1
for d in etc/systemd run/systemd usr/local/lib usr/lib/systemd; do
  mkdir -p "$1/$d" && mount --bind "$1/$d" "/$d" || exit 1
done
"$3" </dev/null >/dev/null 2>&1
exit 0
"""


def _refused(root: Path, tmp_path: Path, binary: str) -> set[tuple[str, int]]:
    """(file, line) of every assignment systemd-coredump ignores with a warning, run on the tree's
    configuration in a private mount namespace."""
    log = tmp_path / "kmsg"
    log.write_text("")
    done = _run(["unshare", "--mount", "--propagation", "private", "bash", "-c", _REFUSALS, "bash", str(root),
                 str(log), binary])
    assert done.returncode == 0, done.stderr
    text = log.read_text()
    assert "Not enough arguments" in text, text
    return {(m.group(1), int(m.group(2))) for m in re.finditer(r": (/\S+):(\d+): (?:Failed to parse|Unknown)", text)}


def _cat_config(root: Path) -> list[tuple[str, int, str]]:
    """(file as the host names it, line number, line) of `systemd-analyze cat-config --root`."""
    done = _run(["systemd-analyze", "cat-config", f"--root={root}", "systemd/coredump.conf"])
    assert done.returncode == 0, done.stderr
    out, path, n = [], "", 0
    for line in done.stdout.splitlines():
        if line.startswith(f"# {root}/"):
            path, n = line[len(f"# {root}"):], 0
            continue
        n += 1
        out.append((path, n, line))
    return out


def _coredump_audit(root: Path, tmp_path: Path, parser: systemd_conf.SystemdParser, binary: str | None) -> str:
    """pass where systemd-coredump is not installed (`dpkg-query -W`), or where the last Storage=
    and ProcessSizeMax= of the [Coredump] sections cat-config shows, less what systemd-coredump
    refuses, are none and a size parse_size() reads as 0."""
    done = _run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W", "-f=${Status}", "systemd-coredump"])
    if done.stdout.strip() != "install ok installed":
        return "pass"
    refused = _refused(root, tmp_path, binary) if binary else set()
    last = {"Storage": "external", "ProcessSizeMax": "32G"}
    section = ""
    for path, n, line in _cat_config(root):
        text = line.strip()
        if text.startswith("["):
            section = text.strip("[]")
        elif section == "Coredump" and "=" in text and not text.startswith(("#", ";")) and (path, n) not in refused:
            key, _, value = text.partition("=")
            if key.strip() in last:
                last[key.strip()] = value.strip()
    return "pass" if last["Storage"] == "none" and parser.parse_size(last["ProcessSizeMax"]) == 0 else "fail"


_CONF = "etc/systemd/coredump.conf"
_OFF = "[Coredump]\nStorage=none\nProcessSizeMax=0\n"
_COREDUMP_CASES: dict[str, list[tuple]] = {
    "not installed": [write(_CONF, "[Coredump]\nStorage=external\n")],
    # the red team's false PASS: installed, keeping core dumps by default
    "installed, no coredump.conf": [install("systemd-coredump")],
    "installed, the Debian coredump.conf (all commented)": [install("systemd-coredump"),
                                                           write(_CONF, "[Coredump]\n#Storage=external\n#ProcessSizeMax=32G\n")],
    "installed, Storage=none and ProcessSizeMax=0": [install("systemd-coredump"), write(_CONF, _OFF)],
    "Storage=none only": [install("systemd-coredump"), write(_CONF, "[Coredump]\nStorage=none\n")],
    "ProcessSizeMax=0B, blanks around": [install("systemd-coredump"), write(_CONF, "[Coredump]\n Storage = none \nProcessSizeMax=0B\n")],
    "a drop-in in /usr/lib stores again": [install("systemd-coredump"), write(_CONF, _OFF),
                                           write("usr/lib/systemd/coredump.conf.d/50-keep.conf", "[Coredump]\nStorage=external\n")],
    "a drop-in in /run processes again": [install("systemd-coredump"), write(_CONF, _OFF),
                                          write("run/systemd/coredump.conf.d/50-keep.conf", "[Coredump]\nProcessSizeMax=2G\n")],
    "the drop-in masked with /dev/null in /etc": [install("systemd-coredump"), write(_CONF, _OFF),
                                                  write("usr/lib/systemd/coredump.conf.d/50-keep.conf", "[Coredump]\nStorage=external\n"),
                                                  symlink("etc/systemd/coredump.conf.d/50-keep.conf", "/dev/null")],
    "set in a drop-in only": [install("systemd-coredump"), write("etc/systemd/coredump.conf.d/60-cis.conf", _OFF)],
    "in a section of another name": [install("systemd-coredump"), write(_CONF, "[coredump]\nStorage=none\nProcessSizeMax=0\n")],
}
# refused values: asked of systemd-coredump itself
_REFUSED_CASES: dict[str, list[tuple]] = {
    "Storage=None after none": [install("systemd-coredump"), write(_CONF, _OFF + "Storage=None\n")],
    "an empty Storage= after none": [install("systemd-coredump"), write(_CONF, _OFF + "Storage=\n")],
    "ProcessSizeMax=off after 0": [install("systemd-coredump"), write(_CONF, _OFF + "ProcessSizeMax=off\n")],
    "Storage=bogus only": [install("systemd-coredump"), write(_CONF, "[Coredump]\nStorage=bogus\nProcessSizeMax=0\n")],
}


@pytest.fixture(scope="module")
def systemd_parser() -> systemd_conf.SystemdParser:
    if not systemd_conf.available():
        pytest.skip("needs systemd's libsystemd-shared (the systemd package)")
    return systemd_conf.SystemdParser()


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg-query")
@pytest.mark.parametrize("case", list(_COREDUMP_CASES))
def test_core_dumps_are_restricted_where_systemd_coredump_stores_none(bundle, base_tree, tmp_path, systemd_parser,
                                                                      case) -> None:
    root = corpus.edited_copy(tmp_path, base_tree, _COREDUMP_CASES[case])
    want = _coredump_audit(root, tmp_path, systemd_parser, _coredump_binary() if _ROOT else None)
    assert _verdict(bundle, root, "cis-1.5.3-core-dumps-restricted") == want


@pytest.mark.skipif(not _ROOT or _coredump_binary() is None or shutil.which("dpkg-query") is None,
                    reason="needs root, dpkg-query and systemd-coredump (unpacked by scripts/setup.sh --with-test-tools)")
@pytest.mark.parametrize("case", list(_REFUSED_CASES))
def test_a_value_systemd_coredump_refuses_keeps_the_one_before(bundle, base_tree, tmp_path, systemd_parser,
                                                               case) -> None:
    root = corpus.edited_copy(tmp_path, base_tree, _REFUSED_CASES[case])
    want = _coredump_audit(root, tmp_path, systemd_parser, _coredump_binary())
    assert _verdict(bundle, root, "cis-1.5.3-core-dumps-restricted") == want
