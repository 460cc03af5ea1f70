"""Run the real augenrules with a test's tree as /etc/audit (its paths are built in), in a mount
namespace of its own: what the augenrules fact is compared with (test_augenrules_oracle.py,
test_oracles.py)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def run_augenrules(augenrules: str, audit_dir: Path, *args: str) -> subprocess.CompletedProcess[bytes]:
    """`augenrules ARGS` with `audit_dir` bound over /etc/audit in a private mount namespace."""
    script = 'mount --bind "$1" /etc/audit && shift && exec "$@"'
    env = {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "LC_ALL": "C.UTF-8"}
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(audit_dir),
         augenrules, *args],
        capture_output=True, timeout=60, check=False, env=env,
    )
