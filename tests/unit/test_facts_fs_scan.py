"""fs_scan: one walk for world-writable and unowned entries, links never followed, paths as the
scanned system names them."""

from __future__ import annotations

import os
from pathlib import Path

from facts_helpers import context, write


def test_world_writable_and_unowned_entries(tmp_path: Path) -> None:
    write(tmp_path, "etc/passwd", "root:x:0:0::/root:/bin/bash\n")
    write(tmp_path, "etc/group", "root:x:0:\n")
    write(tmp_path, "srv/a/open.txt", "x").chmod(0o666)
    (tmp_path / "srv/shared").mkdir()
    (tmp_path / "srv/shared").chmod(0o1777)  # sticky: fine
    (tmp_path / "srv/drop").mkdir()
    (tmp_path / "srv/drop").chmod(0o777)
    os.symlink("/etc/passwd", tmp_path / "srv/link")  # 0777 links do not count
    os.symlink("/", tmp_path / "srv/loop")  # and are not followed
    orphan = write(tmp_path, "srv/a/orphan", "x")
    os.chown(orphan, 4242, 0)
    s = context(tmp_path).fact("fs_scan", (("/srv", "/nonexistent"),))
    assert s.world_writable == ("/srv/a/open.txt", "/srv/drop")
    assert s.unowned == ("/srv/a/orphan (uid 4242)",)
    assert s.entries == 7
    assert s.where("world_writable") == "/srv/a/open.txt, /srv/drop"


def test_the_source_names_the_roots_walked_and_those_not_in_the_tree(tmp_path: Path) -> None:
    # the evidence of CIS 7.1.11/7.1.12 named every configured root, /opt and /srv too where
    # the tree has neither: a source must name only where something was read
    write(tmp_path, "etc/passwd", "root:x:0:0::/root:/bin/bash\n")
    write(tmp_path, "etc/group", "root:x:0:\n")
    write(tmp_path, "usr/local/bin/tool", "x")
    write(tmp_path, "opt", "a file, not a directory")
    s = context(tmp_path).fact("fs_scan", (("/etc", "/usr/local", "/opt", "/srv"),))
    assert s.where("entries") == "/etc, /usr/local (4 entries walked); absent: /opt, /srv"
    assert s.walked == ("/etc", "/usr/local")
    none = context(tmp_path).fact("fs_scan", (("/srv",),))
    assert none.where("unowned") == "nothing (0 entries walked); absent: /srv"
