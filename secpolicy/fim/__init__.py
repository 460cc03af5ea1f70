"""File integrity monitoring: AIDE-style baselines of watched paths, sealed with a keyed MAC,
checked fast by re-reading only what the inode says changed. The public API of secpolicy.fim."""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from secpolicy.fim.attrs import ATTRIBUTES, BUILTIN_GROUPS, resolve_attrs
    from secpolicy.fim.config import FimConfig, Rule, config_from_dict, load_config
    from secpolicy.fim.record import AttrChange, display_path
    from secpolicy.fim.scan import (
        BaselineInfo,
        CheckResult,
        EntryChange,
        Generations,
        Progress,
        Recorded,
        ScanIssue,
        Summary,
        UpdateResult,
        check,
        count_tree,
        init_baseline,
        recheck_paths,
        update,
    )
    from secpolicy.fim.status import FimStatus, fim_status, findings_from_check
    from secpolicy.fim.store import Key

# Each name is imported from its module when first used: a one-file `fim check` must not
# pay for the report model or the status code at start-up.
_WHERE = {
    "ATTRIBUTES": "attrs", "BUILTIN_GROUPS": "attrs", "resolve_attrs": "attrs",
    "FimConfig": "config", "Rule": "config", "config_from_dict": "config", "load_config": "config",
    "AttrChange": "record", "display_path": "record",
    "BaselineInfo": "scan", "CheckResult": "scan", "EntryChange": "scan", "Generations": "scan", "Progress": "scan",
    "Recorded": "scan", "ScanIssue": "scan", "Summary": "scan", "UpdateResult": "scan", "check": "scan",
    "count_tree": "scan", "init_baseline": "scan", "recheck_paths": "scan", "update": "scan",
    "FimStatus": "status", "fim_status": "status", "findings_from_check": "status",
    "Key": "store",
}

__all__ = [
    "ATTRIBUTES",
    "BUILTIN_GROUPS",
    "AttrChange",
    "BaselineInfo",
    "CheckResult",
    "EntryChange",
    "FimConfig",
    "FimStatus",
    "Generations",
    "Key",
    "Progress",
    "Recorded",
    "Rule",
    "ScanIssue",
    "Summary",
    "UpdateResult",
    "check",
    "config_from_dict",
    "count_tree",
    "display_path",
    "fim_status",
    "findings_from_check",
    "init_baseline",
    "load_config",
    "recheck_paths",
    "resolve_attrs",
    "update",
]


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'secpolicy.fim' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"secpolicy.fim.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_WHERE))
