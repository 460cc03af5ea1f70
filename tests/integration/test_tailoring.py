"""`scan --tailoring FILE`: var values change verdicts, rules are enabled or disabled with a
reason, a profile is picked; every mistake is exit 2 with its position (and the closest name);
results and the terminal table list the tailoring used, default beside value."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import textwrap
from pathlib import Path

import jsonschema
import pytest

from secpolicy.resources import load_schema
from secpolicy.ruletests import materialize_files

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "policies" / "verdicts"
DPKG_STATUS = (FIXTURES / "sshd-installed" / "var" / "lib" / "dpkg" / "status").read_text()
SECPOLICY = [sys.executable, "-m", "secpolicy"]

TAILORING = """\
metadata:
  id: acme-bastions
  title: ACME bastion hosts
profile: level1-server
vars:
  ssh_max_auth_tries: 6
rules:
  v-ssh-root-login:
    enabled: false
    reason: break-glass root access on bastions, CHG-1234
  v-ssh-banner:
    enabled: true
    reason: our legal team requires the banner
"""


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([*SECPOLICY, *args], capture_output=True, text=True, check=False)


@pytest.fixture
def root(tmp_path: Path) -> Path:
    r = tmp_path / "root"
    materialize_files(str(r), {
        "/etc/ssh/sshd_config": "MaxAuthTries 6\nPermitRootLogin yes\nCiphers aes128-ctr\n",
        "/var/lib/dpkg/status": DPKG_STATUS,
    })
    return r


def tailoring_file(tmp_path: Path, text: str = TAILORING) -> Path:
    p = tmp_path / "tailoring.yaml"
    p.write_text(textwrap.dedent(text))
    return p


def scan_json(root: Path, *extra: str) -> dict:
    out = cli("scan", "-p", str(FIXTURES), "--root", str(root), "--format", "json", *extra)
    assert out.returncode in (0, 1), out.stderr
    return json.loads(out.stdout)


def test_without_tailoring_the_defaults_decide(root):
    res = scan_json(root)
    assert {r["rule_id"]: r["status"] for r in res["results"]} == {
        "v-ssh-root-login": "fail",
        "v-ssh-max-auth-tries": "fail",
        "v-ssh-ciphers": "fail",
    }
    assert res["tailoring"] is None
    assert [(v["name"], v["value"], v["tailored"]) for v in res["vars"]] == [
        ("ssh_allowed_ciphers", '["aes256-gcm@openssh.com", "aes128-gcm@openssh.com", "chacha20-poly1305@openssh.com"]', False),
        ("ssh_max_auth_tries", "4", False),
    ]


def test_tailoring_sets_vars_picks_the_profile_and_enables_and_disables_rules(root, tmp_path):
    t = tailoring_file(tmp_path)
    res = scan_json(root, "--tailoring", str(t))
    jsonschema.validate(res, load_schema("results"))
    # level1-server: no ciphers rule; root login disabled; banner enabled; 6 tries allowed.
    assert {r["rule_id"]: r["status"] for r in res["results"]} == {
        "v-ssh-max-auth-tries": "pass",
        "v-ssh-banner": "fail",
    }
    (passed,) = [r for r in res["results"] if r["rule_id"] == "v-ssh-max-auth-tries"]
    assert [(e["expected"], e["observed"]) for e in passed["evidence"]] == [("<= 6 (ssh_max_auth_tries)", "6")]
    assert res["scan"]["profile"] == "level1-server" and res["scan"]["tailoring_file"] == str(t)
    assert res["tailoring"] == {
        "path": str(t),
        "sha256": hashlib.sha256(t.read_bytes()).hexdigest(),
        "id": "acme-bastions",
        "title": "ACME bastion hosts",
        "description": "",
        "version": None,
        "profile": "level1-server",
        "vars": [{
            "name": "ssh_max_auth_tries",
            "type": "int",
            "default": "4",
            "value": "6",
            "source": f"{t}:6",
            "declared_at": f"{FIXTURES / 'ssh.yaml'}:12",
        }],
        "rules": [
            {"rule_id": "v-ssh-root-login", "default_enabled": True, "enabled": False,
             "reason": "break-glass root access on bastions, CHG-1234", "source": f"{t}:8"},
            {"rule_id": "v-ssh-banner", "default_enabled": False, "enabled": True,
             "reason": "our legal team requires the banner", "source": f"{t}:11"},
        ],
    }
    assert [(v["name"], v["default"], v["value"], v["tailored"]) for v in res["vars"]] == [
        ("ssh_max_auth_tries", "4", "6", True),
    ]


def test_the_terminal_table_lists_the_tailoring(root, tmp_path):
    t = tailoring_file(tmp_path)
    out = cli("scan", "-p", str(FIXTURES), "--root", str(root), "--tailoring", str(t))
    sha = hashlib.sha256(t.read_bytes()).hexdigest()
    tail = out.stdout[out.stdout.index("Tailoring:"):].splitlines()
    assert tail[:5] == [
        f"Tailoring: acme-bastions ({t}, sha256 {sha[:12]}...)",
        "  profile level1-server",
        "  var ssh_max_auth_tries = 6 (default 4)",
        "  rule v-ssh-root-login disabled (default enabled): break-glass root access on bastions, CHG-1234",
        "  rule v-ssh-banner enabled (default disabled): our legal team requires the banner",
    ]


@pytest.mark.parametrize(
    "text, where, message",
    [
        (
            "metadata: {id: t, title: T}\nvars:\n  ssh_max_auth_trys: 6\n",
            ":3:3",
            "unknown var 'ssh_max_auth_trys' (did you mean 'ssh_max_auth_tries'?)",
        ),
        ("metadata: {id: t, title: T}\nvars:\n  ssh_max_auth_tries: '6'\n", ":3:23", "ssh_max_auth_tries: expected an integer, got the string '6'"),
        ("metadata: {id: t, title: T}\nvars:\n  ssh_max_auth_tries: 11\n", ":3:23", "ssh_max_auth_tries: 11 is above the maximum 10 of ssh_max_auth_tries"),
        (
            "metadata: {id: t, title: T}\nrules:\n  v-ssh-rootlogin: {enabled: false, reason: r}\n",
            ":3:3",
            "unknown rule id 'v-ssh-rootlogin' (did you mean 'v-ssh-root-login'?)",
        ),
        ("metadata: {id: t, title: T}\nrules:\n  v-ssh-root-login: {enabled: false}\n", ":3:21", "missing required field: 'reason'"),
        ("metadata: {id: t, title: T}\nprofile: level1-servers\n", ":2:10", "no loaded rule is in profile 'level1-servers' (did you mean 'level1-server'?)"),
        ("metadata: {id: t, title: T}\nvar: {}\n", ":2:1", "unknown field 'var' (allowed: metadata, profile, rules, vars)"),
    ],
)
def test_a_wrong_tailoring_file_is_exit_2_with_its_position(root, tmp_path, text, where, message):
    t = tailoring_file(tmp_path, text)
    out = cli("scan", "-p", str(FIXTURES), "--root", str(root), "--tailoring", str(t))
    assert out.returncode == 2
    assert out.stderr.splitlines()[0] == f"{t}{where}: {message}"
    assert out.stdout == ""


def test_a_profile_on_the_command_line_must_agree_with_the_tailoring(root, tmp_path):
    t = tailoring_file(tmp_path)
    out = cli("scan", "-p", str(FIXTURES), "--root", str(root), "--tailoring", str(t), "--profile", "level2-server")
    assert (out.returncode, out.stderr.strip()) == (
        2, f"{t}: --profile level2-server contradicts the tailoring file's profile 'level1-server'"
    )


def test_lint_checks_a_tailoring_file_and_schema_prints_its_schema(tmp_path):
    good = tailoring_file(tmp_path)
    assert cli("lint", str(FIXTURES), "--tailoring", str(good)).returncode == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text("metadata: {id: t, title: T}\nvars: {nope: 1}\n")
    assert cli("lint", str(FIXTURES), "--tailoring", str(bad)).returncode == 2
    schema = json.loads(cli("schema", "tailoring").stdout)
    assert schema == load_schema("tailoring")
    jsonschema.validate(__import__("yaml").safe_load(TAILORING), schema)
