"""AIDE and secpolicy FIM on the same mutated tree: every change AIDE reports, secpolicy
reports too (added, removed, and per changed entry each attribute AIDE names)."""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from secpolicy import fim

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "fim"
_spec = importlib.util.spec_from_file_location("fimtree", FIXTURES / "fimtree.py")
assert _spec and _spec.loader
fimtree = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(fimtree)

AIDE = shutil.which("aide")
pytestmark = pytest.mark.skipif(AIDE is None, reason="the aide binary is not installed (apt-get install aide)")

# AIDE's attribute names in its detailed report -> the secpolicy attributes that cover them.
# AIDE's ACL includes the entries derived from the mode, so a chmod shows there too (as p).
# AIDE's XAttrs includes the ACL, capability and SELinux xattrs that secpolicy splits out.
AIDE_TO_OURS: dict[str, set[str]] = {
    "File type": {"ftype"},
    "Lname": {"l"},
    "Size": {"s", "S"},
    "Size (>)": {"S"},
    "Perm": {"p"},
    "Uid": {"u"},
    "Gid": {"g"},
    "Inode": {"i"},
    "Linkcount": {"n"},
    "Mtime": {"m"},
    "Ctime": {"c"},
    "MD5": {"sha256"},
    "SHA256": {"sha256"},
    "ACL": {"acl", "p"},
    "XAttrs": {"xattrs", "caps", "acl", "selinux"},
    "Caps": {"caps"},
    "SELinux": {"selinux"},
}


def parse_aide(report: bytes) -> tuple[set[str], set[str], dict[str, set[str]]]:
    """(added, removed, changed path -> AIDE attribute names) from a plain AIDE report."""
    text = report.decode("utf-8", "surrogateescape")
    added: set[str] = set()
    removed: set[str] = set()
    changed: dict[str, set[str]] = {}
    section = None
    current = None
    for line in text.splitlines():
        if line.startswith("Added entries:"):
            section = "added"
        elif line.startswith("Removed entries:"):
            section = "removed"
        elif line.startswith("Changed entries:"):
            section = "changed-summary"
        elif line.startswith("Detailed information about changes:"):
            section = "detail"
        elif line.startswith("The attributes of the"):
            section = None
        elif section in ("added", "removed"):
            m = re.match(r"^\S+: (/.*)$", line)
            if m:
                (added if section == "added" else removed).add(m.group(1))
        elif section == "detail":
            m = re.match(r"^(File|Directory|Link|FIFO|Socket|Block device|Character device): (/.*)$", line)
            if m:
                current = m.group(2)
                changed[current] = set()
                continue
            m = re.match(r"^ ([A-Za-z][A-Za-z0-9 ()>]*?)\s*: ", line)
            if m and current is not None:
                changed[current].add(m.group(1).strip())
    return added, removed, changed


def run_aide(conf: Path, *args: str) -> int:
    return subprocess.run([AIDE, "-c", str(conf), *args], capture_output=True, timeout=120, check=False).returncode


def test_secpolicy_reports_everything_aide_reports(tmp_path: Path):
    root = tmp_path / "root"
    fimtree.build(root)
    conf = tmp_path / "aide.conf"
    report = tmp_path / "aide.report"
    conf.write_text(
        f"database_in=file:{tmp_path}/aide.db\n"
        f"database_out=file:{tmp_path}/aide.db.new\n"
        "gzip_dbout=no\n"
        f"report_url=file:{report}\n"
        f"root_prefix={root}\n"
        "/etc R\n"
        "/log >\n"
    )
    cfg = tmp_path / "fim.yaml"
    cfg.write_text(fimtree.CONFIG)
    config = fim.load_config(cfg)
    key = fim.Key(b"a" * 32, "test")
    db = tmp_path / "fim.db"

    assert run_aide(conf, "--init") == 0
    os.replace(tmp_path / "aide.db.new", tmp_path / "aide.db")
    fim.init_baseline(config, db, root, key)

    fimtree.mutate(root)
    assert run_aide(conf, "--check") != 0  # AIDE exits non-zero when it finds changes
    aide_added, aide_removed, aide_changed = parse_aide(report.read_bytes())
    ours = fim.check(config, db, root, key)
    our_changed = {e.path: {c.name for c in e.changes} for e in ours.changed}

    # AIDE saw the mutations at all (guards against a parser that finds nothing).
    assert len(aide_changed) >= 10 and aide_added and aide_removed
    assert {e.path for e in ours.added} == aide_added
    assert {e.path for e in ours.removed} == aide_removed
    for path, attrs in aide_changed.items():
        assert path in our_changed, f"AIDE reports {path} changed ({attrs}); secpolicy does not"
        for a in attrs:
            assert a in AIDE_TO_OURS, f"unmapped AIDE attribute {a!r} on {path}"
            assert AIDE_TO_OURS[a] & our_changed[path], f"{path}: AIDE reports {a}, secpolicy {our_changed[path]}"
    # And secpolicy reports nothing that did not change (the fixture's ground truth).
    assert our_changed == fimtree.EXPECTED_CHANGED
