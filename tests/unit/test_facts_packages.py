"""packages / package(name): dpkg status entries and Debian version ordering; package_files(name):
a tiny synthetic package's files against its md5sums, .list, conffiles and diversions."""

from __future__ import annotations

import hashlib
import itertools
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from facts_helpers import HOSTILE_LINE_BREAKS, as_nobody, context, materialize, public_tmpdir, write

from secpolicy.errors import EvaluationError
from secpolicy.facts.base import FactContext
from secpolicy.facts.packages import compare_versions
from secpolicy.vocabulary import builtin_registry


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("roots")
    return {n: materialize(n, base) for n in ("hardened", "weak")}


def test_installed_removed_and_unknown(roots: dict[str, Path]) -> None:
    ctx = context(roots["hardened"])
    ssh = ctx.fact("package", ("openssh-server",))
    assert (ssh.installed, ssh.version, ssh.arch, ssh.status, ssh.source) == (
        True,
        "1:9.2p1-2+deb12u3",
        "amd64",
        "installed",
        "openssh",
    )
    assert ssh.where("version") == "/var/lib/dpkg/status:152"
    telnet = ctx.fact("package", ("telnet",))  # removed, config files left: "rc"
    assert (telnet.installed, telnet.status) == (False, "config-files")
    nis = ctx.fact("package", ("nis",))
    assert (nis.installed, nis.status, nis.version) == (False, "not-installed", None)
    assert nis.where("installed") == "/var/lib/dpkg/status (no entry for nis)"


def test_multiarch_entries(roots: dict[str, Path]) -> None:
    ctx = context(roots["hardened"])
    assert ctx.fact("package", ("libc6:i386",)).arch == "i386"
    assert ctx.fact("package", ("libc6",)).installed
    assert sum(p.name == "libc6" for p in ctx.fact("packages", ())) == 2


def test_weak_installed_set(roots: dict[str, Path]) -> None:
    installed = {p.name for p in context(roots["weak"]).fact("packages", ()) if p.installed}
    assert {
        "telnet",
        "rsh-client",
        "nis",
        "xinetd",
        "avahi-daemon",
        "ufw",
        "iptables",
        "nftables",
    } <= installed
    assert not {"auditd", "apparmor", "libpam-pwquality", "chrony", "aide"} & installed


def test_version_methods(roots: dict[str, Path]) -> None:
    ctx = context(roots["weak"])
    ssh = ctx.fact("package", ("openssh-server",))
    assert ssh.version_below("1:9.2p1-2+deb12u3") is True  # before the regreSSHion fix
    assert ssh.version_at_least("1:9.2p1-2") is True
    assert ctx.fact("package", ("aide",)).version_at_least("0") is None


PAIRS = [
    ("1.0", "1.0"),
    ("1.0", "1.0-1"),
    ("1:1.0", "2.0"),
    ("1.0~rc1", "1.0"),
    ("1.0~~", "1.0~"),
    ("1.0+b1", "1.0"),
    ("2.36-9+deb12u4", "2.36-9+deb12u10"),
    ("1:9.2p1-2+deb12u3", "1:9.2p1-2+deb12u10"),
    ("0.17+2.4-2", "0.17-24"),
    ("1.2a", "1.2"),
    ("1.002", "1.2"),
    ("a", "A"),
    ("1.0.0", "1.0"),
    ("252.22-1~deb12u1", "252.22-1"),
    ("3.0pl1-162", "3.0pl1-16"),
]


def test_ordering_is_antisymmetric_and_matches_known_answers() -> None:
    for a, b in PAIRS:
        assert compare_versions(a, b) == -compare_versions(b, a)
    assert compare_versions("1.0~rc1", "1.0") == -1
    assert compare_versions("1:1.0", "2.0") == 1
    assert compare_versions("1.002", "1.2") == 0
    assert compare_versions("2.36-9+deb12u4", "2.36-9+deb12u10") == -1


@pytest.mark.skipif(shutil.which("dpkg") is None, reason="dpkg is not installed")
def test_ordering_equals_dpkg_compare_versions() -> None:
    versions = sorted({v for pair in PAIRS for v in pair})
    for a, b in itertools.combinations(versions, 2):
        lt = subprocess.run(["dpkg", "--compare-versions", a, "lt", b], check=False).returncode == 0
        eq = subprocess.run(["dpkg", "--compare-versions", a, "eq", b], check=False).returncode == 0
        expected = -1 if lt else (0 if eq else 1)
        assert compare_versions(a, b) == expected, (a, b)


# package_files: a tiny synthetic package against its md5sums ------------------------------


def md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()


def package(
    root: Path,
    name: str,
    files: dict[str, str],
    *,
    listed: list[str] | None = None,
    conffiles: tuple[str, ...] = (),
    status: bool = True,
) -> None:
    """Install `name` into root as dpkg would record it: the files, their md5sums (as recorded,
    before any tampering the test does next), the .list and the .conffiles, and (with `status`)
    its record in the status file: dpkg --verify checks only installed packages."""
    if status:
        db = root / "var/lib/dpkg/status"
        db.parent.mkdir(parents=True, exist_ok=True)
        with db.open("a") as f:
            f.write(f"Package: {name}\nStatus: install ok installed\nArchitecture: amd64\nVersion: 1.0\n"
                    "Maintainer: m\nDescription: d\n\n")
    sums = []
    for path, content in files.items():
        write(root, path, content)
        if path not in conffiles:
            sums.append(f"{md5(content)}  {path.lstrip('/')}\n")
    info = root / "var/lib/dpkg/info"
    write(root, f"/var/lib/dpkg/info/{name}.md5sums", "".join(sums))
    dirs = sorted({os.path.dirname(p) for p in files} | {"/usr", "/usr/bin"})
    write(
        root,
        f"/var/lib/dpkg/info/{name}.list",
        "/.\n" + "".join(f"{p}\n" for p in dirs + (listed or list(files))),
    )
    if conffiles:
        (info / f"{name}.conffiles").write_text("".join(f"{c}\n" for c in conffiles))


def files_of(root: Path, name: str):
    return context(root).fact("package_files", (name,))


def test_intact_package_passes_with_every_hashed_file_counted(tmp_path: Path) -> None:
    package(
        tmp_path,
        "demo",
        {
            "/usr/bin/demo": "demo 1.0\n",
            "/usr/share/demo/data": "x\n",
            "/etc/demo.conf": "setting=1\n",
        },
        conffiles=("/etc/demo.conf",),
    )
    f = files_of(tmp_path, "demo")
    assert (f.package, f.exists, f.checked, f.modified, f.missing, f.unreadable) == (
        "demo",
        True,
        2,
        (),
        (),
        (),
    )
    assert f.where("checked") == "/var/lib/dpkg/info/demo.md5sums"
    assert f.where("modified") == "/var/lib/dpkg/info/demo.md5sums"


def test_modified_missing_and_replaced_files_as_dpkg_verify_reports_them(tmp_path: Path) -> None:
    files = {
        f"/usr/bin/{n}": f"{n} original\n"
        for n in ("ok", "edited", "gone", "linked", "dangling", "dir", "fifo", "escape")
    }
    package(
        tmp_path,
        "demo",
        files,
        listed=list(files) + ["/usr/share/demo-doc", "/usr/lib/demo/plugin.so"],
        conffiles=(),
    )
    (tmp_path / "var/lib/dpkg/info/demo.list").write_text(
        (tmp_path / "var/lib/dpkg/info/demo.list").read_text() + "/usr/share/demo-kept\n"
    )
    (tmp_path / "usr/share/demo-kept").mkdir(parents=True)
    bin_ = tmp_path / "usr/bin"
    (bin_ / "edited").write_text("edited original\nbackdoor\n")
    (bin_ / "gone").unlink()
    # same bytes behind a symlink: dpkg's M flag, whatever the content
    (bin_ / "linked").unlink()
    (bin_ / "linked.real").write_text("linked original\n")
    (bin_ / "linked").symlink_to("linked.real")
    (bin_ / "dangling").unlink()
    (bin_ / "dangling").symlink_to("nowhere")
    (bin_ / "dir").unlink()
    (bin_ / "dir").mkdir()
    (bin_ / "fifo").unlink()
    os.mkfifo(bin_ / "fifo")  # must not block the scan
    (bin_ / "escape").unlink()
    (bin_ / "escape").symlink_to("/etc/passwd")  # never followed out of the root
    f = files_of(tmp_path, "demo")
    assert f.checked == 8
    assert f.modified == (
        "/usr/bin/edited",
        "/usr/bin/linked",
        "/usr/bin/dangling",
        "/usr/bin/dir",
        "/usr/bin/fifo",
        "/usr/bin/escape",
    )
    # listed without an md5 (directories, symlinks) are only required to exist, as in dpkg
    assert f.missing == ("/usr/bin/gone", "/usr/share/demo-doc", "/usr/lib/demo/plugin.so")
    assert f.unreadable == ()
    assert f.where("modified") == "/var/lib/dpkg/info/demo.md5sums:2 (/usr/bin/edited)"
    assert f.where("missing") == "/var/lib/dpkg/info/demo.md5sums:3 (/usr/bin/gone)"


def test_where_for_a_missing_path_without_md5_names_the_list_line(tmp_path: Path) -> None:
    package(
        tmp_path,
        "demo",
        {"/usr/bin/demo": "demo\n"},
        listed=["/usr/bin/demo", "/usr/share/doc/demo"],
    )
    f = files_of(tmp_path, "demo")
    assert f.missing == ("/usr/share/doc/demo",)
    assert f.where("missing") == "/var/lib/dpkg/info/demo.list:5 (/usr/share/doc/demo)"


def test_conffiles_are_out_of_scope_even_when_changed_or_deleted(tmp_path: Path) -> None:
    package(
        tmp_path,
        "demo",
        {"/usr/bin/demo": "demo\n", "/etc/demo.conf": "a\n", "/etc/demo.d/x.conf": "b\n"},
        conffiles=("/etc/demo.conf", "/etc/demo.d/x.conf"),
    )
    (tmp_path / "etc/demo.conf").write_text("changed by the administrator\n")
    (tmp_path / "etc/demo.d/x.conf").unlink()
    f = files_of(tmp_path, "demo")
    assert (f.checked, f.modified, f.missing) == (1, (), ())


def test_a_file_taken_over_by_another_package_left_the_list_and_is_not_checked(
    tmp_path: Path,
) -> None:
    package(
        tmp_path,
        "demo",
        {"/usr/bin/demo": "demo\n", "/usr/bin/shared": "old\n"},
        listed=["/usr/bin/demo"],
    )
    (tmp_path / "usr/bin/shared").write_text("the new owner's version\n")
    f = files_of(tmp_path, "demo")
    assert (f.checked, f.modified) == (1, ())


def test_without_a_list_file_every_md5sums_entry_is_checked(tmp_path: Path) -> None:
    package(tmp_path, "demo", {"/usr/bin/a": "a\n", "/usr/bin/b": "b\n"})
    (tmp_path / "var/lib/dpkg/info/demo.list").unlink()
    (tmp_path / "usr/bin/b").write_text("B\n")
    f = files_of(tmp_path, "demo")
    assert (f.checked, f.modified, f.missing) == (2, ("/usr/bin/b",), ())


def test_merged_usr_parent_symlinks_are_resolved_inside_the_root(tmp_path: Path) -> None:
    (tmp_path / "usr/bin").mkdir(parents=True)
    (tmp_path / "bin").symlink_to("usr/bin")
    write(tmp_path, "/usr/bin/sh-tool", "tool\n")
    package(tmp_path, "tool", {})
    (tmp_path / "var/lib/dpkg/info/tool.list").unlink()
    write(tmp_path, "/var/lib/dpkg/info/tool.md5sums", f"{md5('tool')}  bin/sh-tool\n")
    f = files_of(tmp_path, "tool")
    assert (f.checked, f.modified, f.missing) == (
        1,
        ("/bin/sh-tool",),
        (),
    )  # md5("tool") lacks the newline
    write(tmp_path, "/var/lib/dpkg/info/tool.md5sums", f"{md5('tool' + chr(10))}  ./bin/sh-tool\n")
    assert files_of(tmp_path, "tool").modified == ()


def test_multiarch_instances_are_read_from_name_arch_files(tmp_path: Path) -> None:
    write(
        tmp_path,
        "/var/lib/dpkg/status",
        "Package: libfoo1\nStatus: install ok installed\nArchitecture: amd64\nMulti-Arch: same\nVersion: 1\n\n"
        "Package: libfoo1\nStatus: install ok installed\nArchitecture: i386\nMulti-Arch: same\nVersion: 1\n",
    )
    write(tmp_path, "/var/lib/dpkg/info/format", "1\n")  # the multiarch layout: <name>:<arch>.md5sums
    package(tmp_path, "libfoo1:amd64", {"/usr/lib/x86_64-linux-gnu/libfoo.so.1": "amd64 code\n"}, status=False)
    package(tmp_path, "libfoo1:i386", {"/usr/lib/i386-linux-gnu/libfoo.so.1": "i386 code\n"}, status=False)
    (tmp_path / "usr/lib/i386-linux-gnu/libfoo.so.1").write_text("patched\n")
    f = files_of(tmp_path, "libfoo1:i386")
    assert (f.exists, f.checked, f.modified) == (True, 1, ("/usr/lib/i386-linux-gnu/libfoo.so.1",))
    assert (
        f.where("modified")
        == "/var/lib/dpkg/info/libfoo1:i386.md5sums:1 (/usr/lib/i386-linux-gnu/libfoo.so.1)"
    )
    one = files_of(tmp_path, "libfoo1:amd64")
    assert (one.checked, one.modified) == (1, ())
    # `dpkg --verify libfoo1` refuses a name with two installed instances; the fact verifies both
    both = files_of(tmp_path, "libfoo1")
    assert (both.exists, both.checked, both.modified) == (True, 2, ("/usr/lib/i386-linux-gnu/libfoo.so.1",))


def test_diverted_files_are_checked_where_the_diversion_put_them(tmp_path: Path) -> None:
    package(tmp_path, "demo", {"/usr/bin/tool": "demo's tool\n", "/usr/bin/mine": "demo's own\n"})
    package(tmp_path, "wrapper", {"/usr/bin/wrap": "w\n"})
    os.rename(tmp_path / "usr/bin/tool", tmp_path / "usr/bin/tool.distrib")
    (tmp_path / "usr/bin/tool").write_text("wrapper's tool\n")
    write(
        tmp_path,
        "/var/lib/dpkg/diversions",
        "/usr/bin/tool\n/usr/bin/tool.distrib\nwrapper\n/usr/bin/mine\n/usr/bin/mine.orig\ndemo\n",
    )
    f = files_of(tmp_path, "demo")
    # another package's diversion: demo's file lives at tool.distrib; demo's own diversion is
    # not applied to demo
    assert (f.checked, f.modified, f.missing) == (2, (), ())
    (tmp_path / "usr/bin/tool.distrib").write_text("tampered\n")
    assert files_of(tmp_path, "demo").modified == ("/usr/bin/tool.distrib",)
    write(tmp_path, "/var/lib/dpkg/diversions", "/usr/bin/mine\n/usr/bin/mine.orig\n:\n")
    # a local diversion applies to every package; the file was not moved: missing there
    assert files_of(tmp_path, "demo").missing == ("/usr/bin/mine.orig",)


def test_absent_package_and_absent_md5sums(tmp_path: Path) -> None:
    write(
        tmp_path,
        "/var/lib/dpkg/status",
        "Package: demo\nStatus: install ok installed\nVersion: 1\n",
    )
    f = files_of(tmp_path, "demo")
    assert (f.exists, f.checked, f.modified, f.missing) == (False, 0, (), ())
    assert f.where("checked") == "/var/lib/dpkg/info/demo.md5sums (absent)"
    # a .list without md5sums: nothing to hash, but listed files must still exist
    write(tmp_path, "/var/lib/dpkg/info/demo.list", "/.\n/usr\n/usr/bin/demo\n")
    f = files_of(tmp_path, "demo")
    assert (f.exists, f.checked, f.missing) == (False, 0, ("/usr", "/usr/bin/demo"))


@pytest.mark.parametrize(
    "line",
    [
        "d41d8cd98f00b204e9800998ecf8427e usr/bin/x",
        "d41d8cd98f00b204e9800998ecf8427e  ",
        "d41d8cd98f00b204e9800998ecf8427e",
        "",
    ],
)
def test_a_malformed_md5sums_line_is_an_evaluation_error_naming_the_line(
    tmp_path: Path, line: str
) -> None:
    package(tmp_path, "demo", {})
    write(tmp_path, "/var/lib/dpkg/info/demo.md5sums", f"{md5('a')}  usr/bin/a\n{line}\n")
    with pytest.raises(
        EvaluationError, match=r"^/var/lib/dpkg/info/demo\.md5sums:2: not an md5sums line"
    ):
        files_of(tmp_path, "demo")


@pytest.mark.parametrize("name", ["../../etc/passwd", "", "-x", "a/b", "sudo:", "sudo:amd64:i386", "sudo:a_b"])
def test_a_name_that_is_not_a_package_name_is_an_evaluation_error(
    tmp_path: Path, name: str
) -> None:
    with pytest.raises(EvaluationError, match="not a Debian package name"):
        files_of(tmp_path, name)


def test_a_truncated_diversions_table_is_an_evaluation_error(tmp_path: Path) -> None:
    package(tmp_path, "demo", {"/usr/bin/demo": "demo\n"})
    write(tmp_path, "/var/lib/dpkg/diversions", "/usr/bin/demo\n/usr/bin/demo.real\n")
    with pytest.raises(EvaluationError, match="diversions: 2 lines, not groups of three"):
        files_of(tmp_path, "demo")


def test_files_the_scan_may_not_read_make_the_package_an_error_not_a_finding() -> None:
    # dpkg --verify as nobody prints `??5??????` for them: nothing is known of those files, so a
    # rule over the package is ERROR (a non-root scan), never FAIL (nor PASS).
    root = public_tmpdir()
    try:
        package(
            root,
            "demo",
            {"/usr/bin/ok": "ok\n", "/usr/bin/secret": "s\n", "/usr/lib/private/mod.so": "m\n"},
        )
        for d in (
            "var",
            "var/lib",
            "var/lib/dpkg",
            "var/lib/dpkg/info",
            "usr",
            "usr/bin",
            "usr/lib",
        ):
            os.chmod(root / d, 0o755)
        for f in (root / "var/lib/dpkg/info").iterdir():
            os.chmod(f, 0o644)
        os.chmod(root / "var/lib/dpkg/status", 0o644)
        os.chmod(root / "usr/bin/ok", 0o644)
        os.chmod(root / "usr/bin/secret", 0o600)
        os.chmod(root / "usr/lib/private", 0o700)

        def collect() -> tuple:
            f = files_of(root, "demo")
            return f.checked, f.modified, f.missing, f.unreadable

        assert as_nobody(collect) == (
            "error",
            ("EvaluationError: /usr/bin/secret: permission denied (2 file(s) of package demo could not be read "
             "to verify them)"),
        )
        assert collect() == (3, (), (), ())  # as root every file is read
    finally:
        shutil.rmtree(root)


_STATUS = (
    "Package: telnetd\n"
    "Status: deinstall ok config-files\n"
    "Architecture: amd64\n"
    "Version: 0.17-44\n"
    "Description: telnet server\n"
    " old{sep}Status: install ok installed\n"
    "\n"
    "Package: nftables\n"
    "Status: install  ok\tinstalled\n"
    "Architecture: amd64\n"
    "Version: 1.0.6-2\n"
)


@pytest.mark.parametrize("sep", HOSTILE_LINE_BREAKS)
def test_status_file_lines_end_at_newline_only(tmp_path: Path, sep: str) -> None:
    # dpkg's parser: the Status after the separator is part of the Description; a line of
    # blanks would continue it, only an empty line ends the stanza
    write(tmp_path, "var/lib/dpkg/status", _STATUS.format(sep=sep))
    got = [(p.name, p.status, p.installed) for p in context(tmp_path).fact("packages", ())]
    assert got == [("telnetd", "config-files", False), ("nftables", "installed", True)]


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg-query")
@pytest.mark.parametrize("sep", HOSTILE_LINE_BREAKS)
def test_status_file_reading_agrees_with_dpkg_query(tmp_path: Path, sep: str) -> None:
    admin = tmp_path / "dpkg"
    (admin / "updates").mkdir(parents=True)
    (admin / "status").write_bytes(_STATUS.format(sep=sep).encode())
    out = subprocess.run(
        ["dpkg-query", f"--admindir={admin}", "-W", "-f", "${Package} ${Status}\n"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert out.splitlines() == [
        "nftables install ok installed",
        "telnetd deinstall ok config-files",
    ]


def _record(name: str, status: str, arch: str = "amd64", extra: str = "") -> str:
    return (f"Package: {name}\nStatus: {status}\nArchitecture: {arch}\nVersion: 1.0\nMaintainer: m\n"
            f"Description: d\n{extra}\n")


_JOURNALS = {
    "a removal not yet folded into status": {"0000": _record("telnetd", "deinstall ok config-files")},
    "a package unpacked by an interrupted run": {"0000": _record("nis", "install ok unpacked")},
    "later entries win": {"0000": _record("telnetd", "install ok half-installed"),
                          "0001": _record("telnetd", "install ok unpacked")},
    "not a journal name": {"tmp.i": _record("nis", "install ok installed"), "00a": _record("nis", "install ok installed")},
    "another architecture replaces": {"0000": _record("telnetd", "install ok installed", "i386")},
    "Multi-Arch: same keeps both": {"0000": _record("libc6", "install ok installed", "i386", "Multi-Arch: same\n")},
    "a record without Package": {"0000": "Status: install ok installed\nVersion: 1\n\n"},
    "a Status dpkg does not know": {"0000": _record("nis", "install ok configured")},
}


@pytest.mark.skipif(shutil.which("dpkg-query") is None, reason="needs dpkg-query")
@pytest.mark.parametrize("case", list(_JOURNALS))
def test_pending_journal_entries_are_read_as_dpkg_query_reads_them(tmp_path: Path, case: str) -> None:
    admin = tmp_path / "var/lib/dpkg"
    (admin / "updates").mkdir(parents=True)
    (admin / "status").write_text(_record("telnetd", "install ok installed")
                                  + _record("libc6", "install ok installed", extra="Multi-Arch: same\n"))
    for name, text in _JOURNALS[case].items():
        (admin / "updates" / name).write_text(text)
    out = subprocess.run(["dpkg-query", f"--admindir={admin}", "-W", "-f", "${Package}:${Architecture} ${db:Status-Status}\n"],
                         capture_output=True, text=True, check=False)
    try:
        ours = sorted(f"{p.name}:{p.arch} {p.status}" for p in context(tmp_path).fact("packages", ())
                      if p.status != "not-installed")
    except EvaluationError as e:
        assert out.returncode != 0, f"dpkg-query reads the database; we said {e}"
        return
    assert out.returncode == 0, out.stderr
    assert ours == sorted(out.stdout.splitlines())


@pytest.mark.skipif(shutil.which("apt") is None, reason="needs apt")
def test_installed_is_what_apt_lists_as_installed(tmp_path: Path) -> None:
    states = ["installed", "unpacked", "half-configured", "half-installed", "triggers-pending", "triggers-awaited",
              "config-files", "not-installed"]
    status = tmp_path / "var/lib/dpkg/status"
    status.parent.mkdir(parents=True)
    # dpkg refuses a triggers-pending package without Triggers-Pending, a triggers-awaited one
    # without Triggers-Awaited
    triggers = {"triggers-pending": "Triggers-Pending: t\n",
                "triggers-awaited": "Triggers-Awaited: pkg-installed\nTriggers-Pending: t\n"}
    status.write_text("".join(_record(f"pkg-{st}", f"{'deinstall' if st == 'config-files' else 'install'} ok {st}",
                                      extra=triggers.get(st, "")) for st in states))
    out = subprocess.run(
        ["apt", "-o", f"Dir::State::status={status}", "-o", f"Dir::State::Lists={tmp_path / 'lists'}",
         "-o", f"Dir::Cache={tmp_path / 'cache'}", "-o", "Debug::NoLocking=1", "list", "--installed"],
        capture_output=True, text=True, check=True,
    ).stdout
    listed = sorted(line.split("/")[0] for line in out.splitlines() if line.startswith("pkg-"))
    ours = sorted(p.name for p in context(tmp_path).fact("packages", ()) if p.installed)
    assert ours == listed and len(listed) == 6


def test_a_line_of_blanks_continues_a_field_and_does_not_end_the_stanza(tmp_path: Path) -> None:
    write(
        tmp_path,
        "var/lib/dpkg/status",
        "Package: a\nStatus: install ok installed\nDescription: x\n \nVersion: 1.2\n",
    )
    assert [(p.name, p.version) for p in context(tmp_path).fact("packages", ())] == [("a", "1.2")]


def _memo_context(root: Path, memo: object) -> FactContext:
    return FactContext(builtin_registry(), str(root), options={"memo": memo})


def test_a_memo_gives_the_packages_of_the_same_bytes_and_never_of_other_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the scan's memo (the private cache), a database read before is not parsed again
    while its files keep their bytes; any other byte, journal entry or code reads it again,
    and a refused database is never kept: it stays an error, in dpkg's order."""
    from secpolicy.facts import packages
    from secpolicy.policy.cache import ParseCache

    admin = tmp_path / "root/var/lib/dpkg"
    (admin / "updates").mkdir(parents=True)
    (admin / "status").write_text(_record("telnetd", "install ok installed") + _record("nis", "install ok installed"))
    memo = ParseCache(tmp_path / "memo")

    def packages_of(root: Path) -> list[tuple[str, str, str, int]]:
        return [(p.name, p.status, p.file, p.line) for p in _memo_context(root, memo).fact("packages", ())]

    first = packages_of(tmp_path / "root")
    assert first == [(p.name, p.status, p.file, p.line) for p in context(tmp_path / "root").fact("packages", ())]
    loads = []
    real_load = packages._Database.load
    monkeypatch.setattr(packages._Database, "load", lambda self, *a, **k: loads.append(a[1]) or real_load(self, *a, **k))
    assert packages_of(tmp_path / "root") == first and loads == []  # taken from the memo
    (admin / "updates" / "0000").write_text(_record("nis", "deinstall ok config-files"))
    assert ("nis", "config-files", "/var/lib/dpkg/updates/0000", 1) in packages_of(tmp_path / "root")
    assert loads == ["/var/lib/dpkg/status", "/var/lib/dpkg/updates/0000"]
    (admin / "updates" / "0000").unlink()
    (admin / "status").write_text(_record("telnetd", "install ok installed") + _record("nis", "deinstall ok config-files"))
    assert ("nis", "config-files", "/var/lib/dpkg/status", 8) in packages_of(tmp_path / "root")
    loads.clear()
    monkeypatch.setattr(packages, "_code_key", lambda: b"other code")
    assert packages_of(tmp_path / "root") != [] and loads == ["/var/lib/dpkg/status"]
    # Refused: a bad status file and a journal that is not a directory. dpkg names the status
    # file first; nothing refused is kept, so the next read refuses it again.
    (admin / "status").write_text("Package: nis\nStatus: install ok\n\n")
    shutil.rmtree(admin / "updates")
    (admin / "updates").write_text("")
    for _ in range(2):
        with pytest.raises(EvaluationError, match="/var/lib/dpkg/status:2"):
            _memo_context(tmp_path / "root", memo).fact("packages", ())
    # A journal dpkg refuses is refused, although the status file's bytes are in the memo.
    (admin / "status").write_text(_record("nis", "install ok installed"))
    (admin / "updates").unlink()
    assert [p.name for p in _memo_context(tmp_path / "root", memo).fact("packages", ())] == ["nis"]
    (admin / "updates").write_text("")
    with pytest.raises(EvaluationError, match="updates: not a directory"):
        _memo_context(tmp_path / "root", memo).fact("packages", ())
    # A memo entry of another shape (an older version, a damaged file) is read past.
    (admin / "updates").unlink()
    memo.put_named(packages._MEMO_NAME, ("key", ["not a package"]))
    assert [p.name for p in _memo_context(tmp_path / "root", memo).fact("packages", ())] == ["nis"]
