"""Scheduled scans through tools operators already use: the systemd units pass
`systemd-analyze verify`, the scheduled-scan script rotates its results, and the Ansible role,
run by a real ansible-playbook over a real sshd on loopback, installs secpolicy from a wheel,
creates the audit log (its key fetched to the controller), schedules the scan, runs it and
fetches results that validate and an audit log that verifies."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from sshd_server import SSHD, SshServer, start_sshd, stop_sshd

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "deploy"
SECPOLICY = [sys.executable, "-m", "secpolicy"]
ANSIBLE = shutil.which("ansible-playbook")
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def _verify_units(unit_dir: Path, *units: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "SYSTEMD_UNIT_PATH": f"{unit_dir}:"}
    return subprocess.run([SYSTEMD_ANALYZE or "systemd-analyze", "verify", *(str(unit_dir / u) for u in units)],
                          capture_output=True, text=True, env=env, timeout=60, check=False)


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="systemd-analyze is not installed (Debian package systemd)")
def test_shipped_units_verify_once_the_scan_script_is_where_they_say(tmp_path: Path) -> None:
    units = tmp_path / "units"
    units.mkdir()
    for u in ("secpolicy-scan.service", "secpolicy-scan.timer"):
        shutil.copy(DEPLOY / "systemd" / u, units / u)
    script = tmp_path / "prefix" / "bin" / "secpolicy-scheduled-scan"
    script.parent.mkdir(parents=True)
    shutil.copy(DEPLOY / "secpolicy-scheduled-scan", script)
    # Without the script in place systemd refuses the unit: verify really checks ExecStart.
    missing = _verify_units(units, "secpolicy-scan.service")
    assert missing.returncode != 0 and "secpolicy-scheduled-scan is not executable" in missing.stderr
    dropin = units / "secpolicy-scan.service.d"
    dropin.mkdir()
    (dropin / "override.conf").write_text(f"[Service]\nExecStart=\nExecStart={script}\n")
    ok = _verify_units(units, "secpolicy-scan.service", "secpolicy-scan.timer")
    assert ok.returncode == 0, ok.stderr


def _fake_secpolicy(path: Path, code: int) -> Path:
    path.write_text("#!/bin/sh\n# records its arguments and writes results where --report-dir says\n"
                    'while [ $# -gt 0 ]; do [ "$1" = --report-dir ] && dir=$2; shift; done\n'
                    f'echo "{{}}" > "$dir/results.json"\nexit {code}\n')
    path.chmod(0o755)
    return path


def test_scheduled_scan_keeps_the_newest_scans_and_points_latest_at_a_good_one(tmp_path: Path) -> None:
    state = tmp_path / "state"
    env = {**os.environ, "SECPOLICY_STATE": str(state), "SECPOLICY_KEEP": "2"}
    for code in (1, 0, 1):
        env["SECPOLICY_BIN"] = str(_fake_secpolicy(tmp_path / "fake", code))
        r = subprocess.run([DEPLOY / "secpolicy-scheduled-scan"], env=env, capture_output=True, text=True, check=False)
        assert r.returncode == code, r.stderr
    scans = sorted(p.name for p in (state / "scans").iterdir() if p.name != "latest")
    assert len(scans) == 2
    assert os.readlink(state / "scans" / "latest") == scans[-1]
    assert oct((state / "scans").stat().st_mode & 0o777) == "0o700"
    # A scan that could not run (exit 3) leaves `latest` on the previous good one.
    env["SECPOLICY_BIN"] = str(_fake_secpolicy(tmp_path / "fake", 3))
    r = subprocess.run([DEPLOY / "secpolicy-scheduled-scan"], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 3
    assert os.readlink(state / "scans" / "latest") == scans[-1]
    env["SECPOLICY_KEEP"] = "0"
    r = subprocess.run([DEPLOY / "secpolicy-scheduled-scan"], env=env, capture_output=True, text=True, check=False)
    assert r.returncode == 2 and "at least 1" in r.stderr


@pytest.fixture
def sshd(tmp_path: Path) -> Iterator[SshServer]:
    if SSHD is None:
        pytest.skip("sshd is not installed (Debian package openssh-server)")
    if os.geteuid() != 0:
        pytest.skip("a private sshd that accepts logins needs root")
    server = start_sshd(tmp_path / "sshd")
    try:
        yield server
    finally:
        stop_sshd(server)


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
                   check=True, capture_output=True, timeout=300)
    (whl,) = out.glob("secpolicy-*.whl")
    return whl


def _playbook(server: SshServer, tmp_path: Path, wheel: Path, **extra: object) -> subprocess.CompletedProcess[str]:
    inventory = tmp_path / "inventory.ini"
    ssh_args = " ".join(server.ssh_options()[:-2])  # the key goes through ansible's own variable
    inventory.write_text(
        f"[scan]\ntarget1 ansible_host={server.host} ansible_port={server.port} ansible_user={server.user} "
        f"ansible_ssh_private_key_file={server.client_key} ansible_ssh_common_args='{ssh_args}' "
        "ansible_python_interpreter=/usr/bin/python3\n"
    )
    variables = {
        "secpolicy_wheel": str(wheel), "secpolicy_prefix": str(tmp_path / "host" / "opt"),
        "secpolicy_state_dir": str(tmp_path / "host" / "state"), "secpolicy_cron_dir": str(tmp_path / "host" / "cron.d"),
        "secpolicy_systemd_dir": str(tmp_path / "host" / "systemd"), "secpolicy_install_packages": False,
        "secpolicy_key_dir": str(tmp_path / "controller" / "keys"),
        "secpolicy_fetch_dir": str(tmp_path / "controller" / "results"), **extra,
    }
    (tmp_path / "host" / "cron.d").mkdir(parents=True, exist_ok=True)
    (tmp_path / "host" / "systemd").mkdir(parents=True, exist_ok=True)
    # Pipelining (one ssh exec per task instead of mkdir, put and exec) changes the transport
    # only; the role runs the same. It saves about a sixth of the test's time.
    env = {**os.environ, "ANSIBLE_NOCOLOR": "1", "ANSIBLE_HOST_KEY_CHECKING": "True", "ANSIBLE_PIPELINING": "True",
           "ANSIBLE_LOCAL_TEMP": str(tmp_path / "ansible-tmp"), "ANSIBLE_REMOTE_TEMP": str(tmp_path / "ansible-remote")}
    return subprocess.run([ANSIBLE or "ansible-playbook", "-i", str(inventory), str(DEPLOY / "ansible" / "site.yml"),
                           "-e", json.dumps(variables)], capture_output=True, text=True, env=env, timeout=600,
                          check=False)


@pytest.mark.slow
@pytest.mark.skipif(ANSIBLE is None, reason="ansible-playbook is not installed (Debian package ansible-core)")
def test_ansible_role_installs_schedules_scans_and_fetches_results(sshd: SshServer, tmp_path: Path, wheel: Path) -> None:
    first = _playbook(sshd, tmp_path, wheel, secpolicy_schedule="cron")
    assert first.returncode == 0, first.stdout[-4000:] + first.stderr[-2000:]
    host, controller = tmp_path / "host", tmp_path / "controller"
    installed = host / "opt" / "bin" / "secpolicy"
    assert installed.exists()
    cron = (host / "cron.d" / "secpolicy").read_text()
    assert f"root {host / 'opt' / 'bin' / 'secpolicy-scheduled-scan'}" in cron
    results = controller / "results" / "target1" / "results.json"
    data = json.loads(results.read_text())
    valid = subprocess.run([*SECPOLICY, "report", str(results), "--format", "json", "-o", str(tmp_path / "r.json")],
                           capture_output=True, text=True, check=False)
    assert valid.returncode == 0, valid.stderr  # report validates the results against the schema
    assert data["summary"]["total"] > 300
    # The initial audit-log key left the host for the controller, and the log verifies with it.
    key = controller / "keys" / "target1" / "audit-initial.key"
    assert key.exists() and not (host / "state" / "audit-initial.key").exists()
    verify = subprocess.run([*SECPOLICY, "log", "verify", str(host / "state" / "audit"), "--key-file", str(key)],
                            capture_output=True, text=True, check=False)
    assert verify.returncode == 0, verify.stdout + verify.stderr

    # Run again with the systemd scheduler and scan options: no second `log init`, one more scan
    # kept, made with those options (here and in the drop-in), units and drop-in written where
    # the role was told, and they verify.
    rule = "cis-5.4.3.3-default-umask"
    second = _playbook(sshd, tmp_path, wheel, secpolicy_schedule="systemd", secpolicy_scan_args=["--rule", rule])
    assert second.returncode == 0, second.stdout[-4000:] + second.stderr[-2000:]
    assert re.search(r"secpolicy log init\] \**\nskipping: \[target1\]", second.stdout)
    scans = [p for p in (host / "state" / "scans").iterdir() if p.name != "latest"]
    assert len(scans) == 2
    assert [r["rule_id"] for r in json.loads(results.read_text())["results"]] == [rule]
    units = host / "systemd"
    override = (units / "secpolicy-scan.service.d" / "override.conf").read_text()
    assert f"secpolicy-scheduled-scan --rule {rule}\n" in override
    if SYSTEMD_ANALYZE is not None:
        ok = _verify_units(units, "secpolicy-scan.service", "secpolicy-scan.timer")
        assert ok.returncode == 0, ok.stderr
