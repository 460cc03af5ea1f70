"""package_files against the real `dpkg --verify`: live packages of this host, and copies of real
packages in temporary roots where the test alters, removes and replaces files (never live ones)."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from secpolicy.engine import evaluate_rule
from secpolicy.errors import EvaluationError
from secpolicy.facts import FactContext
from secpolicy.models import Status
from secpolicy.vocabulary import builtin_registry, load_policies

REPO = Path(__file__).resolve().parents[2]
DPKG = shutil.which("dpkg")
pytestmark = pytest.mark.skipif(
    DPKG is None or not os.path.isdir("/var/lib/dpkg/info"),
    reason="no dpkg database on this host",
)
RULE = "hipaa-164.312-c-2-package-integrity"
# Security-relevant packages, plus some this image is known to carry modified files in
# (compared whatever their state: the comparison, not the state, is the test).
LIVE = (
    "dpkg",
    "coreutils",
    "bash",
    "libc6",
    "login",
    "passwd",
    "libpam-modules",
    "openssh-server",
    "sudo",
    "systemd",
    "util-linux",
    "apt",
    "python3-pip",
    "cmake-data",
)
KINDS = ("modified", "missing", "unreadable")


def installed(name: str) -> bool:
    out = subprocess.run(
        ["dpkg-query", "-W", "-f=${db:Status-Abbrev}", name],
        capture_output=True,
        text=True,
        check=False,
    )
    return out.returncode == 0 and out.stdout.startswith("ii")


def dpkg_verify(pkg: str, root: Path | None = None, *, as_nobody: bool = False) -> dict[str, list]:
    """`dpkg --verify` parsed into the fact's lists; conffile lines (attribute `c`) left out."""
    cmd = [DPKG or "dpkg", "--verify", pkg]
    if root is not None:
        cmd.insert(1, f"--root={root}")
    if as_nobody:
        cmd = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *cmd]
    out = subprocess.run(cmd, capture_output=True, text=True, check=False, timeout=120)
    assert out.returncode == 0, out.stderr
    res: dict[str, list] = {k: [] for k in KINDS}
    for line in out.stdout.splitlines():
        flags, attr, rest = line[:9], line[10], line[12:]
        if attr == "c":
            continue
        path, _, error = rest.partition(" (")
        if flags.startswith("missing"):
            # dpkg says "missing (Permission denied)" for what it could not lstat
            res["unreadable" if error.startswith("Permission denied") else "missing"].append(path)
        elif flags[1] == "M" or flags[2] == "5":
            res["modified"].append(path)
        else:  # "?????????": a regular file dpkg could not open
            res["unreadable"].append(path)
    return res


def fact(root: Path | str, pkg: str) -> Any:
    return FactContext(builtin_registry(), str(root)).fact("package_files", (pkg,))


def lists(f: Any) -> dict[str, list]:
    return {k: list(getattr(f, k)) for k in KINDS}


def test_live_packages_equal_dpkg_verify() -> None:
    pkgs = [p for p in LIVE if installed(p)]
    assert len(pkgs) >= 5, pkgs
    for pkg in pkgs:
        f = fact("/", pkg)
        assert f.exists and f.checked > 0, pkg
        assert lists(f) == dpkg_verify(pkg), pkg


# copies of real packages in temporary roots ----------------------------------------------


def info_base(pkg: str) -> str:
    for base in (pkg, f"{pkg}:amd64", f"{pkg}:arm64", f"{pkg}:i386"):
        if os.path.exists(f"/var/lib/dpkg/info/{base}.list"):
            return base
    pytest.skip(f"{pkg}: no .list file")


def copy_package(pkg: str, root: Path) -> str:
    """Copy pkg's dpkg records and its files (with the host's top-level /usr-merge links) into
    root; returns its info/ basename."""
    base = info_base(pkg)
    for top in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        if os.path.islink(f"/{top}"):
            target = os.readlink(f"/{top}")
            if target.startswith("/"):
                pytest.skip(
                    f"/{top} links to an absolute path: copying through it could write outside the root"
                )
            (root / target).mkdir(parents=True, exist_ok=True)
            (root / top).symlink_to(target)
    info = root / "var/lib/dpkg/info"
    info.mkdir(parents=True)
    (root / "var/lib/dpkg/updates").mkdir()
    # "format" 1 tells dpkg that info files of Multi-Arch: same packages are named name:arch
    if os.path.exists("/var/lib/dpkg/info/format"):
        shutil.copyfile("/var/lib/dpkg/info/format", info / "format")
    for ext in ("md5sums", "list", "conffiles"):
        src = Path(f"/var/lib/dpkg/info/{base}.{ext}")
        if src.exists():
            shutil.copyfile(src, info / src.name)
    status = subprocess.run(["dpkg-query", "-s", base], capture_output=True, text=True, check=True)
    (root / "var/lib/dpkg/status").write_text(status.stdout.rstrip("\n") + "\n\n")
    for line in (info / f"{base}.list").read_text().splitlines():
        if line in ("/.", ""):
            continue
        dest = root / line.lstrip("/")
        if os.path.lexists(dest):
            continue
        if os.path.islink(line):
            dest.parent.mkdir(parents=True, exist_ok=True)
            dest.symlink_to(os.readlink(line))
        elif os.path.isdir(line):
            dest.mkdir(parents=True, exist_ok=True)
        elif os.path.isfile(line):
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(line, dest)
    return base


def inside(root: Path, path: str) -> Path:
    """The copy of `path` in root, refusing anything that resolves outside it."""
    p = root / path.lstrip("/")
    real = os.path.realpath(p)
    assert real.startswith(str(root.resolve()) + os.sep), (path, real)
    assert p.is_file() and not p.is_symlink(), path
    return Path(real)


@pytest.fixture
def tmproot() -> Iterator[Path]:
    d = tempfile.mkdtemp(prefix="secpolicy-dpkg-")
    os.chmod(d, 0o755)
    try:
        yield Path(d)
    finally:
        shutil.rmtree(d)


def hashed_files(root: Path, base: str) -> list[str]:
    """The package's md5sums entries that are regular files in the copy, in .list order."""
    sums = {
        "/" + line[34:].lstrip("/")
        for line in (root / f"var/lib/dpkg/info/{base}.md5sums").read_text().splitlines()
    }
    listed = (root / f"var/lib/dpkg/info/{base}.list").read_text().splitlines()
    return [p for p in listed if p in sums and (root / p.lstrip("/")).is_file()]


@pytest.mark.parametrize("pkg", ["dpkg", "libattr1"])
def test_copied_package_altered_removed_and_replaced_like_dpkg_verify(
    pkg: str, tmproot: Path
) -> None:
    if not installed(pkg):
        pytest.skip(f"{pkg} is not installed")
    base = copy_package(pkg, tmproot)
    name = base.partition(":")[0]
    untouched = fact(tmproot, name)
    assert untouched.exists and untouched.checked == len(hashed_files(tmproot, base)) > 0
    assert lists(untouched) == dpkg_verify(base, tmproot) == {k: [] for k in KINDS}

    files = hashed_files(tmproot, base)
    victim = files[0]
    with open(inside(tmproot, victim), "ab") as fh:
        fh.write(b"\0altered")
    f = fact(tmproot, name)
    assert (
        lists(f)
        == dpkg_verify(base, tmproot)
        == {"modified": [victim], "missing": [], "unreadable": []}
    )
    assert f.where("modified").endswith(
        f".md5sums:{_md5sums_line(tmproot, base, victim)} ({victim})"
    )
    if len(files) < 3:
        return
    gone, relinked = files[1], files[2]
    inside(tmproot, gone).unlink()
    # same bytes behind a symlink: dpkg flags the type change (?M.), so do we
    real = inside(tmproot, relinked)
    os.rename(real, str(real) + ".moved")
    os.symlink(os.path.basename(real) + ".moved", real)
    f = fact(tmproot, name)
    expected = {"modified": [victim, relinked], "missing": [gone], "unreadable": []}
    # dpkg lists in .list order, one list; ours split by kind, each in .list order
    assert (
        lists(f)
        == dpkg_verify(base, tmproot)
        == {k: sorted(v, key=files.index) for k, v in expected.items()}
    )


def _md5sums_line(root: Path, base: str, path: str) -> int:
    text = (root / f"var/lib/dpkg/info/{base}.md5sums").read_text().splitlines()
    return next(n for n, line in enumerate(text, 1) if "/" + line[34:].lstrip("/") == path)


def _status_line(root: Path, pkg: str) -> int:
    text = (root / "var/lib/dpkg/status").read_text().splitlines()
    return text.index(f"Package: {pkg}") + 1


def synthetic(root: Path) -> None:
    """A package `demo` dpkg accepts under --root: /usr/bin/tool diverted by `wrapper`."""
    db = root / "var/lib/dpkg"
    (db / "info").mkdir(parents=True)
    (db / "updates").mkdir()
    (db / "status").write_text(
        "".join(
            f"Package: {p}\nStatus: install ok installed\nPriority: optional\nSection: misc\n"
            f"Maintainer: x <x@example.org>\nArchitecture: all\nVersion: 1.0\nDescription: {p}\n\n"
            for p in ("demo", "wrapper")
        )
    )
    files = {
        "/usr/bin/tool.distrib": "demo's tool\n",  # where the diversion put demo's /usr/bin/tool
        "/usr/bin/tool": "wrapper's tool\n",
        "/usr/bin/secret": "demo's secret\n",
        "/usr/lib/demo/private.so": "demo's module\n",
    }
    for path, text in files.items():
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        (root / path.lstrip("/")).write_text(text)
    recorded = {"/usr/bin/tool": files["/usr/bin/tool.distrib"]} | {
        p: files[p] for p in ("/usr/bin/secret", "/usr/lib/demo/private.so")
    }
    (db / "info/demo.md5sums").write_text(
        "".join(
            f"{hashlib.md5(t.encode()).hexdigest()}  {p.lstrip('/')}\n" for p, t in recorded.items()
        )
    )
    (db / "info/demo.list").write_text(
        "/.\n/usr\n/usr/bin\n/usr/bin/tool\n/usr/bin/secret\n/usr/lib\n/usr/lib/demo\n/usr/lib/demo/private.so\n"
    )
    (db / "info/wrapper.list").write_text("/.\n/usr\n/usr/bin\n")
    (db / "diversions").write_text("/usr/bin/tool\n/usr/bin/tool.distrib\nwrapper\n")


def test_diverted_file_content_is_checked_where_dpkg_checks_only_existence(tmproot: Path) -> None:
    synthetic(tmproot)
    assert lists(fact(tmproot, "demo")) == dpkg_verify("demo", tmproot) == {k: [] for k in KINDS}
    (tmproot / "usr/bin/tool.distrib").write_text("tampered\n")
    # dpkg keys the md5 by the original name and looks only at the diverted file's existence
    assert dpkg_verify("demo", tmproot) == {k: [] for k in KINDS}
    assert lists(fact(tmproot, "demo"))["modified"] == ["/usr/bin/tool.distrib"]
    (tmproot / "usr/bin/tool.distrib").unlink()
    assert lists(fact(tmproot, "demo")) == dpkg_verify("demo", tmproot)
    assert dpkg_verify("demo", tmproot)["missing"] == ["/usr/bin/tool.distrib"]


def _as_nobody(fn: Any) -> Any:
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - child
        os.close(r)
        code = 1
        try:
            os.setgroups([])
            os.setgid(65534)
            os.setuid(65534)
            os.write(w, json.dumps(fn()).encode())
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    with os.fdopen(r, "rb") as fh:
        data = fh.read().decode()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    return json.loads(data)


@pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("setpriv") is None, reason="needs root and setpriv"
)
def test_unreadable_files_agree_with_dpkg_run_as_an_unprivileged_user(tmproot: Path) -> None:
    synthetic(tmproot)
    for dirpath, dirs, names in os.walk(tmproot):
        for n in dirs:
            os.chmod(os.path.join(dirpath, n), 0o755)
        for n in names:
            os.chmod(os.path.join(dirpath, n), 0o644)
    os.chmod(tmproot / "usr/bin/secret", 0o600)
    os.chmod(tmproot / "usr/lib/demo", 0o700)


    def collect() -> Any:
        try:
            return lists(fact(tmproot, "demo"))
        except EvaluationError as e:
            return str(e)

    theirs = dpkg_verify("demo", tmproot, as_nobody=True)
    # dpkg could not read them either (`?????????`, `missing (Permission denied)`): it says nothing
    # of those files, and neither does the fact, which is an error naming the first of them.
    assert theirs == {"modified": [], "missing": [], "unreadable": ["/usr/bin/secret", "/usr/lib/demo/private.so"]}
    assert _as_nobody(collect) == (
        "/usr/bin/secret: permission denied (2 file(s) of package demo could not be read to verify them)"
    )


def test_rule_on_a_copied_dpkg_names_the_package_and_the_modified_file(tmproot: Path) -> None:
    policies = load_policies([REPO / "policies" / "hipaa"], registry := builtin_registry())
    rule = next(r for r in policies.rules if r.id == RULE)
    base = copy_package("dpkg", tmproot)
    assert evaluate_rule(rule, FactContext(registry, str(tmproot))).status == Status.PASS
    victim = hashed_files(tmproot, base)[-1]
    with open(inside(tmproot, victim), "ab") as fh:
        fh.write(b"\n# backdoor\n")
    finding = evaluate_rule(rule, FactContext(registry, str(tmproot)))
    assert finding.status == Status.FAIL
    line = _md5sums_line(tmproot, base, victim)
    # the modified file (deciding), then the package's status entry (the guard it got past)
    assert [(e.expression, e.observed, e.source, e.decisive) for e in finding.evidence] == [
        (
            "package_files(p).modified == []",
            f'["{victim}"]',
            f"/var/lib/dpkg/info/{base}.md5sums:{line} ({victim})",
            True,
        ),
        ("package(p).installed", "true", f"/var/lib/dpkg/status:{_status_line(tmproot, 'dpkg')}", False),
    ]
    live = evaluate_rule(rule, FactContext(registry, "/"))
    assert live.status in (Status.PASS, Status.FAIL)  # decided, never an error, on this host
