"""A private OpenSSH server on a loopback port for tests: its own host key, one client key
allowed to log in as the current user, its own pid file; stopped by pid."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)


@dataclass(frozen=True)
class SshServer:
    host: str
    port: int
    user: str
    client_key: Path  # private key allowed to log in
    known_hosts: Path  # holds this server's host key only
    pid: int

    def ssh_options(self) -> list[str]:
        return ["-o", f"UserKnownHostsFile={self.known_hosts}", "-o", "StrictHostKeyChecking=yes",
                "-o", "BatchMode=yes", "-i", str(self.client_key)]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_sshd(directory: Path, extra_config: str = "") -> SshServer:
    """Start sshd in the foreground of a child process (so it is ours to stop); `extra_config`
    lines are added to its sshd_config."""
    assert SSHD is not None
    directory.mkdir(parents=True, exist_ok=True)
    for name in ("host", "client"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(directory / name)], check=True)
    (directory / "authorized_keys").write_bytes((directory / "client.pub").read_bytes())
    port = _free_port()
    config = directory / "sshd_config"
    config.write_text(
        f"ListenAddress 127.0.0.1\nPort {port}\nHostKey {directory / 'host'}\n"
        f"PidFile {directory / 'sshd.pid'}\nAuthorizedKeysFile {directory / 'authorized_keys'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
        "UsePAM no\nStrictModes no\nSubsystem sftp internal-sftp\n" + extra_config
    )
    os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # privilege separation directory
    proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(config)], stderr=open(directory / "sshd.log", "wb"))  # noqa: SIM115
    deadline = time.monotonic() + 10
    while True:
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                break
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise RuntimeError("sshd did not start: " + (directory / "sshd.log").read_text(errors="replace"))
        time.sleep(0.05)
    known = directory / "known_hosts"
    known.write_text(f"[127.0.0.1]:{port} {(directory / 'host.pub').read_text()}")
    import pwd

    return SshServer("127.0.0.1", port, pwd.getpwuid(os.getuid()).pw_name, directory / "client", known, proc.pid)


def stop_sshd(server: SshServer) -> None:
    try:
        os.kill(server.pid, signal.SIGTERM)
        os.waitpid(server.pid, 0)
    except (ProcessLookupError, ChildProcessError):
        pass


def our_ssh_processes(s: SshServer) -> list[str]:
    """ssh clients still running that talk to this test's server (its port is unique)."""
    out = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv and argv[0].endswith(b"ssh") and str(s.port).encode() in argv:
            out.append(pid)
    return out
