"""One OpenSSH connection to a scan target, shared by every collection round through a control
socket in a private directory; host keys checked against the user's known_hosts, never accepted."""

from __future__ import annotations

import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import IO, Any
from urllib.parse import urlsplit

from secpolicy.errors import InputError, RuntimeFailure

__all__ = ["Channel", "Connection", "RemoteInfo", "Target", "check_ssh_options", "parse_target"]

# Set first on every command line, so neither ssh_config nor --ssh-option can change them
# (OpenSSH keeps the first value it reads): no prompts, no unverified host key, nothing of
# ours forwarded to a host that may be hostile, known_hosts left as it is.
_FORCED = {
    "BatchMode": "yes",
    "StrictHostKeyChecking": "yes",
    "UpdateHostKeys": "no",
    "ForwardAgent": "no",
    "ForwardX11": "no",
    "ClearAllForwardings": "yes",
    "PermitLocalCommand": "no",
    "RemoteCommand": "none",
    "RequestTTY": "no",
    "ControlPersist": "no",
    "VerifyHostKeyDNS": "no",  # a key is trusted from known_hosts alone, never from SSHFP records
}
# After the user's options: theirs win.
_DEFAULTS = {"ConnectTimeout": "30", "ServerAliveInterval": "15", "ServerAliveCountMax": "4"}
_REFUSED = {k.lower() for k in (*_FORCED, "ControlMaster", "ControlPath", "LocalCommand", "ForwardX11Trusted",
                                "LocalForward", "RemoteForward", "DynamicForward", "Tunnel", "StdinNull",
                                "ForkAfterAuthentication", "SessionType", "LogLevel",
                                # a file of options: it could set any of the above
                                "Include")}
_UNQUOTE = str.maketrans("", "", "\"'\\")
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9._+-]*\Z")
_HELLO, _END = b"SECPOLICY-HELLO\0", b"SECPOLICY-END\0"
_STDERR_KEEP = 64 * 1024


@dataclass(frozen=True)
class Target:
    """`ssh://[user@]host[:port]` as given; user and port default to the ssh configuration's."""

    url: str
    host: str
    user: str | None = None
    port: int | None = None


def parse_target(url: str) -> Target:
    if not url.startswith("ssh://"):
        raise InputError(f"--target {url!r}: expected ssh://[user@]host[:port]")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as e:
        raise InputError(f"--target {url!r}: {e}") from None
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.password is not None:
        raise InputError(f"--target {url!r}: expected ssh://[user@]host[:port], nothing after the port")
    host = parts.hostname or ""
    v6 = "[" in parts.netloc
    if not host or not (_NAME.match(host) or (v6 and re.fullmatch(r"[0-9A-Fa-f:.%a-z]+", host))):
        raise InputError(f"--target {url!r}: not a host name or address")
    user = parts.username
    if user is not None and not _NAME.match(user):
        raise InputError(f"--target {url!r}: not a user name")
    return Target(url, host, user, port)


def check_ssh_options(options: Sequence[str]) -> tuple[str, ...]:
    """--ssh-option values (`Key=Value`), refusing those that would weaken host key checking,
    prompt, forward anything, or take over the connection secpolicy manages."""
    for opt in options:
        # OpenSSH splits an option line as a shell would: `"Control"Master=yes` is ControlMaster.
        key = re.split(r"[=\s]", opt.strip(), maxsplit=1)[0].translate(_UNQUOTE)
        if not key or "=" not in opt and " " not in opt.strip():
            raise InputError(f"--ssh-option {opt!r}: expected Key=Value (an ssh_config option)")
        if key.lower() in _REFUSED:
            raise InputError(f"--ssh-option {opt!r}: secpolicy sets {key} itself (host keys are always checked "
                             "strictly, nothing is forwarded, the connection is its own)")
    return tuple(options)


def _opts(table: dict[str, str]) -> list[str]:
    return [arg for k, v in table.items() for arg in ("-o", f"{k}={v}")]


@dataclass(frozen=True)
class RemoteInfo:
    """What the connection learned: who and what answered, with the host key OpenSSH verified."""

    user: str
    hostname: str
    port: int
    host_key_type: str | None
    host_key_fingerprint: str | None
    uid: int
    arch: str
    python: str | None

    @property
    def label(self) -> str:
        host = f"[{self.hostname}]" if ":" in self.hostname else self.hostname
        return f"{self.user}@{host}:{self.port}"


def _short_tmp() -> str:
    # A control socket's path must fit a sockaddr_un (108 bytes).
    tmp = tempfile.gettempdir()
    return tmp if len(tmp) < 60 else "/tmp"


class Channel:
    """The output of one remote command (a session over the shared connection), counted and
    bounded: more than `budget` bytes, or more than `timeout` seconds, ends it."""

    def __init__(self, proc: subprocess.Popen[bytes], budget: int, timeout: float) -> None:
        self.proc = proc
        self.bytes = 0
        self.budget = budget
        self.timeout = timeout
        self.deadline = time.monotonic() + timeout
        self.timed_out = False
        assert proc.stdout is not None and proc.stderr is not None
        self._out: IO[bytes] = proc.stdout
        self._err = bytearray()
        self._err_thread = threading.Thread(target=self._drain, args=(proc.stderr,), daemon=True)
        self._err_thread.start()

    def _drain(self, stream: IO[bytes]) -> None:
        for chunk in iter(lambda: os.read(stream.fileno(), 65536), b""):
            if len(self._err) < _STDERR_KEEP:
                self._err += chunk[: _STDERR_KEEP - len(self._err)]

    def read1(self, n: int = 65536) -> bytes:
        fd = self._out.fileno()
        left = self.deadline - time.monotonic()
        if left <= 0 or not select.select([fd], [], [], left)[0]:
            self.timed_out = True
            raise RuntimeFailure(f"a collection round took more than {self.timeout:g} s (limit): stopped")
        data = os.read(fd, n)
        self.bytes += len(data)
        if self.bytes > self.budget:
            raise RuntimeFailure(f"the remote host sent more than {self.budget} bytes (limit): collection stopped")
        return data

    def abort(self) -> None:
        """Stop reading. The ssh client handed its pipes to the master over the control socket,
        so killing it is not enough: closing our end makes the master close the session."""
        _kill(self.proc)
        self._out.close()
        self.finish()

    def finish(self) -> tuple[int, str]:
        """Wait for the command to end: (exit status, what ssh said on stderr)."""
        try:
            rc = self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            _kill(self.proc)
            rc = self.proc.wait()
        self._err_thread.join(timeout=1 if self._out.closed else 10)
        return rc, self._err.decode("utf-8", "replace").strip()


def _kill(proc: subprocess.Popen[bytes]) -> None:
    """Our ssh process and, as it leads a session of its own, anything it started."""
    if proc.poll() is None:
        try:
            if os.getpgid(proc.pid) == proc.pid:
                os.killpg(proc.pid, signal.SIGKILL)
            else:
                os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


class Connection:
    """The ControlMaster of one target. `open()` connects (or raises with OpenSSH's own reason),
    `channel(script)` runs a POSIX shell script over it, `close()` ends it and removes the
    private directory holding its socket and log."""

    def __init__(self, target: Target, options: Sequence[str] = (), *, connect_timeout: float = 60) -> None:
        self.target = target
        self.user_options = check_ssh_options(options)
        self.connect_timeout = connect_timeout
        ssh = shutil.which("ssh")
        if ssh is None:
            raise RuntimeFailure("the OpenSSH client (ssh) is not installed: a remote scan uses it")
        self.ssh = ssh
        self.dir = ""
        self.master: subprocess.Popen[bytes] | None = None
        self.info: RemoteInfo | None = None
        self.channels = 0
        self.cut_short = False  # a round was aborted: its session may stay open on the host

    # ---------------------------------------------------------------------------------------
    def _base(self) -> list[str]:
        return [self.ssh, *_opts(_FORCED), *[a for o in self.user_options for a in ("-o", o)], *_opts(_DEFAULTS)]

    def _where(self) -> list[str]:
        t = self.target
        return [*(["-p", str(t.port)] if t.port else []), *(["-l", t.user] if t.user else []), "--", t.host]

    def effective(self) -> dict[str, str]:
        """`ssh -G`: the user, host name and port the configuration gives this target."""
        try:
            out = subprocess.run([*self._base(), "-G", *self._where()], capture_output=True, timeout=30, check=False)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise RuntimeFailure(f"ssh -G {self.target.host}: {e}") from None
        if out.returncode != 0:
            raise InputError(f"--target {self.target.url}: ssh refused the configuration: "
                             f"{out.stderr.decode('utf-8', 'replace').strip()}")
        conf: dict[str, str] = {}
        for line in out.stdout.decode("utf-8", "replace").splitlines():
            key, _, value = line.partition(" ")
            conf.setdefault(key.lower(), value)
        return conf

    def open(self) -> RemoteInfo:
        conf = self.effective()
        self.dir = tempfile.mkdtemp(prefix="secpolicy-ssh-", dir=_short_tmp())  # 0700
        ctl, log = os.path.join(self.dir, "ctl"), os.path.join(self.dir, "ssh.log")
        argv = [*self._base(), "-M", "-S", ctl, "-E", log, "-v", *self._where(), "/bin/sh -s"]
        self.master = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                       stderr=subprocess.DEVNULL, start_new_session=True)
        assert self.master.stdin is not None
        try:
            self.master.stdin.write(_HELLO_SCRIPT)
            self.master.stdin.flush()  # kept open: the master lives until close() ends its input
        except BrokenPipeError:
            pass  # ssh already gave up (connection refused...): _hello reads its end and says why
        hello = self._hello(log)
        key_type, fingerprint = _host_key(log)
        lines = hello.decode("utf-8", "replace").split("\n")
        fields = dict(line.split("=", 1) for line in lines if "=" in line)
        if fields.get("find") != "ok" or "GNU tar" not in fields.get("tar", ""):
            raise RuntimeFailure(
                f"{self.target.url}: the remote host needs GNU find and GNU tar for a remote scan "
                f"(find -printf/-readable: {fields.get('find', '?')}; tar: {fields.get('tar') or 'not found'})")
        uid, arch, python = fields.get("uid", ""), fields.get("arch", ""), fields.get("python") or None
        if not (uid == "" or uid.isascii() and uid.isdigit() and int(uid) < 1 << 32) \
                or not re.fullmatch(r"[A-Za-z0-9_.-]{0,64}", arch) or python is not None and not python.startswith("/"):
            self.close()
            raise RuntimeFailure(f"{self.target.url}: the remote host's answer to the connection check is malformed "
                                 f"(uid {uid[:40]!r}, arch {arch[:40]!r}, python {(python or '')[:80]!r})")
        self.info = RemoteInfo(
            user=conf.get("user", self.target.user or ""), hostname=conf.get("hostname", self.target.host),
            port=int(conf.get("port", self.target.port or 22)), host_key_type=key_type,
            host_key_fingerprint=fingerprint, uid=int(uid or -1), arch=arch, python=python)
        return self.info

    def _hello(self, log: str) -> bytes:
        """The master's first output, which only comes once OpenSSH has connected, verified the
        host key and logged in; anything a login script printed before it is skipped."""
        assert self.master is not None and self.master.stdout is not None
        buf = b""
        fd = self.master.stdout.fileno()
        deadline = time.monotonic() + self.connect_timeout
        while _END not in buf[buf.find(_HELLO):] or _HELLO not in buf:
            left = deadline - time.monotonic()
            if left <= 0:
                self._fail(log, f"no answer within {self.connect_timeout:.0f} s")
            ready, _, _ = select.select([fd], [], [], left)
            if not ready:
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                self._fail(log, None)
            buf += chunk
            if len(buf) > 1 << 20:
                self._fail(log, "the login printed more than 1 MiB before the remote shell answered")
        start = buf.index(_HELLO) + len(_HELLO)
        return buf[start:buf.index(_END, start)]

    def _fail(self, log: str, why: str | None) -> None:
        said = _openssh_said(log)
        self.close()
        reason = "; ".join(x for x in (why, said) if x) or "ssh exited without a reason"
        raise RuntimeFailure(f"{self.target.url}: could not connect: {reason}")

    # ---------------------------------------------------------------------------------------
    def channel(self, script: bytes, *, budget: int, timeout: float) -> Channel:
        """Run `script` with /bin/sh on the target over the open connection."""
        if self.master is None or self.master.poll() is not None:
            raise RuntimeFailure(f"{self.target.url}: the connection was lost")
        ctl = os.path.join(self.dir, "ctl")
        # ProxyCommand=false: should the master be gone, this client must not connect again
        # on its own.
        argv = [*self._base(), "-S", ctl, "-o", "ControlMaster=no", "-o", "ProxyCommand=false",
                *self._where(), "/bin/sh -s"]
        proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                start_new_session=True)
        self.channels += 1
        assert proc.stdin is not None
        try:
            proc.stdin.write(script)
            proc.stdin.close()
        except BrokenPipeError:
            pass
        return Channel(proc, budget, timeout)

    def run(self, script: bytes, consume: Callable[[Channel], Any], *, budget: int, timeout: float) -> tuple[Any, int]:
        """`consume(channel)` over the output of `script`; (its result, bytes received)."""
        ch = self.channel(script, budget=budget, timeout=timeout)
        try:
            result = consume(ch)
        except BaseException:
            self.cut_short = True
            ch.abort()
            raise
        rc, err = ch.finish()
        if rc != 0:
            raise RuntimeFailure(f"{self.target.url}: the remote collection failed (exit {rc}): {err or 'no message'}")
        return result, ch.bytes

    def close(self) -> None:
        master, self.master = self.master, None
        if master is not None:
            try:
                if master.stdin is not None:
                    master.stdin.close()  # its remote `cat` ends, and with it the session
                # After a round cut short the master waits for that round's session, which a
                # host that stalls never ends: no use waiting for it.
                master.wait(timeout=0 if self.cut_short else 5)
            except (OSError, subprocess.TimeoutExpired):
                # A session still open (a round cut short): ask the master to exit, then end it.
                subprocess.run([self.ssh, "-S", os.path.join(self.dir, "ctl"), "-O", "exit", "--", self.target.host],
                               capture_output=True, timeout=10, check=False)
                try:
                    master.wait(timeout=5)
                except subprocess.TimeoutExpired:
                    _kill(master)
                    master.wait()
            if master.stdout is not None:
                master.stdout.close()
        if self.dir:
            shutil.rmtree(self.dir, ignore_errors=True)
            self.dir = ""


# The master session's own command: proves the login worked, says what the host offers, then
# waits on its input until close().
_HELLO_SCRIPT = b"""\
LC_ALL=C; export LC_ALL
printf 'SECPOLICY-HELLO\\000'
echo "uid=$(id -u)"
echo "arch=$(uname -m)"
PY=$(command -v python3 2>/dev/null) && "$PY" -I -c "import os, stat, sys" 2>/dev/null && echo "python=$PY"
if [ "$(find / -maxdepth 0 -readable -printf ok 2>/dev/null)" = ok ]; then echo find=ok; else echo find=missing; fi
echo "tar=$(tar --version 2>/dev/null | head -n 1)"
printf 'SECPOLICY-END\\000'
exec cat >/dev/null
"""

# OpenSSH's own line, at the start of a line of its log. A hostile server can put text of its
# own in that log (an SSH2_MSG_DEBUG message is logged as "Remote: ...", newlines and all).
_KEY = re.compile(r"^debug1: Server host key: (\S+) (SHA256:[A-Za-z0-9+/]{43})\r?$", re.MULTILINE)


def _host_key(log: str) -> tuple[str | None, str | None]:
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            found = set(_KEY.findall(f.read(1 << 20)))
    except OSError:
        return None, None
    # One connection verifies one key (a ProxyJump host's is checked by another ssh, which does
    # not log here). Lines that disagree were forged by the server around OpenSSH's own line,
    # which they cannot remove: the key is then not known, rather than the server's word.
    if len(found) != 1:
        return None, None
    key_type, fingerprint = found.pop()
    return key_type, fingerprint


def _openssh_said(log: str) -> str:
    """OpenSSH's own words from its log: every line that is not debugging chatter."""
    try:
        with open(log, encoding="utf-8", errors="replace") as f:
            text = f.read(1 << 20)
    except OSError:
        return ""
    keep = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith(("debug", "OpenSSH_", "Transferred:", "@@@")) or set(line) <= {"@"}:
            continue
        if line not in keep:
            keep.append(line)
    return " ".join(keep)[:2000]
