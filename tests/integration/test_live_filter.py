"""The kernel tier's exactness: opens refused with EACCES reach user space with their path and
errno (a failure-only clause builds the record at sys_exit), successful opens elsewhere do not,
and paths with `..`, `//` or `/.` are sent up to be resolved in user space."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from secpolicy.events.bpf_plan import Clause, KernelPlan, TypeFilter

pytestmark = [pytest.mark.live]


@pytest.fixture
def tree():
    base = Path(tempfile.mkdtemp(prefix="secpolicy-filter-"))
    os.chmod(base, 0o755)
    watched, outside = base / "watched", base / "outside"
    for d in (watched, outside, outside / "sub"):
        d.mkdir()
        os.chmod(d, 0o755)
    secret = outside / "secret"
    secret.write_text("x")
    os.chmod(secret, 0o600)
    yield base, watched, outside, secret
    shutil.rmtree(base)


def run_py(code: str, *, nobody: bool = False) -> None:
    argv = [sys.executable, "-I", "-c", code]
    if nobody:
        argv = ["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", *argv]
    subprocess.run(argv, check=True, timeout=30)


def test_failure_only_clauses_and_unclear_paths(tree) -> None:
    from secpolicy.events.live import LiveSource

    base, watched, outside, secret = tree
    denied = Clause(None, "failure", frozenset({13}))
    under_watched = Clause((f"{watched}/",), None, None)
    plan = KernelPlan(
        frozenset({"exec", "open", "write"}),
        {"open": TypeFilter(clauses=(denied,)), "write": TypeFilter(path_prefixes=(f"{watched}/",), clauses=(denied, under_watched))},
    )
    src = LiveSource(plan)
    src.start()
    events: list[dict] = []
    reader = threading.Thread(target=lambda: events.extend(src.events()), daemon=True)
    reader.start()
    try:
        time.sleep(0.3)
        # 400 successful opens outside the watched tree: the kernel sends none of them
        run_py(
            f"import os\nfor i in range(200): os.close(os.open({str(outside / 'f')!r}, os.O_WRONLY|os.O_CREAT, 0o644))\n"
            f"for i in range(200): os.close(os.open({str(outside / 'f')!r}, os.O_RDONLY))"
        )
        # refused opens (read and write) as nobody, and a path through `..` into the watched tree
        run_py(
            f"import os\nfor fl in (os.O_RDONLY, os.O_WRONLY):\n"
            f"  try: os.open({str(secret)!r}, fl)\n  except PermissionError: pass",
            nobody=True,
        )
        run_py(f"open({str(outside / 'sub' / '..' / '..' / 'watched' / 'viadots')!r}, 'w').write('y')")
        time.sleep(0.8)
    finally:
        src.stop()
        reader.join(timeout=10)
        stats = src.stats()
        src.close()
    mine = [e for e in events if str(base) in (e.get("file") or {}).get("path", "")]
    refused = {(e["type"], e["outcome"]["errno"]) for e in mine if e.get("outcome", {}).get("result") == "failure"}
    assert refused == {("open", 13), ("write", 13)}
    for e in mine:
        if e.get("outcome", {}).get("result") == "failure":
            assert e["file"]["path"] == str(secret) and e["user"]["uid"] == 65534
    assert any(e["type"] == "write" and e["file"]["path"] == str(watched / "viadots") for e in mine)
    # (counted per event, not from the kernel's global counters: other processes on the
    # machine may open watched paths at the same time)
    assert not [e for e in mine if e["file"]["path"] == str(outside / "f")]
    assert not stats.lost()
