"""scan --target against a compromised host: the test's sshd runs a forced command that answers
each collection round as the attacker chooses (the honest answer of this machine's /bin/sh,
rewritten), and the scan must say ERROR or fail, never take a detectable lie for the host."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from sshd_server import SSHD, SshServer, our_ssh_processes, start_sshd, stop_sshd

from secpolicy.errors import RuntimeFailure
from secpolicy.remote import RemoteLimits, RemoteScan
from secpolicy.remote.protocol import Request
from secpolicy.remote.snapshot import SnapshotLimits

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0 or SSHD is None,
                       reason="needs root and OpenSSH's sshd (openssh-server): the test's sshd serves this machine"),
    pytest.mark.xdist_group("remote-probe"),
]
SECPOLICY = [sys.executable, "-m", "secpolicy"]

# The forced command: reads the script secpolicy sends, runs it with /bin/sh as an honest host
# would, and hands the output to the scenario (DIR/scenario.py: hello(out) and round(n, out)),
# which returns the bytes to send (or an iterable of them, to trickle or stall).
FAKE_REMOTE = r'''
import os, runpy, subprocess, sys, tarfile, io
d = sys.argv[1]
sys.stderr = open(os.path.join(d, "fake.log"), "a")  # what went wrong here, for the test's reader
buf = b""
while True:
    chunk = os.read(0, 65536)
    if not chunk:
        break
    buf += chunk
    if b"SECPOLICY-HELLO" in buf and buf.endswith(b"exec cat >/dev/null\n"):
        break
MAGIC = b"SECPOLICY-COLLECT-1\0"

def parse(out):
    """(records before D, each a list of fields with C's bytes last; the tar stream)"""
    i = out.index(MAGIC) + len(MAGIC)
    recs = []
    def field():
        nonlocal i
        j = out.index(b"\0", i)
        f = out[i:j]
        i = j + 1
        return f
    while True:
        tag = field()
        if tag == b"D":
            return recs, out[i:]
        n = {b"M": 9, b"A": 1, b"L": 1, b"T": 1, b"X": 2, b"C": 2}[tag]
        r = [tag] + [field() for _ in range(n)]
        if tag == b"C":
            size = int(r[2])
            r.append(out[i:i + size])
            i += size
        recs.append(r)

def unparse(recs, tar):
    out = MAGIC
    for r in recs:
        if r[0] == b"C":
            out += b"\0".join(r[:3]) + b"\0" + r[3]
        else:
            out += b"".join(f + b"\0" for f in r)
    return out + b"D\0" + tar

def members(tar):
    """(TarInfo, bytes) of a tar stream"""
    out = []
    if not tar:
        return out
    with tarfile.open(fileobj=io.BytesIO(tar), mode="r|") as t:
        for m in t:
            out.append((m, t.extractfile(m).read() if m.isreg() else b""))
    return out

def make_tar(items, end=True):
    if not items:
        return b""  # a round without files sends no tar stream
    b = io.BytesIO()
    t = tarfile.open(fileobj=b, mode="w", format=tarfile.GNU_FORMAT)
    for m, data in items:
        m.size = len(data)
        t.addfile(m, io.BytesIO(data))
    if end:
        t.close()
        return b.getvalue()
    return b.getvalue()  # no end-of-archive blocks

scenario = runpy.run_path(os.path.join(d, "scenario.py"), init_globals={
    "parse": parse, "unparse": unparse, "members": members, "make_tar": make_tar, "MAGIC": MAGIC,
    "tarfile": tarfile, "io": io})
out = sys.stdout.buffer
if b"SECPOLICY-HELLO" in buf:
    honest = subprocess.run(["/bin/sh", "-s"], input=buf.replace(b"exec cat >/dev/null\n", b""),
                            capture_output=True).stdout
    out.write(scenario.get("hello", lambda o: o)(honest))
    out.flush()
    while os.read(0, 65536):
        pass
    sys.exit(0)
counter = os.path.join(d, "rounds")
n = int(open(counter).read()) + 1 if os.path.exists(counter) else 1
open(counter, "w").write(str(n))
honest = subprocess.run(["/bin/sh", "-s"], input=buf, capture_output=True).stdout
answer = scenario["round"](n, honest)
try:
    for chunk in [answer] if isinstance(answer, bytes) else answer:
        out.write(chunk)
        out.flush()
except BrokenPipeError:
    pass
'''


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    d = tmp_path_factory.mktemp("hostile")
    (d / "fake_remote.py").write_text(FAKE_REMOTE)
    s = start_sshd(d / "sshd", f"ForceCommand exec {sys.executable} {d / 'fake_remote.py'} {d}\n")
    yield s, d
    stop_sshd(s)


def scenario(hostile, code: str) -> SshServer:
    s, d = hostile
    (d / "scenario.py").write_text(code)
    (d / "rounds").unlink(missing_ok=True)
    return s


def target(s: SshServer) -> str:
    return f"ssh://{s.user}@127.0.0.1:{s.port}"


def ssh_opts(s: SshServer) -> list[str]:
    return [f"UserKnownHostsFile={s.known_hosts}", f"IdentityFile={s.client_key}"]


def cli_scan(s: SshServer, policy: Path, tmp: Path) -> tuple[subprocess.CompletedProcess[str], dict[str, str]]:
    (tmp / "t").mkdir(exist_ok=True)
    opts = [a for o in ssh_opts(s) for a in ("--ssh-option", o)]
    out = tmp / "r.json"
    p = subprocess.run([*SECPOLICY, "scan", "--target", target(s), *opts, "--policy", str(policy), "--format", "json",
                        "-o", str(out)], capture_output=True, text=True, timeout=300, check=False,
                       env={**os.environ, "TMPDIR": str(tmp / "t")})
    assert "Traceback" not in p.stderr and "internal error" not in p.stderr, p.stderr
    statuses = {}
    if out.exists():
        statuses = {r["rule_id"]: f"{r['status']}: {r.get('reason')}" for r in json.loads(out.read_text())["results"]}
    assert list((tmp / "t").iterdir()) == []  # the scratch copy is gone
    return p, statuses


def fetch(s: SshServer, requests: set[Request], limits: RemoteLimits | None = None) -> RemoteScan:
    with RemoteScan(target(s), ssh_options=ssh_opts(s), limits=limits) as rs:
        rs.fetch(requests)
        return rs


def conf_policy(tmp: Path) -> tuple[Path, Path]:
    """A file that says `secure = no` (12 bytes) and a rule that passes only if it says `secure = yes`."""
    d = tmp / "data"
    d.mkdir()
    conf = d / "conf"
    conf.write_text("secure = no\n")
    policy = tmp / "p.yaml"
    policy.write_text(f"""\
metadata: {{id: probe, title: probe, version: "1"}}
rules:
  - {{id: conf, title: the host is secure, severity: low, check: 'file("{conf}").content contains "secure = yes"'}}
""")
    return conf, policy


# Each rewrites the tar stream of the round that copies the file: the host's answer is a lie a
# faithful copy cannot hold (its own listing says otherwise), so the rule is an ERROR, not a PASS.
LIES = {
    "a size other than its listing's": """
def round(n, out):
    recs, tar = parse(out)
    items = [(m, b"secure = yes\\n" if m.name.endswith("/data/conf") else d) for m, d in members(tar)]
    return unparse(recs, make_tar(items))
""",
    "the same file twice, the second different": """
def round(n, out):
    recs, tar = parse(out)
    items = []
    for m, d in members(tar):
        items.append((m, d))
        if m.name.endswith("/data/conf"):
            m2 = tarfile.TarInfo(m.name)
            items.append((m2, b"secure = yes"))  # as long as the listed size: only the repeat tells
    return unparse(recs, make_tar(items))
""",
}


@pytest.mark.parametrize("lie", sorted(LIES))
def test_content_that_contradicts_the_hosts_own_listing_is_an_error_not_a_pass(hostile, tmp_path, lie):
    s = scenario(hostile, LIES[lie])
    _, policy = conf_policy(tmp_path)
    p, status = cli_scan(s, policy, tmp_path)
    assert p.returncode == 1, p.stderr
    assert status["conf"].startswith("error: ") and "the host lied" in status["conf"], status


def test_a_huge_long_name_header_is_refused_before_it_is_read(hostile, tmp_path):
    """A GNU long-name header of 32 MiB (tarfile reads one whole into memory; any 4 GiB would
    do) followed by a member that uses it: refused at its header, not read into memory."""
    s = scenario(hostile, """
def round(n, out):
    recs, tar = parse(out)
    size = 32 << 20
    h = tarfile.TarInfo("././@LongLink")
    h.type = tarfile.GNUTYPE_LONGNAME
    h.size = size
    m = tarfile.TarInfo("x")
    m.size = 0
    yield unparse(recs, h.tobuf(format=tarfile.GNU_FORMAT))
    for _ in range(size >> 20):
        yield b"a" * (1 << 20)
    yield m.tobuf(format=tarfile.GNU_FORMAT) + b"\\0" * 10240
""")
    with pytest.raises(RuntimeFailure, match=r"not a valid tar: a 33554432-byte long-name or pax header") as e:
        fetch(s, {Request.of("C", "/etc/hostname")})
    assert "Traceback" not in str(e.value)
    assert our_ssh_processes(s) == []


TAR_ENDS = {
    # cut at a member boundary: tarfile takes that for the end of the archive
    "cut short": ("""
def round(n, out):
    recs, tar = parse(out)
    return unparse(recs, make_tar(members(tar)[:1], end=False))
""", "ended without its end-of-archive blocks"),
    # a garbled header after the first member: tarfile takes that for the end too
    "garbled": ("""
def round(n, out):
    recs, tar = parse(out)
    return unparse(recs, make_tar(members(tar)[:1], end=False) + b"x" * 512 + make_tar(members(tar)[1:]))
""", "a malformed header"),
    # a sparse member: a few bytes of map, and the file is 256 MiB of zeros here
    "sparse": ("""
def sparse_member(name, realsize):
    m = tarfile.TarInfo(name)
    m.size = 512
    b = bytearray(m.tobuf(format=tarfile.GNU_FORMAT))
    b[156:157] = b"S"
    b[386:398] = b"%011o\\0" % (realsize - 512)  # one chunk: 512 bytes at the end
    b[398:410] = b"%011o\\0" % 512
    b[483:495] = b"%011o\\0" % realsize
    b[148:156] = b" " * 8
    b[148:156] = b"%06o\\0 " % sum(b)
    return bytes(b) + b"s" * 512

def round(n, out):
    recs, tar = parse(out)
    big = [r for r in recs if r[0] == b"M" and r[1] == b"f"][0]
    big[5] = b"%d" % (256 << 20)
    return unparse(recs, sparse_member(big[8].decode().lstrip("/"), 256 << 20) + b"\\0" * 10240)
""", "a sparse member"),
}


@pytest.mark.parametrize("how", sorted(TAR_ENDS))
def test_a_tar_stream_that_is_not_whole_is_a_failure_not_a_partial_copy(hostile, how, tmp_path):
    code, message = TAR_ENDS[how]
    s = scenario(hostile, code)
    d = tmp_path / "d"
    d.mkdir()
    for name in ("a", "b", "c"):
        (d / name).write_text(name * 10)
    with pytest.raises(RuntimeFailure, match=message):
        fetch(s, {Request.of("C", str(d / n)) for n in ("a", "b", "c")})
    assert our_ssh_processes(s) == []


@pytest.mark.parametrize("field, value", [
    (6, b"inf"), (6, b"nan"), (6, b"1e400"), (3, b"99999999999999999999"), (5, b"-1"), (2, b"9999"), (7, b"rw"),
])
def test_an_entry_find_could_not_have_printed_is_a_malformed_stream(hostile, field, value):
    s = scenario(hostile, f"""
def round(n, out):
    recs, tar = parse(out)
    for r in recs:
        if r[0] == b"M" and r[8] == b"/etc/hostname":
            r[{field}] = {value!r}
    return unparse(recs, tar)
""")
    with pytest.raises(RuntimeFailure, match="malformed entry"):
        fetch(s, {Request.of("C", "/etc/hostname")})


@pytest.mark.parametrize("record", [b"X\0/nowhere/%d\0" + b"w" * 1000 + b"\0", b"A\0/nowhere/%d\0"])
def test_endless_missing_or_unreadable_paths_stop_at_the_entry_limit(hostile, record):
    s = scenario(hostile, f"""
def round(n, out):
    recs, tar = parse(out)
    head = unparse(recs, b"")[:-2]  # without D
    return head + b"".join({record!r} % i for i in range(5000)) + b"D\\0" + tar
""")
    limits = RemoteLimits(snapshot=SnapshotLimits(max_entries=1000))
    with pytest.raises(RuntimeFailure, match="more than 1000 missing or unreadable paths"):
        fetch(s, {Request.of("C", "/etc/hostname")}, limits)


def test_endless_tar_members_stop_at_the_entry_limit(hostile):
    s = scenario(hostile, """
def round(n, out):
    recs, tar = parse(out)
    m = tarfile.TarInfo("nowhere")
    yield unparse(recs, b"")
    for _ in range(20):
        yield m.tobuf(format=tarfile.GNU_FORMAT) * 100
    yield b"\\0" * 10240
""")
    limits = RemoteLimits(snapshot=SnapshotLimits(max_entries=1000))
    with pytest.raises(RuntimeFailure, match="more than 1000 members"):
        fetch(s, {Request.of("C", "/etc/hostname")}, limits)


def test_a_remote_that_stalls_mid_round_is_stopped_with_a_clear_error(hostile):
    s = scenario(hostile, """
import os, time
def round(n, out):
    yield out[:len(out) // 2]
    parent = os.getppid()
    for _ in range(300):  # until the session is gone: nothing left running after the test
        if os.getppid() != parent:
            return
        time.sleep(0.2)
""")
    t0 = time.monotonic()
    with pytest.raises(RuntimeFailure, match="took more than 3 s"):
        fetch(s, {Request.of("T", "/etc/ssh")}, RemoteLimits(round_timeout=3))
    assert time.monotonic() - t0 < 30
    assert our_ssh_processes(s) == []


@pytest.mark.parametrize("line", [b"uid=root", b"uid=0x0", b"uid=99999999999999999999"])
def test_a_malformed_answer_to_the_connection_check_is_refused(hostile, tmp_path, line):
    key = line.split(b"=")[0]
    s = scenario(hostile, f"""
def hello(out):
    lines = [l for l in out.split(b"\\n") if not l.startswith({key + b"="!r})]
    lines.insert(1, {line!r})
    return b"\\n".join(lines)
def round(n, out):
    return out
""")
    _, policy = conf_policy(tmp_path)
    p, _ = cli_scan(s, policy, tmp_path)
    assert p.returncode == 3 and "answer to the connection check is malformed" in p.stderr, p.stderr
    assert our_ssh_processes(s) == []


UNPRIVILEGED = 'ForceCommand exec setpriv --reuid=65534 --regid=65534 --clear-groups /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n'


def test_as_a_user_who_cannot_search_a_directory_what_is_below_it_is_an_error_not_absent(tmp_path):
    """A scan as another user than root: a file below a directory that user cannot search is
    neither there nor absent (EACCES on the host, as a local scan says), so a rule on it is an
    ERROR, never a PASS of `not exists`; a tree() over it likewise, without failing the scan."""
    base = Path(tempfile.mkdtemp(dir="/tmp"))  # one the unprivileged user can reach (0755 below /tmp)
    os.chmod(base, 0o755)
    (base / "secret" / "sub").mkdir(parents=True)
    (base / "secret" / "file").write_text("x")
    os.chmod(base / "secret", 0o700)
    (base / "listed").mkdir()
    (base / "listed" / "closed").mkdir(mode=0o700)
    (base / "listed" / "closed" / "key").write_text("k")
    policy = tmp_path / "p.yaml"
    policy.write_text(f"""\
metadata: {{id: probe, title: probe, version: "1"}}
rules:
  - {{id: below, title: t, severity: low, check: 'not file("{base}/secret/file").exists'}}
  - {{id: deeper, title: t, severity: low, check: 'not file("{base}/secret/sub/x").exists'}}
  - {{id: walked, title: t, severity: low, check: 'len(tree("{base}/listed")) >= 0'}}
  - {{id: walked-below, title: t, severity: low, check: 'not file("{base}/listed/closed/key").exists'}}
  - {{id: closed-tree, title: t, severity: low, check: 'len(tree("{base}/secret")) == 0'}}
  - {{id: visible, title: t, severity: low, check: 'file("{base}/secret").exists and not file("{base}/nope").exists'}}
""")
    s = start_sshd(tmp_path / "sshd", UNPRIVILEGED)
    try:
        p, status = cli_scan(s, policy, tmp_path)
    finally:
        stop_sshd(s)
        shutil.rmtree(base)
    assert p.returncode == 1, p.stderr
    assert status["visible"].startswith("pass"), status
    for rid in ("below", "deeper", "walked", "walked-below", "closed-tree"):
        assert status[rid].startswith("error: ") and "ermission denied" in status[rid], (rid, status)


def test_a_forged_host_key_line_in_the_ssh_log_is_not_reported_as_the_verified_key(tmp_path):
    """A hostile server can have OpenSSH log text of its own (an SSH2_MSG_DEBUG message, newlines
    kept, after the key exchange): here an ssh that appends such a line once OpenSSH logged the
    real key. The results must not name the forged key as the one verified."""
    real_ssh = subprocess.run(["sh", "-c", "command -v ssh"], capture_output=True, text=True, check=True).stdout.strip()
    forged = "SHA256:" + "A" * 43
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "ssh").write_text(f"""#!/bin/sh
log=
prev=
for a in "$@"; do [ "$prev" = -E ] && log=$a; prev=$a; done
[ -n "$log" ] || exec {real_ssh} "$@"
exec 3<&0
{real_ssh} "$@" <&3 3<&- &
pid=$!
for _ in $(seq 100); do grep -q '^debug1: Server host key' "$log" 2>/dev/null && break; sleep 0.05; done
printf 'debug1: Remote: hi\\ndebug1: Server host key: ssh-ed25519 {forged}\\n' >> "$log"
wait $pid
""")
    (bin_dir / "ssh").chmod(0o755)
    # the login waits a moment, as a slow host would: the forged line is logged before the hello
    s = start_sshd(tmp_path / "sshd", 'ForceCommand sleep 1; exec /bin/sh -c "$SSH_ORIGINAL_COMMAND"\n')
    try:
        os.environ["PATH"], old = f"{bin_dir}:{os.environ['PATH']}", os.environ["PATH"]
        try:
            with RemoteScan(target(s), ssh_options=ssh_opts(s)) as rs:
                assert rs.info is not None
                key = rs.info.host_key_fingerprint
        finally:
            os.environ["PATH"] = old
    finally:
        stop_sshd(s)
    assert key != forged
