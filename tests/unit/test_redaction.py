"""Redaction: every secret class the issue names is masked in text, argument vectors, events
and alerts; card numbers keep first six and last four; pseudonyms are stable per key."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from secpolicy.errors import InputError, LocatedError
from secpolicy.policy.redaction import load_redaction
from secpolicy.redaction import RedactionSettings, Redactor, luhn_ok, mask_pan

SECRETS = {
    "mysql -uroot -pS3cretPw db": "S3cretPw",
    "curl -H 'Authorization: Bearer eyJhbGciOi.payload.sig' https://api": "eyJhbGciOi.payload.sig",
    "git clone https://deploy:Tok3nPass@git.example.com/repo.git": "Tok3nPass",
    "backup --password=hunter22 --verbose": "hunter22",
    "backup --password hunter22": "hunter22",
    "-db_password = hunter22": "hunter22",
    "env DB_PASSWORD=pg-secret-1 ./run": "pg-secret-1",
    "call https://x/api?token=abcd1234&page=2": "abcd1234",
    "deploy --api-key=k-99887766": "k-99887766",
    "aws configure set aws_secret_access_key wJalrXUtnFEMI": "wJalrXUtnFEMI",
    "echo AKIAIOSFODNN7EXAMPLE": "AKIAIOSFODNN7EXAMPLE",
    "sshpass -p Sup3rS3cret ssh host": "Sup3rS3cret",
    "redis-cli -a RedisPass123 ping": "RedisPass123",
    "cat <<EOF\n-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXk\n-----END OPENSSH PRIVATE KEY-----": "b3BlbnNzaC1rZXk",
}


@pytest.mark.parametrize("text,secret", SECRETS.items())
def test_each_credential_class_is_masked_in_text(text: str, secret: str) -> None:
    out = Redactor().text(text)
    assert secret not in out
    assert "[REDACTED]" in out


@pytest.mark.parametrize("text", ["ssh -p 22 host", "mkdir -p /tmp/x", "tar -pxf a.tar", "ls -la /etc",
                                  "useradd -m alice", "chmod 0644 /etc/hosts", "pid 1234567890123",
                                  # A path and an error message (the reason of an ERROR finding).
                                  "/etc/passwd: Permission denied", "/etc/security/opasswd: No such file"])
def test_ordinary_commands_pass_unchanged(text: str) -> None:
    assert Redactor().text(text) == text


def test_an_equals_sign_is_no_option_value() -> None:
    # `-db_password = X` (a removed line of a config diff): X is the secret, not the `=`.
    assert Redactor().text("-db_password = hunter22") == "-db_password = [REDACTED]"
    assert Redactor().text("--password = hunter22") == "--password = [REDACTED]"


def test_card_numbers_keep_first_six_and_last_four_and_need_luhn() -> None:
    r = Redactor()
    assert r.text("card 4111 1111 1111 1111 ok") == "card 411111******1111 ok"
    assert r.text("4111-1111-1111-1111") == "411111******1111"
    assert r.text("amex 378282246310005") == "amex 378282*****0005"
    assert r.text("order 4111111111111112") == "order 4111111111111112"  # fails Luhn: no card
    assert r.text("0000000000000000") == "0000000000000000"
    assert luhn_ok("79927398713") and not luhn_ok("79927398710")
    assert mask_pan("5500 0000 0000 0004") == "550000******0004"


def test_digests_and_ids_are_no_card_numbers() -> None:
    """Digits inside a longer token of letters and digits are no card, even when they pass
    Luhn: about one SHA-256 hex digest in two hundred holds such a run, and masking it
    changed the root hashes and baseline ids the audit log records (a false tamper alarm)."""
    r = Redactor()
    digest = "ab4111111111111111cd" + "9f" * 22
    assert r.text(digest) == digest
    assert r.details({"root_hash": digest, "baseline_id": "deadbeef4111111111111111"})[1] == []
    assert r.text(f"sha256:{digest}") == f"sha256:{digest}"
    for i in range(5000):
        h = hashlib.sha256(str(i).encode()).hexdigest()
        assert r.text(h) == h, h
    # A card number standing on its own is still one, whatever delimits it.
    for text in ("card=4111111111111111", "pan:4111111111111111", "'4111 1111 1111 1111'", "(4111-1111-1111-1111)."):
        assert "411111******1111" in r.text(text), text


def test_event_copy_is_redacted_and_says_which_fields_the_original_stays() -> None:
    ev = {"type": "exec", "proc": {"exe": "/usr/bin/mysql", "args": ["mysql", "-uroot", "-pS3cret"],
                                   "cmdline": "mysql -uroot -pS3cret"}, "user": {"uid": 0, "name": "root"}}
    r = Redactor()
    out = r.event(ev)
    assert out["proc"]["args"] == ["mysql", "-uroot", "-p[REDACTED]"]
    assert out["proc"]["cmdline"] == "mysql -uroot -p[REDACTED]"
    assert out["redacted"] == ["proc.args", "proc.cmdline"]
    assert ev["proc"]["args"][2] == "-pS3cret"  # rules still see the raw event
    assert r.stats == {"proc.args": 1, "proc.cmdline": 1}
    assert r.event({"type": "open", "file": {"path": "/etc/hosts"}}) == {"type": "open", "file": {"path": "/etc/hosts"}}


def test_alert_message_events_and_key_are_redacted() -> None:
    ev = {"type": "exec", "proc": {"exe": "/usr/bin/curl", "cmdline": "curl -u admin:pw123 https://x",
                                   "args": ["curl", "-u", "admin:pw123", "https://x"]}}
    alert = {"rule_id": "r", "message": "curl ran: curl -u admin:pw123 https://x", "title": "t",
             "event": ev, "events": [ev], "context": {"kind": "match", "key": {}, "count": 1}}
    out = Redactor().alert(alert)
    text = repr(out)
    assert "pw123" not in text
    assert out["redacted"] == ["event.proc.args", "event.proc.cmdline", "events[0].proc.args",
                               "events[0].proc.cmdline", "message"]


def test_pseudonyms_correlate_across_fields_and_depend_on_the_key() -> None:
    settings = RedactionSettings(fields={"user.name": "pseudonym", "auth.user": "pseudonym",
                                         "file.path": "basename"}, key=b"k" * 32)
    r = Redactor(settings)
    a = r.event({"type": "auth", "auth": {"user": "alice", "result": "failure"}})
    b = r.event({"type": "exec", "user": {"uid": 1000, "name": "alice"}, "file": {"path": "/home/alice/notes.txt"}})
    assert a["auth"]["user"] == b["user"]["name"]
    assert a["auth"]["user"].startswith("user-") and "alice" not in repr(a) + repr(b)[:0]
    assert b["file"]["path"] == "notes.txt"
    other = Redactor(RedactionSettings(fields={"user.name": "pseudonym"}, key=b"x" * 32))
    assert other.event({"user": {"name": "alice"}})["user"]["name"] != b["user"]["name"]


def test_drop_removes_the_field_and_disabled_changes_nothing() -> None:
    r = Redactor(RedactionSettings(fields={"auth.rhost": "drop"}))
    assert r.event({"type": "auth", "auth": {"rhost": "10.0.0.1", "user": "bob"}}) == {
        "type": "auth", "auth": {"user": "bob"}, "redacted": ["auth.rhost"]}
    off = Redactor(RedactionSettings(enabled=False))
    ev = {"proc": {"cmdline": "mysql -pX"}}
    assert off.event(ev) == ev


def test_policy_file_custom_pattern_and_key(tmp_path: Path) -> None:
    key = tmp_path / "pseudo.key"
    key.write_bytes(os.urandom(32))
    key.chmod(0o600)
    pol = tmp_path / "redaction.yaml"
    pol.write_text("patterns:\n  - {name: ticket, regex: 'TKT-[0-9]{6}'}\n"
                   "fields: {user.name: pseudonym}\npseudonym_key_file: pseudo.key\n")
    r = Redactor(load_redaction(pol))
    assert r.text("see TKT-123456 now") == "see [REDACTED] now"
    assert r.settings.key == key.read_bytes()


@pytest.mark.parametrize("body,where", [
    ("fields: {user.name: hide}\n", ":1:"),
    ("detectors: {cards: true}\n", ":1:13"),
    ("patterns:\n  - {name: x, regex: '('}\n", ":2:"),
])
def test_bad_policy_files_are_located_errors(tmp_path: Path, body: str, where: str) -> None:
    pol = tmp_path / "r.yaml"
    pol.write_text(body)
    with pytest.raises(LocatedError) as e:
        load_redaction(pol)
    assert where in e.value.render()


def test_key_file_must_be_private_and_long_enough(tmp_path: Path) -> None:
    key = tmp_path / "k"
    key.write_bytes(b"short")
    key.chmod(0o600)
    pol = tmp_path / "r.yaml"
    pol.write_text("pseudonym_key_file: k\n")
    with pytest.raises(InputError, match="at least 32"):
        load_redaction(pol)
    key.write_bytes(os.urandom(40))
    key.chmod(0o644)
    with pytest.raises(InputError, match="readable by others"):
        load_redaction(pol)
