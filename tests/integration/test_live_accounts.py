"""Account and audit configuration changes seen live, as auditd sees them: the messages
shadow-utils and auditctl send the audit system. useradd, usermod and userdel of a throwaway
user under the bundled PCI DSS rules give one account alert per operation and no flood of
alerts on their lock and backup files; auditctl's rule changes are configuration changes."""

from __future__ import annotations

import io
import json
import os
import pwd
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
TOOLS = {"/usr/sbin/useradd", "/usr/sbin/usermod", "/usr/sbin/userdel"}

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]


def _run_monitor(workload: Any, *, storm: Any = None) -> tuple[list[dict[str, Any]], Any]:
    from secpolicy.cli.core import load
    from secpolicy.events.bpf_monitor import Monitor, StormControl
    from secpolicy.events.engine import EventEngine

    rules = list(load([str(REPO / "policies" / "pci-dss" / "events.yaml")]).event_rules)
    mon = Monitor(rules, EventEngine(rules), storm=storm or StormControl())
    mon.start()
    out = io.StringIO()
    error: list[BaseException] = []

    def work() -> None:
        try:
            workload()
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            error.append(exc)
        finally:
            time.sleep(0.8)
            mon.stop()

    t = threading.Thread(target=work)
    t.start()
    summary = mon.run(out)
    t.join()
    if error:
        raise error[0]
    return [json.loads(line) for line in out.getvalue().splitlines()], summary


@pytest.fixture
def user_name() -> Any:
    name = f"sp-live-{os.getpid()}"
    yield name
    try:
        pwd.getpwnam(name)
    except KeyError:
        return
    subprocess.run(["userdel", name], check=False, timeout=60)


def test_useradd_usermod_userdel_give_one_account_alert_each_and_no_lock_file_flood(user_name: str) -> None:
    for tool in TOOLS:
        if not os.path.exists(tool):
            pytest.fail(f"{tool} is missing (Debian package passwd)")
    uid: list[int] = []

    def workload() -> None:
        subprocess.run(["useradd", "-N", "-M", "-s", "/usr/sbin/nologin", user_name], check=True, timeout=60)
        uid.append(pwd.getpwnam(user_name).pw_uid)
        subprocess.run(["usermod", "-c", "secpolicy live test", user_name], check=True, timeout=60)
        subprocess.run(["userdel", user_name], check=True, timeout=60)

    alerts, summary = _run_monitor(workload)
    ours = [a for a in alerts if a["event"]["proc"].get("exe") in TOOLS]
    accounts = [(a["event"]["proc"]["exe"], a["event"]["account"]["op"], a["event"]["account"]["name"])
                for a in ours if a["rule_id"] == "pci-10.2.1.5-account-change"]
    assert [a[:2] for a in accounts] == [("/usr/sbin/useradd", "adding user"),
                                         ("/usr/sbin/usermod", "changing comment"),
                                         ("/usr/sbin/userdel", "deleting user entries")]
    # The messages carry id=, named as when the event is decoded (as auditd's ENRICHED format
    # names it when it logs): useradd sends its message before the new /etc/passwd is in place,
    # userdel before the user is gone, so the name or the number, never another user.
    assert all(name in (user_name, str(uid[0])) for _exe, _op, name in accounts)
    for a in ours:
        if a["rule_id"] == "pci-10.2.1.5-account-change":
            assert a["event"]["source"]["probe"] == "tracepoint:syscalls:sendto"
            assert a["event"]["outcome"] == {"result": "success"}
            assert a["event"]["user"]["uid"] == 0
    # The tools' lock, backup and new files under /etc (about twenty per command) are system
    # object changes; storm control writes three per command and folds the rest into one.
    others: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for a in ours:
        if a["rule_id"] != "pci-10.2.1.5-account-change":
            others.setdefault((a["rule_id"], a["event"]["proc"]["exe"]), []).append(a)
    assert {rule for rule, _exe in others} <= {"pci-10.2.1.7-system-object-change"}
    for (_rule, exe), written in others.items():
        singles = [a for a in written if "aggregate" not in a]
        aggregates = [a for a in written if "aggregate" in a]
        assert len(singles) <= 3 and len(aggregates) <= 1, (exe, len(singles), len(aggregates))
        for agg in aggregates:
            assert agg["aggregate"]["count"] >= 2 and agg["aggregate"]["key"]["proc.exe"] == exe
            assert all(p.startswith("/etc/") for p in agg["aggregate"]["paths"])
            shown = sum(agg["aggregate"]["paths"].values())
            assert shown == agg["aggregate"]["count"] if "paths_more" not in agg["aggregate"] else shown < agg["aggregate"]["count"]
    folded = summary.storm["by_rule"].get("pci-10.2.1.7-system-object-change", {}).get("folded", 0)
    assert folded >= sum(a["aggregate"]["count"] for w in others.values() for a in w if "aggregate" in a)


def test_auditctl_rule_changes_are_configuration_changes() -> None:
    auditctl = shutil.which("auditctl") or "/usr/sbin/auditctl"
    if not os.path.exists(auditctl):
        pytest.fail("auditctl is missing (Debian package auditd)")
    key = f"sp-live-{os.getpid()}"
    rule = ["exit,never", "-F", f"path=/nonexistent-{key}", "-k", key]

    def workload() -> None:
        # A rule that can never match, added and removed at once (keyed: nobody else's rule).
        subprocess.run([auditctl, "-a", *rule], check=True, timeout=30, capture_output=True)
        subprocess.run([auditctl, "-d", *rule], check=True, timeout=30, capture_output=True)

    alerts, _summary = _run_monitor(workload)
    changes = [(a["event"]["config"].get("op"), a["event"]["config"].get("key")) for a in alerts
               if a["rule_id"] == "pci-10.2.1.6-audit-config-change" and a["event"]["type"] == "config_change"
               and a["event"]["config"].get("key") == key]
    assert changes == [("add_rule", key), ("remove_rule", key)]
