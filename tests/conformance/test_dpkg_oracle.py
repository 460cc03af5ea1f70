"""dpkg's database, asked of dpkg: for each hostile status file, journal (var/lib/dpkg/updates)
and info/ tree below, `dpkg-query --admindir` says what each package is, or refuses the whole
database, and `dpkg --root --verify` says which files changed; the packages, package and
package_files facts must say the same, and be an error exactly where dpkg refuses."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
from pathlib import Path

import pytest

from secpolicy.engine import scan
from secpolicy.errors import EvaluationError
from secpolicy.facts import FactContext
from secpolicy.models import Status
from secpolicy.vocabulary import builtin_registry

pytestmark = pytest.mark.skipif(shutil.which("dpkg-query") is None or shutil.which("dpkg") is None,
                                reason="needs dpkg and dpkg-query")

REGISTRY = builtin_registry()
REST = "Version: 0.17+2.4-2\nArchitecture: amd64\nMaintainer: x\nDescription: d\n"
II = "install ok installed"


def rec(name: str = "telnet", status: str | None = II, rest: str = REST, extra: str = "") -> str:
    return f"Package: {name}\n" + (f"Status: {status}\n" if status is not None else "") + rest + extra + "\n"


def lib(arch: str, status: str = II, ma: str = "same") -> str:
    return rec("libx", status, f"Version: 1\nArchitecture: {arch}\nMaintainer: x\nDescription: d\nMulti-Arch: {ma}\n")


# case -> files under var/lib/dpkg ("status", "updates/<name>")
CASES: dict[str, dict[str, str]] = {
    # the red team's false PASS of cis-2.2.4 (1a-c) and the journal twin
    "Status continued on the next line": {"status": "Package: telnet\nStatus: install ok\n installed\n" + REST},
    "upper-case package name": {"status": rec("Telnet")},
    "upper-case state": {"status": rec(status="install ok Installed")},
    "upper-case words": {"status": rec(status="Install OK Installed")},
    "journal Status continued": {"status": rec(), "updates/0001": "Package: telnet\nStatus: purge ok\n not-installed\n"},
    # what dpkg refuses (2)
    "two Status fields": {"status": rec(extra="Status: install ok installed\n")},
    "unknown want": {"status": rec(status="frob ok installed")},
    "unknown state": {"status": rec(status="install ok frobbed")},
    "extra word": {"status": rec(status="install ok installed extra")},
    "two words": {"status": rec(status="install ok")},
    "empty Status": {"status": "Package: telnet\nStatus:\n" + REST},
    "Status value on the next line": {"status": "Package: telnet\nStatus:\n install ok installed\n" + REST},
    "a line without a colon": {"status": rec(extra="garbage\n")},
    "a line of words without a colon": {"status": rec(extra="garbage here\n")},
    "two stanzas of one package": {"status": rec() + rec(rest=REST.replace("amd64", "i386"))},
    "two stanzas, same architecture": {"status": rec() + rec()},
    "Multi-Arch same pair": {"status": lib("amd64") + lib("i386")},
    "mixed Multi-Arch": {"status": lib("amd64") + lib("i386", ma="foreign")},
    "Package after a line of one space": {"status": rec().rstrip("\n") + "\n \n" + rec("nis")},
    "Version on a continuation line": {"status": "Package: telnet\nStatus: install ok installed\nVersion:\n 1.0\n"
                                       "Architecture: amd64\nMaintainer: x\nDescription: d\n"},
    "no Status": {"status": rec(status=None)},
    "journal name too long": {"status": rec(), "updates/123456789012": rec(status="purge ok not-installed")},
    "journal names of two lengths": {"status": rec(), "updates/01": rec(status="deinstall ok config-files"),
                                     "updates/001": rec(status="install ok unpacked")},
    "journal name not all digits": {"status": rec(), "updates/tmp.i": rec(status="purge ok not-installed")},
    "journal removal": {"status": rec(), "updates/0000": rec(status="deinstall ok config-files")},
    "journal cross-grade": {"status": rec(), "updates/0000": rec(rest=REST.replace("amd64", "i386"))},
    "journal adds a Multi-Arch instance": {"status": lib("amd64"), "updates/0000": lib("i386")},
    "journal non-Multi-Arch over two instances": {"status": lib("amd64") + lib("i386"),
                                                  "updates/0000": lib("i386", ma="no")},
    "journal without Package": {"status": rec(), "updates/0000": "Status: install ok installed\nVersion: 1\n\n"},
    # more of the grammar and of each field's parser
    "want and flag run together": {"status": rec(status="installok installed")},
    "state with trailing junk": {"status": rec(status="install ok installedx")},
    "carriage return before newline": {"status": rec(status="install ok installed\r")},
    "tab separated": {"status": rec(status="install\tok\tinstalled")},
    "installed without Version": {"status": rec(rest="Architecture: amd64\nMaintainer: x\nDescription: d\n")},
    "half-installed without Version": {"status": rec(status="install reinstreq half-installed",
                                                     rest="Architecture: amd64\n")},
    "config-files without Version": {"status": rec(status="deinstall ok config-files", rest="Architecture: amd64\n")},
    "empty Version": {"status": rec(rest=REST.replace("0.17+2.4-2", ""))},
    "epoch zero": {"status": rec(rest=REST.replace("0.17+2.4-2", "0:1.0-1"))},
    "epoch with nothing after": {"status": rec(rest=REST.replace("0.17+2.4-2", "1:"))},
    "version of letters": {"status": rec(rest=REST.replace("0.17+2.4-2", "abc"))},
    "empty revision": {"status": rec(rest=REST.replace("0.17+2.4-2", "1.0-"))},
    "Config-Version when installed": {"status": rec(extra="Config-Version: 1\n")},
    "Config-Version when unpacked": {"status": rec(status="install ok unpacked", extra="Config-Version: 1\n")},
    "triggers-pending without triggers": {"status": rec(status="install ok triggers-pending")},
    "triggers-pending with triggers": {"status": rec(status="install ok triggers-pending",
                                                     extra="Triggers-Pending: /usr/share/man\n")},
    "pending triggers when installed": {"status": rec(extra="Triggers-Pending: x\n")},
    "triggers-awaited": {"status": rec("man-db") + rec(status="install ok triggers-awaited",
                                                       extra="Triggers-Awaited: man-db\n")},
    "Multi-Arch same on all": {"status": lib("all")},
    "Multi-Arch same without Architecture": {"status": rec("libx", rest="Version: 1\nMulti-Arch: same\n")},
    "Multi-Arch unknown": {"status": lib("amd64", ma="sometimes")},
    "Essential maybe": {"status": rec(extra="Essential: maybe\n")},
    "Priority unknown word": {"status": rec(extra="Priority: custom\n")},
    "Priority with junk": {"status": rec(extra="Priority: optionalx\n")},
    "Depends well formed": {"status": rec(extra="Depends: libc6 (>= 2.34), a | b:any, c (<< 1:2-3)\n")},
    "Depends empty version": {"status": rec(extra="Depends: libc6 (>= )\n")},
    "Depends trailing comma": {"status": rec(extra="Depends: libc6,\n")},
    "Depends bad relation": {"status": rec(extra="Depends: libc6 (<> 1)\n")},
    "Conflicts alternatives": {"status": rec(extra="Conflicts: a | b\n")},
    "Conffiles well formed": {"status": rec(extra="Conffiles:\n /etc/telnetrc 0123456789abcdef0123456789abcdef\n")},
    "Conffiles line without hash": {"status": rec(extra="Conffiles:\n /etc/telnetrc\n")},
    "Filename in status": {"status": rec(extra="Filename: pool/t.deb\n")},
    "one-letter field": {"status": rec(extra="X: 1\n")},
    "user field twice": {"status": rec(extra="X-Foo: 1\nx-foo: 2\n")},
    "field name with hyphen first": {"status": rec(extra="-Foo: 1\n")},
    "Source with version": {"status": rec(extra="Source: netkit-telnet (0.17-44)\n")},
    "no Source": {"status": rec()},
    "empty Source": {"status": rec(extra="Source:\n")},
    "missing final newline": {"status": rec().rstrip("\n").rstrip("\n")},
    "one character after the last newline": {"status": rec() + "x"},
    "stanza without Package": {"status": rec() + "Status: install ok installed\nVersion: 1\n\n"},
    "invalid package name": {"status": rec("tel/net")},
    "purged leftover": {"status": rec(status="purge ok not-installed")},
    "description with control characters": {"status": rec(extra=" \x1c\x0bStatus: purge ok not-installed\n")},
    "^Z ends a line": {"status": rec().replace("Maintainer: x\n", "Maintainer: x\x1a")},
}
NAMES = ("telnet", "libx", "nis", "man-db")
FORMAT = "${Package}:${Architecture} ${Version} ${db:Status-Status} ${source:Package}\n"


def _tree(base: Path, files: dict[str, str]) -> Path:
    admin = base / "var/lib/dpkg"
    (admin / "updates").mkdir(parents=True)
    (admin / "info").mkdir()
    for name, text in files.items():
        (admin / name).write_bytes(text.encode("utf-8", "surrogateescape"))
    return base


@pytest.fixture(scope="module")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("dpkg")
    return {case: _tree(base / f"case{i}", files) for i, (case, files) in enumerate(CASES.items())}


def _dpkg_query(root: Path) -> tuple[int, list[str], str]:
    done = subprocess.run(["dpkg-query", f"--admindir={root / 'var/lib/dpkg'}", "-W", "-f", FORMAT, *NAMES],
                          capture_output=True, text=True, check=False, timeout=30)
    return done.returncode, sorted(done.stdout.splitlines()), done.stderr


def _ours(root: Path) -> list[str]:
    pkgs = FactContext(REGISTRY, str(root)).fact("packages", ())
    return sorted(f"{p.name}:{p.arch or ''} {p.version or ''} {p.status} {p.source}" for p in pkgs if p.name in NAMES)


@pytest.mark.parametrize("case", list(CASES))
def test_packages_agree_with_dpkg_query_or_are_an_error_where_it_refuses(trees: dict[str, Path], case: str) -> None:
    rc, theirs, stderr = _dpkg_query(trees[case])
    assert rc in (0, 1, 2), stderr
    try:
        ours = _ours(trees[case])
    except EvaluationError as e:
        assert rc == 2, f"dpkg-query reads the database ({theirs}); we said {e}"
        assert "/var/lib/dpkg/" in str(e) and "refuse" in str(e)
        return
    assert rc != 2, f"dpkg-query refuses the database ({stderr.strip()}); we read {ours}"
    assert ours == theirs, stderr


@pytest.mark.parametrize("case", ["Status continued on the next line", "upper-case package name", "upper-case state",
                                  "upper-case words", "want and flag run together"])
def test_telnet_client_rule_fails_where_dpkg_says_telnet_is_installed(bundle, trees: dict[str, Path],
                                                                     case: str) -> None:
    policies, registry = bundle  # the bundled policies (conftest.py)
    report = scan(policies, registry, root=str(trees[case]), rule_ids=["cis-2.2.4-telnet-client-not-installed"])
    assert [(f.rule_id, f.status) for f in report.findings] == [("cis-2.2.4-telnet-client-not-installed", Status.FAIL)]


def test_an_unreadable_database_is_an_error_for_the_rule(bundle, trees: dict[str, Path]) -> None:
    policies, registry = bundle
    report = scan(policies, registry, root=str(trees["unknown want"]), rule_ids=["cis-2.2.4-telnet-client-not-installed"])
    assert [f.status for f in report.findings] == [Status.ERROR]


# package_files against dpkg --verify ----------------------------------------------------------

def md5(data: str) -> str:
    return hashlib.md5(data.encode(), usedforsecurity=False).hexdigest()


def demo(md5sums: str | None = None, status: str | None = rec("demo"), name: str = "demo") -> dict[str, str]:
    files = {"usr/bin/demo": "demo\n", "usr/bin/tool": "tool\n"}
    out = {"info/format": "1\n", f"info/{name}.list": "/.\n/usr\n/usr/bin\n/usr/bin/demo\n/usr/bin/tool\n",
           f"info/{name}.md5sums": md5sums if md5sums is not None else
           "".join(f"{md5(text)}  {path}\n" for path, text in files.items())}
    if status is not None:
        out["status"] = status
    return out


VERIFY: dict[str, tuple[dict[str, str], str]] = {
    "intact": (demo(), "demo"),
    "upper-case digest": (demo(f"{md5('demo' + chr(10)).upper()}  usr/bin/demo\n{md5('tool' + chr(10))}  usr/bin/tool\n"),
                          "demo"),
    "digest that is not hex": (demo(f"{'z' * 32}  usr/bin/demo\n"), "demo"),
    "trailing slash": (demo(f"{md5('x')}  usr/bin/demo/\n"), "demo"),
    "blank line": (demo(f"{md5('demo' + chr(10))}  usr/bin/demo\n\n"), "demo"),
    "no final newline": (demo(f"{md5('demo' + chr(10))}  usr/bin/demo"), "demo"),
    "one space": (demo(f"{md5('demo' + chr(10))} usr/bin/demo\n"), "demo"),
    "not in status": (demo(status=rec("other")), "demo"),
    "removed, config files left": (demo(status=rec("demo", "deinstall ok config-files")), "demo"),
    "upper-case argument": (demo(), "Demo"),
    "ambiguous Multi-Arch name": ({**demo(status=lib("amd64") + lib("i386"), name="libx:amd64"),
                                   **demo(status=lib("amd64") + lib("i386"), name="libx:i386")}, "libx"),
    "legacy info layout": ({**demo(status=lib("amd64"), name="libx"), "info/format": "0\n"}, "libx"),
    "one Multi-Arch instance": ({**demo(status=lib("amd64") + lib("i386"), name="libx:amd64"),
                                 **demo(f"{md5('x')}  usr/bin/tool\n", status=lib("amd64") + lib("i386"),
                                        name="libx:i386")}, "libx:i386"),
}


def _dpkg_verify(root: Path, name: str) -> tuple[int, dict[str, list[str]], str]:
    done = subprocess.run(["dpkg", f"--root={root}", "--verify", "--verify-format=rpm", name],
                          capture_output=True, text=True, check=False, timeout=30)
    out: dict[str, list[str]] = {"modified": [], "missing": []}
    for line in done.stdout.splitlines():
        flags, _, path = line.partition(" ")
        out["missing" if flags == "missing" else "modified"].append(path.strip().split(" ")[-1])
    return done.returncode, out, done.stderr


@pytest.mark.parametrize("case", list(VERIFY))
def test_package_files_agree_with_dpkg_verify(tmp_path: Path, case: str) -> None:
    files, name = VERIFY[case]
    root = _tree(tmp_path, files)
    for path, text in {"usr/bin/demo": "demo\n", "usr/bin/tool": "tool\n"}.items():
        (root / path).parent.mkdir(parents=True, exist_ok=True)
        (root / path).write_text(text)
    rc, theirs, stderr = _dpkg_verify(root, name)
    if case == "ambiguous Multi-Arch name":
        # a deliberate difference: dpkg refuses a bare name with two installed instances; the
        # fact verifies both, as the HIPAA pack names libc6 and the PAM libraries bare
        assert rc == 2 and "ambiguous package name" in stderr
        f = FactContext(REGISTRY, str(root)).fact("package_files", (name,))
        assert (f.exists, f.checked, f.modified) == (True, 2, ())  # the paths both instances list
        return
    try:
        f = FactContext(REGISTRY, str(root)).fact("package_files", (name,))
    except EvaluationError as e:
        assert rc == 2, f"dpkg --verify answers ({theirs}, {stderr.strip()}); we said {e}"
        return
    assert rc != 2, f"dpkg --verify stops ({stderr.strip()}); we said {f}"
    if rc == 1:  # "package 'x' is not installed": nothing verified
        assert "is not installed" in stderr
        assert (f.exists, f.checked, f.modified, f.missing) == (False, 0, (), ())
        return
    assert {"modified": list(f.modified), "missing": list(f.missing)} == theirs
    assert f.checked > 0
