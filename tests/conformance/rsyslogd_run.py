"""Run real rsyslogd daemons, one per configuration, each on its own input socket, and read the
modes of the files they create: what the rsyslog fact's file modes are compared with
(test_oracles.py, tests/integration/test_rsyslog_probe.py)."""

from __future__ import annotations

import contextlib
import json
import socket
import subprocess
import sys
import time
from pathlib import Path


def rsyslogd_modes(rsyslogd: str, tmp_path: Path, confs: dict[str, str], umask: str = "000") -> dict[str, dict[str, int]]:
    """For each configuration (OUT standing for its own directory), the mode of each *.log file
    its rsyslogd creates once a message comes in on its input socket; all run at once, then
    stopped. With umask 000 the mode is the one rsyslogd asks open() for."""
    procs: dict[str, subprocess.Popen[bytes]] = {}
    dirs: dict[str, Path] = {}
    try:
        for i, (case, text) in enumerate(confs.items()):
            d = dirs[case] = tmp_path / f"run{i}"
            d.mkdir()
            (d / "rsyslog.conf").write_text(
                f'module(load="imuxsock" SysSock.Use="off")\ninput(type="imuxsock" Socket="{d}/log.sock")\n'
                + text.replace("OUT", str(d)))
            procs[case] = subprocess.Popen(
                ["sh", "-c", f'umask {umask} && exec "$@"', "sh", rsyslogd, "-n", "-f", str(d / "rsyslog.conf"),
                 "-i", str(d / "pid")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        modes: dict[str, dict[str, int]] = {}
        deadline = time.monotonic() + 60
        while len(modes) < len(procs) and time.monotonic() < deadline:
            for case, d in dirs.items():
                logs = sorted(d.glob("*.log"))
                if case not in modes and len(logs) == confs[case].count("OUT/"):
                    modes[case] = {p.name: p.stat().st_mode & 0o7777 for p in logs}
                elif (d / "log.sock").exists():  # not listening yet: the next round sends again
                    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s, contextlib.suppress(OSError):
                        s.sendto(b"<13>secpolicy: probe", str(d / "log.sock"))
            time.sleep(0.1)
        assert len(modes) == len(procs), f"rsyslogd wrote no file for {sorted(set(procs) - set(modes))}"
        return modes
    finally:
        for p in procs.values():
            p.kill()
            p.wait()


# A running rsyslogd in a private mount and network namespace (loopback only): what it writes and
# what it forwards. The script below runs inside the namespaces: it brings loopback up, listens
# on UDP 127.0.0.1:5514 (OUT's forwarding port), starts rsyslogd, logs one message through the
# case's own input socket once the sentinel file (the first action) shows rsyslogd runs, then
# stops rsyslogd with SIGTERM (it finishes its actions before it exits) and reads what arrived.
_IN_NETNS = r"""
import json, os, signal, socket, subprocess, sys, time
rsyslogd, d = sys.argv[1], sys.argv[2]
subprocess.run(["ip", "link", "set", "lo", "up"], check=True)
udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
udp.bind(("127.0.0.1", 5514))
p = subprocess.Popen([rsyslogd, "-n", "-f", d + "/rsyslog.conf", "-i", d + "/pid"],
                     stdout=subprocess.DEVNULL, stderr=open(d + "/stderr", "wb"))
deadline, sent = time.monotonic() + 60, False
while p.poll() is None and time.monotonic() < deadline:
    if os.path.exists(d + "/log.sock"):
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            try:
                s.sendto(b"<13>secpolicy: probe", d + "/log.sock")
                sent = True
            except OSError:
                pass
    if sent and os.path.exists(d + "/sentinel.log") and b"probe" in open(d + "/sentinel.log", "rb").read():
        break
    time.sleep(0.1)
ran = p.poll() is None
if ran:
    p.send_signal(signal.SIGTERM)
status = p.wait(timeout=60)
udp.setblocking(False)
got = []
while True:
    try:
        got.append(udp.recv(65536).decode("utf-8", "replace"))
    except BlockingIOError:
        break
files = {n: os.stat(d + "/" + n).st_mode & 0o7777 for n in sorted(os.listdir(d)) if n.endswith(".log")}
print(json.dumps({"ran": ran, "status": None if ran else status, "files": files, "forwarded": got}))
"""


def rsyslogd_run(rsyslogd: str, d: Path, text: str, sentinel: bool = True) -> dict[str, object]:
    """What a running rsyslogd does with TEXT (OUT standing for the directory D, @OUT for
    127.0.0.1:5514 over UDP), after an input socket of its own and, with SENTINEL, a first action
    `*.* OUT/sentinel.log`: {"ran": whether it kept running, "status": its exit status if it did
    not, "files": the mode of each *.log file it created in D, "forwarded": the messages that
    arrived}. Umask 000: the modes are the ones rsyslogd asks open() for."""
    head = f'module(load="imuxsock" SysSock.Use="off")\ninput(type="imuxsock" Socket="{d}/log.sock")\n'
    if sentinel:
        head += f"*.* {d}/sentinel.log\n"
    (d / "rsyslog.conf").write_text(head + text.replace("@OUT", "@127.0.0.1:5514").replace("OUT", str(d)))
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "--net", "sh", "-c",
         'mount -t tmpfs tmpfs /var/log && umask 000 && exec "$@"', "sh", sys.executable, "-c", _IN_NETNS,
         rsyslogd, str(d)], capture_output=True, text=True, timeout=180, check=False)
    assert done.returncode == 0, done.stderr
    result: dict[str, object] = json.loads(done.stdout)
    result["stderr"] = (d / "stderr").read_text(errors="replace")
    return result
