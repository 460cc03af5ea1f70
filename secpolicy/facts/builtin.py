"""The built-in fact collectors, registered explicitly in one place."""

from __future__ import annotations

from secpolicy.facts import (
    accounts,
    audit_rules,
    bpf_inventory,
    files,
    fim,
    fs_scan,
    kv,
    packages,
    pam,
    procs,
    services,
    sshd,
    sudoers,
    sysctl,
    system,
)
from secpolicy.facts.base import FactRegistry

__all__ = ["builtin_registry"]


def builtin_registry() -> FactRegistry:
    reg = FactRegistry()
    files.register(reg)
    fim.register(reg)
    fs_scan.register(reg)
    sysctl.register(reg)
    sshd.register(reg)
    sudoers.register(reg)
    accounts.register(reg)
    packages.register(reg)
    services.register(reg)
    kv.register(reg)
    pam.register(reg)
    audit_rules.register(reg)
    system.register(reg)
    procs.register(reg)
    bpf_inventory.register(reg)
    return reg
