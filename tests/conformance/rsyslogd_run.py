"""Run real rsyslogd daemons, one per configuration, each on its own input socket, and read the
modes of the files they create: what the rsyslog fact's file modes are compared with
(test_oracles.py, tests/integration/test_rsyslog_probe.py)."""

from __future__ import annotations

import contextlib
import socket
import subprocess
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
