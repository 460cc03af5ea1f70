"""AIDE's configuration, asked of AIDE: `aide --config /etc/aide/aide.conf -p f:PATH` runs in a
private mount namespace with the tree's /etc bound over the host's, and the aide_rule fact,
reading the same tree, must name the same rule (or none), or refuse the configuration where
AIDE refuses it."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from secpolicy.errors import EvaluationError
from secpolicy.facts import FactContext
from secpolicy.facts.aide import CannotTell, Refused
from secpolicy.vocabulary import builtin_registry

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from test_oracles import ROOT_NEEDED, _id, _namespaced, _statuses, _tool, _tree, _variants

PATHS = ("/usr/sbin/auditctl", "/usr/sbin/auditd", "/usr/sbin/ausearch", "/usr/sbin/augenrules",
         "/sbin/auditctl", "/usr/bin/ls", "/etc/aide/aide.conf")


def _aide(root: Path, paths: tuple[str, ...]) -> tuple[list[tuple[int, str]], str]:
    """(exit status, first line) of `aide -p f:PATH` for each path, and what AIDE wrote on stderr."""
    script = ('mount --bind "$1/etc" /etc && aide="$2" && shift 2 && for p in "$@"; do '
              '"$aide" --config /etc/aide/aide.conf -p "f:$p"; echo "@@rc=$?"; done')
    done = _namespaced(script, args=[str(root), _tool("aide"), *paths], timeout=120)
    out, text = [], ""
    for line in done.stdout.splitlines():
        if line.startswith("@@rc="):
            out.append((int(line[5:]), text))
            text = ""
        elif not text:
            text = line
    assert len(out) == len(paths), done
    return out, done.stderr


def _disagreement(root: Path, paths: tuple[str, ...] = PATHS) -> str | None:
    theirs, stderr = _aide(root, paths)
    ctx = FactContext(builtin_registry(), str(root))
    try:
        ours = [ctx.fact("aide_rule", (path,)) for path in paths]
    except Refused as e:
        return None if all(rc == 17 for rc, _ in theirs) else f"we refuse ({e}), AIDE: {theirs}"
    except CannotTell as e:
        return f"we cannot tell ({e}); AIDE: {theirs} {stderr}"
    if any(rc == 17 for rc, _ in theirs):
        return f"AIDE refuses: {stderr.strip()}"
    for (rc, line), rule in zip(theirs, ours, strict=True):
        said = line.split(" rule: ", 1)[1] if " rule: " in line else None
        if (rc == 0) != rule.selected or said != rule.rule:
            return f"{rule.path}: AIDE says {line!r} (exit {rc}), we say {rule.selected} by {rule.rule}"
    return None


# -- random configurations ----------------------------------------------------------------------
# each list: what AIDE takes, then (after None) what it refuses, picked one time in twenty
_RULE_PATHS = ("/", "/usr", "/usr/", "/usr/sbin", "/usr/sbin/", "/usr/sbin/auditctl", "/usr/sbin/auditctl$",
               "/usr/sbin/au.*", "/usr/sbin/aud", "/usr/s?bin/auditctl$", "/usr/(s)?bin", "/usr/sbin/au[a-z]+$",
               "/usr/sbin/(auditctl|ausearch)$", "/u.r/sbin/auditctl", "/sbin/auditctl", "/sbin", "/usr/bin",
               "/usr/sbin/augenrules", "/usr/sbin\\/auditctl", "/usr/sbin/auditctl\\ x", "/usr/@@{D}/auditctl",
               "/usr/@@{D}", "/usr/sbin/audit(ctl|d)", "/etc/aide", "/usr/sbin/auditd$", "/usr/sbin/a\\.*",
               "/[u]sr/sbin/auditctl", "/usr/sbin/auditctl/", "/usr/@@{D}/", None, "/usr//sbin", "@@{D}/auditctl")
_RESTRICTIONS = ("", "", "", "f", "d", "f,d", "0", "l", "d,l", "0f", None, "x", "f,x")
_EXPRESSIONS = ("Full", "Full", "p+i+n+u+g+s+b+acl+xattrs+sha512", "R", "R+sha512", "Full-acl", "H", "X+p", "E",
                "p+sha256", "p + sha512", "L+H", ">", "Full+stribog256", "S", "p+sha512-H+sha512", None, "Nope",
                "p+")
_GROUPS = ("Full = p+i+n+u+g+s+b+acl+xattrs+sha512", "Full=R+sha512", "OwnerMode = p+u+g+ftype", "H = md5",
           "X = E", "Full_2 = R", "InodeData = p+i+n+u+g+s+b+X", None, "full = R", "Full\t= R", "Full = Nope")
_OPTIONS = ("database_in=file:/var/lib/aide/aide.db", "gzip_dbout=yes", "report_level=summary",
            "report_ignore_e2fsattrs=VNIE", "database_attrs = sha512", "report_summarize_changes=true # comment",
            "num_workers=2", "num_workers=50%", "database_out=stdout", "report_url=syslog:LOG_AUTH",
            "report_url=file:/var/log/aide/aide.log", "database=fd:3", None, "gzip_dbout=maybe", "log_level=loud",
            "databse_out=file:/x", "verbose=5", "database_in=/var/lib/aide/aide.db", "report_url=stdin",
            "num_workers=101%", "database_out=file://localhost/x")


def _pick(rng: random.Random, choices: tuple[str | None, ...]) -> str:
    cut = choices.index(None)
    return rng.choice(choices[cut + 1:] if rng.random() < 0.05 else choices[:cut])


def _rule(rng: random.Random) -> str:
    mark = rng.choice(("", "", "", "=", "!", "!"))
    parts = [mark + _pick(rng, _RULE_PATHS)]
    restriction = _pick(rng, _RESTRICTIONS)
    if restriction:
        parts.append(restriction)
    if mark != "!" or rng.random() < 0.05:
        parts.append(_pick(rng, _EXPRESSIONS))
    return rng.choice(("", " ", "\t")) + rng.choice((" ", "\t", "  ")).join(parts)


def _line(rng: random.Random) -> str:
    kind = rng.random()
    if kind < 0.55:
        return _rule(rng)
    if kind < 0.65:
        return _pick(rng, _GROUPS)
    if kind < 0.72:
        return _pick(rng, _OPTIONS)
    if kind < 0.8:
        return _pick(rng, ("@@define D sbin", "@@define D bin", "@@undef D", "@@define D", "# a comment", "",
                           "@@define D sbin # why", None, "@@define E x y"))
    body = "\n".join(_rule(rng) for _ in range(0 if rng.random() < 0.05 else rng.randint(1, 2)))
    head = rng.choice(("@@if defined D", "@@ifdef D", "@@ifndef D", "@@if not defined D", "@@if exists /etc/aide/x",
                       "@@if not exists /etc/aide/aide.conf", "@@if not not defined D", "@@ifdefD"))
    other = "\n@@else\n" + _rule(rng) if rng.random() < 0.4 else ""
    return f"{head}\n{body}{other}\n@@endif"


def _config(rng: random.Random, root: Path) -> None:
    aide = root / "etc/aide"
    shutil.rmtree(aide, ignore_errors=True)
    (aide / "aide.conf.d").mkdir(parents=True)
    lines = [_line(rng) for _ in range(rng.randint(1, 6))]
    if rng.random() < 0.9:
        lines.insert(0, rng.choice(("Full = p+i+n+u+g+s+b+acl+xattrs+sha512", "Full = R+sha512", "Full = p+sha256")))
    for _ in range(rng.randint(0, 2)):
        lines.insert(rng.randint(0, len(lines)), _pick(rng, (
            "@@x_include /etc/aide/aide.conf.d ^[a-zA-Z0-9_-]+$", "@@include /etc/aide/aide.conf.d \\.conf$",
            "@@include /etc/aide/aide.conf.d ^[0-9] /usr", "@@include /etc/aide/extra",
            "@@x_include /etc/aide/aide.conf.d ^[a-zA-Z0-9_-]+$ /usr/", "@@include /etc/aide/aide.conf.d x",
            None, "@@include /etc/aide/none", "@@include /etc/aide/aide.conf.d", "@@include /etc/aide/aide.conf.d ^[0-9] usr")))
    ending = rng.choice(("\n", "\n", "\r\n"))
    (aide / "aide.conf").write_text(ending.join(lines) + rng.choice((ending, "")))
    (aide / "extra").write_text("\n".join(_line(rng) for _ in range(rng.randint(1, 3))) + "\n")
    for name in rng.sample(["10_rules", "20_audit.conf", "99_aide_audit_tools", "50-x", ".hidden"], rng.randint(0, 3)):
        (aide / "aide.conf.d" / name).write_text("\n".join(_line(rng) for _ in range(rng.randint(1, 3))) + "\n")
    if rng.random() < 0.2:
        (aide / "x").write_text("")


@ROOT_NEEDED
@pytest.mark.parametrize("seed", range(2))
def test_the_rule_for_a_path_is_the_one_aide_names(tmp_path, seed) -> None:
    rng = random.Random(seed)
    refused = compared = 0
    for _ in range(int(os.environ.get("AIDE_ORACLE_CASES", "100"))):
        _config(rng, tmp_path)
        case = {str(f.relative_to(tmp_path)): f.read_text() for f in sorted(tmp_path.rglob("*")) if f.is_file()}
        assert _disagreement(tmp_path) is None, case
        try:
            FactContext(builtin_registry(), str(tmp_path)).fact("aide_rule", ("/",))
            compared += 1
        except Refused:
            refused += 1
    assert compared >= 30 and refused >= 10, (compared, refused)  # both kinds of case were met


# each: option lines, then whether AIDE takes them (asked of AIDE itself in the test)
_OPTION_CASES = (
    "database_in=file:/var/lib/aide/aide.db", "database_in=/var/lib/aide/aide.db", "database_in=foo:/x",
    "database_in=FILE:/x", "database_in=stdin", "database_in=stdout", "database=stderr", "database_in=fd:3",
    "database_out=stdout", "database_out=stdin", "database_out=syslog:x", "database_new=stderr",
    "database_new=stdin", "database_in=file:///x", "database_in=file://localhost/x", "database_in=file://h",
    "database_in=https://h/aide.db", "report_url=ftp:x", "report_url=stdout", "report_url=stderr",
    "report_url=stdin", "report_url=syslog:LOG_AUTH", "report_url=fd:x", "report_url=file", "report_url=file:",
    "report_url=stdout:junk", "database_in=file:@@{NONE}/x", "report_url=file:/var/log/aide-@@{HOSTNAME}.log",
    "report_url=file://@@{HOSTNAME}/x",
    "database_in=file:/a\ndatabase_in=stdout", "database_in=stdout\ndatabase_in=file:/a",
    "database_out=file:/a\ndatabase_out=syslog:x", "report_url=stdout\nreport_url=stdin",
    "num_workers=0", "num_workers=4", "num_workers=-0", "num_workers=+4", "num_workers=04", "num_workers=-1",
    "num_workers=4x", "num_workers=x", "num_workers=0x10", "num_workers=4.5", "num_workers=9223372036854775807",
    "num_workers=9223372036854775808", "num_workers=%", "num_workers=0%", "num_workers=100%", "num_workers=+50%",
    "num_workers=101%", "num_workers=-1%", "num_workers=-0%", "num_workers=x%", "num_workers=+%", "num_workers=%%",
    "num_workers=4%x", "num_workers=00000000000000000000100%", "num_workers=18446744073709551717%",
)


@ROOT_NEEDED
def test_database_report_and_worker_options_are_refused_where_aide_refuses_them(tmp_path) -> None:
    refused = 0
    for i, lines in enumerate(_OPTION_CASES):
        root = tmp_path / str(i)
        (root / "etc/aide").mkdir(parents=True)
        (root / "etc/aide/aide.conf").write_text(f"{lines}\n/usr/sbin/auditctl$ p+sha512\n")
        assert _disagreement(root, ("/usr/sbin/auditctl",)) is None, lines
        try:
            FactContext(builtin_registry(), str(root)).fact("aide_rule", ("/usr/sbin/auditctl",))
        except Refused:
            refused += 1
    assert 20 <= refused <= len(_OPTION_CASES) - 20  # both outcomes, many times


_DEBIANISH = """\
@@x_include_setenv PATH /bin:/usr/bin
database_in=file:/var/lib/aide/aide.db
gzip_dbout=yes
Checksums = H
OwnerMode = p+u+g+ftype
Size = s+b
InodeData = OwnerMode+n+i+Size+l+X
StaticFile = m+c+Checksums
Full = InodeData+StaticFile
@@x_include /etc/aide/aide.conf.d ^[a-zA-Z0-9_-]+$
"""


@ROOT_NEEDED
@pytest.mark.parametrize(("files", "expected"), [
    # CIS's remediation on a merged-/usr system: AIDE never descends the /sbin link
    ({"99_aide_audit_tools": "/sbin/auditctl p+i+n+u+g+s+b+acl+xattrs+sha512\n"}, "not selected"),
    ({"99_aide_audit_tools": "/usr/sbin/auditctl p+i+n+u+g+s+b+acl+xattrs+sha512\n"}, "selected"),
    # Debian's aide.conf includes only names of letters, digits, - and _
    ({"99_aide_audit_tools.conf": "/usr/sbin/auditctl Full\n"}, "not selected"),
    ({"99_aide_root": "/ 0 Full\n", "70_aide_usr": "!/usr/sbin/auditctl$\n"}, "not selected"),
    ({"99_aide_root": "/ 0 Full\n", "70_aide_usr": "!/usr/sbin/auditctl$ d\n"}, "selected"),
    ({"99_aide_root": "/ 0 Full\n", "70_aide_usr": "/usr/sbin/ 0 p+u+g\n"}, "selected"),
    ({"10_x": "/usr/sbin/auditctl Ful\n"}, "refused"),
])
def test_debian_layouts(tmp_path, files, expected) -> None:
    aide = tmp_path / "etc/aide"
    (aide / "aide.conf.d").mkdir(parents=True)
    (aide / "aide.conf").write_text(_DEBIANISH)
    for name, text in files.items():
        (aide / "aide.conf.d" / name).write_text(text)
    assert _disagreement(tmp_path) is None
    theirs, _ = _aide(tmp_path, ("/usr/sbin/auditctl",))
    assert {0: "selected", 1: "not selected", 17: "refused"}[theirs[0][0]] == expected


def test_what_only_running_something_could_tell_is_said(tmp_path) -> None:
    aide = tmp_path / "etc/aide"
    (aide / "aide.conf.d").mkdir(parents=True)
    (aide / "aide.conf").write_text(_DEBIANISH)
    script = aide / "aide.conf.d/10_aide_distribution"
    script.write_text("#!/bin/sh\necho '/usr/sbin Full'\n")
    script.chmod(0o755)
    with pytest.raises(EvaluationError, match="AIDE runs /etc/aide/aide.conf.d/10_aide_distribution"):
        FactContext(builtin_registry(), str(tmp_path)).fact("aide_rule", ("/usr/sbin/auditctl",))
    script.chmod(0o644)
    (aide / "aide.conf").write_text("@@if hostname web1\n/ R\n@@endif\n")
    with pytest.raises(EvaluationError, match="hostname condition"):
        FactContext(builtin_registry(), str(tmp_path)).fact("aide_rule", ("/usr/sbin/auditctl",))


@ROOT_NEEDED
@pytest.mark.parametrize("variant", _variants("aide"), ids=_id)
def test_aide_verdicts_follow_what_aide_checks(bundle, base_tree, tmp_path, variant) -> None:
    """CIS 6.3.3 passes when AIDE checks p, i, n, u, g, s, b, acl, xattrs and sha512 of every
    audit tool at its real path, as `aide -p` names the rule; PCI DSS 10.3.4 when AIDE adds the
    audit log to its database. Both are errors where AIDE refuses its configuration."""
    root = _tree(tmp_path, base_tree, variant)
    (log,), _ = _aide(root, ("/var/log/audit/audit.log",))
    verdict = _statuses(bundle, root, "pci-10.3.4")["pci-10.3.4-log-change-detection"]
    assert verdict == {0: "pass", 1: "fail", 17: "error"}[log[0]], log
    tools = [t for t in ("auditctl", "auditd", "ausearch", "aureport", "autrace", "augenrules")
             if (root / "sbin" / t).exists()]
    real = os.path.realpath(root / "sbin").removeprefix(str(root)) or "/"
    theirs, _ = _aide(root, tuple(f"{real}/{t}" for t in tools))
    need = {"p", "i", "n", "u", "g", "s", "b", "acl", "xattrs", "sha512"}
    holds = all(rc == 0 and need <= set(line.split("'")[3].split(" ")[-1].split("+")) for rc, line in theirs)
    verdict = _statuses(bundle, root, "cis-6.3.3")["cis-6.3.3-aide-audit-tools"]
    assert tools
    assert verdict == ("error" if theirs[0][0] == 17 else "pass" if holds else "fail"), theirs


_LIVE = """
import json, sys
from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry
ctx = FactContext(builtin_registry(), "/")
out = []
for path in sys.argv[1:]:
    r = ctx.fact("aide_rule", (path,))
    out.append([r.path, r.selected, r.kind, r.rule, r.attributes, r.where("attributes")])
print(json.dumps(out))
"""


@ROOT_NEEDED
def test_on_the_live_host_aide_itself_is_asked(tmp_path) -> None:
    """With the tree's /etc bound over the host's, the live host's fact asks the installed aide,
    which runs the executable include the tree-reading fact refuses to run."""
    _tool("aide")
    aide = tmp_path / "etc/aide"
    (aide / "aide.conf.d").mkdir(parents=True)
    (aide / "aide.conf").write_text(_DEBIANISH)
    (aide / "aide.conf.d/70_rules").write_text("/usr/sbin/auditctl$ f Full\n!/usr/sbin/ausearch$\n/usr/sbin R\n")
    script = aide / "aide.conf.d/10_generated"
    script.write_text("#!/bin/sh\necho '=/usr/bin/ H'\n")
    script.chmod(0o755)
    paths = ["/usr/sbin/auditctl", "/usr/sbin/ausearch", "/usr/sbin/auditd", "/usr/bin/ls", "/usr/lib/os-release"]
    done = _namespaced_python(tmp_path, paths)
    got = {p: rest for p, *rest in json.loads(done.stdout)}
    assert got["/usr/sbin/auditctl"][:2] == [True, "selective"]
    assert got["/usr/sbin/auditctl"][3] == ["l", "p", "u", "g", "s", "c", "m", "i", "b", "n", "md5", "sha1", "rmd160",
                                             "tiger", "crc32", "haval", "gost", "crc32b", "acl", "sha256", "sha512",
                                             "selinux", "xattrs", "whirlpool", "ftype", "e2fsattrs", "caps"]
    assert got["/usr/sbin/auditctl"][4] == "/etc/aide/aide.conf.d/70_rules:1 (the rule for /usr/sbin/auditctl)"
    assert got["/usr/sbin/ausearch"][:2] == [False, "negative"]
    assert got["/usr/sbin/auditd"][:2] == [True, "selective"]
    generated = ("'=/usr/bin/ (none) md5+sha1+rmd160+tiger+crc32+haval+gost+crc32b+sha256+sha512+whirlpool' "
                 "(/etc/aide/aide.conf.d/10_generated (stdout):1: '=/usr/bin/ H')")
    assert got["/usr/bin/ls"][:3] == [True, "equal", generated]
    assert got["/usr/lib/os-release"][:2] == [False, "none"]
    script.chmod(0o644)  # the same rules without the program: the tree reader agrees with AIDE
    (aide / "aide.conf.d/10_generated").write_text("=/usr/bin/ H\n")
    live = {p: rest for p, *rest in json.loads(_namespaced_python(tmp_path, paths).stdout)}
    ctx = FactContext(builtin_registry(), str(tmp_path))
    for path in paths:
        ours = ctx.fact("aide_rule", (path,))
        assert [ours.selected, ours.kind, ours.rule, ours.attributes, ours.where("attributes")] == live[path], path


def _namespaced_python(root: Path, paths: list[str]) -> subprocess.CompletedProcess[str]:
    script = 'mount --bind "$1/etc" /etc && shift && exec "$@"'
    done = _namespaced(script, args=[str(root), sys.executable, "-c", _LIVE, *paths], timeout=120)
    assert done.returncode == 0, done.stderr
    return done


def _debian_config(root: Path) -> None:
    """Debian's aide.conf and aide.conf.d as aide-common 0.18.3 ships them (scripts/setup.sh
    --with-test-tools unpacks it), each executable include run once, as AIDE would run it, and
    replaced by what it printed, so that the tree reader can read what AIDE reads."""
    shipped = Path(sys.prefix) / "oracles/usr/share/aide/config/aide"
    if not (shipped / "aide.conf").exists():
        pytest.skip("aide-common is not unpacked by scripts/setup.sh --with-test-tools")
    shutil.copytree(shipped, root / "etc/aide", symlinks=True)
    env = {"PATH": "/bin:/usr/bin", "UPAC_settingsd": str(root / "etc/aide/aide.settings.d")}
    for program in sorted((root / "etc/aide/aide.conf.d").iterdir()):
        if program.stat().st_mode & 0o100:
            done = subprocess.run([str(program)], capture_output=True, text=True, env=env, timeout=60, check=True)
            program.write_text(done.stdout)
            program.chmod(0o644)


@ROOT_NEEDED
def test_debians_own_configuration(tmp_path) -> None:
    """Debian's 211 rule files, with their macros, conditions and restricted rules: the rule for
    the audit tools, the audit log and 60 files and directories of this machine."""
    _debian_config(tmp_path)
    found = subprocess.run(["find", "/usr", "/etc", "/var", "/boot", "-xdev", "-maxdepth", "4"],
                           capture_output=True, text=True, check=False).stdout.split()
    paths = [*random.Random(0).sample(sorted(found), 60), "/usr/sbin/auditctl", "/var/log/audit/audit.log"]
    assert _disagreement(tmp_path, tuple(paths)) is None
    theirs, _ = _aide(tmp_path, ("/usr/sbin/auditctl",))
    assert theirs[0][0] == 0 and "sha512" in theirs[0][1]  # Debian's catch-all `/ 0 Full` checks it


def _hostile(root: Path, case: str) -> None:
    aide = root / "etc/aide"
    (aide / "aide.conf.d").mkdir(parents=True)
    (aide / "aide.conf").write_text("/usr/sbin R\n@@include /etc/aide/aide.conf.d .\n")
    drop_ins = aide / "aide.conf.d"
    if case == "includes itself":
        (aide / "aide.conf").write_text("/usr/sbin R\n@@include /etc/aide/aide.conf\n")
    elif case == "a fifo among the drop-ins":
        os.mkfifo(drop_ins / "10_fifo")
    elif case == "a fifo included by name":
        os.mkfifo(aide / "fifo")
        (aide / "aide.conf").write_text("@@include /etc/aide/fifo\n")
    elif case == "a symlink loop among the drop-ins":
        os.symlink("loop", drop_ins / "loop")
    elif case == "a name that is not UTF-8":
        (Path(os.fsdecode(bytes(drop_ins) + b"/10_\xff"))).write_text("!/usr/sbin/auditctl$\n")
    elif case == "a dangling symlink among the drop-ins":
        os.symlink("nowhere", drop_ins / "20_gone")
    elif case == "a symlinked drop-in":
        (aide / "elsewhere").write_text("!/usr/sbin/auditctl$\n")
        os.symlink("../elsewhere", drop_ins / "30_linked")
    elif case == "binary garbage":
        (drop_ins / "40_garbage").write_bytes(b"\x7fELF\x02\x01\x01\x00\xff\xfe/usr/sbin R\n")


@ROOT_NEEDED
@pytest.mark.parametrize("case", ["includes itself", "a fifo among the drop-ins", "a fifo included by name",
                                  "a symlink loop among the drop-ins", "a name that is not UTF-8",
                                  "a dangling symlink among the drop-ins", "a symlinked drop-in", "binary garbage"])
def test_hostile_layouts_are_read_as_aide_reads_them(tmp_path, case) -> None:
    """Never a hang on a FIFO, never a traceback: what AIDE refuses is refused with the line,
    and what it skips is skipped."""
    _hostile(tmp_path, case)
    assert _disagreement(tmp_path, ("/usr/sbin/auditctl", "/usr/sbin/x")) is None


# --- where AIDE reads its baseline database from: `aide --check` names the file it cannot open ----
_DATABASES = {
    "plain": "database_in=file:/nonexistent-aide/a.db\n",
    "macro": "@@define DBDIR /nonexistent-aide/dir\ndatabase_in=file:@@{DBDIR}/aide.db\n",
    "first-wins": "database_in=file:/nonexistent-aide/first.db\ndatabase_in=file:/nonexistent-aide/second.db\n",
    "database-alias": "database=file:/nonexistent-aide/alias.db\n",
    "three-slashes": "database_in=file:///nonexistent-aide/slashes.db\n",
    "in-an-include": "@@include /etc/aide/extra.conf\n",
    "unset": "",
}


@ROOT_NEEDED
@pytest.mark.parametrize("case", sorted(_DATABASES))
def test_database_in_is_the_file_aide_check_opens(tmp_path, case) -> None:
    # the pci-11.5.2 and HIPAA baseline rules look for the database where this fact says AIDE reads it
    etc = tmp_path / "etc/aide"
    etc.mkdir(parents=True)
    (etc / "aide.conf").write_text(_DATABASES[case] + "database_out=file:/nonexistent-aide/out.db\n/nonexistent-aide R\n")
    (etc / "extra.conf").write_text("database_in=file:/nonexistent-aide/included.db\n")
    script = 'mount --bind "$1/etc" /etc && "$2" --config /etc/aide/aide.conf --check'
    done = _namespaced(script, args=[str(tmp_path), _tool("aide")], timeout=60)
    opened = [ln.split("failed for file '", 1)[1].split("'", 1)[0] for ln in done.stderr.splitlines()
              if "open (read-only) failed for file '" in ln]
    ours = FactContext(builtin_registry(), str(tmp_path)).fact("aide_config", ())
    if "missing 'database_in'" in done.stderr:
        assert ours.database_in is None and not opened, done.stderr
    else:
        assert opened == [ours.database_in], done.stderr
