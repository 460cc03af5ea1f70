"""Passwords given as a plain argument or a short option of programs the first detectors did not
know (`openssl enc -k`, `sqlcmd -P`, `az login -p`, `net use ... PASSWORD`, `skopeo --creds u:pw`,
`mount.cifs -o user=u%pw`), a quoted password holding a space, .NET `<add key="Password"
value="X"/>` and a plist's `<key>password</key><string>X</string>`: each masked in text, in an
event's arguments and in an alert, the shortcuts never skip it, and the ordinary command lines
near each shape stay as they are."""

from __future__ import annotations

import shlex

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from redaction_helpers import assert_exec_masked, assert_shortcuts_agree, exec_event

from secpolicy.redaction import Redactor
from secpolicy.redaction.detectors import may_hold_secret

# text -> what redaction leaves of it
MASKED = {
    "openssl enc -aes-256-cbc -k OsslS3cret -in f -out g": "openssl enc -aes-256-cbc -k [REDACTED] -in f -out g",
    "/usr/bin/openssl enc -d -k 'OsslS3cret' -in f": "/usr/bin/openssl enc -d -k '[REDACTED]' -in f",
    "sqlcmd -S host -U sa -P SqlS3cret -Q x": "sqlcmd -S host -U sa -P [REDACTED] -Q x",
    "sqlcmd -S host -U sa -PSqlS3cret": "sqlcmd -S host -U sa -P[REDACTED]",
    "bcp db.t out f.dat -S h -U sa -P SqlS3cret": "bcp db.t out f.dat -S h -U sa -P [REDACTED]",
    "az login -u user -p AzS3cret": "az login -u user -p [REDACTED]",
    "az login --service-principal -u id -p=AzS3cret --tenant t":
        "az login --service-principal -u id -p=[REDACTED] --tenant t",
    "az login --service-principal -u id --password AzS3cret": "az login --service-principal -u id --password [REDACTED]",
    "az acr login -n reg -u user -p AzS3cret": "az acr login -n reg -u user -p [REDACTED]",
    "net use \\\\srv\\share /user:dom\\u NetS3cret": "net use \\\\srv\\share /user:dom\\u [REDACTED]",
    "NET USE Z: \\\\srv\\share NetS3cret /user:u": "NET USE Z: \\\\srv\\share [REDACTED] /user:u",
    "net use \\\\srv\\share /user:u NetS3cret /persistent:no": "net use \\\\srv\\share /user:u [REDACTED] /persistent:no",
    "skopeo copy --creds user:SkoS3cret docker://a docker://b": "skopeo copy --creds user:[REDACTED] docker://a docker://b",
    "skopeo copy --src-creds u:SkoS3cret --dest-creds=u2:SkoS3cret2 docker://a docker://b":
        "skopeo copy --src-creds u:[REDACTED] --dest-creds=u2:[REDACTED] docker://a docker://b",
    "podman pull --creds u:SkoS3cret quay.io/x": "podman pull --creds u:[REDACTED] quay.io/x",
    "mount.cifs //srv/share /mnt -o user=u%CifsS3cret": "mount.cifs //srv/share /mnt -o user=u%[REDACTED]",
    "mount -t cifs -o vers=3,username=dom/u%CifsS3cret,uid=1 //s/x /mnt":
        "mount -t cifs -o vers=3,username=dom/u%[REDACTED],uid=1 //s/x /mnt",
    "mount -t cifs -o rw,password=CifsS3cret //srv/s /mnt": "mount -t cifs -o rw,password=[REDACTED] //srv/s /mnt",
    '<add key="Password" value="NetCfgS3cret"/>': "<add key=[REDACTED] value=[REDACTED]/>",
    # (`key="..."` is a pair: its name goes too, as before)
    "<add key='Smtp.Password' value='NetCfgS3cret' />": "<add key=[REDACTED] value=[REDACTED] />",
    '<add key="ApiKey" value="NetCfgS3cret" />': '<add key=[REDACTED] value=[REDACTED] />',
    '<add key="ConnectionString" value="Server=x;Password=NetCfgS3cret;" />':
        '<add key=[REDACTED] value="Server=x;Password=[REDACTED];" />',
    "<key>password</key><string>PlistS3cret</string>": "<key>password</key><string>[REDACTED]</string>",
    "<dict>\n\t<key>Password</key>\n\t<string>PlistS3cret</string>\n</dict>":
        "<dict>\n\t<key>Password</key>\n\t<string>[REDACTED]</string>\n</dict>",
    # ... in a file's content as evidence quotes it (newlines escaped).
    '"<dict>\\n\\t<key>apiToken</key>\\n\\t<string>PlistS3cret</string>\\n"':
        '"<dict>\\n\\t<key>apiToken</key>\\n\\t<string>[REDACTED]</string>\\n"',
}
SECRETS = ("OsslS3cret", "SqlS3cret", "AzS3cret", "NetS3cret", "SkoS3cret", "CifsS3cret", "NetCfgS3cret",
           "PlistS3cret", "pa ss", "S3 cr3t")


@pytest.mark.parametrize(("text", "redacted"), MASKED.items())
def test_each_password_argument_is_masked_and_what_surrounds_it_stays(text: str, redacted: str) -> None:
    assert Redactor().text(text) == redacted
    assert may_hold_secret(text)  # the prefilter lets it through to the detectors


@pytest.mark.parametrize("text", [
    "openssl enc -d -in f", "openssl enc -aes-256-cbc -kfile /etc/key -in f",
    "openssl req -new -keyout k.pem", "openssl s_client -connect h:443 -k", "curl -k https://x", "ssh-keygen -k",
    "mount -o ro,nosuid /dev/sda1 /mnt", "mount -t cifs -o user=u,vers=3 //s/x /mnt", "mount.cifs //s/x /mnt -o guest",
    "curl 'https://x/?user=alice%40example.com'", "wget https://x/?username=bob%20smith",
    "net use", "net use Z: \\\\srv\\share", "net use \\\\srv\\share /user:u", "net use \\\\srv\\share * /user:u",
    "net use Z: /delete", "net user alice", "systemctl start network; use \\\\x",
    "sqlcmd -S host -E", "sqlcmd -S host -E -Q 'select 1' -p", "sqlcmd -S host -P", "bcp -v",
    "az vm list -o table", "az storage fs file upload -p dir/f -s f", "az login", "az login --use-device-code",
    "skopeo inspect --creds user docker://a", "skopeo copy --src-no-creds docker://a docker://b",
    "<key>PasswordPolicy</key><string>strict</string>",
    "<key>Name</key><string>x</string>", "<key>password</key><true/>",
])
def test_ordinary_commands_near_the_shapes_stay(text: str) -> None:
    assert Redactor().text(text) == text


@pytest.mark.parametrize("text", ['<add key="LogLevel" value="debug"/>', '<add key="PasswordPolicy" value="strict"/>',
                                  '<add key="Password" value="true"/>', '<add key="Password" value="<x>"/>'])
def test_other_settings_keep_their_values(text: str) -> None:
    value = text[text.index("value="):]
    assert Redactor().text(text).endswith(value)


@pytest.mark.parametrize(("args", "masked"), [
    (shlex.split("openssl enc -aes-256-cbc -k OsslS3cret -in f"), ["openssl", "enc", "-aes-256-cbc", "-k",
                                                                   "[REDACTED]", "-in", "f"]),
    (["sqlcmd", "-S", "h", "-U", "sa", "-P", "SqlS3cret"], ["sqlcmd", "-S", "h", "-U", "sa", "-P", "[REDACTED]"]),
    (["az", "login", "-u", "me", "-p", "AzS3cret"], ["az", "login", "-u", "me", "-p", "[REDACTED]"]),
    (["net", "use", "\\\\srv\\share", "/user:u", "NetS3cret"], ["net", "use", "\\\\srv\\share", "/user:u", "[REDACTED]"]),
    (["skopeo", "copy", "--src-creds", "u:SkoS3cret", "docker://a", "docker://b"],
     ["skopeo", "copy", "--src-creds", "u:[REDACTED]", "docker://a", "docker://b"]),
    (["mount.cifs", "//s/x", "/mnt", "-o", "user=u%CifsS3cret"], ["mount.cifs", "//s/x", "/mnt", "-o", "user=u%[REDACTED]"]),
    (["xmlstarlet", "ed", '<add key="DbPassword" value="NetCfgS3cret"/>'],
     ["xmlstarlet", "ed", "<add key=[REDACTED] value=[REDACTED]/>"]),
    (["plutil", "-p", "<key>password</key><string>PlistS3cret</string>"],
     ["plutil", "-p", "<key>password</key><string>[REDACTED]</string>"]),
    # A quoted password holding a space: one argument is one value, spaces and all.
    (["backup", "--password", "S3 cr3t x", "--v"], ["backup", "--password", "[REDACTED]", "--v"]),
    (["backup", "--password=S3 cr3t x"], ["backup", "--password=[REDACTED]"]),
    (["smbclient", "-U", "u%pa ss", "//h/s"], ["smbclient", "-U", "u%[REDACTED]", "//h/s"]),
    (["openssl", "enc", "-pass", "pass:S3 cr3t", "-in", "f"], ["openssl", "enc", "-pass", "[REDACTED]", "-in", "f"]),
])
def test_an_events_arguments_command_line_and_alert_are_masked(args: list[str], masked: list[str]) -> None:
    assert_exec_masked(args, masked, f" {args!r}", f" {masked!r}", SECRETS)


def test_a_command_line_in_one_argument_keeps_what_follows_its_secret() -> None:
    # `sh -c "..."` holds a command line: its words after a secret are no part of it.
    ev = exec_event(["sh", "-c", "X=1 password=ab ./run now"])
    assert Redactor().event(ev)["proc"]["args"] == ["sh", "-c", "X=1 password=[REDACTED] ./run now"]
    ev = exec_event(["app", "password=ab ./run"])  # a pair, not an option: its first word only
    assert Redactor().event(ev)["proc"]["args"] == ["app", "password=[REDACTED] ./run"]


@pytest.mark.parametrize(("hostile", "expected"), [
    ("openssl x " * 40_000 + "-k", "openssl x " * 40_000 + "-k"),
    ("sqlcmd x " * 40_000 + "-P", "sqlcmd x " * 40_000 + "-P"),
    ("net use " * 40_000 + "\\\\s /x " * 1000, "net use " * 40_000 + "\\\\s /x " * 1000),
    ("net use \\\\" + "\\" * 100_000, "net use \\\\" + "\\" * 100_000),
    ("mount x " * 40_000 + "user=u%", "mount x " * 40_000 + "user=u%"),
    ("<add key='password' value='" * 20_000, "<add key=[REDACTED] value='" * 20_000),
    ("<key>password</key>" * 20_000 + "<string>", "<key>password</key>" * 20_000 + "<string>"),
])
def test_a_program_named_again_and_again_is_scanned_in_linear_time(hostile: str, expected: str) -> None:
    # Quadratic matching would take minutes (the suite would hang), linear a fraction of a second.
    assert Redactor().text(hostile) == expected


FRAGMENTS = ["openssl", "enc", "-k", "-kfile", "sqlcmd", "bcp", "-P", "-p", "az", "acr", "login", "net", "use",
             "\\\\srv\\s", "/user:u", "*", "skopeo", "--creds", "--src-creds=", "u:", "mount.cifs", "mount", "-o",
             "user=", "username=u", "%", ",", '<add key="', "Password", '" value="', "'", '"', "/>", "<key>",
             "password", "</key>", "<string>", "</string>", "\n", " ", "S3", "x", "|", "\\n"]


@settings(max_examples=400, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=10).map("".join))
def test_the_shortcuts_let_through_every_text_the_new_detectors_change(value: str) -> None:
    assert_shortcuts_agree(value)
