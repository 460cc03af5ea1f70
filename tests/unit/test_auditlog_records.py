"""AU-3 identity in audit records: names come from the account database (not the terminal),
events of this host get their user's name, configuration paths are absolute."""

from __future__ import annotations

import json
import os
import pwd
import socket
import subprocess
import sys
from pathlib import Path

from secpolicy.auditlog import records
from secpolicy.auditlog.trail import fim_alert_record

REPO = Path(__file__).resolve().parents[2]


def test_own_records_name_the_user_without_a_terminal() -> None:
    # A daemon or cron job has no controlling terminal: os.getlogin() fails there.
    code = ("import json, os\nfrom secpolicy.auditlog import records\n"
            "try:\n    os.getlogin(); tty = True\nexcept OSError:\n    tty = False\n"
            "print(json.dumps([tty, records.failure('scanner', 'x').source.to_dict()]))")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                       stdin=subprocess.DEVNULL, start_new_session=True, env=dict(os.environ, PYTHONPATH=str(REPO)))
    tty, source = json.loads(p.stdout)
    assert tty is False
    assert source["uid"] == os.getuid() and source["user"] == pwd.getpwuid(os.getuid()).pw_name


def test_an_alert_of_this_host_gets_its_users_name() -> None:
    rec = records.from_alert({"rule_id": "r", "severity": "high",
                              "event": {"type": "exec", "host": socket.gethostname(), "proc": {"uid": 0, "pid": 1}}})
    assert rec.source.uid == 0 and rec.source.user == "root"
    rec = records.from_alert({"rule_id": "r", "severity": "high", "event": {"type": "exec", "user": {"uid": 0}}})
    assert rec.source.user == "root"  # no host: this one
    # Another host's uid 0 may be anyone's: not looked up here.
    rec = records.from_alert({"rule_id": "r", "severity": "high",
                              "event": {"type": "exec", "host": "elsewhere.example", "user": {"uid": 0}}})
    assert rec.source.uid == 0 and rec.source.user is None
    rec = records.from_alert({"rule_id": "r", "severity": "high",
                              "event": {"type": "exec", "host": "elsewhere.example", "user": {"uid": 7, "name": "x"}}})
    assert rec.source.user == "x"


def test_hostile_event_fields_do_not_become_identity() -> None:
    rec = records.from_alert({"rule_id": "r", "severity": "high",
                              "event": {"type": "auth", "auth": {"rhost": {"a": 1}, "user": ["x"]},
                                        "user": {"uid": "0"}, "proc": {"pid": True}}})
    assert rec.source.to_dict() == {}


def test_fim_alert_record_names_the_actor() -> None:
    rec = fim_alert_record({"rule_id": "fim.x", "severity": "high",
                            "fim": {"path": "/etc/x", "change": "modified", "type": "file"},
                            "event": {"type": "open", "proc": {"pid": 5}, "user": {"uid": 0}}})
    assert rec.source.user == "root" and rec.source.uid == 0


def test_config_paths_are_absolute(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.chdir(tmp_path)
    rec = records.config_loaded("policies/x.yaml", "00" * 32)
    assert rec.details["path"] == str(tmp_path / "policies" / "x.yaml")
    assert records.config_changed("a.yaml", None, "b").details["path"] == str(tmp_path / "a.yaml")
