"""Every CLI writer through the one output mechanism: character devices and FIFOs written
through and left in place, symbolic links refused (or followed when asked) and never
replaced, private modes whatever the umask, and a full disk that leaves the old file."""

from __future__ import annotations

import contextlib
import json
import os
import stat
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from secpolicy import outfile
from secpolicy.cli.main import cli
from secpolicy.ruletests import materialize_files

TESTS = Path(__file__).resolve().parents[1]
POLICY = str(TESTS / "fixtures" / "policies" / "core.yaml")
RESULTS = str(TESTS / "fixtures" / "reports" / "web1_results.json")
BASELINE = str(TESTS / "fixtures" / "reports" / "web1_baseline.json")
EVENTS = str(TESTS / "fixtures" / "auditlog" / "events.jsonl")
SECPOLICY = [sys.executable, "-m", "secpolicy"]

WEAK = {
    "/etc/passwd": {"content": "root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\n", "mode": 0o664},
    "/etc/shadow": {"content": "root:$y$j9T$abc$def:19000:0:99999:7:::\ntoor::19000:0:99999:7:::\n", "mode": 0o644},
    "/etc/ssh/sshd_config": "PermitRootLogin yes\n",
    "/etc/login.defs": "PASS_MAX_DAYS 99999\n",
}


def run(*args: str) -> tuple[int, str, str]:
    try:
        r = CliRunner().invoke(cli, list(args), catch_exceptions=False)
    finally:
        # In process, `--follow-symlinks` sets outfile's setting for the rest of the process:
        # back to the default, or another test in this worker writes through links.
        outfile.set_follow_symlinks(False)
    return r.exit_code, r.stdout, r.stderr


@pytest.fixture(scope="module")
def weak_root(tmp_path_factory) -> str:
    root = tmp_path_factory.mktemp("weak")
    materialize_files(str(root), WEAK)
    return str(root)


def _writers(root: str) -> dict[str, Callable[[str], list[str]]]:
    w: dict[str, Callable[[str], list[str]]] = {}
    for fmt in ("table", "json", "html", "pdf", "sarif", "junit", "csv", "ocsf"):
        w[f"scan-{fmt}"] = lambda out, fmt=fmt: ["scan", "-p", POLICY, "--root", root, "--format", fmt, "-o", out]
    for fmt in ("json", "html", "pdf", "sarif", "junit", "csv", "ocsf"):
        w[f"report-{fmt}"] = lambda out, fmt=fmt: ["report", RESULTS, "-f", fmt, "-o", out]
    w["diff"] = lambda out: ["diff", BASELINE, RESULTS, "--format", "json", "-o", out]
    w["replay"] = lambda out: ["replay", EVENTS, "-o", out]
    w["timeline"] = lambda out: ["timeline", "--replay", EVENTS, "--format", "json", "-o", out]
    w["anomaly-learn"] = lambda out: ["anomaly", "learn", "--replay", EVENTS, "--out", out]
    return w


WRITERS = sorted(_writers("/").keys())
OK = (0, 1)  # a non-compliant scan exits 1; what matters here is that it is not 2 or 3


@contextlib.contextmanager
def _reading(fifo: Path) -> Iterator[list[bytes]]:
    got: list[bytes] = []

    def read() -> None:
        with open(fifo, "rb") as f:
            got.append(f.read())

    t = threading.Thread(target=read, daemon=True)
    t.start()
    try:
        yield got
    finally:
        t.join(30)
        if t.is_alive():  # the writer never opened the FIFO: unblock the reader, then fail
            os.close(os.open(fifo, os.O_WRONLY | os.O_NONBLOCK))
            t.join(5)
            pytest.fail("the command never wrote to the FIFO")


def _args(name: str, root: str, out: str) -> list[str]:
    return _writers(root)[name](out)


@pytest.mark.parametrize("writer", WRITERS)
def test_a_character_device_is_written_through_and_survives(writer, weak_root, tmp_path):
    dev = tmp_path / "null"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    code, _, err = run(*_args(writer, weak_root, str(dev)))
    assert code in OK, err
    assert stat.S_ISCHR(os.lstat(dev).st_mode) and os.lstat(dev).st_rdev == os.makedev(1, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["null"]  # no temporary file left


@pytest.mark.parametrize("writer", WRITERS)
def test_a_fifo_is_written_through_and_survives(writer, weak_root, tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    with _reading(fifo) as got:
        code, _, err = run(*_args(writer, weak_root, str(fifo)))
    assert code in OK, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    data = got[0]
    assert data, "nothing came through the FIFO"
    if writer.endswith("pdf"):
        assert data.startswith(b"%PDF-")
    elif writer in ("scan-json", "report-json", "diff", "report-sarif", "report-ocsf", "scan-sarif", "scan-ocsf",
                    "timeline", "anomaly-learn"):
        json.loads(data)


@pytest.mark.parametrize("writer", WRITERS)
def test_a_symlink_is_refused_and_neither_link_nor_target_changes(writer, weak_root, tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("previous good output\n")
    link = tmp_path / "out"
    link.symlink_to(target)
    code, _, err = run(*_args(writer, weak_root, str(link)))
    assert code == 2, err
    assert "cannot write" in err and "symbolic link" in err and "--follow-symlinks" in err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "previous good output\n"


@pytest.mark.parametrize("writer", ["scan-json", "scan-table", "report-pdf", "diff", "replay", "timeline"])
def test_follow_symlinks_replaces_the_target_and_keeps_the_link(writer, weak_root, tmp_path):
    target = tmp_path / "target.txt"
    target.write_text("previous good output\n")
    os.chmod(target, 0o640)
    link = tmp_path / "out"
    link.symlink_to(target)
    code, _, err = run("--follow-symlinks", *_args(writer, weak_root, str(link)))
    assert code in OK, err
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_bytes() not in (b"", b"previous good output\n")
    assert stat.S_IMODE(target.stat().st_mode) == 0o640  # a replaced file keeps its mode


def test_results_json_in_the_report_dir_as_a_symlink_is_refused_before_the_scan(weak_root, tmp_path):
    rd = tmp_path / "rd"
    rd.mkdir()
    (tmp_path / "elsewhere.json").write_text("keep")
    (rd / "results.json").symlink_to(tmp_path / "elsewhere.json")
    log = tmp_path / "log"
    assert run("log", "init", str(log), "--key-out", str(tmp_path / "k"))[0] == 0
    code, _, err = run("scan", "-p", POLICY, "--root", weak_root, "--report-dir", str(rd), "--audit-log", str(log))
    assert code == 2 and "results.json" in err and "symbolic link" in err
    assert (tmp_path / "elsewhere.json").read_text() == "keep"
    assert sorted(p.name for p in rd.iterdir()) == ["results.json"]
    # refused before the work: the scan never started, so the log holds no scan record
    assert "scan_start" not in (log / "segment-000000.jsonl").read_text()


def test_new_outputs_are_private_whatever_the_umask(weak_root, tmp_path):
    old = os.umask(0o022)
    try:
        out = tmp_path / "r.json"
        rd = tmp_path / "reports" / "nested"
        db = tmp_path / "store.db"
        assert run("scan", "-p", POLICY, "--root", weak_root, "--format", "json", "-o", str(out),
                   "--report-dir", str(rd))[0] == 1
        assert run("replay", EVENTS, "--store", str(db), "-o", str(tmp_path / "alerts.jsonl"))[0] == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    for d in (tmp_path / "reports", rd):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    for f in rd.iterdir():
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f
    assert sorted(f.name for f in rd.iterdir()) == ["report.html", "report.pdf", "results.json"]
    assert stat.S_IMODE((tmp_path / "alerts.jsonl").stat().st_mode) == 0o600
    for f in tmp_path.glob("store.db*"):
        assert stat.S_IMODE(f.stat().st_mode) == 0o600, f


def test_dev_full_is_a_clean_exit_2(weak_root):
    code, _, err = run("scan", "-p", POLICY, "--root", weak_root, "--format", "json", "-o", "/dev/full")
    assert code == 2
    assert err.strip() == "secpolicy: cannot write /dev/full (no space left on device)"
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


# A full disk: a small tmpfs mounted here and unmounted after ----------------------------
@pytest.fixture
def full_disk(tmp_path) -> Iterator[Path]:
    mnt = tmp_path / "small"
    mnt.mkdir()
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k,mode=0755", "tmpfs", str(mnt)],
                          capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root and CAP_SYS_ADMIN): {proc.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def _fill(mnt: Path) -> None:
    fd = os.open(mnt / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        while os.write(fd, b"\0" * 4096):
            pass
    except OSError as e:
        assert e.errno == 28
    finally:
        os.close(fd)


def _secpolicy(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SECPOLICY, *args], capture_output=True, text=True, timeout=300, check=False)


@pytest.mark.parametrize("kind", ["scan-json", "report-pdf", "diff"])
def test_a_full_disk_keeps_the_previous_file_and_exits_2(kind, full_disk, weak_root):
    out = full_disk / "out"
    out.write_text("previous good output\n")
    _fill(full_disk)
    args = {"scan-json": ["scan", "-p", POLICY, "--root", weak_root, "--format", "json", "-o", str(out)],
            "report-pdf": ["report", RESULTS, "-f", "pdf", "-o", str(out)],
            "diff": ["diff", BASELINE, RESULTS, "-o", str(out)]}[kind]
    p = _secpolicy(*args)
    assert p.returncode == 2, p.stderr
    assert p.stderr.strip() == f"secpolicy: cannot write {out} (no space left on device)"
    assert out.read_text() == "previous good output\n"
    assert sorted(x.name for x in full_disk.iterdir()) == ["filler", "out"]


def test_a_full_disk_under_the_report_dir_is_exit_2_after_an_honest_scan(full_disk, weak_root):
    _fill(full_disk)
    p = _secpolicy("scan", "-p", POLICY, "--root", weak_root, "--report-dir", str(full_disk / "rd"))
    assert p.returncode == 2, p.stderr
    assert "(no space left on device)" in p.stderr and "Traceback" not in p.stderr
    assert list((full_disk / "rd").iterdir()) == []


def test_scan_audit_log_on_a_full_disk_fails_cleanly(full_disk, weak_root, tmp_path):
    log = full_disk / "log"
    assert _secpolicy("log", "init", str(log), "--key-out", str(tmp_path / "k")).returncode == 0
    _fill(full_disk)
    p = _secpolicy("scan", "-p", POLICY, "--root", weak_root, "--audit-log", str(log))
    assert p.returncode in (2, 3), p.stderr
    assert "Traceback" not in p.stderr
    assert p.stderr.strip().startswith(f"secpolicy: cannot write audit log {log}")
    assert "no space left on device" in p.stderr


@pytest.mark.live
def test_monitor_writes_through_a_device_and_a_fifo_and_refuses_a_symlink(tmp_path):
    dev = tmp_path / "null"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    fifo = tmp_path / "events"
    os.mkfifo(fifo)
    target = tmp_path / "target.json"
    target.write_text("keep")
    link = tmp_path / "summary.json"
    link.symlink_to(target)
    refused = _secpolicy("monitor", "-p", POLICY, "--duration", "1", "--output", str(dev), "--summary-json", str(link))
    assert refused.returncode == 2 and "symbolic link" in refused.stderr
    assert target.read_text() == "keep" and link.is_symlink()
    summary = tmp_path / "summary-real.json"
    with _reading(fifo) as got:
        p = _secpolicy("monitor", "-p", POLICY, "--duration", "1", "--output", str(dev), "--events", str(fifo),
                       "--summary-json", str(summary))
    assert p.returncode == 0, p.stderr
    assert stat.S_ISCHR(os.lstat(dev).st_mode) and stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert json.loads(summary.read_text())["duration_s"] > 0
    assert stat.S_IMODE(summary.stat().st_mode) == 0o600
    assert isinstance(got[0], bytes)  # the recording went through the FIFO (possibly empty for a quiet second)
