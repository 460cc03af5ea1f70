"""Secrets in the shapes a scan and a replay meet them (a file's matching lines as a list, its
whole content with escaped newlines and quotes, a JSON document's escapes, nested objects, an
argument vector, a message rendered from a list) never reach any output; each case here
leaked before its fix."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from secpolicy.redaction import Redactor
from secpolicy.ruletests import materialize_files

FILES = {
    "/etc/ldap.conf": "uri ldap://dir\nbindpw LdapB1ndS3cret\nrootpw R00tPwS3cret\n",
    "/etc/redis/redis.conf": "port 6379\nrequirepass R3disS3cret\nmasterauth M4sterS3cret\n",
    "/etc/app/config.json": ('{\n  "db": {"host": "db", "password": "JsonPwS3cret"},\n'
                             '  "headers": {"Authorization": "Bearer HdrT0kenS3cret"},\n'
                             '  "\\u0070assword": "EscPwS3cret"\n}\n'),
    "/etc/app/secrets.env": ('DB_PASSWORD="Env QuotedS3cret"\n'
                             "GH=github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789ABCDEF\n"),
    "/etc/pgp.asc": "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBGPgpS3cretBody\n-----END PGP PRIVATE KEY BLOCK-----\n",
    "/opt/deploy.sh": ("mysql -uroot -pMyS3cretPw db\ncurl -uadmin:CurlS3cret https://x\n"
                       "curl --user=admin:CurlEqS3cret https://x\nhtpasswd -bc /etc/h admin HtS3cret\n"
                       "sshpass -p SshS3cret ssh h\n"),
    "/etc/passwd": "root:x:0:0:root:/root:/bin/bash\nalice:abJnggxhB/yWI:1000:1000::/home/alice:/bin/bash\n",
    "/etc/group": "root:x:0:\nalice:x:1000:\n",
}
SCAN_SECRETS = ("LdapB1ndS3cret", "R00tPwS3cret", "R3disS3cret", "M4sterS3cret", "JsonPwS3cret", "HdrT0kenS3cret",
                "EscPwS3cret", "QuotedS3cret", "github_pat_11ABCDEFG", "GPgpS3cretBody", "MyS3cretPw", "CurlS3cret",
                "CurlEqS3cret", "HtS3cret", "SshS3cret", "abJnggxhB/yWI")
# Each rule reads a file the way rules do: its matching lines (a list), its content (one
# string, newlines escaped), a field that holds a password.
POLICY = """\
metadata: {id: probe, title: Probe, version: "1"}
rules:
  - {id: ldap-lines, title: t, severity: high, check: 'file("/etc/ldap.conf").grep("pw") == []'}
  - {id: ldap-content, title: t, severity: high, check: 'file("/etc/ldap.conf").content == ""'}
  - {id: redis-lines, title: t, severity: high, check: 'file("/etc/redis/redis.conf").grep("pass|auth") == []'}
  - {id: json-lines, title: t, severity: high, check: 'file("/etc/app/config.json").grep("assword|Auth") == []'}
  - {id: json-content, title: t, severity: high, check: 'file("/etc/app/config.json").content == ""'}
  - {id: env-lines, title: t, severity: high, check: 'file("/etc/app/secrets.env").grep(".") == []'}
  - {id: env-content, title: t, severity: high, check: 'file("/etc/app/secrets.env").content == ""'}
  - {id: pgp-content, title: t, severity: high, check: 'file("/etc/pgp.asc").content == ""'}
  - {id: deploy-lines, title: t, severity: high, check: 'file("/opt/deploy.sh").grep(".") == []'}
  - {id: deploy-content, title: t, severity: high, check: 'file("/opt/deploy.sh").content == ""'}
  - {id: passwd-field, title: t, severity: high, check: 'all(u in users: u.password == "x")'}
"""
FORMATS = ("json", "html", "pdf", "sarif", "junit", "csv", "ocsf", "table")


def secpolicy(*args: str) -> subprocess.CompletedProcess[bytes]:
    return subprocess.run([sys.executable, "-m", "secpolicy", *args], capture_output=True, check=False, timeout=300)


@pytest.fixture(scope="module")
def scanned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    d = tmp_path_factory.mktemp("probe")
    materialize_files(str(d / "root"), FILES)
    (d / "policy.yaml").write_text(POLICY)
    return d / "root", d / "policy.yaml"


@pytest.mark.parametrize("fmt", FORMATS)
def test_secrets_in_lists_content_and_json_leave_no_report_format(scanned: tuple[Path, Path], tmp_path: Path,
                                                                  fmt: str) -> None:
    root, policy = scanned
    out = tmp_path / f"out.{fmt}"
    r = secpolicy("scan", "-p", str(policy), "--root", str(root), "--format", fmt, "-o", str(out))
    assert r.returncode == 1, r.stderr  # every rule still fails
    data = out.read_bytes()
    if fmt == "pdf":
        data = subprocess.run(["pdftotext", str(out), "-"], capture_output=True, check=True).stdout
    leaked = [s for s in SCAN_SECRETS if s.encode() in data]
    assert not leaked, (fmt, leaked)


def test_the_terminal_summary_and_the_evidence_stay_readable(scanned: tuple[Path, Path], tmp_path: Path) -> None:
    root, policy = scanned
    r = secpolicy("scan", "-p", str(policy), "--root", str(root))
    assert not [s for s in SCAN_SECRETS if s.encode() in r.stdout + r.stderr]
    out = tmp_path / "r.json"
    secpolicy("scan", "-p", str(policy), "--root", str(root), "--format", "json", "-o", str(out))
    observed = {f["rule_id"]: f["evidence"][0]["observed"] for f in json.loads(out.read_text())["results"]}
    assert observed["ldap-lines"] == '["bindpw [REDACTED]", "rootpw [REDACTED]"]'
    assert observed["ldap-content"] == '"uri ldap://dir\\nbindpw [REDACTED]\\nrootpw [REDACTED]\\n"'
    assert observed["redis-lines"] == '["requirepass [REDACTED]", "masterauth [REDACTED]"]'
    assert observed["deploy-lines"] == ('["mysql -uroot -p[REDACTED] db", "curl -u[REDACTED] https://x", '
                                        '"curl --user=[REDACTED] https://x", "htpasswd -bc /etc/h admin [REDACTED]", '
                                        '"sshpass -p [REDACTED] ssh h"]')
    assert observed["passwd-field"] == "[REDACTED]"


@pytest.mark.parametrize(("text", "secret"), [
    ('["bindpw s3cr3t"]', "s3cr3t"),                               # a config line inside a list
    ('["uri ldap://x", "requirepass s3cr3t"]', "s3cr3t"),
    ("{'line': 'rootpw s3cr3t'}", "s3cr3t"),
    ('"a\\nbindpw s3cr3t\\n"', "s3cr3t"),                           # newlines escaped
    ('"\\"password\\": \\"s3cr3t\\""', "s3cr3t"),                    # quotes escaped
    ('{"\\u0070assword": "s3cr3t"}', "s3cr3t"),                      # a JSON escape in the name
    ('"{\\"\\\\u0070assword\\": \\"s3cr3t\\"}"', "s3cr3t"),            # ... quoted once more
    ('"Authorization": "Bearer s3cr3tTok"', "s3cr3tTok"),           # a header as a JSON pair
    ('["--password", "s3cr3t"]', "s3cr3t"),                         # an option and its value as a list
    ('["mysql", "-u", "root", "-ps3cr3t"]', "s3cr3t"),
    ("curl -uadmin:s3cr3t https://x", "s3cr3t"),                     # curl's -u attached
    ("curl --user=admin:s3cr3t https://x", "s3cr3t"),
    ("htpasswd -bc /etc/h admin s3cr3t", "s3cr3t"),                  # htpasswd's flags in one cluster
    ("htpasswd -nb admin s3cr3t", "s3cr3t"),
    ("htpasswd -c -b /etc/h admin s3cr3t", "s3cr3t"),
    ("htpasswd -b -c /etc/h admin s3cr3t", "s3cr3t"),
    ("ldapsearch -x -D cn=admin -w s3cr3t -b dc=x", "s3cr3t"),       # OpenLDAP bind password
    ("-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBs3cr3t\n-----END PGP PRIVATE KEY BLOCK-----", "lQOYBs3cr3t"),
    ("GH=github_pat_11ABCDEFG0123456789_abcdefghijklmnopqrstuvwxyz0123456789", "11ABCDEFG0123456789"),
    ("stripe rk_live_abcdefghijklmnop1234", "abcdefghijklmnop1234"),
    ("git clone https://x-token:" + "t" * 300 + "s3cr3t@git.example/r.git", "s3cr3t"),  # a long URL password
    ("'password' => 's3cr3t',", "s3cr3t"),                           # PHP/Perl/Ruby arrays (settings.php)
    ('"password=\\"s3cr3t', "s3cr3t"),                               # a quoted value cut short
])
def test_the_detectors_find_secrets_in_every_shape(text: str, secret: str) -> None:
    out = Redactor().text(text)
    assert secret not in out, out
    assert "[REDACTED]" in out


def test_harmless_text_stays() -> None:
    r = Redactor()
    for text in ('["uri ldap://x", "port 6379"]', '"PasswordAuthentication no"', "curl -s https://x/a\\nb",
                 "htpasswd -c /etc/h admin", 'echo "a\\tb"', "[\"a\", 'b']", "sed s/\\./x/ f",
                 '["token: on", "password prompt"]'):
        assert r.text(text) == text, text
    # A record redacted before is redacted no further.
    once = r.text("mysql -uroot -ps3cr3t, card 4111 1111 1111 1111")
    assert r.text(once) == once


def events() -> list[dict[str, object]]:
    def ex(i: int, args: list[str]) -> dict[str, object]:
        return {"type": "exec", "ts": f"2026-11-21T05:00:{i:02d}.000000000Z", "host": "h1",
                "proc": {"pid": 100 + i, "exe": "/usr/bin/" + args[0], "args": args, "cmdline": " ".join(args)},
                "user": {"uid": 1000, "name": "alice"}}
    return [
        ex(0, ["curl", "-uadmin:EvCurlA1", "https://x"]),
        ex(1, ["curl", "--user=admin:EvCurlB2", "https://x"]),
        ex(2, ["htpasswd", "-bc", "/etc/h", "admin", "EvHtC3"]),
        ex(3, ["htpasswd", "-nb", "admin", "EvHtD4"]),
        ex(4, ["ldapsearch", "-x", "-D", "cn=admin", "-w", "EvLdapE5"]),
        ex(5, ["app", "--json", '{"\\u0070assword": "EvEscF6"}']),
        ex(6, ["git", "clone", "https://deploy:" + "P" * 300 + "EvLongG7@git.example/r.git"]),
        {"type": "config_change", "ts": "2026-11-21T05:01:00.000000000Z", "host": "h1",
         "config": {"key": "ldap", "op": "set", "new": ["uri ldap://x", "bindpw EvCfgH8"], "old": {"bindpw": "EvCfgI9"}},
         "user": {"uid": 0, "name": "root"}},
        {"type": "config_change", "ts": "2026-11-21T05:01:01.000000000Z", "host": "h1",
         "config": {"key": "gpg", "op": "set",
                    "new": "-----BEGIN PGP PRIVATE KEY BLOCK-----\n\nlQOYBEvPgpJ10\n-----END PGP PRIVATE KEY BLOCK-----"},
         "user": {"uid": 0, "name": "root"}},
    ]


EVENT_SECRETS = ("EvCurlA1", "EvCurlB2", "EvHtC3", "EvHtD4", "EvLdapE5", "EvEscF6", "EvLongG7", "EvCfgH8", "EvCfgI9",
                 "EvPgpJ10")
EVENT_POLICY = """\
metadata: {id: p, title: p, version: '1'}
rules:
  - {id: ex, title: t, severity: high, when: 'type == "exec"', message: '{user.name} ran {proc.cmdline} ({proc.args})'}
  - {id: cfg, title: t, severity: high, when: 'type == "config_change"', message: '{config.key}: {config.new} was {config.old}'}
"""


def test_secrets_in_events_leave_no_alert_store_sink_summary_or_audit_log(tmp_path: Path) -> None:
    (tmp_path / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events()))
    (tmp_path / "policy.yaml").write_text(EVENT_POLICY)
    r = secpolicy("log", "init", str(tmp_path / "log"), "--key-out", str(tmp_path / "log.key"))
    assert r.returncode == 0, r.stderr
    out = tmp_path / "out"
    out.mkdir()
    r = secpolicy("replay", str(tmp_path / "events.jsonl"), "--policy", str(tmp_path / "policy.yaml"),
                  "--output", str(out / "alerts.jsonl"), "--store", str(out / "store.db"),
                  "--audit-log", str(tmp_path / "log"), "--summary",
                  "--sink", f"file://{out}/sink.json?format=json", "--sink", f"file://{out}/sink.cef?format=cef")
    assert r.returncode == 0, r.stderr
    alerts = [json.loads(x) for x in (out / "alerts.jsonl").read_text().splitlines()]
    assert len(alerts) == len(events())  # the rules saw every raw event
    written = [(p, p.read_bytes()) for d in (out, tmp_path / "log") for p in sorted(d.rglob("*")) if p.is_file()]
    written.append((Path("stdout+stderr"), r.stdout + r.stderr))
    for where, data in written:
        leaked = [s for s in EVENT_SECRETS if s.encode() in data]
        assert not leaked, (str(where), leaked)
    cfg = next(a for a in alerts if a["event"].get("config", {}).get("key") == "ldap")
    assert cfg["event"]["config"]["old"] == {"bindpw": "[REDACTED]"}
    assert cfg["message"] == "ldap: uri ldap://x bindpw [REDACTED] was {'bindpw': [REDACTED]}"
    curl = next(a for a in alerts if "-u[REDACTED]" in a["event"].get("proc", {}).get("args", []))
    assert curl["event"]["proc"]["cmdline"] == "curl -u[REDACTED] https://x"


@pytest.mark.parametrize(("observed", "shown"), [('"x"', True), ('"!"', True), ('"!!"', True), ('"*"', True),
                                                 ('"*LK*"', True), ('"abJnggxhB/yWI"', False),
                                                 ('"!$6$salt$hash"', False)])
def test_a_password_field_without_a_password_is_shown_and_a_hash_is_not(observed: str, shown: bool) -> None:
    # CIS 7.2.1 `u.password == "x"`: the evidence says what the field holds when that is no
    # password (locked, disabled), so an auditor sees why the rule failed; a hash is masked.
    from secpolicy.models import Evidence

    ev = Redactor().evidence(Evidence('u.password == "x"', expected='"x"', observed=observed, source="/etc/passwd:2"))
    assert (ev.observed == observed) is shown and (ev.observed == "[REDACTED]") is not shown
