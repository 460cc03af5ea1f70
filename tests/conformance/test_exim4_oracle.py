"""The `exim4` fact and CIS 2.1.21's Exim part against /bin/sh: Debian's update-exim4.conf
sources /etc/exim4/update-exim4.conf.conf with sh, so dc_local_interfaces is what sh leaves in
it after `. FILE`, and the rule passes exactly when that lists only loopback addresses."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from secpolicy.engine import scan
from secpolicy.errors import EvaluationError
from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry

REPO = Path(__file__).resolve().parents[2]
RULE = "cis-2.1.21-mta-local-only-configured"
STATUS = "Package: exim4-config\nStatus: install ok installed\nPriority: optional\nArchitecture: all\nVersion: 4.96-15\n"

CASES = [
    ("loopback", "dc_local_interfaces='127.0.0.1 ; ::1'\n"),
    ("last-wins", "dc_local_interfaces='127.0.0.1 ; ::1'\ndc_local_interfaces=''\n"),
    ("all-then-loopback", "dc_local_interfaces='0.0.0.0'\ndc_local_interfaces='127.0.0.1'\n"),
    ("double-quotes", 'dc_local_interfaces="127.0.0.1;::1"\n'),
    ("unquoted", "dc_local_interfaces=127.0.0.1\n"),
    ("two-on-a-line", "dc_local_interfaces='192.0.2.1'; dc_local_interfaces='::1'\n"),
    ("commented", "#dc_local_interfaces='192.0.2.1'\ndc_local_interfaces='127.0.0.1'\n"),
    ("a-variable", "lo='127.0.0.1'\ndc_local_interfaces=\"$lo ; ::1\"\n"),
    ("unset", "dc_eximconfig_configtype='internet'\n"),
    ("continued", "dc_local_interfaces='127.0.0.1 ; '\\\n'192.0.2.1'\n"),
]


@pytest.mark.parametrize(("case", "conf"), CASES, ids=[c for c, _ in CASES])
def test_dc_local_interfaces_is_what_sh_leaves_and_the_verdict_follows_it(tmp_path: Path, bundle,
                                                                         case: str, conf: str) -> None:
    root = tmp_path / "root"
    (root / "etc/exim4").mkdir(parents=True)
    (root / "etc/exim4/update-exim4.conf.conf").write_text(conf)
    (root / "var/lib/dpkg").mkdir(parents=True)
    (root / "var/lib/dpkg/status").write_text(STATUS)
    done = subprocess.run(["sh", "-c", '. "$1" && printf "%s" "${dc_local_interfaces-UNSET}"', "sh",
                           str(root / "etc/exim4/update-exim4.conf.conf")], capture_output=True, text=True,
                          timeout=30, check=True, env={"PATH": "/usr/bin:/bin"})
    theirs = None if done.stdout == "UNSET" else done.stdout
    ours = FactContext(builtin_registry(), str(root)).fact("exim4", ()).option("dc_local_interfaces")
    assert ours == theirs, case
    items = [w for w in re.split(r"\s*;\s*", (theirs or "").strip()) if w]
    local = bool(items) and set(items) <= {"127.0.0.1", "::1"}
    ps, reg = bundle  # the packs, loaded once for the module (conftest.py)
    (result,) = scan(ps, reg, root=str(root), rule_ids=[RULE]).to_results()["results"]
    assert result["status"] == ("pass" if local else "fail"), (case, theirs, result["evidence"])


def test_what_only_running_sh_could_tell_is_an_error(tmp_path: Path) -> None:
    (tmp_path / "etc/exim4").mkdir(parents=True)
    (tmp_path / "etc/exim4/update-exim4.conf.conf").write_text("dc_local_interfaces=$(hostname -i)\n")
    with pytest.raises(EvaluationError, match="update-exim4.conf.conf:1"):
        FactContext(builtin_registry(), str(tmp_path)).fact("exim4", ()).option("dc_local_interfaces")
