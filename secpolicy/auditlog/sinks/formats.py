"""Alert wire formats for SIEMs: JSON, ArcSight CEF, IBM LEEF 2.0 and OCSF Detection Finding
(class 2004); each a pure function from an alert dict to one line of text."""

from __future__ import annotations

import hashlib
import ipaddress
import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any

from secpolicy import __version__
from secpolicy.errors import InputError

__all__ = [
    "FORMATS",
    "SEVERITY_NUMBER",
    "alert_uid",
    "cef_header_escape",
    "cef_value_escape",
    "format_alert",
    "to_cef",
    "to_json",
    "to_leef",
    "to_ocsf",
    "to_ocsf_process_activity",
    "utf8_safe",
]

VENDOR = "secpolicy"
PRODUCT = "secpolicy"
# CEF and LEEF severities run 0-10; OCSF severity_id runs 1 (informational) to 5 (critical).
SEVERITY_NUMBER = {"info": 1, "low": 3, "medium": 5, "high": 8, "critical": 10}
_OCSF_SEVERITY = {"info": (1, "Informational"), "low": (2, "Low"), "medium": (3, "Medium"),
                  "high": (4, "High"), "critical": (5, "Critical")}


def alert_uid(alert: Mapping[str, Any]) -> str:
    """A stable id for an alert's content (the same alert gives the same id)."""
    text = json.dumps(alert, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _epoch_ms(ts: Any) -> int | None:
    if not isinstance(ts, str):
        return None
    text = ts.strip().replace("Z", "+00:00")
    if len(text) > 19 and text[19] == ".":
        rest = text[20:]
        digits = rest[: len(rest) - len(rest.lstrip("0123456789"))]
        text = text[:20] + digits[:6] + rest[len(digits):]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1000)


def _subject(alert: Mapping[str, Any]) -> dict[str, Any]:
    """The fields SIEMs index on, pulled out of the triggering event."""
    event = alert.get("event") or {}
    proc = event.get("proc") or {}
    user = event.get("user") or {}
    auth = event.get("auth") or {}
    net = event.get("net") or {}
    file = event.get("file") or {}
    return {
        "user": user.get("name") or auth.get("user"),
        "uid": user.get("uid", proc.get("uid")),
        "host": event.get("host"),
        "pid": proc.get("pid"),
        "process": proc.get("comm"),
        "exe": proc.get("exe"),
        "cmdline": proc.get("cmdline"),
        "src_ip": auth.get("rhost") or net.get("src_ip"),
        "src_port": net.get("src_port"),
        "dst_ip": net.get("dst_ip"),
        "dst_port": net.get("dst_port"),
        "protocol": net.get("protocol"),
        "file": file.get("path"),
        "outcome": (event.get("outcome") or {}).get("result") or auth.get("result"),
        "event_type": event.get("type"),
    }


def _severity(alert: Mapping[str, Any]) -> str:
    sev = str(alert.get("severity", "info"))
    if sev not in SEVERITY_NUMBER:
        raise InputError(f"alert severity {sev!r} is not one of {sorted(SEVERITY_NUMBER)}")
    return sev


def _require(alert: Mapping[str, Any]) -> None:
    if not isinstance(alert, Mapping) or not alert.get("rule_id"):
        raise InputError("alert has no rule_id")


def to_json(alert: Mapping[str, Any]) -> str:
    _require(alert)
    return json.dumps(alert, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def cef_header_escape(value: Any) -> str:
    # CEF header: backslash and pipe are escaped; a line break would end the record.
    text = str(value).replace("\\", "\\\\").replace("|", "\\|")
    return text.replace("\r", " ").replace("\n", " ")


def cef_value_escape(value: Any) -> str:
    # CEF extension values: backslash and equals are escaped, line breaks become \n and \r.
    text = str(value).replace("\\", "\\\\").replace("=", "\\=")
    return text.replace("\r\n", "\\n").replace("\n", "\\n").replace("\r", "\\r")


# Field lengths of the CEF Extension Dictionary (Implementing ArcSight CEF, rev. 25) and of
# the header fields; longer values are cut (ending in "...") rather than refused by the SIEM.
CEF_LIMITS = {"act": 63, "app": 31, "cat": 1023, "cs1": 4000, "cs2": 4000, "cs3": 4000, "cs1Label": 1023, "cs2Label": 1023, "cs3Label": 1023,
              "c6a2Label": 1023, "c6a3Label": 1023, "dvchost": 100, "externalId": 40, "filePath": 1023,
              "msg": 1023, "outcome": 63, "proto": 31, "shost": 1023, "sproc": 1023, "suid": 1023, "suser": 1023}
CEF_HEADER_LIMITS = (63, 63, 31, 1023, 512)  # vendor, product, version, signature id, name
_CEF_INTEGERS = ("spid", "spt", "dpt", "cnt", "rt")


def _cut(value: Any, limit: int) -> str:
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _ip_fields(ip: Any, v4_key: str, v6_key: str, label: str) -> list[tuple[str, Any]]:
    """CEF's src and dst hold IPv4 addresses; IPv6 goes to the custom IPv6 fields, labelled."""
    try:
        address = ipaddress.ip_address(str(ip)) if ip is not None else None
    except ValueError:
        return []
    if address is None:
        return []
    if address.version == 4:
        return [(v4_key, str(address))]
    return [(v6_key, str(address)), (v6_key + "Label", label)]


def to_cef(alert: Mapping[str, Any]) -> str:
    """CEF:0|vendor|product|version|signature id|name|severity|extension."""
    _require(alert)
    sev = _severity(alert)
    s = _subject(alert)
    ext: list[tuple[str, Any]] = [
        ("rt", _epoch_ms(alert.get("ts"))),
        ("msg", alert.get("message")),
        ("suser", s["user"]),
        ("suid", s["uid"]),
        ("shost", s["host"]),
        ("dvchost", s["host"]),
        ("spid", s["pid"]),
        ("sproc", s["process"]),
        *_ip_fields(s["src_ip"], "src", "c6a2", "Source IPv6 Address"),
        ("spt", s["src_port"]),
        *_ip_fields(s["dst_ip"], "dst", "c6a3", "Destination IPv6 Address"),
        ("dpt", s["dst_port"]),
        ("proto", s["protocol"]),
        ("filePath", s["file"]),
        ("outcome", s["outcome"]),
        ("cat", s["event_type"]),
        ("cnt", (alert.get("context") or {}).get("count")),
        ("cs1Label", "tags" if alert.get("tags") else None),
        ("cs1", ",".join(map(str, alert.get("tags") or [])) or None),
        ("cs2Label", "references" if alert.get("references") else None),
        ("cs2", _refs(alert) or None),
        ("cs3Label", "redacted" if alert.get("redacted") else None),
        ("cs3", ",".join(map(str, alert.get("redacted") or [])) or None),
        ("externalId", alert.get("id") or alert_uid(alert)),
    ]
    fields = []
    for k, v in ext:
        if v is None or v == "":
            continue
        if k in _CEF_INTEGERS and (not isinstance(v, int) or isinstance(v, bool)):
            continue  # an Integer field holding anything else would fail the SIEM's parse
        fields.append(f"{k}={cef_value_escape(_cut(v, CEF_LIMITS[k]) if k in CEF_LIMITS else v)}")
    header = [VENDOR, PRODUCT, __version__, alert["rule_id"], alert.get("title") or alert["rule_id"]]
    cut = [cef_header_escape(_cut(h, n)) for h, n in zip(header, CEF_HEADER_LIMITS, strict=True)]
    return "|".join(["CEF:0", *cut, str(SEVERITY_NUMBER[sev])]) + "|" + " ".join(fields)


def _refs(alert: Mapping[str, Any]) -> str:
    refs = alert.get("references") or {}
    return ";".join(f"{fw}:{','.join(map(str, ids))}" for fw, ids in sorted(refs.items()))


def _leef_value(value: Any) -> str:
    # Tab is the attribute delimiter: tabs and line breaks inside values become spaces.
    return str(value).replace("\t", " ").replace("\r", " ").replace("\n", " ")


def _leef_header(value: Any) -> str:
    return _leef_value(value).replace("\\", "\\\\").replace("|", "\\|")


def _leef_time(ts: Any) -> str | None:
    # LEEF's default devTime layout (no devTimeFormat needed): "MMM dd yyyy HH:mm:ss.SSS zzz".
    ms = _epoch_ms(ts)
    if ms is None:
        return None
    moment = datetime.fromtimestamp(ms / 1000, UTC)
    return moment.strftime("%b %d %Y %H:%M:%S.") + f"{ms % 1000:03d} UTC"


def _leef_ok(key: str, value: Any) -> bool:
    """LEEF's typed attributes take only their type: an address that is not one, or a port
    outside 0-65535, would make QRadar drop the whole event."""
    if key in ("src", "dst"):
        try:
            ipaddress.ip_address(str(value))
        except ValueError:
            return False
    if key in ("srcPort", "dstPort", "pid", "count"):
        return isinstance(value, int) and not isinstance(value, bool) and (key not in ("srcPort", "dstPort")
                                                                            or 0 <= value <= 65535)
    return True


def to_leef(alert: Mapping[str, Any]) -> str:
    """LEEF:2.0|vendor|product|version|event id|x09|key=value<TAB>key=value."""
    _require(alert)
    sev = _severity(alert)
    s = _subject(alert)
    attrs: list[tuple[str, Any]] = [
        ("devTime", _leef_time(alert.get("ts"))),
        ("sev", SEVERITY_NUMBER[sev]),
        ("cat", s["event_type"]),
        ("usrName", s["user"]),
        ("identHostName", s["host"]),
        ("src", s["src_ip"]),
        ("srcPort", s["src_port"]),
        ("dst", s["dst_ip"]),
        ("dstPort", s["dst_port"]),
        ("proto", s["protocol"]),
        ("resource", s["file"]),
        ("pid", s["pid"]),
        ("process", s["process"]),
        ("outcome", s["outcome"]),
        ("title", alert.get("title")),
        ("msg", alert.get("message")),
        ("count", (alert.get("context") or {}).get("count")),
        ("tags", ",".join(map(str, alert.get("tags") or [])) or None),
        ("references", _refs(alert) or None),
        ("redacted", ",".join(map(str, alert.get("redacted") or [])) or None),
    ]
    body = "\t".join(f"{k}={_leef_value(v)}" for k, v in attrs if v is not None and v != "" and _leef_ok(k, v))
    header = ["LEEF:2.0", _leef_header(VENDOR), _leef_header(PRODUCT), _leef_header(__version__),
              _leef_header(alert["rule_id"]), "x09"]
    return "|".join(header) + "|" + body


OCSF_VERSION = "1.3.0"


def to_ocsf(alert: Mapping[str, Any]) -> dict[str, Any]:
    """OCSF 1.3.0 Detection Finding: class 2004 in category 2 (Findings), activity 1 (Create)."""
    _require(alert)
    sev = _severity(alert)
    s = _subject(alert)
    severity_id, severity = _OCSF_SEVERITY[sev]
    # `time` is required: an alert without its own time is stamped when it is reported.
    time_ms = _epoch_ms(alert.get("ts")) or int(datetime.now(UTC).timestamp() * 1000)
    events = alert.get("events") or ([alert["event"]] if alert.get("event") else [])
    finding: dict[str, Any] = {
        "activity_id": 1,
        "activity_name": "Create",
        "category_uid": 2,
        "category_name": "Findings",
        "class_uid": 2004,
        "class_name": "Detection Finding",
        "type_uid": 200401,
        "type_name": "Detection Finding: Create",
        "severity_id": severity_id,
        "severity": severity,
        "status_id": 1,
        "status": "New",
        "time": time_ms,
        "message": alert.get("message") or alert.get("title") or alert["rule_id"],
        "metadata": {
            "version": OCSF_VERSION,
            "product": {"name": PRODUCT, "vendor_name": VENDOR, "version": __version__},
            "uid": alert.get("id") or alert_uid(alert),
        },
        "finding_info": {
            "uid": alert.get("id") or alert_uid(alert),
            "title": alert.get("title") or alert["rule_id"],
            "desc": alert.get("message"),
            "analytic": {"uid": alert["rule_id"], "name": alert["rule_id"], "type_id": 1, "type": "Rule"},
            "types": list(alert.get("tags") or []),
            "first_seen_time": (_epoch_ms(events[0].get("ts")) if events else None) or time_ms,
            "last_seen_time": (_epoch_ms(events[-1].get("ts")) if events else None) or time_ms,
        },
        "evidences": [_ocsf_evidence(e) for e in events],
        "unmapped": {"context": alert.get("context") or {}, "references": alert.get("references") or {}},
    }
    if s["host"]:
        finding["device"] = {"hostname": s["host"], "type_id": 0, "type": "Unknown"}
    if not finding["finding_info"]["desc"]:
        del finding["finding_info"]["desc"]
    if alert.get("coverage"):
        finding["unmapped"]["coverage"] = alert["coverage"]
    if alert.get("redacted"):
        finding["unmapped"]["redacted"] = list(alert["redacted"])  # the fields masked, never their values
    return finding


def _ocsf_evidence(event: Mapping[str, Any]) -> dict[str, Any]:
    s = _subject({"event": event})
    evidence: dict[str, Any] = {"data": {"type": event.get("type"), "ts": event.get("ts")}}
    if s["user"] or s["uid"] is not None:
        evidence["actor"] = {"user": _ocsf_user(s)}
    if s["pid"] is not None or s["exe"]:
        evidence["process"] = _ocsf_process(s)
    if s["file"]:
        evidence["file"] = _ocsf_file(str(s["file"]), 0)
    if s["dst_ip"]:
        evidence["dst_endpoint"] = {k: v for k, v in (("ip", s["dst_ip"]), ("port", s["dst_port"])) if v is not None}
    if s["src_ip"]:
        evidence["src_endpoint"] = {k: v for k, v in (("ip", s["src_ip"]), ("port", s["src_port"])) if v is not None}
    return evidence


def _ocsf_file(path: str, type_id: int) -> dict[str, Any]:
    # OCSF file: name and type_id are required (type 1 = regular file, 0 = unknown).
    return {"path": path, "name": path.rstrip("/").rsplit("/", 1)[-1] or path, "type_id": type_id,
            "type": {0: "Unknown", 1: "Regular File"}[type_id]}


def _ocsf_process(s: Mapping[str, Any]) -> dict[str, Any]:
    process: dict[str, Any] = {k: v for k, v in (("pid", s["pid"]), ("name", s["process"]),
                                                 ("cmd_line", s["cmdline"])) if v is not None}
    if s["exe"]:
        process["file"] = _ocsf_file(str(s["exe"]), 1)  # an executable that ran is a regular file
    if s["user"] or s["uid"] is not None:
        process["user"] = _ocsf_user(s)
    return process


def _ocsf_user(s: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in (("name", s["user"]), ("uid", None if s["uid"] is None else str(s["uid"])))
            if v is not None}


def to_ocsf_process_activity(event: Mapping[str, Any]) -> dict[str, Any]:
    """An `exec` event as OCSF 1.3.0 Process Activity: class 1007 in category 1 (System
    Activity), activity 1 (Launch); the actor is the parent process and the acting user."""
    if event.get("type") != "exec":
        raise InputError(f"only exec events map to OCSF Process Activity, not {event.get('type')!r}")
    s = _subject({"event": event})
    proc = event.get("proc") or {}
    time_ms = _epoch_ms(event.get("ts"))
    if time_ms is None:
        raise InputError(f"event time {event.get('ts')!r} is not ISO 8601")
    actor: dict[str, Any] = {}
    if proc.get("ppid") is not None:
        actor["process"] = {"pid": proc["ppid"]}
    if s["user"] or s["uid"] is not None:
        actor["user"] = _ocsf_user(s)
    process = _ocsf_process(s)
    if proc.get("ppid") is not None:
        process["parent_process"] = {"pid": proc["ppid"]}
    out: dict[str, Any] = {
        "activity_id": 1, "activity_name": "Launch", "category_uid": 1, "category_name": "System Activity",
        "class_uid": 1007, "class_name": "Process Activity", "type_uid": 100701,
        "type_name": "Process Activity: Launch", "severity_id": 1, "severity": "Informational",
        "time": time_ms, "actor": actor, "process": process,
        "device": {"hostname": s["host"] or "unknown", "type_id": 0, "type": "Unknown"},
        "metadata": {"version": OCSF_VERSION,
                     "product": {"name": PRODUCT, "vendor_name": VENDOR, "version": __version__}},
    }
    if s["outcome"] in ("success", "failure"):
        out["status_id"], out["status"] = (1, "Success") if s["outcome"] == "success" else (2, "Failure")
    return out


def _ocsf_text(alert: Mapping[str, Any]) -> str:
    return json.dumps(to_ocsf(alert), sort_keys=True, separators=(",", ":"), ensure_ascii=False)


FORMATS: dict[str, Callable[[Mapping[str, Any]], str]] = {
    "json": to_json,
    "cef": to_cef,
    "leef": to_leef,
    "ocsf": _ocsf_text,
}


def _surrogate_text(ch: str) -> str:
    # An undecodable byte kept by surrogateescape (U+DC80..U+DCFF) as the auditd reader shows
    # such a byte, \xNN; any other lone surrogate as its code point.
    o = ord(ch)
    return f"\\x{o - 0xDC00:02x}" if 0xDC80 <= o <= 0xDCFF else f"\\u{o:04x}"


def utf8_safe(value: Any) -> Any:
    """`value` with every lone surrogate in its strings (keys too) written out as text: UTF-8
    cannot encode one, so a file name read with surrogateescape (a working directory from
    /proc/PID/cwd with bytes that are not UTF-8) would make the alert impossible to send."""
    if isinstance(value, str):
        if value.isascii():
            return value
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return "".join(_surrogate_text(c) if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    if isinstance(value, Mapping):
        return {utf8_safe(k): utf8_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [utf8_safe(v) for v in value]
    return value


def format_alert(alert: Mapping[str, Any], fmt: str) -> str:
    """The alert in `fmt`, always encodable as UTF-8 (lone surrogates written out as text)."""
    try:
        formatter = FORMATS[fmt]
    except KeyError:
        raise InputError(f"unknown alert format {fmt!r} (choose from {', '.join(FORMATS)})") from None
    text = formatter(alert)
    if not text.isascii():
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            text = formatter(utf8_safe(alert))
    return text
