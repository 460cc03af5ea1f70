"""File integrity monitoring: AIDE-style baselines of watched paths, sealed with a keyed MAC,
checked fast by re-reading only what the inode says changed. The public API of secpolicy.fim."""

from __future__ import annotations

from secpolicy.fim.attrs import ATTRIBUTES, BUILTIN_GROUPS, resolve_attrs
from secpolicy.fim.config import FimConfig, Rule, config_from_dict, load_config
from secpolicy.fim.record import AttrChange, display_path
from secpolicy.fim.scan import (
    BaselineInfo,
    CheckResult,
    EntryChange,
    Progress,
    ScanIssue,
    Summary,
    UpdateResult,
    check,
    init_baseline,
    recheck_paths,
    update,
)
from secpolicy.fim.status import FimStatus, fim_status, findings_from_check
from secpolicy.fim.store import Key

__all__ = [
    "ATTRIBUTES",
    "BUILTIN_GROUPS",
    "AttrChange",
    "BaselineInfo",
    "CheckResult",
    "EntryChange",
    "FimConfig",
    "FimStatus",
    "Key",
    "Progress",
    "Rule",
    "ScanIssue",
    "Summary",
    "UpdateResult",
    "check",
    "config_from_dict",
    "display_path",
    "fim_status",
    "findings_from_check",
    "init_baseline",
    "load_config",
    "recheck_paths",
    "resolve_attrs",
    "update",
]
