"""`packages` and `package(name)`: what dpkg records as installed in var/lib/dpkg/status,
with Debian version comparison for `version_at_least`."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from secpolicy.dsl.types import ANY, BOOL, STR, ListType, Method, ObjectType
from secpolicy.errors import EvaluationError
from secpolicy.facts._common import at

if TYPE_CHECKING:
    from secpolicy.facts.base import FactContext, FactRegistry

__all__ = ["PACKAGE", "Package", "compare_versions", "parse_status", "register"]

STATUS = "/var/lib/dpkg/status"

PACKAGE = ObjectType(
    "package",
    {"name": STR, "version": STR, "arch": STR, "status": STR, "installed": BOOL, "source": STR},
    methods={
        "version_at_least": Method(
            (STR,), BOOL, "installed and version >= v (Debian ordering); null if absent"
        ),
        "version_below": Method(
            (STR,), BOOL, "installed and version < v (Debian ordering); null if absent"
        ),
    },
    doc='a dpkg package (installed false and status "not-installed" when dpkg does not know it)',
    field_docs={
        "status": 'the dpkg state: "installed", "config-files", "half-installed", ... or "not-installed"'
    },
)


@dataclass(frozen=True)
class Package:
    name: str
    version: str | None
    arch: str | None
    status: str
    installed: bool
    source: str | None
    line: int = 0

    def describe(self) -> str:
        return f"package {self.name!r}"

    def where(self, name: str, *args: Any) -> str | None:
        return at(STATUS, self.line) if self.line else f"{STATUS} (no entry for {self.name})"

    def version_at_least(self, version: str) -> bool | None:
        if not self.installed or self.version is None:
            return None
        return compare_versions(self.version, version) >= 0

    def version_below(self, version: str) -> bool | None:
        if not self.installed or self.version is None:
            return None
        return compare_versions(self.version, version) < 0


def parse_status(text: str) -> list[Package]:
    out: list[Package] = []
    fields: dict[str, str] = {}
    start = 0

    def flush() -> None:
        if "package" in fields:
            state = fields.get("status", "").split()
            status = state[2] if len(state) == 3 else "unknown"
            src = fields.get("source")
            out.append(
                Package(
                    fields["package"],
                    fields.get("version"),
                    fields.get("architecture"),
                    status,
                    status == "installed",
                    src.split()[0] if src else None,
                    start,
                )
            )

    last = ""
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            flush()
            fields, last = {}, ""
            continue
        if line[0] in " \t":  # continuation of a multi-line field (Description, Conffiles)
            continue
        key, sep, value = line.partition(":")
        if not sep:
            continue
        if not fields:
            start = n
        last = key.strip().lower()
        fields[last] = value.strip()
    flush()
    return out


# Debian policy 5.6.12: epoch, upstream and revision compared with `~` before everything
# and letters before non-letters.
_VERSION = re.compile(r"^(?:(\d+):)?(.+?)(?:-([^-]+))?$")


def _order(c: str) -> int:
    if c == "~":
        return -1
    if c.isdigit():
        return 0
    if c.isalpha():
        return ord(c)
    return ord(c) + 256


def _compare_part(a: str, b: str) -> int:
    i = j = 0
    while i < len(a) or j < len(b):
        first_diff = 0
        while (i < len(a) and not a[i].isdigit()) or (j < len(b) and not b[j].isdigit()):
            ac = _order(a[i]) if i < len(a) and not a[i].isdigit() else 0
            bc = _order(b[j]) if j < len(b) and not b[j].isdigit() else 0
            if ac != bc:
                return -1 if ac < bc else 1
            i += 1
            j += 1
        while i < len(a) and a[i] == "0":
            i += 1
        while j < len(b) and b[j] == "0":
            j += 1
        while i < len(a) and a[i].isdigit() and j < len(b) and b[j].isdigit():
            if not first_diff:
                first_diff = ord(a[i]) - ord(b[j])
            i += 1
            j += 1
        if i < len(a) and a[i].isdigit():
            return 1
        if j < len(b) and b[j].isdigit():
            return -1
        if first_diff:
            return -1 if first_diff < 0 else 1
    return 0


def compare_versions(a: str, b: str) -> int:
    """-1, 0 or 1 as dpkg --compare-versions orders `a` and `b`."""
    ma, mb = _VERSION.match(a.strip()), _VERSION.match(b.strip())
    if not ma or not mb:
        raise EvaluationError(f"not a Debian version: {a!r} / {b!r}")
    ea, eb = int(ma.group(1) or 0), int(mb.group(1) or 0)
    if ea != eb:
        return -1 if ea < eb else 1
    c = _compare_part(ma.group(2), mb.group(2))
    if c:
        return c
    return _compare_part(ma.group(3) or "", mb.group(3) or "")


def _index(ctx: FactContext) -> dict[str, Package]:
    pkgs = ctx.fact("packages", ())
    index: dict[str, Package] = {}
    for p in pkgs:
        for key in (p.name, f"{p.name}:{p.arch}"):
            prev = index.get(key)
            if prev is None or (p.installed and not prev.installed):
                index[key] = p
    return index


def collect_packages(ctx: FactContext) -> list[Package]:
    return parse_status(ctx.read_text(STATUS) or "")


def collect_package(ctx: FactContext, name: str) -> Package:
    hit = ctx.fact("_package_index", ()).get(name)
    if hit is not None:
        return hit
    return Package(name, None, None, "not-installed", False, None, 0)


def register(reg: FactRegistry) -> None:
    reg.register(
        "packages",
        collect_packages,
        returns=ListType(PACKAGE),
        doc="dpkg packages (var/lib/dpkg/status)",
    )
    reg.register(
        "package",
        collect_package,
        params=(STR,),
        returns=PACKAGE,
        doc="a package by name (or name:arch)",
    )
    reg.register("_package_index", _index, returns=ANY, doc="internal: packages by name")
