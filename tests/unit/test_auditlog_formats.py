"""Wire formats against their specifications: OCSF 1.3.0 classes checked against the table made
from the published schema, CEF field lengths and escaping, LEEF typed attributes, and the
RFC 5424 ABNF for syslog headers and structured data."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest
from ocsf_conformance import violations

from secpolicy.auditlog.sinks.formats import (
    CEF_LIMITS,
    to_cef,
    to_leef,
    to_ocsf,
    to_ocsf_process_activity,
)
from secpolicy.auditlog.sinks.syslog import fit_alert, rfc5424

EXEC = {"type": "exec", "ts": "2026-11-21T10:02:00.000000000Z", "host": "web1",
        "proc": {"pid": 4242, "ppid": 4200, "comm": "sudo", "exe": "/usr/bin/sudo", "cmdline": "sudo -i",
                 "uid": 1000, "euid": 0, "session": 7},
        "user": {"uid": 1000, "name": "admin"}}
OPEN = {"type": "open", "ts": "2026-11-21T10:02:01.000000000Z", "host": "web1",
        "proc": {"pid": 4243, "comm": "cat", "exe": "/usr/bin/cat"}, "user": {"uid": 0, "name": "root"},
        "file": {"path": "/etc/shadow"}}
CONNECT = {"type": "connect", "ts": "2026-11-21T10:02:02.000000000Z", "host": "web1", "proc": {"pid": 4244},
           "net": {"protocol": "tcp", "dst_ip": "2001:db8::7", "dst_port": 443, "src_ip": "2001:db8::1",
                   "src_port": 50000}}
ALERT: dict[str, Any] = {
    "rule_id": "priv.sudo_shadow", "severity": "critical", "title": "sudo then /etc/shadow",
    "message": "m", "ts": "2026-11-21T10:02:02.000000000Z", "event": OPEN, "events": [EXEC, OPEN, CONNECT],
    "context": {"kind": "sequence", "key": "web1/7", "count": 1}, "tags": ["privilege-escalation"],
    "references": {"mitre": ["T1003.008"]},
}


def test_detection_finding_conforms_to_ocsf_1_3_0() -> None:
    finding = to_ocsf(ALERT)
    assert violations(finding, "detection_finding") == []
    assert (finding["class_uid"], finding["type_uid"]) == (2004, 200401)
    process = finding["evidences"][0]["process"]
    assert process["file"] == {"path": "/usr/bin/sudo", "name": "sudo", "type_id": 1, "type": "Regular File"}
    # A bare alert too (no time of its own: stamped when reported).
    assert violations(to_ocsf({"rule_id": "r", "severity": "info"}), "detection_finding") == []


def test_the_checker_catches_what_ocsf_forbids() -> None:
    finding = to_ocsf(ALERT)
    finding["evidences"][0]["process"]["file"] = {"path": "/usr/bin/sudo"}  # what 1.1 output had
    finding["severity_id"] = 9
    finding["bogus"] = 1
    assert sorted(violations(finding, "detection_finding")) == [
        "detection_finding.bogus: not an attribute of OCSF 1.3.0",
        "detection_finding.evidences[0].process.file.name: required, missing",
        "detection_finding.evidences[0].process.file.type_id: required, missing",
        "detection_finding.severity_id: 9 is not one of ['0', '1', '2', '3', '4', '5', '6', '99']",
    ]


def test_process_activity_conforms_to_ocsf_1_3_0() -> None:
    activity = to_ocsf_process_activity(EXEC)
    assert violations(activity, "process_activity") == []
    assert (activity["class_uid"], activity["type_uid"], activity["actor"]["process"]) == (1007, 100701, {"pid": 4200})
    assert activity["process"]["user"] == {"name": "admin", "uid": "1000"}


def test_cef_lengths_and_escaping_follow_the_extension_dictionary() -> None:
    long_path = "/srv/" + "d/" * 700 + "f=x|y"
    alert = dict(ALERT, message="a=b\\c\n" + "m" * 3000, title="t|" * 400,
                 event=dict(OPEN, file={"path": long_path}))
    line = to_cef(alert)
    header, _, ext = line.partition("|10|")
    parts = re.split(r"(?<!\\)\|", header)
    assert parts[:3] == ["CEF:0", "secpolicy", "secpolicy"] and len(parts) == 6
    assert len(parts[5].replace("\\|", "|")) <= 512  # Name
    fields = dict(re.findall(r"(\w+)=((?:[^\\= ]|\\.|(?<=\S) (?!\w+=))*)", ext))
    unescape = lambda v: re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m.group(1), m.group(1)), v)
    assert len(unescape(fields["msg"])) == CEF_LIMITS["msg"] == 1023
    assert unescape(fields["msg"]).startswith("a=b\\c\nmmm") and unescape(fields["msg"]).endswith("...")
    assert len(unescape(fields["filePath"])) == 1023
    assert "\n" not in line and "\r" not in line


def test_cef_puts_ipv6_in_the_custom_ipv6_fields() -> None:
    line = to_cef(dict(ALERT, event=CONNECT))
    assert "c6a2=2001:db8::1 c6a2Label=Source IPv6 Address" in line
    assert "c6a3=2001:db8::7 c6a3Label=Destination IPv6 Address" in line
    assert " src=" not in line and " dst=" not in line
    line = to_cef(dict(ALERT, event=dict(CONNECT, net={"dst_ip": "198.51.100.7", "dst_port": "443"})))
    assert " dst=198.51.100.7" in line and "dpt=" not in line  # a port that is not an Integer is left out


def test_leef_typed_attributes_hold_their_type_only() -> None:
    line = to_leef(dict(ALERT, event=dict(CONNECT, auth={"rhost": "not-an-ip"},
                                          net={"dst_ip": "2001:db8::7", "dst_port": 70000})))
    attrs = dict(kv.split("=", 1) for kv in line.split("|", 6)[6].split("\t"))
    assert attrs["dst"] == "2001:db8::7" and "dstPort" not in attrs and "src" not in attrs
    assert 1 <= int(attrs["sev"]) <= 10


# RFC 5424 section 6 ABNF, as a regular expression over the whole message.
_SD_NAME = r'[!#-<>-\\^-~]{1,32}'  # PRINTUSASCII except '=', SP, ']', '"'
_PARAM = rf' {_SD_NAME}="(?:[^"\\\]]|\\["\\\]])*"'
_RFC5424 = re.compile(
    r'<(?P<pri>\d{1,3})>1 (?P<ts>\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:Z|[+-]\d\d:\d\d)) '
    r'(?P<host>[!-~]{1,255}) (?P<app>[!-~]{1,48}) (?P<procid>[!-~]{1,128}) (?P<msgid>[!-~]{1,32}) '
    rf'(?P<sd>-|(?:\[{_SD_NAME}(?:{_PARAM})*\])+)(?: \ufeff(?P<msg>.*))?', re.DOTALL)


@pytest.mark.parametrize("fmt", ["json", "cef", "leef", "ocsf"])
def test_rfc5424_messages_match_the_abnf(fmt: str) -> None:
    hostile = dict(ALERT, rule_id='x y"]=\\' + "r" * 40, event=dict(OPEN, host="h\u00e9st name"),
                   context={"kind": 'se"q]', "count": 3})
    message = rfc5424(hostile, fmt, msg_id="0123456789abcdef0123456789abcdef").decode("utf-8")
    m = _RFC5424.fullmatch(message)
    assert m, message[:200]
    assert int(m["pri"]) == 13 * 8 + 2 and m["host"] == "h_st_name" and len(m["msgid"]) == 32
    assert 'kind="se\\"q\\]"' in m["sd"]


def test_fitting_keeps_every_format_parseable() -> None:
    big = dict(ALERT, message="z" * 50_000)
    for fmt in ("json", "ocsf", "cef", "leef"):
        data = fit_alert(big, lambda a, f=fmt: rfc5424(a, f, msg_id="0" * 32), 2048)  # type: ignore[misc]
        assert len(data) <= 2048
        m = _RFC5424.fullmatch(data.decode("utf-8"))
        assert m
        if fmt in ("json", "ocsf"):  # CEF and LEEF cut the long message field by themselves
            assert 'truncated="true"' in m["sd"]
            json.loads(m["msg"])
