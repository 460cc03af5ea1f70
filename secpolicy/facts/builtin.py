"""The built-in fact collectors of facts/, registered explicitly in one place (the whole
built-in vocabulary, with the fim() fact over fim/'s baselines, is secpolicy.vocabulary's)."""

from __future__ import annotations

from secpolicy.facts import (
    accounts,
    aide,
    audit_rules,
    bpf_inventory,
    crypttab,
    dconf,
    files,
    fs_scan,
    iptables,
    kv,
    limits,
    nftables,
    packages,
    pam,
    procs,
    rsyslog,
    services,
    sshd,
    sudoers,
    sysctl,
    system,
)
from secpolicy.facts.base import FactRegistry

__all__ = ["register_builtins"]


def register_builtins(reg: FactRegistry) -> None:
    files.register(reg)
    fs_scan.register(reg)
    sysctl.register(reg)
    sshd.register(reg)
    sudoers.register(reg)
    accounts.register(reg)
    packages.register(reg)
    services.register(reg)
    kv.register(reg)
    pam.register(reg)
    limits.register(reg)
    audit_rules.register(reg)
    aide.register(reg)
    system.register(reg)
    crypttab.register(reg)
    iptables.register(reg)
    nftables.register(reg)
    rsyslog.register(reg)
    procs.register(reg)
    bpf_inventory.register(reg)
    dconf.register(reg)
