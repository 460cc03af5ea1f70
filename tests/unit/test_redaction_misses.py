"""Secret shapes an earlier probe found unredacted: Samba's `-U user%password`, a registry
login's `-p`, XML elements holding a password or token, Rails' `secret_key_base`, OpenAI project
keys and JWTs with long payloads. Each is masked in text, in an event's arguments and in an
alert, the shortcuts never skip it, and the ordinary commands near each shape stay as they are.
Text holding an escaped lone surrogate (`\\ud83d`) no longer stops redaction with an error."""

from __future__ import annotations

import shlex
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redaction_helpers import assert_exec_masked, assert_shortcuts_agree
from redaction_helpers import exec_event as exec_args_event

from secpolicy.events.model import canonical_line
from secpolicy.models import Evidence
from secpolicy.redaction import Redactor
from secpolicy.redaction.detectors import may_hold_secret

# A key of the shape OpenAI issues for projects: base64url, `-` and `_` in it, 164 characters.
OPENAI_PROJECT_KEY = ("sk-proj-" + "Xq7_mB2-kLp9Rt4vWz8_Nc3Hd6-Fj1Gs5Yb0Ue" * 4)[:164]
ANTHROPIC_KEY = "sk-ant-api03-" + "Zq4_Lm7-Wx2Rt9Yb5Nc8Hd3-Jf6Gs1Ke0Pa" * 3 + "-AA"
OPENAI_LEGACY_KEY = "sk-" + "Ab3dEf6hIj9kLm2nOp5q" + "T3BlbkFJ" + "Rs8tUv1wXy4zAb7cDe0f"
# A JWT whose payload (an identity provider's group list) is longer than 4096 characters.
LONG_JWT = ("eyJhbGciOiJSUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhbGljZSIsImdyb3VwcyI6W" + "IkdyMDEiLC" * 600
            + "J9.c2lnbmF0dXJlLW9mLXRoZS10b2tlbi0xMjM0NTY3ODkw")

# text -> what redaction leaves of it
MISSES = {
    # 1. Samba: the password after `%` goes, the user (and domain) stays.
    "smbclient -U user%SmbS3cret //host/share": "smbclient -U user%[REDACTED] //host/share",
    "smbclient //host/share -U 'DOM\\user%SmbS3cret'": "smbclient //host/share -U 'DOM\\user%[REDACTED]'",
    "smbclient --user=user%SmbS3cret //host/share": "smbclient --user=user%[REDACTED] //host/share",
    "/usr/bin/rpcclient -Uadmin%SmbS3cret 10.0.0.1": "/usr/bin/rpcclient -Uadmin%[REDACTED] 10.0.0.1",
    "net ads join -U Administrator%SmbS3cret": "net ads join -U Administrator%[REDACTED]",
    # 2. Registry logins.
    "docker login -u user -p DockS3cret registry.example": "docker login -u user -p [REDACTED] registry.example",
    "docker login -u user --password DockS3cret reg": "docker login -u user --password [REDACTED] reg",
    "docker login -u user --password=DockS3cret reg": "docker login -u user --password=[REDACTED] reg",
    "podman login -pDockS3cret -u user quay.io": "podman login -p[REDACTED] -u user quay.io",
    "helm registry login reg -u user -p DockS3cret": "helm registry login reg -u user -p [REDACTED]",
    # 3. XML elements: the tags stay, the content goes.
    "curl -d '<password>XmlS3cret</password>' https://x": "curl -d '<password>[REDACTED]</password>' https://x",
    "<Password>XmlS3cret</Password>": "<Password>[REDACTED]</Password>",
    "<passwd>XmlS3cret</passwd>": "<passwd>[REDACTED]</passwd>",
    "<secret>XmlS3cret</secret>": "<secret>[REDACTED]</secret>",
    "<TOKEN>XmlS3cret</TOKEN>": "<TOKEN>[REDACTED]</TOKEN>",
    "<api_key>XmlS3cret</api_key>": "<api_key>[REDACTED]</api_key>",
    "<client_secret>XmlS3cret</client_secret>": "<client_secret>[REDACTED]</client_secret>",
    '<db:Password type="clear">XmlS3cret</db:Password>': '<db:Password type="clear">[REDACTED]</db:Password>',
    "<clientSecret><![CDATA[Xml<S3cret]]></clientSecret>": "<clientSecret>[REDACTED]</clientSecret>",
    # ... in a file's content as evidence quotes it (newlines escaped).
    '"<settings>\\n  <password>XmlS3cret</password>\\n</settings>\\n"':
        '"<settings>\\n  <password>[REDACTED]</password>\\n</settings>\\n"',
    # 4. Rails.
    "SECRET_KEY_BASE=RailsS3cretBase0123456789abcdef": "SECRET_KEY_BASE=[REDACTED]",
    "export SECRET_KEY_BASE=RailsS3cretBase0123456789abcdef ./bin/rails s":
        "export SECRET_KEY_BASE=[REDACTED] ./bin/rails s",
    "production:\n  secret_key_base: RailsS3cretBase0123456789abcdef\n":
        "production:\n  secret_key_base: [REDACTED]\n",
    "secret_key_base RailsS3cretBase0123456789abcdef": "secret_key_base [REDACTED]",
    # 5. OpenAI keys.
    f"export OPENAI_KEY={OPENAI_PROJECT_KEY}": "export OPENAI_KEY=[REDACTED]",
    f"echo {OPENAI_PROJECT_KEY} | tee k": "echo [REDACTED] | tee k",
    f"echo {OPENAI_LEGACY_KEY}": "echo [REDACTED]",
    f"claude --api {ANTHROPIC_KEY}": "claude --api [REDACTED]",
    # 6. A long JWT, bare.
    f"echo {LONG_JWT} > t": "echo [REDACTED] > t",
}
SECRETS = ("SmbS3cret", "DockS3cret", "XmlS3cret", "S3cret", "RailsS3cretBase", OPENAI_PROJECT_KEY[8:40],
           OPENAI_LEGACY_KEY[3:20], LONG_JWT[40:200])


@pytest.mark.parametrize(("text", "redacted"), MISSES.items())
def test_each_missed_shape_is_masked_and_what_surrounds_it_stays(text: str, redacted: str) -> None:
    assert Redactor().text(text) == redacted
    assert may_hold_secret(text)  # the prefilter lets it through to the detectors


@pytest.mark.parametrize("text", [
    "ls -p", "grep -p x f", "mysql -p", "mysql -u root -p db", "docker login", "docker login registry.example",
    "docker login -u user registry.example", "docker login --username user --password-stdin reg",
    "docker run -p 8080:80 nginx", "docker login reg && docker run -p 80:80 img", "podman ps -p",
    "cat /etc/passwd", "vim password.txt", "cp <password>.txt /tmp", "cat /etc/samba/smbpasswd",
    "smbclient -L host -N", "smbclient -U user //host/share", "smbclient -U% -L host", "net use",
    "date -u +%s", "ps -U root -o %cpu", "printf '%s' -U", "wbinfo --user-info=%u",
    "<token_type>Bearer</token_type>", "<passwordPolicy>strict</passwordPolicy>", "<bypass>x</bypass>",
    "<key>Name</key>", "<password></password>", "<password>true</password>", "<secretRef>db</secretRef>",
    "kubectl get deploy sk-proj-frontend-deployment-for-production-eu-west-1",
    "disk-proj-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH", "secret_key_base_file /etc/rails/key",
    "eyJhbGciOiJIUzI1NiJ9 is a header, not a token",
])
def test_ordinary_commands_near_the_shapes_stay(text: str) -> None:
    assert Redactor().text(text) == text


def exec_event(cmdline: str) -> dict[str, Any]:
    return exec_args_event(shlex.split(cmdline))


@pytest.mark.parametrize(("cmdline", "args"), [
    ("smbclient -U user%SmbS3cret //h/s", ["smbclient", "-U", "user%[REDACTED]", "//h/s"]),
    ("smbclient --user=DOM\\\\user%SmbS3cret //h/s", ["smbclient", "--user=DOM\\user%[REDACTED]", "//h/s"]),
    ("docker login -u user -p DockS3cret reg", ["docker", "login", "-u", "user", "-p", "[REDACTED]", "reg"]),
    ("curl -d <password>XmlS3cret</password> https://x",
     ["curl", "-d", "<password>[REDACTED]</password>", "https://x"]),
    ("rails s -e production --secret_key_base RailsS3cretBase0",
     ["rails", "s", "-e", "production", "--secret_key_base", "[REDACTED]"]),
    (f"curl -H x-openai:{OPENAI_PROJECT_KEY} https://api", ["curl", "-H", "x-openai:[REDACTED]", "https://api"]),
    (f"curl --oauth2-bearer {LONG_JWT} https://api", ["curl", "--oauth2-bearer", "[REDACTED]", "https://api"]),
])
def test_an_events_arguments_and_command_line_are_masked_and_its_line_is_not_cleared(
        cmdline: str, args: list[str]) -> None:
    assert_exec_masked(shlex.split(cmdline), args, "", "", SECRETS)


def test_a_secret_key_base_in_a_record_or_read_by_a_rule_is_masked() -> None:
    r = Redactor()
    out, changed = r.details({"config": {"secret_key_base": "RailsS3cretBase0", "SECRET_KEY_BASE": "RailsS3cretBase1"}})
    assert out == {"config": {"secret_key_base": "[REDACTED]", "SECRET_KEY_BASE": "[REDACTED]"}}
    assert changed == ["config.secret_key_base", "config.SECRET_KEY_BASE"]
    ev = Evidence('yaml("/srv/app/config/secrets.yml").get("secret_key_base") == null', expected="null",
                  observed='"a1b2c3d4"', source="/srv/app/config/secrets.yml")
    assert r.evidence(ev).observed == "[REDACTED]"


def test_a_long_jwt_in_a_long_text_is_found_in_linear_time() -> None:
    # The payload has no bound now; runs of token characters that start no token (`-eyJ`
    # repeated, a JWT glued to a word) are scanned once, not once per `eyJ` in them.
    r = Redactor()
    assert r.text("x" + LONG_JWT) == "x" + LONG_JWT  # glued to a word: no token of its own
    # Quadratic matching would take minutes here (the suite would hang), linear takes 0.1 s:
    # no clock is read, as in the hostile-policy regex tests.
    hostile = "-eyJ" * 50_000 + "." + "eyJ" + "a" * 200_000
    assert r.text(hostile) == hostile
    many = " ".join([LONG_JWT] * 20)
    assert r.text(many) == " ".join(["[REDACTED]"] * 20)


@pytest.mark.parametrize(("hostile", "expected"), [
    ("smbclient x " * 40_000 + "-U u%p", "smbclient x " * 40_000 + "-U u%[REDACTED]"),
    ("net -U x " * 50_000 + "%", "net -U x " * 50_000 + "%"),  # nothing after the %: no password
    ("docker login " * 40_000 + "-p", "docker login " * 40_000 + "-p"),  # -p with no value
])
def test_a_program_named_again_and_again_is_scanned_in_linear_time(hostile: str, expected: str) -> None:
    # As above: a program's name repeated makes quadratic matching take minutes, not a wrong answer.
    assert Redactor().text(hostile) == expected


FRAGMENTS = ["smbclient", "net", "-U", "--user=", "user", "%", "S3", "docker", "login", "-p", "-u", "registry", "helm",
             "<password>", "</password>", "<db:Token a='1'>", "</db:Token>", "<![CDATA[", "]]>", "secret_key_base",
             "SECRET_KEY_BASE", "=", ": ", " ", "\n", "'", '"', ",", "|", "\\", "\\n", "\\ud83d", "x",
             OPENAI_PROJECT_KEY[:60], "sk-proj-", "eyJhbGciOiJIUzI1NiJ9", ".", "eyJzdWIiOiJhbGljZSJ9", "c2lnbmF0dXJl"]


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=10).map("".join))
def test_the_shortcuts_let_through_every_text_the_new_detectors_change(value: str) -> None:
    assert_shortcuts_agree(value)


@pytest.mark.parametrize("text", ["echo \\ud800 x", "printf '\\ud83d\\ude00'", '{"name": "\\udfff"}'])
def test_an_escaped_lone_surrogate_is_text_like_any_other(text: str) -> None:
    r = Redactor()
    assert r.text(text) == text
    assert r.text(text + " password=S3cret") == text + " password=[REDACTED]"
    ev = exec_event("echo x")
    ev["proc"]["args"] = ["echo", text, "\ud800"]
    assert r.event(ev) is ev
    assert not r.certainly_clean(ev, canonical_line(ev))  # written the slow way: a walk decides


@pytest.mark.parametrize(("expression", "observed", "shown"), [
    # The file is named "common-password"; what the expression observes is a boolean.
    ('pam("common-password").has_module("pam_unix.so")', "true", "true"),
    ('pam("common-password").has_module("pam_pwquality.so")', "false", "false"),
    ('option("bindpw")', "<absent>", "<absent>"),
    # A string read from a secret setting stays masked, even one that spells a boolean.
    ('option("bindpw")', '"true"', "[REDACTED]"),
    ('kv("/etc/ldap.conf").get("rootpw")', '"hunter2"', "[REDACTED]"),
])
def test_a_boolean_or_absent_value_of_a_secret_setting_is_shown_and_a_string_is_masked(
        expression: str, observed: str, shown: str) -> None:
    ev = Evidence(expression, expected="true", observed=observed, source="/etc/pam.d/common-password:7")
    out = Redactor().evidence(ev)
    assert out.observed == shown
    assert ("observed" in out.redacted) == (shown != observed)
