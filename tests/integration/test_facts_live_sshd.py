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


# AuthenticationMethods lines whose "any" servconf.c refuses after a line it has applied (a
# global one, or one in a `Match all` block), in a Match block too; each variant is judged by
# `sshd -t`, not by this list.
AUTH_METHODS = [
    "AuthenticationMethods publickey,password\nMatch User bob\n  AuthenticationMethods any\n",
    "AuthenticationMethods any\nMatch User bob\n  AuthenticationMethods any\n",
    "AuthenticationMethods publickey\nAuthenticationMethods any\n",
    "AuthenticationMethods any\nAuthenticationMethods publickey\n",
    "AuthenticationMethods publickey\nMatch User bob\n  AuthenticationMethods any publickey\n",
    "Match all\n  AuthenticationMethods publickey\nMatch User bob\n  AuthenticationMethods any\n",
    "Match User alice\n  AuthenticationMethods publickey\nMatch User bob\n  AuthenticationMethods any\n",
    "Match User bob\n  AuthenticationMethods any\nMatch all\n  AuthenticationMethods any\n",
    "AuthenticationMethods any\nMatch User bob\n  AuthenticationMethods publickey\n",
    "Match User bob\n  AuthenticationMethods publickey any\n",
]


@pytest.mark.parametrize("text", AUTH_METHODS)
def test_an_authentication_methods_any_is_refused_exactly_where_sshd_t_refuses_it(text: str, tmp_path: Path) -> None:
    os.makedirs("/run/sshd", exist_ok=True)
    key = tmp_path / "hostkey"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    cfg = tmp_path / "sshd_config"
    cfg.write_text(f"HostKey {key}\n" + text)
    real = subprocess.run([SSHD, "-t", "-f", str(cfg)], check=False, capture_output=True, text=True, timeout=20)
    fact = parse_sshd(FactContext(builtin_registry(), "/"), str(cfg))
    assert bool(fact.errors) == (real.returncode != 0), (fact.errors, real.stderr)
    if real.returncode != 0:
        line = real.stderr.split(" line ", 1)[1].split(":", 1)[0]
        assert [e for e in fact.errors if e.startswith(f"{cfg}:{line}: ")] == [
            f'{cfg}:{line}: "any" must appear alone in AuthenticationMethods'], real.stderr
