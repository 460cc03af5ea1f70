"""A write that reaches a watched file under another name is seen as a write of that file, as an
audit file watch (which matches the inode) records it: through a hard link made outside the
watched tree, through a hard link whose name another rule's prefix matches, and through a bind
mount of the file itself; a file replaced by a rename after the monitor started is watched by
its new inode. A write to a file of several names that none of the rules watches raises nothing.
auditd, with file watches on the same kind of files, records the hard-link writes too. Real BPF,
watched files of the test's own (never /etc)."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_events import monitor_until_marker, only_alert
from live_events import python_child as child

REPO = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

POLICY = """\
metadata: {{id: hard-links, title: hard links, version: "1.0.0"}}
rules:
  - id: secret-write
    title: a watched file written
    severity: high
    when: type == "write" and file.path in ["{secret}", "{replaced}", "{bound}"] and outcome.result == "success"
    message: "{{proc.exe}} wrote {{file.path}}"
  - id: marker-write
    title: the marker
    severity: low
    when: type == "write" and file.path == "{marker}"
  - id: spool-write
    title: a write under another watched tree
    severity: low
    when: type == "write" and file.path startswith "{spool}/" and outcome.result == "success"
"""


def append(path: Path) -> str:
    return f"open({str(path)!r}, 'a').write('y')"


class Run:
    def __init__(self, watched: Path, outside: Path) -> None:
        self.watched = watched
        self.outside = outside
        self.secret = watched / "secret"
        self.replaced = watched / "replaced"
        self.bound = watched / "bound"
        self.spool = outside / "spool"
        self.pids: dict[str, int] = {}
        self.alerts: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def of(self, case: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["event"]["proc"]["pid"] == self.pids[case]]


def _inode_watched(mon: Any, path: Path, timeout: float = 20.0) -> None:
    """Wait until the kernel knows `path` by its current inode (the monitor looks again about
    twice a second)."""
    from secpolicy.events.live import bpfsys
    from secpolicy.events.live.kernel import INODE_KEY, INODE_PATH

    kernel = mon.source.kernel
    st = os.lstat(path)
    key = INODE_KEY.pack(st.st_ino, os.major(st.st_dev) << 20 | os.minor(st.st_dev), 0)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = bpfsys.lookup(kernel.obj.map_fds["watched_inodes"], key, INODE_PATH.size)
        if got is not None and INODE_PATH.unpack(got)[1].rstrip(b"\0") == str(path).encode():
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} not watched by its inode within {timeout} s")


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    # The watched files and the other names are under different top-level directories, so the
    # other names match no prefix of the watched files' rule.
    watched = Path(tempfile.mkdtemp(prefix="secpolicy-hardlink-", dir="/var/tmp"))
    outside = Path(tempfile.mkdtemp(prefix="secpolicy-hardlink-"))
    r = Run(watched, outside)
    mon_box: list[Any] = []
    try:
        r.spool.mkdir()
        r.secret.write_text("s")
        r.replaced.write_text("old")
        r.bound.write_text("b")
        (outside / "shared").write_text("x")
        os.link(outside / "shared", outside / "shared2")  # several names, none watched
        policy = outside / "policy.yaml"
        marker = outside / "marker"
        policy.write_text(POLICY.format(secret=r.secret, replaced=r.replaced, bound=r.bound,
                                        marker=marker, spool=r.spool))

        def workload() -> None:
            o = r.outside
            os.link(r.secret, o / "alias")
            r.pids["hardlink"] = child(append(o / "alias"))
            os.link(r.secret, r.spool / "alias")
            r.pids["prefixed"] = child(append(r.spool / "alias"))
            (o / "bindpt").write_text("")
            r.pids["bind"] = child(append(o / "bindpt"), binds=((r.bound, o / "bindpt"),))
            # replaced as `sed -i` and `passwd` do: a new file renamed over it
            (r.watched / ".new").write_text("new")
            os.rename(r.watched / ".new", r.replaced)
            _inode_watched(mon_box[0], r.replaced)
            os.link(r.replaced, o / "alias2")
            r.pids["replaced"] = child(append(o / "alias2"))
            r.pids["unwatched"] = child(append(o / "shared2"))

        r.alerts, r.events = monitor_until_marker(
            policy, workload, str(marker), lambda: child(f"open({str(marker)!r}, 'w').write('z')"), mon_box.append)
        yield r
    finally:
        shutil.rmtree(watched, ignore_errors=True)
        shutil.rmtree(outside, ignore_errors=True)


def test_a_write_through_a_hard_link_made_elsewhere_names_the_watched_file(run: Run) -> None:
    a = only_alert(run.alerts, run.events, run.pids["hardlink"], "hardlink")
    assert a["rule_id"] == "secret-write"
    assert a["event"]["file"]["path"] == str(run.secret)
    assert a["message"].endswith(f" wrote {run.secret}")
    assert "O_APPEND" in a["event"]["file"]["flags"]


def test_a_hard_link_whose_name_another_rule_watches_is_named_by_the_watched_file(run: Run) -> None:
    # The name under the spool tree passed the kernel's prefix test; the record still names the
    # file that was written by its watched path, and the credential-style rule fires.
    a = only_alert(run.alerts, run.events, run.pids["prefixed"], "prefixed")
    assert a["rule_id"] == "secret-write"
    assert a["event"]["file"]["path"] == str(run.secret)


def test_a_write_through_a_bind_mount_of_the_file_names_the_watched_file(run: Run) -> None:
    a = only_alert(run.alerts, run.events, run.pids["bind"], "bind")
    assert a["event"]["file"]["path"] == str(run.bound)


def test_a_file_replaced_after_the_start_is_watched_by_its_new_inode(run: Run) -> None:
    a = only_alert(run.alerts, run.events, run.pids["replaced"], "replaced")
    assert a["event"]["file"]["path"] == str(run.replaced)


def test_a_file_of_several_names_none_watched_raises_nothing(run: Run) -> None:
    assert run.of("unwatched") == []
    assert not [e for e in run.events if e["proc"]["pid"] == run.pids["unwatched"] and e["type"] == "write"]


def test_auditd_records_the_same_writes_through_hard_links_under_its_file_watch(tmp_path: Path) -> None:
    # The real component: a private auditd with file watches (`-w FILE -p wa`) on a file and on
    # one replaced by a rename after the watch was set; each write through a hard link made
    # elsewhere is logged under the watch's key, by the inode (the record names the link).
    if shutil.which("auditd") is None or shutil.which("auditctl") is None:
        pytest.skip("auditd is not installed (scripts/setup.sh --with-test-tools installs it)")
    sys.path.insert(0, str(REPO / "bench"))
    from exec_storm_bench import BENCH_KEY, auditd_rules

    watched = Path(tempfile.mkdtemp(prefix="secpolicy-hardlink-", dir="/var/tmp"))
    try:
        secret, replaced = watched / "secret", watched / "replaced"
        secret.write_text("s")
        replaced.write_text("r")
        with auditd_rules([["-w", str(secret), "-p", "wa"], ["-w", str(replaced), "-p", "wa"]]) as log:
            os.link(secret, tmp_path / "alias")
            pids = {"hardlink": child(append(tmp_path / "alias"))}
            (watched / ".new").write_text("n")
            os.rename(watched / ".new", replaced)
            os.link(replaced, tmp_path / "alias2")
            pids["replaced"] = child(append(tmp_path / "alias2"))
            pids["marker"] = child(append(secret))  # logged last: the log is complete once it is there
            deadline = time.monotonic() + 20
            while f"pid={pids['marker']} " not in Path(log).read_text(errors="replace") and time.monotonic() < deadline:
                time.sleep(0.05)
            text = Path(log).read_text(errors="replace")
    finally:
        shutil.rmtree(watched, ignore_errors=True)
    for case, pid in pids.items():
        syscalls = [ln for ln in text.splitlines() if ln.startswith("type=SYSCALL") and f" pid={pid} " in ln]
        assert any(f'key="{BENCH_KEY}"' in ln and "success=yes" in ln for ln in syscalls), (case, syscalls)
