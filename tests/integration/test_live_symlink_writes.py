"""A write that reaches a watched file through a link is seen as a write of that file: through a
symlinked directory, a symlink to the file, and /proc/self/fd/N (or /dev/fd/N) of a descriptor
opened O_PATH, the rule on the watched tree fires and the alert names the real file, also
where the link's top-level directory is another than the watched tree's (the kernel's
pre-filter on the opened file's first path component); so is a write through a bind mount of
the watched tree, made in a mount namespace of the writer's own (named by its path in the
file system, as an audit directory watch follows it); a plain write outside the watched tree
still raises nothing. Real BPF, watched trees of the test's own (never /etc)."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from live_events import monitor_until_marker, only_alert
from live_events import python_child as child

pytestmark = [pytest.mark.live, pytest.mark.timeout(120)]

POLICY = """\
metadata: {{id: symlink-writes, title: symlink writes, version: "1.0.0"}}
rules:
  - id: watched-write
    title: write under the watched tree
    severity: high
    when: type == "write" and file.path startswith "{watched}/" and outcome.result == "success"
    message: "{{proc.exe}} wrote {{file.path}}"
  - id: far-write
    title: write under the watched tree of another top-level directory
    severity: high
    when: type == "write" and file.path startswith "{far}/" and outcome.result == "success"
  # as in the bundled rules: refused opens anywhere, which keeps every write-open for its exit
  - id: refused
    title: refused open
    severity: medium
    when: type in ["open", "write"] and outcome.result == "failure" and outcome.errno in [1, 13]
"""


# A watched tree whose top-level directory is not the temporary directory's, where the links are
# made: /dev/shm (a mount on a mount, crossed by the kernel's walk) or else /var/tmp.
FAR_BASE = "/dev/shm" if os.path.isdir("/dev/shm") else "/var/tmp"


class Run:
    def __init__(self, base: Path, far: Path) -> None:
        self.base = base
        self.watched = base / "watched"
        self.outside = base / "outside"
        self.far = far
        # the write type's first components as the kernel's pre-filter holds them, and its switch
        self.heads: dict[bytes, bool] = {}
        self.heads_on = 0
        self.pids: dict[str, int] = {}
        self.alerts: list[dict[str, Any]] = []
        self.events: list[dict[str, Any]] = []

    def of(self, case: str) -> list[dict[str, Any]]:
        return [a for a in self.alerts if a["event"]["proc"]["pid"] == self.pids[case]]


def _workload(r: Run) -> None:
    w, o = r.watched, r.outside
    (o / "dirlink").symlink_to(w)
    (w / "target").write_text("x")
    (o / "filelink").symlink_to(w / "target")
    (w / "pathfd").write_text("x")
    (w / "devfd").write_text("x")
    r.pids["dir"] = child(f"open({str(o / 'dirlink' / 'viadir')!r}, 'w').write('y')")
    r.pids["file"] = child(f"open({str(o / 'filelink')!r}, 'a').write('y')")
    r.pids["procfd"] = child(f"""
fd = os.open({str(w / 'pathfd')!r}, os.O_PATH)
os.close(os.open(f"/proc/self/fd/{{fd}}", os.O_WRONLY | os.O_APPEND))
""")
    r.pids["devfd"] = child(f"""
fd = os.open({str(w / 'devfd')!r}, os.O_RDONLY)
os.close(os.open(f"/dev/fd/{{fd}}", os.O_RDWR))
""")
    (o / "farlink").symlink_to(r.far)
    r.pids["far"] = child(f"open({str(o / 'farlink' / 'viafar')!r}, 'w').write('y')")
    r.pids["plain"] = child(f"open({str(o / 'plain')!r}, 'w').write('y')")
    # through a bind mount of the watched tree (in a mount namespace of the child's own)
    (o / "bindpt").mkdir()
    r.pids["bind"] = child(f"open({str(o / 'bindpt' / 'viabind')!r}, 'w').write('y')", binds=((w, o / "bindpt"),))
    # and through a bind mount of a directory outside it: nothing
    (o / "elsewhere").mkdir()
    (o / "bindpt2").mkdir()
    r.pids["bind-outside"] = child(f"open({str(o / 'bindpt2' / 'x')!r}, 'w').write('y')",
                                   binds=((o / "elsewhere", o / "bindpt2"),))


@pytest.fixture(scope="module")
def run() -> Iterator[Run]:
    from secpolicy.events.live import bpfsys
    from secpolicy.events.live.record import C

    base = Path(tempfile.mkdtemp(prefix="secpolicy-symlink-"))
    r = Run(base, Path(tempfile.mkdtemp(prefix="secpolicy-symlink-", dir=FAR_BASE)))
    try:
        r.watched.mkdir()
        r.outside.mkdir()
        policy = base / "policy.yaml"
        policy.write_text(POLICY.format(watched=r.watched, far=r.far))

        def started(mon: Any) -> None:
            kernel = mon.source.kernel
            for head in (r.base.parts[1], r.far.parts[1], "secpolicy-no-such-top"):
                key = head.encode().ljust(C["SP_HEAD_MAX"], b"\0")
                r.heads[head.encode()] = bpfsys.lookup(kernel.obj.map_fds["link_heads"], key, 1) is not None
            cfg = bpfsys.lookup(kernel.obj.map_fds["link_cfg"], b"\0" * 4, kernel.obj.map_specs["link_cfg"].value_size)
            r.heads_on = int.from_bytes((cfg or b"")[:4], "little")  # struct sp_link_cfg: on, nstems, ...

        marker = str(r.watched / "marker")
        # written last: once its alert is out, every earlier write has been decoded
        r.alerts, r.events = monitor_until_marker(policy, lambda: _workload(r), marker,
                                                  lambda: child(f"open({marker!r}, 'w').write('z')"), started)
        yield r
    finally:
        shutil.rmtree(base, ignore_errors=True)
        shutil.rmtree(r.far, ignore_errors=True)


def _one(r: Run, case: str) -> dict[str, Any]:
    return only_alert(r.alerts, r.events, r.pids[case], case)


def test_write_through_a_symlinked_directory_names_the_real_file(run: Run) -> None:
    a = _one(run, "dir")
    assert a["rule_id"] == "watched-write"
    assert a["event"]["file"]["path"] == str(run.watched / "viadir")
    assert a["message"].endswith(f" wrote {run.watched / 'viadir'}")
    assert "O_CREAT" in a["event"]["file"]["flags"]


def test_write_through_a_symlink_to_the_file_names_the_real_file(run: Run) -> None:
    a = _one(run, "file")
    assert a["event"]["file"]["path"] == str(run.watched / "target")
    assert "O_APPEND" in a["event"]["file"]["flags"]
    assert a["event"]["outcome"] == {"result": "success"}


def test_write_through_proc_self_fd_of_an_o_path_descriptor_names_the_real_file(run: Run) -> None:
    a = _one(run, "procfd")
    assert a["event"]["file"]["path"] == str(run.watched / "pathfd")
    b = _one(run, "devfd")  # /dev/fd/N of a descriptor opened read-only
    assert b["event"]["file"]["path"] == str(run.watched / "devfd")
    assert "O_RDWR" in b["event"]["file"]["flags"]


def test_write_through_a_bind_mount_of_the_watched_tree_names_the_real_file(run: Run) -> None:
    # `mount --bind WATCHED /elsewhere; echo >> /elsewhere/f` writes WATCHED/f: an audit
    # directory watch on WATCHED records it (it follows the dentries, not the mounts)
    a = _one(run, "bind")
    assert a["rule_id"] == "watched-write"
    assert a["event"]["file"]["path"] == str(run.watched / "viabind")
    assert run.of("bind-outside") == []
    assert not [e for e in run.events if e["proc"]["pid"] == run.pids["bind-outside"] and e["type"] == "write"]


def test_a_plain_write_outside_the_watched_tree_raises_nothing(run: Run) -> None:
    assert run.of("plain") == []
    assert not [e for e in run.events if e["proc"]["pid"] == run.pids["plain"] and e["type"] == "write"]
    # nor is any write named by a path outside the watched tree
    assert not [e for e in run.events if e["type"] == "write" and str(run.outside) in e["file"]["path"]]


def test_write_through_a_link_into_a_tree_of_another_top_level_directory_fires(run: Run) -> None:
    # The link is under the temporary directory, the watched tree under another top-level
    # directory: the kernel's pre-filter looks up the opened file's own first component.
    assert run.base.parts[1] != run.far.parts[1]
    assert run.heads_on == 1
    assert run.heads == {run.base.parts[1].encode(): True, run.far.parts[1].encode(): True,
                         b"secpolicy-no-such-top": False}
    a = _one(run, "far")
    assert a["rule_id"] == "far-write"
    assert a["event"]["file"]["path"] == str(run.far / "viafar")
    assert "O_CREAT" in a["event"]["file"]["flags"]
