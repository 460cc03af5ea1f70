"""Secrets a scan reads from the host (a password in a configuration file, a bind password a
rule checks, a card number in a script) never reach the results or any report format: the
evidence says which of its fields were masked, the verdicts stay what they were."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

# Every other secret class, one line each of a deployment script the rules below read.
SCRIPT_LINES = {
    "mysql-password": ("mysql -uroot -pMyS3cretPw payments", "MyS3cretPw"),
    "password-option": ("backup --password=Hunt3r2Pw --verbose", "Hunt3r2Pw"),
    "token-pair": ("fetch https://api.example/v1?token=Tok9abcdEF", "Tok9abcdEF"),
    "authorization-header": ("curl -H 'Authorization: Bearer AbCdEf123456xyz' https://api.example", "AbCdEf123456xyz"),
    "url-userinfo": ("git clone https://deploy:UrlPassw0rd@git.example/r.git", "UrlPassw0rd"),
    "aws-key": ("export AWS_ACCESS_KEY_ID=AKIAIOSFODNN7EXAMPLE", "AKIAIOSFODNN7EXAMPLE"),
    "github-token": ("push ghp_abcdefghijklmnopqrstuvwxyz0123456789", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
    "private-key": ("KEY='-----BEGIN PRIVATE KEY-----MIIEvQIBADANBgkqhkiG9w0B-----END PRIVATE KEY-----'",
                    "MIIEvQIBADANBgkqhkiG9w0B"),
}
SECRETS = ("Tr0ub4dor-S3cret", "ld4p-b1nd-pw", "4111111111111111", "4111 1111 1111 1111",
           *(secret for _, secret in SCRIPT_LINES.values()))
POLICY = """\
metadata: {id: redaction-test, title: Redaction, version: "1"}
rules:
  - id: app-no-plain-password
    title: No password in the application configuration
    severity: high
    check: file("/etc/app.conf").first("^db_password=") == null
  - id: ldap-bind-password-unset
    title: LDAP binds without a stored password
    severity: medium
    check: file("/etc/ldap.conf").first("^bindpw ") == null
  - id: scripts-hold-no-card
    title: No card number in maintenance scripts
    severity: high
    check: file("/opt/job.sh").first("--card") == null
""" + "".join(f"""  - id: deploy-{name}
    title: No {name} in the deployment script
    severity: high
    check: file("/opt/deploy.sh").first({json.dumps("^" + line.split(" ")[0] + " ")}) == null
""" for name, (line, _) in SCRIPT_LINES.items())
FORMATS = ("json", "html", "pdf", "sarif", "junit", "csv", "ocsf", "table")


def scan(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "secpolicy", "scan", *args], capture_output=True, check=False)


@pytest.fixture(scope="module")
def root_and_policy(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("redaction")
    root = d / "root"
    (root / "etc").mkdir(parents=True)
    (root / "opt").mkdir()
    (root / "etc" / "app.conf").write_text("listen=0.0.0.0\ndb_password=Tr0ub4dor-S3cret\n")
    (root / "etc" / "ldap.conf").write_text("uri ldap://dir\nbindpw ld4p-b1nd-pw\n")
    (root / "opt" / "job.sh").write_text("#!/bin/sh\ncharge --card '4111 1111 1111 1111'\n")
    (root / "opt" / "deploy.sh").write_text("".join(line + "\n" for line, _ in SCRIPT_LINES.values()))
    policy = d / "policy.yaml"
    policy.write_text(POLICY)
    return root, policy


@pytest.mark.parametrize("fmt", FORMATS)
def test_no_secret_in_any_format(root_and_policy: tuple[Path, Path], tmp_path: Path, fmt: str) -> None:
    root, policy = root_and_policy
    out = tmp_path / f"out.{fmt}"
    r = scan("-p", str(policy), "--root", str(root), "--format", fmt, "-o", str(out))
    assert r.returncode == 1, r.stderr  # every rule still fails: redaction changes no verdict
    data = out.read_bytes()
    if fmt == "pdf":
        data = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, check=True).stdout
    for secret in SECRETS:
        assert secret.encode() not in data, (fmt, secret)
    assert b"[REDACTED]" in data or b"411111******1111" in data


def test_evidence_names_the_masked_fields_and_results_count_them(root_and_policy: tuple[Path, Path],
                                                                  tmp_path: Path) -> None:
    root, policy = root_and_policy
    out = tmp_path / "r.json"
    scan("-p", str(policy), "--root", str(root), "--format", "json", "-o", str(out))
    results = json.loads(out.read_text())
    by_id = {f["rule_id"]: f for f in results["results"]}
    assert {f["status"] for f in by_id.values()} == {"fail"}
    app = by_id["app-no-plain-password"]["evidence"][0]
    assert app["observed"] == '"db_password=[REDACTED]"' and app["redacted"] == ["observed"]
    assert by_id["ldap-bind-password-unset"]["evidence"][0]["observed"] == '"bindpw [REDACTED]"'
    card = by_id["scripts-hold-no-card"]["evidence"][0]
    assert card["observed"] == '"charge --card \'411111******1111\'"' 
    red = results["scan"]["redaction"]
    assert red["enabled"] and red["records"] == 3 + len(SCRIPT_LINES)
    assert red["fields"] == {"evidence.observed": 3 + len(SCRIPT_LINES)}
