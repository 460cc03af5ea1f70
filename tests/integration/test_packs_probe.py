"""False passes of the PCI DSS, HIPAA and SOC 2 packs: the hardened Debian 12 root
(tests/fixtures/packs/) with one thing changed so that the control no longer holds, scanned with
the one pack. Each rule must pass on the hardened root and fail (never pass) on the changed one."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from secpolicy.engine import scan
from secpolicy.models import Finding, Status
from secpolicy.vocabulary import builtin_registry, load_policies

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "fixtures" / "packs"))
import roots

PCI = REPO / "policies" / "pci-dss" / "checks.yaml"
HIPAA = REPO / "policies" / "hipaa" / "checks.yaml"
SOC2 = REPO / "policies" / "soc2" / "bpf-and-capabilities.yaml"


def _finding(pack: Path, root: Path, rule_id: str, scan_kind: str | None = None) -> Finding:
    reg = builtin_registry()
    ps = load_policies([pack], reg)
    found = scan(ps, reg, root=str(root), rule_ids=[rule_id], scan_kind=scan_kind).findings
    assert [f.rule_id for f in found] == [rule_id]
    return found[0]


def _write(root: Path, rel: str, text: str, mode: int = 0o644, uid: int = 0) -> None:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    os.chmod(p, mode)
    if os.geteuid() == 0:
        os.chown(p, uid, uid)


def _link(root: Path, rel: str, target: str) -> None:
    p = root / rel.lstrip("/")
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.is_symlink() or p.exists():
        p.unlink()
    p.symlink_to(target)


# --- the changes: each breaks one control on the hardened root ----------------------------------


def _ssh_alternative_key_alone(root: Path) -> None:
    # `publickey,keyboard-interactive publickey`: sshd lets a connection in with either list, so a
    # key alone is enough (sshd -T prints the value unchanged)
    p = root / "etc/ssh/sshd_config.d/50-cis.conf"
    p.write_text(
        p.read_text().replace(
            "AuthenticationMethods publickey,keyboard-interactive",
            "AuthenticationMethods publickey,keyboard-interactive publickey",
        )
    )


def _ssh_otp_in_pam_but_keys_allowed(root: Path) -> None:
    # The OTP module stays in /etc/pam.d/sshd, AuthenticationMethods goes: the default `any` with
    # PubkeyAuthentication yes lets a key in without running the PAM auth stack
    p = root / "etc/ssh/sshd_config.d/50-cis.conf"
    text = p.read_text()
    assert "AuthenticationMethods publickey,keyboard-interactive\n" in text
    p.write_text(text.replace("AuthenticationMethods publickey,keyboard-interactive\n", ""))
    assert "pam_google_authenticator.so" in (root / "etc/pam.d/sshd").read_text()


def _pwquality_length_credit(root: Path) -> None:
    # libpwquality 1.4.5 gives up to 2 characters of length credit each for upper-case and other
    # characters: with minlen 14 a 10-character password is long enough
    _write(root, "/etc/security/pwquality.conf.d/60-site.conf", "ucredit = 2\nocredit = 2\n")


def _no_remote_forward(root: Path) -> None:
    (root / "etc/rsyslog.d/60-remote.conf").unlink()


def _rsyslog_quoted_address(root: Path) -> None:
    _no_remote_forward(root)
    _write(
        root,
        "/etc/rsyslog.d/50-local.conf",
        ':msg, contains, "root@localhost" /var/log/rootmail.log\n',
    )


def _rsyslog_masked(root: Path) -> None:
    _link(root, "/etc/systemd/system/rsyslog.service", "/dev/null")


def _journal_upload_without_url(root: Path) -> None:
    # systemd-journal-upload with no URL exits: "Required --url/-u option missing."
    _no_remote_forward(root)
    _write(
        root,
        "/lib/systemd/system/systemd-journal-upload.service",
        "[Service]\nExecStart=/lib/systemd/systemd-journal-upload --save-state\n[Install]\nWantedBy=multi-user.target\n",
    )
    _link(
        root,
        "/etc/systemd/system/multi-user.target.wants/systemd-journal-upload.service",
        "/lib/systemd/system/systemd-journal-upload.service",
    )


def _au_remote_switched_off(root: Path) -> None:
    # auditd's plugin parser: the last `active` line wins
    _no_remote_forward(root)
    _write(
        root,
        "/etc/audit/plugins.d/au-remote.conf",
        "active = yes\ndirection = out\npath = /sbin/audisp-remote\ntype = always\nformat = string\nactive = no\n",
    )
    _write(root, "/etc/audit/audisp-remote.conf", "remote_server = loghost.example.internal\n")


def _aide_db_directory(root: Path) -> None:
    db = root / "var/lib/aide/aide.db"
    db.unlink()
    db.mkdir()


def _aide_db_dangling(root: Path) -> None:
    _link(root, "/var/lib/aide/aide.db", "aide.db.new")


def _aide_db_empty(root: Path) -> None:
    (root / "var/lib/aide/aide.db").write_text("")


def _chrony_source_world_writable(root: Path) -> None:
    _write(
        root,
        "/etc/chrony/sources.d/local.sources",
        "server ntp.example.org iburst prefer\n",
        0o666,
        1000,
    )


def _chrony_sources_dir_world_writable(root: Path) -> None:
    os.chmod(root / "etc/chrony/sources.d", 0o777)


def _timesyncd_dropin_user_owned(root: Path) -> None:
    _write(
        root,
        "/usr/lib/systemd/timesyncd.conf.d/50-site.conf",
        "[Time]\nNTP=ntp.example.org\n",
        0o644,
        1000,
    )


CASES: list[tuple[str, Path, str, Callable[[Path], None]]] = [
    ("ssh-alternative-key-alone", PCI, "pci-8.4.2-ssh-multi-factor", _ssh_alternative_key_alone),
    (
        "ssh-otp-in-pam-keys-allowed",
        PCI,
        "pci-8.4.2-ssh-multi-factor",
        _ssh_otp_in_pam_but_keys_allowed,
    ),
    ("pwquality-length-credit", PCI, "pci-8.3.6-password-composition", _pwquality_length_credit),
    ("rsyslog-quoted-address", PCI, "pci-10.3.3-logs-sent-off-host", _rsyslog_quoted_address),
    ("rsyslog-masked", PCI, "pci-10.3.3-logs-sent-off-host", _rsyslog_masked),
    ("journal-upload-no-url", PCI, "pci-10.3.3-logs-sent-off-host", _journal_upload_without_url),
    ("au-remote-switched-off", PCI, "pci-10.3.3-logs-sent-off-host", _au_remote_switched_off),
    ("aide-db-directory-hipaa", HIPAA, "hipaa-164.312-c-1-integrity-baseline", _aide_db_directory),
    ("aide-db-dangling-hipaa", HIPAA, "hipaa-164.312-c-1-integrity-baseline", _aide_db_dangling),
    ("aide-db-empty-hipaa", HIPAA, "hipaa-164.312-c-1-integrity-baseline", _aide_db_empty),
    ("aide-db-directory-pci", PCI, "pci-11.5.2-fim-baseline-checked-weekly", _aide_db_directory),
    ("aide-db-dangling-pci", PCI, "pci-11.5.2-fim-baseline-checked-weekly", _aide_db_dangling),
    ("aide-db-empty-pci", PCI, "pci-11.5.2-fim-baseline-checked-weekly", _aide_db_empty),
    (
        "chrony-source-world-writable",
        PCI,
        "pci-10.6.3-time-settings-protected",
        _chrony_source_world_writable,
    ),
    (
        "chrony-sources-dir-writable",
        PCI,
        "pci-10.6.3-time-settings-protected",
        _chrony_sources_dir_world_writable,
    ),
    (
        "timesyncd-dropin-user-owned",
        PCI,
        "pci-10.6.3-time-settings-protected",
        _timesyncd_dropin_user_owned,
    ),
]


@pytest.fixture(scope="module")
def hardened(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return roots.build_hardened(tmp_path_factory.mktemp("probe"))


@pytest.mark.parametrize(
    "pack,rule_id", sorted({(c[1], c[2]) for c in CASES}), ids=lambda v: getattr(v, "name", v)
)
def test_rule_passes_on_the_hardened_root(hardened: Path, pack: Path, rule_id: str) -> None:
    f = _finding(pack, hardened, rule_id)
    assert f.status == Status.PASS, (rule_id, f.reason, f.evidence)


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_control_broken_on_the_hardened_root_does_not_pass(
    hardened: Path, tmp_path: Path, case: tuple[str, Path, str, Callable[[Path], None]]
) -> None:
    _name, pack, rule_id, change = case
    root = roots.build_hardened(tmp_path, "changed")
    change(root)
    f = _finding(pack, root, rule_id)
    assert f.status == Status.FAIL, (rule_id, f.status, f.reason, f.evidence)


def test_ssh_mfa_through_pam_alone_passes_when_every_login_runs_the_auth_stack(
    tmp_path: Path,
) -> None:
    # The PAM path is still accepted where it really holds: no key, host or GSSAPI login
    root = roots.build_hardened(tmp_path, "changed")
    _ssh_otp_in_pam_but_keys_allowed(root)
    p = root / "etc/ssh/sshd_config.d/50-cis.conf"
    p.write_text("PubkeyAuthentication no\n" + p.read_text())
    f = _finding(PCI, root, "pci-8.4.2-ssh-multi-factor")
    assert f.status == Status.PASS, (f.reason, f.evidence)


SOC2_IMAGE_REASONS = {
    "soc2-cc6.8-bpf-loader-uid": "BPF",
    "soc2-cc6.8-bpf-root-programs-known": "BPF",
    "soc2-cc6.8-bpf-helper-allowlist": "BPF",
    "soc2-cc6.8-bpf-maps-bounded": "BPF",
    "soc2-cc6.8-bpf-config-maps-frozen": "BPF",
    "soc2-cc6.3-process-capabilities-allowlist": "processes",
    "soc2-cc6.3-no-cap-sys-admin-for-bpf": "processes",
    "soc2-cc7.2-audit-enabled": "auditing",
}


@pytest.mark.parametrize("rule_id,subject", sorted(SOC2_IMAGE_REASONS.items()))
def test_soc2_not_applicable_to_an_image_says_why(
    hardened: Path, rule_id: str, subject: str
) -> None:
    # An image scan is NOT_APPLICABLE with the reason: what the rule reads, not partitions or mounts
    f = _finding(SOC2, hardened, rule_id, scan_kind="image")
    assert f.status == Status.NOT_APPLICABLE
    assert subject in (f.reason or ""), f.reason
    assert "partitions" not in (f.reason or ""), f.reason
