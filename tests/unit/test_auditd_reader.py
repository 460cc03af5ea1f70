"""The auditd reader: record syntax, grouping as aureport does, and the Events it builds."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from events_helpers import SHARED_AUDITD, load_rules

from secpolicy.errors import InputError
from secpolicy.events.auditd import AccountNames, AuditdReader, decode_value, parse_fields
from secpolicy.events.model import event_errors

FIXTURE = Path(__file__).resolve().parents[1] / "fixtures" / "events" / "workload-debian12.log"


def shared(name: str) -> Path:
    path = SHARED_AUDITD / name
    if not path.exists():
        if os.environ.get("CI"):
            pytest.fail(f"shared audit logs missing: {path}")
        pytest.skip("shared audit logs (../shared/data/auditd) not present")
    return path


def write(tmp_path: Path, text: str, name: str = "audit.log") -> Path:
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def events_of(path: Path, **kw: object) -> tuple[list[dict], AuditdReader]:
    r = AuditdReader([path], **kw)  # type: ignore[arg-type]
    return list(r.events()), r


def groups_of(tmp_path: Path, text: str) -> list[list[tuple[str, str]]]:
    """(type, id) of the records of each audit event, in completion order."""
    r = AuditdReader([write(tmp_path, text)])
    return [[(rec[0], key) for rec in recs] for key, _, _, recs in r.audit_events()]


def test_record_header_node_and_enriched_part(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        'node=web1 type=USER_AUTH msg=audit(1795239625.669:396): pid=7 uid=0 auid=4242 ses=3 '
        "msg='op=PAM:authentication acct=\"root\" exe=\"/usr/bin/su\" res=failed'\x1dUID=\"root\" AUID=\"alice\"\n",
    )
    (e,), r = events_of(log)
    assert e["host"] == "web1"
    assert e["source"] == {"name": "auditd", "probe": "USER_AUTH", "records": ["web1/1795239625.669:396"]}
    assert e["ts"] == "2026-11-21T05:40:25.669000000Z"
    # The acting user is the record's uid; the login user is auid, both named by the log itself.
    assert e["user"] == {"uid": 0, "name": "root"}
    assert e["login"] == {"uid": 4242, "name": "alice", "session": 3}
    assert r.summary.bad.count == 0


@pytest.mark.parametrize(
    "line",
    ["garbage", "type=UNKNOWN[1329] msg=?", "type=SYSCALL msg=audit(", "node=x type=PATH", "type=A B msg=audit(1.2:3): x"],
)
def test_lines_without_a_header_are_bad_lines(tmp_path: Path, line: str) -> None:
    log = write(tmp_path, "\n" + line + "\n")
    evs, r = events_of(log)
    assert evs == []
    assert r.summary.bad.count == 1
    assert r.summary.bad.where == [f"{log}:2: not an audit record (no type=... msg=audit(...) header): skipped"]


def test_fields_quotes_nested_msg_and_prose() -> None:
    f = parse_fields(
        "pid=1 uid=0 msg='op=adding user id=1001 acct=\"a b\" exe=\"/usr/sbin/useradd\" hostname=? res=success'"
    )
    assert f["op"] == "adding user"
    assert f["id"] == "1001"
    assert decode_value(f["acct"]) == "a b"
    assert decode_value(f["hostname"]) is None
    avc = parse_fields('avc:  denied  { read write } for  pid=13010 comm="pickup" name="maildrop" tclass=dir')
    assert avc == {"pid": "13010", "comm": '"pickup"', "name": '"maildrop"', "tclass": "dir"}
    old = parse_fields("acct=root : exe=\"/usr/sbin/crond\" (hostname=?, addr=?, terminal=cron res=success)")
    assert old["terminal"] == "cron" and old["res"] == "success" and old["addr"] == "?"
    assert parse_fields("key=(null) list=4")["key"] == "(null)"


def test_hex_values_are_decoded_and_bytes_that_are_not_utf8_shown_escaped() -> None:
    assert decode_value("2F746D702F6120622063") == "/tmp/a b c"
    assert decode_value("2F746D702FFF") == "/tmp/\\xff"
    assert decode_value('"quoted"') == "quoted"
    assert decode_value("(null)") is None


def test_grouping_interleaved_records_by_serial_and_node(tmp_path: Path) -> None:
    text = (
        "node=a type=SYSCALL msg=audit(100.001:5): syscall=2\n"
        "node=b type=SYSCALL msg=audit(100.001:5): syscall=2\n"
        "node=a type=PATH msg=audit(100.001:5): item=0\n"
        "type=SYSCALL msg=audit(100.001:5): syscall=2\n"
        "node=b type=CWD msg=audit(100.001:5): cwd=\"/\"\n"
    )
    shapes = sorted([r[0] for r in g] for g in groups_of(tmp_path, text))
    assert shapes == [["SYSCALL"], ["SYSCALL", "CWD"], ["SYSCALL", "PATH"]]
    ids = sorted({key for g in groups_of(tmp_path, text) for _, key in g})
    assert ids == ["100.001:5", "a/100.001:5", "b/100.001:5"]


def test_single_record_types_close_their_event_at_once(tmp_path: Path) -> None:
    # As in aureport: a LOGIN record is a complete event, so the SYSCALL with the same serial
    # that follows it starts a new one.
    text = (
        "type=LOGIN msg=audit(100.343:296): pid=2288 uid=0 old-auid=4294967295 auid=42 ses=1 res=1\n"
        "type=SYSCALL msg=audit(100.343:296): arch=c000003e syscall=1 success=yes exit=2\n"
        "type=PROCTITLE msg=audit(100.343:296): proctitle=\"(systemd)\"\n"
    )
    assert [[t for t, _ in g] for g in groups_of(tmp_path, text)] == [["LOGIN"], ["SYSCALL", "PROCTITLE"]]


def test_an_event_completes_when_one_starts_two_seconds_later(tmp_path: Path) -> None:
    # aureport's end_of_event_timeout (2 s): the PATH of event 1 comes after event 3 started
    # 2 s later, so it is a new event (which its EOE joins); event 2 (1 s later) still collects
    # its PATH. An EOE whose event is complete (the LOGIN) is dropped, as ausearch drops it.
    text = (
        "type=SYSCALL msg=audit(100.000:1): syscall=59\n"
        "type=SYSCALL msg=audit(101.000:2): syscall=59\n"
        "type=SYSCALL msg=audit(102.000:3): syscall=59\n"
        "type=PATH msg=audit(100.000:1): item=1\n"
        "type=PATH msg=audit(101.000:2): item=1\n"
        "type=EOE msg=audit(100.000:1): \n"
        "type=LOGIN msg=audit(102.500:9): pid=1 uid=0 old-auid=4294967295 auid=42 ses=1 res=1\n"
        "type=EOE msg=audit(102.500:9): \n"
    )
    got = [[t for t, _ in g] + [g[0][1]] for g in groups_of(tmp_path, text)]
    assert got == [["SYSCALL", "100.000:1"], ["PATH", "EOE", "100.000:1"], ["LOGIN", "102.500:9"],
                   ["SYSCALL", "PATH", "101.000:2"], ["SYSCALL", "102.000:3"]]


def test_execve_arguments_split_across_records_are_joined(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        "type=SYSCALL msg=audit(1655465398.534:7): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 "
        'items=1 ppid=1 pid=5 auid=1000 uid=1000 gid=1000 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts2 ses=4 comm="x" exe="/usr/bin/x" key="exec"\n'
        'type=EXECVE msg=audit(1655465398.534:7): argc=3 a0="x" a1_len=10 a1[0]=6162636465\n'
        "type=EXECVE msg=audit(1655465398.534:7): a1[1]=666768696A a2=2F746D702F612062\n"
        'type=CWD msg=audit(1655465398.534:7): cwd="/home/u"\n',
    )
    (e,), _ = events_of(log)
    assert e["type"] == "exec"
    assert e["proc"]["args"] == ["x", "abcdefghij", "/tmp/a b"]
    assert e["proc"]["cmdline"] == "x abcdefghij /tmp/a b"
    assert e["proc"]["euid"] == 0 and e["proc"]["auid"] == 1000 and e["proc"]["session"] == 4
    assert e["user"] == {"uid": 0}  # the effective uid: a set-uid root program
    assert e["login"] == {"uid": 1000, "session": 4}
    assert e["audit"] == {"key": "exec"}
    assert e["ts"] == "2022-06-17T11:29:58.534000000Z"
    assert event_errors(e) == []


def test_execve_arguments_over_several_records_and_argc_bounds(tmp_path: Path) -> None:
    sc = (
        "type=SYSCALL msg=audit(1655465398.{ms}:{n}): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 "
        'items=1 ppid=1 pid=5 auid=1000 uid=1000 gid=1000 euid=1000 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts2 ses=4 comm="x" exe="/usr/bin/x" key=(null)\n'
    )
    log = write(
        tmp_path,
        sc.format(ms="100", n=1)
        + 'type=EXECVE msg=audit(1655465398.100:1): argc=5 a0="x" a1="y" a2="z"\n'
        + 'type=EXECVE msg=audit(1655465398.100:1): a3="w" a4=2F746D70\n'
        + sc.format(ms="200", n=2)
        + 'type=EXECVE msg=audit(1655465398.200:2): argc=2 a0="x" a1="y" a2="beyond argc"\n'
        + sc.format(ms="300", n=3)
        + 'type=EXECVE msg=audit(1655465398.300:3): argc=9 a0="x" a3="gap"\n',
    )
    evs, _ = events_of(log)
    assert [e["proc"]["args"] for e in evs] == [["x", "y", "z", "w", "/tmp"], ["x", "y"], ["x", "", "", "gap"]]


def test_names_of_a_raw_log_come_from_the_account_database(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").write_text("root:x:0:0::/root:/bin/sh\nalice:x:1000:1000::/home/alice:/bin/sh\n")
    log = write(
        tmp_path,
        "type=SYSCALL msg=audit(1655465398.534:7): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 "
        'items=1 ppid=1 pid=5 auid=1000 uid=1000 gid=1000 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts2 ses=4 comm="x" exe="/usr/bin/x" key=(null)\n',
    )
    (e,), _ = events_of(log, names=AccountNames(root))
    assert e["user"] == {"uid": 0, "name": "root"}
    assert e["login"] == {"uid": 1000, "name": "alice", "session": 4}
    assert "audit" not in e
    (e,), _ = events_of(log)
    assert e["user"] == {"uid": 0}  # no account database given: ids only


_RAW_EXEC = (
    "type=SYSCALL msg=audit(1655465398.534:7): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 "
    'items=1 ppid=1 pid=5 auid=1000 uid=1000 gid=1000 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts2 ses=4 '
    'comm="x" exe="/usr/bin/x" key=(null)\n'
)


def test_the_account_database_of_a_root_is_read_inside_it(tmp_path: Path) -> None:
    """An image's /etc/passwd that is an absolute link names a file of the image, never one of
    this host (the host's names would be put on the image's users)."""
    host = tmp_path / "host-passwd"
    host.write_text("root:x:0:0::/root:/bin/sh\nmallory:x:1000:1000::/:/bin/sh\n")
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "passwd").symlink_to(host)  # the same path inside the root does not exist
    (e,), _ = events_of(write(tmp_path, _RAW_EXEC), names=AccountNames(root))
    assert e["login"] == {"uid": 1000, "session": 4}
    (root / "etc" / "passwd").unlink()
    (root / "etc" / "passwd").symlink_to("/etc/accounts")  # inside the image: <root>/etc/accounts
    (root / "etc" / "accounts").write_text("alice:x:1000:1000::/:/bin/sh\n")
    (e,), _ = events_of(write(tmp_path, _RAW_EXEC), names=AccountNames(root))
    assert e["login"] == {"uid": 1000, "name": "alice", "session": 4}


@pytest.mark.parametrize("kind", ["fifo", "loop", "dir"])
def test_an_account_database_that_cannot_be_read_is_said_once_and_uids_remain(tmp_path: Path, kind: str) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    passwd = root / "etc" / "passwd"
    if kind == "fifo":
        os.mkfifo(passwd)  # opened for reading, it would block the replay for ever
    elif kind == "loop":
        passwd.symlink_to("passwd")
    else:
        passwd.mkdir()
    said: list[str] = []
    log = write(tmp_path, _RAW_EXEC + _RAW_EXEC.replace(":7)", ":8)"))
    evs, _ = events_of(log, names=AccountNames(root, warn=said.append))
    assert [e["login"] for e in evs] == [{"uid": 1000, "session": 4}] * 2
    assert len(said) == 1 and said[0].startswith(f"{passwd}: ") and "shown by uid only" in said[0], said


def test_several_rule_keys(tmp_path: Path) -> None:
    keys = "6964656E74697479016D6F64756C6573"  # "identity\x01modules"
    log = write(
        tmp_path,
        "type=SYSCALL msg=audit(1700000000.100:10): arch=c000003e syscall=175 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 "
        f'items=0 ppid=1 pid=5 auid=4294967295 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="insmod" exe="/usr/bin/kmod" key={keys}\n'
        'type=KERN_MODULE msg=audit(1700000000.100:10): name="dummy"\n',
    )
    (e,), _ = events_of(log)
    assert e["type"] == "module_load" and e["module"] == {"name": "dummy"}
    assert e["audit"] == {"key": "identity", "keys": ["identity", "modules"]}
    assert "login" not in e and "auid" not in e["proc"]


def test_a_repeated_key_field_gives_the_first_key_on_the_fast_and_the_slow_path(tmp_path: Path) -> None:
    record = (
        "type=SYSCALL msg=audit(1700000000.100:{n}): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 a3=0 "
        'items={items} ppid=1 pid=5 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=4 '
        'comm="id" exe="/usr/bin/id" subj=unconfined key="first" key="second"\n'
    )
    # items=0 is the shape the fast path matches; items=x is not, so that record takes the slow path.
    log = write(tmp_path, record.format(n=10, items=0) + record.format(n=11, items="x"))
    (fast, slow), r = events_of(log, aureport=True)
    assert fast["source"]["records"] == ["1700000000.100:10"]
    assert fast["audit"] == slow["audit"] == {"key": "first"}
    assert r.summary.bad.count == 0
    report = r.summary.to_dict()["aureport"]
    assert report["keys"] == {"first": 2}  # aureport -k --summary


def test_rules_match_the_audit_rule_key(tmp_path: Path) -> None:
    from secpolicy.events.engine import EventEngine

    ps = load_rules(tmp_path, """
    - id: identity-written
      title: An identity file written, as the audit rule keyed identity saw it
      severity: medium
      when: audit.key == "identity" and type == "write"
      message: "{file.path} by {user.name} (login {login.name}); audit key {audit.key}"
    """)
    sc = (
        "type=SYSCALL msg=audit(1700000000.{ms}:{n}): arch=c000003e syscall=257 success=yes exit=3 a0=ffffff9c a1=1 a2=241 a3=1b6 "
        'items=2 ppid=1 pid=5 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=4 comm="vi" exe="/usr/bin/vi" key={key}'
        '\x1dARCH=x86_64 SYSCALL=openat AUID="alice" UID="root" GID="root" EUID="root"\n'
        'type=PATH msg=audit(1700000000.{ms}:{n}): item=0 name="/etc/passwd" inode=1 nametype=NORMAL\n'
    )
    log = write(tmp_path, sc.format(ms="100", n=1, key='"identity"') + sc.format(ms="200", n=2, key='"other"'))
    engine = EventEngine(ps.event_rules)
    alerts = [a for e in AuditdReader([log]).events() for a in engine.process(e)]
    assert [a["message"] for a in alerts] == ["/etc/passwd by root (login alice); audit key identity"]


def test_open_paths_are_resolved_against_cwd_and_flags_decoded(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        "type=SYSCALL msg=audit(1700000000.100:10): arch=c000003e syscall=257 success=no exit=-13 a0=ffffff9c a1=1 a2=241 a3=1b6 "
        'items=2 ppid=1 pid=5 auid=4294967295 uid=65534 gid=65534 euid=65534 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="sh" exe="/usr/bin/dash" key=(null)\n'
        'type=CWD msg=audit(1700000000.100:10): cwd="/etc/ssh"\n'
        'type=PATH msg=audit(1700000000.100:10): item=0 name="/etc/ssh" inode=1 nametype=PARENT\n'
        'type=PATH msg=audit(1700000000.100:10): item=1 name="../shadow" nametype=CREATE\n',
    )
    (e,), _ = events_of(log)
    assert e["type"] == "write"
    assert e["file"] == {"path": "/etc/shadow", "flags": ["O_WRONLY", "O_CREAT", "O_TRUNC"], "mode": 0o666}
    assert e["outcome"] == {"result": "failure", "errno": 13}
    assert "auid" not in e["proc"] and "session" not in e["proc"] and "tty" not in e["proc"]
    assert e["user"] == {"uid": 65534}
    assert "login" not in e


def test_a_mount_names_its_mount_point_and_a_bind_mounts_source_as_auditd_writes_them(tmp_path: Path) -> None:
    # What auditd 3.x wrote for `mount --bind SRC DST` and then `mount -t tmpfs none DST` (a
    # private auditd, `-a always,exit -F arch=b64 -S mount`): the kernel looks the mount point
    # up first (item 0) and a source that is a path second (item 1). The live monitor names
    # the mount point too; reading item 1 as the file named the bind source, and a tmpfs
    # mount nothing.
    log = write(
        tmp_path,
        "type=SYSCALL msg=audit(1796384718.610:48535): arch=c000003e syscall=165 success=yes exit=0 a0=55e3e85ed340 "
        "a1=55e3e85ed370 a2=55e3e85ed300 a3=1000 items=2 ppid=26614 pid=26615 auid=4294967295 uid=0 gid=0 euid=0 "
        'suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="mount" exe="/usr/bin/mount" key="sp"\n'
        'type=PATH msg=audit(1796384718.610:48535): item=0 name="/tmp/mnt-probe/dst" inode=2146354 dev=fe:00 '
        "mode=040755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0\n"
        'type=PATH msg=audit(1796384718.610:48535): item=1 name="/tmp/mnt-probe/src" inode=2146340 dev=fe:00 '
        "mode=040755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0\n"
        "type=SYSCALL msg=audit(1796384718.614:48536): arch=c000003e syscall=165 success=yes exit=0 a0=56140675a300 "
        "a1=56140675a320 a2=56140675a2e0 a3=0 items=1 ppid=26614 pid=26616 auid=4294967295 uid=0 gid=0 euid=0 "
        'suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=(none) ses=4294967295 comm="mount" exe="/usr/bin/mount" key="sp"\n'
        'type=PATH msg=audit(1796384718.614:48536): item=0 name="/tmp/mnt-probe/dst" inode=2146340 dev=fe:00 '
        "mode=040755 ouid=0 ogid=0 rdev=00:00 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0\n",
    )
    bind, tmpfs = events_of(log)[0]
    assert bind["type"] == tmpfs["type"] == "mount"
    assert bind["file"] == {"path": "/tmp/mnt-probe/dst"}
    assert bind["mount"] == {"flags": 0x1000, "source": "/tmp/mnt-probe/src"}  # MS_BIND
    assert tmpfs["file"] == {"path": "/tmp/mnt-probe/dst"}
    assert tmpfs["mount"] == {"flags": 0}
    assert event_errors(bind) == event_errors(tmpfs) == []


def test_setxattr_names_the_file_but_audit_does_not_carry_the_attribute(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        "type=SYSCALL msg=audit(1700000000.100:11): arch=c000003e syscall=188 success=yes exit=0 a0=55d2 a1=7f12 a2=55d3 a3=18 "
        'items=1 ppid=1 pid=5 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=2 comm="setcap" exe="/usr/sbin/setcap" key="perm_mod"\n'
        'type=PATH msg=audit(1700000000.100:11): item=0 name="/tmp/x" inode=1 nametype=NORMAL cap_fp=0 cap_fi=0 cap_fe=0 cap_fver=0 cap_frootid=0\n',
    )
    (e,), _ = events_of(log)
    assert e["type"] == "setxattr"
    assert e["file"] == {"path": "/tmp/x"}
    assert event_errors(e) == []


def test_sockaddr_inet_inet6_and_unix(tmp_path: Path) -> None:
    sc = (
        "type=SYSCALL msg=audit(1700000000.{ms}:{n}): arch=c000003e syscall={nr} success=yes exit=0 a0=3 a1=0 a2=10 a3=0 items=0 "
        'ppid=1 pid=9 auid=1000 uid=1000 gid=1000 euid=1000 suid=1000 fsuid=1000 egid=1000 sgid=1000 fsgid=1000 tty=pts0 ses=2 comm="c" exe="/usr/bin/c" key=(null)\n'
        "type=SOCKADDR msg=audit(1700000000.{ms}:{n}): saddr={sa}\n"
    )
    log = write(
        tmp_path,
        sc.format(ms="100", n=1, nr=42, sa="02000050A9FEA9FE0000000000000000")
        + sc.format(ms="200", n=2, nr=43, sa="0A0000160000000020010DB800000000000000000000000100000000")
        + sc.format(ms="300", n=3, nr=42, sa="01002F7661722F72756E2F6E7363642F736F636B657400"),
    )
    evs, _ = events_of(log)
    assert [e["type"] for e in evs] == ["connect", "accept", "connect"]
    assert evs[0]["net"] == {"family": "inet", "dst_ip": "169.254.169.254", "dst_port": 80}
    assert evs[1]["net"] == {"family": "inet6", "src_ip": "2001:db8::1", "src_port": 22}
    assert evs[2]["net"] == {"family": "unix"}


def test_failed_authentications_are_attributed_like_aureport(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        "type=USER_AUTH msg=audit(1700000001.100:11): pid=1 uid=0 auid=4294967295 ses=4294967295 msg='op=PAM:authentication grantors=? acct=\"bob\" exe=\"/usr/sbin/sshd\" hostname=10.0.0.9 addr=10.0.0.9 terminal=ssh res=failed'\n"
        "type=USER_AUTH msg=audit(1700000001.200:12): pid=1 uid=0 auid=4294967295 ses=4294967295 msg='op=PAM:authentication grantors=? acct=626F62 exe=\"/usr/sbin/sshd\" hostname=? addr=10.0.0.9 terminal=ssh res=failed'\n"
        "type=USER_AUTH msg=audit(1700000001.300:13): pid=1 uid=1000 auid=1000 ses=4 msg='op=PAM:authentication grantors=? exe=\"/usr/bin/sudo\" hostname=? addr=? terminal=pts/0 res=failed'\n"
        "type=USER_AUTH msg=audit(1700000001.400:14): user pid=1 uid=0 auid=4294967295 msg='PAM: authentication acct=root : exe=\"/bin/su\" (hostname=?, addr=?, terminal=pts/1 res=success)'\n",
    )
    evs, r = events_of(log, aureport=True)
    got = [(e["auth"]["user"], e["auth"]["result"], e["auth"].get("rhost"), e["auth"]["service"]) for e in evs]
    assert got == [
        ("bob", "failure", "10.0.0.9", "sshd"),
        ("bob", "failure", "10.0.0.9", "sshd"),
        ("1000", "failure", None, "sudo"),
        ("root", "success", None, "su"),
    ]
    assert evs[0]["auth"]["method"] == "PAM:authentication"
    assert evs[2]["user"] == {"uid": 1000} and evs[2]["login"] == {"uid": 1000, "session": 4}
    # aureport's meanings: authentications are the successful ones.
    summary = r.summary.aureport.summary()
    assert (summary["authentications"], summary["failed_authentications"]) == (1, 3)


def test_accounts_config_and_unknown_records(tmp_path: Path) -> None:
    log = write(
        tmp_path,
        "type=ADD_USER msg=audit(1795239814.745:829): pid=1 uid=0 auid=4242 ses=3 msg='op=adding user id=1001 exe=\"/usr/sbin/useradd\" hostname=? addr=? terminal=? res=success'\x1dUID=\"root\" AUID=\"unknown(4242)\" ID=\"unknown(1001)\"\n"
        "type=USER_MGMT msg=audit(1795239815.000:830): pid=2 uid=0 auid=4242 ses=3 msg='op=add-user-to-group grp=\"sudo\" acct=\"mallory\" exe=\"/usr/sbin/usermod\" hostname=? addr=? terminal=pts/0 res=success'\n"
        "type=CONFIG_CHANGE msg=audit(1481077231.371:478): auid=1000 ses=3 op=\"add_rule\" key=\"identity\" list=4 res=1\n"
        "type=SOMETHING_NEW msg=audit(1481077232.000:479): foo=bar\n"
        "type=UNKNOWN[1329] msg=?\n"
        "this line is garbled\n",
    )
    evs, r = events_of(log)
    assert [e["type"] for e in evs] == ["account_change", "account_change", "config_change"]
    assert evs[0]["account"] == {"name": "1001", "op": "adding user"}
    assert evs[0]["outcome"] == {"result": "success"}
    assert evs[0]["login"] == {"uid": 4242, "session": 3}  # the log could not name 4242
    assert evs[1]["account"] == {"name": "mallory", "group": "sudo", "op": "add-user-to-group"}
    assert evs[2]["config"] == {"op": "add_rule", "key": "identity"}
    assert evs[2]["outcome"] == {"result": "success"}
    assert r.summary.records["SOMETHING_NEW"] == 1
    assert r.summary.unmapped["SOMETHING_NEW"] == 1
    assert r.summary.bad.count == 2
    assert [w.rsplit(":", 2)[0] for w in r.summary.bad.where] == [f"{log}:5", f"{log}:6"]


def test_unreadable_log_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="cannot read audit log"):
        list(AuditdReader([tmp_path / "missing.log"]).events())


def test_every_event_of_the_real_logs_is_schema_valid() -> None:
    logs = sorted(shared("go-libaudit").glob("*.log")) + sorted(shared("audit-userspace").glob("*.log")) + [FIXTURE]
    n = 0
    for log in logs:
        for e in AuditdReader([log]).events():
            assert event_errors(e) == [], (log.name, e)
            n += 1
    assert n > 150


def test_events_agree_with_go_libaudit_golden_parse() -> None:
    """Values go-libaudit's own parse (.golden) gives for the same records."""
    log = shared("go-libaudit/audit-rhel7.log")
    golden = {g["sequence"]: g for g in json.loads(shared("go-libaudit/audit-rhel7.log.golden").read_text()) if g}
    by_serial: dict[int, list[dict]] = {}
    for e in AuditdReader([log]).events():
        by_serial.setdefault(int(e["source"]["records"][0].split(":")[1]), []).append(e)
    (auth,) = by_serial[408]
    assert auth["auth"]["user"] == golden[408]["data"]["acct"]
    assert auth["auth"]["result"] == golden[408]["data"]["result"] == "success"
    assert auth["auth"]["rhost"] == golden[408]["data"]["addr"]
    (cfg,) = by_serial[478]
    assert cfg["config"]["op"] == golden[478]["data"]["op"]
    (conn,) = by_serial[512226]
    assert conn["outcome"] == {"result": "failure", "errno": 115}
    exes = {e["proc"].get("exe") for es in by_serial.values() for e in es if "proc" in e}
    assert "/usr/bin/python2.7;58d1ccfb (deleted)" in exes  # hex-encoded exe=


def test_workload_fixture_reads_completely() -> None:
    evs, r = events_of(FIXTURE)
    assert r.summary.bad.count == 0
    assert sum(r.summary.records.values()) == FIXTURE.read_bytes().count(b"\n")
    fails = [e for e in evs if e["type"] == "auth" and e["auth"]["result"] == "failure"]
    assert len(fails) == 8
    assert {e["auth"]["user"] for e in evs if e["type"] == "auth"} == {"root"}
    assert all(e.get("host") == "testhost" for e in evs)
    denied = [e for e in evs if e.get("outcome", {}).get("errno") == 13]
    assert sorted(e["file"]["path"] for e in denied) == ["/etc/gshadow", "/etc/shadow"]
    assert {e["proc"]["uid"] for e in denied} == {65534}
    assert {e["user"]["name"] for e in denied} == {"nobody"}


def test_one_record_at_a_time_for_sources_that_make_records() -> None:
    """parse_record/build_event: what a source that writes audit records itself (the live
    monitor's audit messages) uses to get the very Event the reader would give."""
    from secpolicy.events.auditd import build_event, parse_record

    rec = parse_record(
        "node=h type=ADD_USER msg=audit(1700000000.5:7): pid=1 uid=0 auid=1000 ses=2 "
        "msg='op=adding user id=1001 exe=\"/usr/sbin/useradd\" hostname=? addr=? terminal=? res=success'\x1dID=\"bob\"\n"
    )
    assert rec is not None and (rec.type, rec.node, rec.sec, rec.milli, rec.serial) == ("ADD_USER", "h", 1700000000, 5, 7)
    assert rec.id == "h/1700000000.005:7" and rec.interp == 'ID="bob"'
    ev = build_event([rec])
    assert ev is not None
    assert (ev["type"], ev["account"], ev["user"], ev["login"]) == (
        "account_change", {"name": "bob", "op": "adding user"}, {"uid": 0}, {"uid": 1000, "session": 2})
    assert event_errors(ev) == []
    for bad in ("garbage", "type=X msg=audit(99999999999999.000:1): a=b", "type=X msg=audit(1.1234567:1): a=b"):
        assert parse_record(bad) is None


def test_the_line_limit_is_in_bytes_and_each_long_or_undecodable_line_is_reported_once(tmp_path: Path) -> None:
    from secpolicy.events.auditd import MAX_LINE_BYTES

    def syscall(n: int) -> bytes:
        return (f"type=SYSCALL msg=audit(1700000000.{n:03d}:{n}): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 "
                f'a2=3 a3=0 items=0 ppid=1 pid=5 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 '
                f'tty=pts0 ses=4 comm="id" exe="/usr/bin/id" key=(null)\n').encode()

    def proctitle(n: int, tail: bytes) -> bytes:
        return f"type=PROCTITLE msg=audit(1700000000.{n:03d}:{n}): proctitle=6964".encode() + tail + b"\n"

    def padded(n: int, size: int) -> bytes:  # a PROCTITLE record of exactly `size` bytes before its newline
        line = proctitle(n, b"")
        return line[:-1] + b"0" * (size - len(line) + 1) + b"\n"

    log = tmp_path / "audit.log"
    log.write_bytes(
        syscall(1) + proctitle(1, b"\xff" * 400_000)  # 2: 400 KB of invalid UTF-8, 1.6 M characters decoded
        + syscall(2) + padded(2, MAX_LINE_BYTES)  # 4: exactly as long as a line may be
        + syscall(3) + padded(3, MAX_LINE_BYTES + 1)  # 6: a byte too long, ending in the middle of a read
        + syscall(4)
    )
    events, r = events_of(log)
    assert [e["source"]["records"][0] for e in events] == [f"1700000000.00{n}:{n}" for n in (1, 2, 3, 4)]
    assert r.summary.bad.count == 2
    assert r.summary.bad.where == [f"{log}:2: invalid UTF-8 at byte 59 (shown as \\xNN): read",
                                   f"{log}:6: line longer than {MAX_LINE_BYTES} bytes: skipped"]


def test_a_last_line_cut_short_is_reported_once(tmp_path: Path) -> None:
    record = ("type=SYSCALL msg=audit(1700000000.100:10): arch=c000003e syscall=59 success=yes exit=0 a0=1 a1=2 a2=3 "
              'a3=0 items=0 ppid=1 pid=5 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 '
              'ses=4 comm="id" exe="/usr/bin/id" key=(null)')
    for cut, want in ((20, "no newline at end of file, and not an audit record (no type=... msg=audit(...) header): skipped"),
                      (120, "no newline at end of file (the record may be cut short): read")):
        log = write(tmp_path, record.replace(":10)", ":9)") + "\n" + record[:cut])
        events, r = events_of(log)
        assert len(events) == 1 + (cut == 120)
        assert r.summary.bad.where == [f"{log}:2: {want}"] and r.summary.bad.count == 1, cut


def test_link_and_symlink_are_writes_naming_the_new_name(tmp_path: Path) -> None:
    # `ln -s /tmp /etc/cron.d/x` (symlinkat) and `ln /tmp/evil /usr/bin/x` (linkat): a new name in
    # a watched directory, as the live monitor reports it (the side-by-side test runs auditd).
    head = ("type=SYSCALL msg=audit(1700000000.{ms}:{n}): arch=c000003e syscall={nr} success=yes exit=0 {args} "
            'items={items} ppid=1 pid=9 auid=1000 uid=0 gid=0 euid=0 suid=0 fsuid=0 egid=0 sgid=0 fsgid=0 tty=pts0 ses=2 '
            'comm="ln" exe="/usr/bin/ln" key=(null)\n'
            'type=CWD msg=audit(1700000000.{ms}:{n}): cwd="/root"\n')
    path = 'type=PATH msg=audit(1700000000.{ms}:{n}): item={i} name="{name}" nametype={nt}\n'
    log = write(
        tmp_path,
        head.format(ms="100", n=1, nr=266, args="a0=55d0 a1=ffffff9c a2=55d1 a3=0", items=2)
        + path.format(ms="100", n=1, i=0, name="/etc/cron.d/", nt="PARENT")
        + path.format(ms="100", n=1, i=1, name="/etc/cron.d/x", nt="CREATE")
        + head.format(ms="200", n=2, nr=265, args="a0=ffffff9c a1=55d0 a2=ffffff9c a3=55d1", items=3)
        + path.format(ms="200", n=2, i=0, name="/tmp/evil", nt="NORMAL")
        + path.format(ms="200", n=2, i=1, name="/usr/bin/", nt="PARENT")
        + path.format(ms="200", n=2, i=2, name="/usr/bin/x", nt="CREATE"),
    )
    evs, _ = events_of(log)
    assert [(e["type"], e["file"]) for e in evs] == [
        ("write", {"path": "/etc/cron.d/x", "flags": ["O_WRONLY", "O_CREAT"]}),
        ("write", {"path": "/usr/bin/x", "flags": ["O_WRONLY", "O_CREAT"]}),
    ]
