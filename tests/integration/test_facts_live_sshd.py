"""The sshd fact against the real `sshd -T`: for every keyword sshd prints, the fact must
print the same effective value (same configs, parsed by both)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import pytest

from secpolicy.facts import FactContext
from secpolicy.facts.sshd import ACCUMULATE, parse_sshd
from secpolicy.vocabulary import builtin_registry

SSHD = shutil.which("sshd") or ("/usr/sbin/sshd" if os.path.exists("/usr/sbin/sshd") else None)
pytestmark = pytest.mark.skipif(
    SSHD is None, reason="openssh-server is not installed (no sshd binary)"
)

CONFIGS = {
    "stock-debian": "Include {d}/conf.d/*.conf\nKbdInteractiveAuthentication no\nUsePAM yes\n"
    "X11Forwarding yes\nPrintMotd no\nAcceptEnv LANG LC_*\nSubsystem sftp /usr/lib/openssh/sftp-server\n",
    "hardened": "Include {d}/conf.d/*.conf\nPermitRootLogin no\nLogLevel verbose\nLoginGraceTime 1m\n"
    "ClientAliveInterval 5m\nciphers aes256-gcm@openssh.com,aes128-ctr\nMACs -*sha1*,umac-64*\n"
    "KexAlgorithms ^curve25519-sha256\nMaxAuthTries 4\nPermitRootLogin yes\nBanner /etc/issue.net\n"
    "Match User nobody\n  PasswordAuthentication yes\n",
    "weak": "PermitRootLogin prohibit-password\nPasswordAuthentication YES\nPermitEmptyPasswords yes\n"
    "Ciphers +3des-cbc\nChallengeResponseAuthentication yes\nGatewayPorts clientspecified\n"
    "AllowTcpForwarding local\nCompression no\nIgnoreRhosts shosts-only\n",
}
DROPIN = "PasswordAuthentication no\nX11Forwarding no\nMaxSessions 4\n"


def sshd_t(config: Path) -> dict[str, str]:
    out = subprocess.run(
        [SSHD, "-T", "-f", str(config)], check=False, capture_output=True, text=True, timeout=20
    )
    if out.returncode != 0:
        pytest.skip(f"sshd -T cannot run here: {out.stderr.strip()}")
    values: dict[str, list[str]] = {}
    for line in out.stdout.splitlines():
        key, _, value = line.partition(" ")
        values.setdefault(key, []).append(value)
    return {k: " ".join(v) for k, v in values.items()}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_effective_values_equal_sshd_t(name: str) -> None:
    os.makedirs("/run/sshd", exist_ok=True)  # sshd -T insists on its privilege separation dir
    with tempfile.TemporaryDirectory() as d:
        os.chmod(d, 0o755)
        (Path(d) / "conf.d").mkdir()
        (Path(d) / "conf.d" / "50-site.conf").write_text(DROPIN)
        key = Path(d) / "hostkey"
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
        cfg = Path(d) / "sshd_config"
        cfg.write_text(f"HostKey {key}\n" + CONFIGS[name].format(d=d))
        real = sshd_t(cfg)
        fact = parse_sshd(FactContext(builtin_registry(), "/"), str(cfg))
        # listenaddress is printed combined with ports: not modelled keyword by keyword
        compared = {k: v for k, v in real.items() if k != "listenaddress"}
        mine = {k: fact.option(k) for k in compared}
        assert mine == compared, name
        assert len(compared) > 80  # the whole keyword set, not a handful
        assert all(k in ACCUMULATE or " " not in k for k in compared)
