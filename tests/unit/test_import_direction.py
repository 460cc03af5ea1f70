"""Imports go one way: cli -> app -> engine and the composition (vocabulary) -> the domain
packages -> the rule model -> the expression language -> the shared bottom; reports read results only.

Every `import` of every module of secpolicy is read with ast: at the top, inside functions
and under TYPE_CHECKING alike (a type is a dependency too). Each part of secpolicy (a
subpackage, or a top-level module) may import itself, the shared bottom and what ALLOWED
lists for it (a part, or one module of it: `dsl.types`); anything else is an upward or
sideways import and fails. Imports by name
through importlib (cli/main.py's command table, fim/__init__.py's lazy names) stay inside
their own part and are not read here.
"""

from __future__ import annotations

import ast
import graphlib
from collections.abc import Iterator
from pathlib import Path

import secpolicy

ROOT = Path(secpolicy.__file__).resolve().parent

# What every part may import: the package itself (`__version__`), the exception tree and the
# data every layer exchanges (statuses, findings, the Event and Alert shapes).
BOTTOM = frozenset({"secpolicy", "errors", "models"})

# Part -> the parts (or modules) it may import besides itself and BOTTOM, from the bottom up.
# An edge that is not "down to something shared" says why in its comment.
ALLOWED: dict[str, frozenset[str]] = {
    # The shared bottom imports nothing of secpolicy.
    "secpolicy": frozenset(),
    "errors": frozenset(),
    "models": frozenset(),
    # Tables and helpers every layer may use.
    "kernel_names": frozenset(),
    "resources": frozenset(),
    "confined": frozenset(),
    "outfile": frozenset(),
    "resultsfile": frozenset(),
    "summary": frozenset(),  # a results document's summary: the scan writes it, reports check it
    "redaction": frozenset(),
    "terminal": frozenset(),
    # The expression language; dsl/types.py is the vocabulary facts and events declare
    # what they provide with (Signature, ObjectType).
    "dsl": frozenset(),
    # The rule model: a rule's conditions are compiled dsl expressions.
    "rules": frozenset({"dsl"}),
    # The domain packages: each does one thing and none imports another.
    "policy": frozenset({"rules", "dsl", "resources",
                         "redaction"}),  # policy/redaction.py checks a redaction policy against the detectors' names
    # Facts declare what they provide in the type vocabulary; files and the os-release
    # reader use the language's regex engine and input limits (what `matches` means).
    "facts": frozenset({"dsl.types", "dsl.regex", "dsl.limits", "kernel_names"}),
    # Events run rules: their compiled conditions, and their ASTs to index them.
    "events": frozenset({"rules", "dsl", "kernel_names", "resources",
                         "confined"}),  # replay --root reads ROOT/etc/passwd inside the root
    # content copies are redacted with the shared detectors; the baseline's SQLite companions
    # are checked as every database's are (outfile)
    "fim": frozenset({"outfile", "resources", "redaction"}),
    "auditlog": frozenset({"outfile", "resources", "redaction", "terminal"}),  # what is stored is redacted first
    "image": frozenset({"confined"}),
    # Reports read the results (models, the results file) and write files: nothing else.
    "reports": frozenset({"outfile", "resources", "resultsfile", "summary", "terminal"}),
    # Above the domain packages.
    "hostid": frozenset({"facts"}),  # the host identity is read through facts, under the scan's root
    "doctor": frozenset({"events", "resources",  # doctor asks the live monitor's own probes what works here
                         "facts.inroot"}),  # and the probe that decides how --root scans open paths
    # the fleet report is drawn with the report's HTML; its SQLite store is opened as every database is
    "fleet": frozenset({"outfile", "reports", "resources", "resultsfile"}),
    "vocabulary": frozenset({"facts", "events", "fim", "policy", "rules", "dsl"}),  # the composition of what policies can name
    "engine": frozenset({"dsl", "rules", "policy", "facts", "hostid", "redaction", "summary"}),
    "ruletests": frozenset({"engine", "dsl", "rules", "policy", "facts"}),
    "remote": frozenset({"engine", "dsl", "rules", "policy", "facts", "confined"}),
    # The application layer runs a command below the CLI; the CLI parses, calls, prints, exits.
    "app": frozenset(),  # filled in below: everything but the CLI
    "cli": frozenset(),  # filled in below: everything
    "__main__": frozenset({"cli"}),
}
_TOP = {"app", "cli", "__main__"}
ALLOWED["app"] = frozenset(ALLOWED) - _TOP
ALLOWED["cli"] = frozenset(ALLOWED) - {"cli", "__main__"}


def allowed(part: str) -> frozenset[str]:
    return ALLOWED[part] | ({part} | BOTTOM if part not in BOTTOM else {part})


def may_import(part: str, module: str) -> bool:
    name = module.partition(".")[2] or "secpolicy"
    return any(name == a or name.startswith(a + ".") for a in allowed(part))


def part_of(module: str) -> str:
    """`secpolicy.events.live.decode` -> `events`; `secpolicy` -> `secpolicy`."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else parts[0]


def _is_module(name: str) -> bool:
    rel = ROOT.joinpath(*name.split(".")[1:])
    return rel.with_suffix(".py").is_file() or (rel / "__init__.py").is_file()


def imports_of(source: str, module: str, is_package: bool = False) -> Iterator[tuple[int, str]]:
    """(line, imported secpolicy module) for every import in `source`, wherever it stands.
    `from secpolicy import kernel_names` imports the module kernel_names; `from secpolicy
    import __version__` the package itself."""
    package = module if is_package else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == "secpolicy":
                    yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "secpolicy":
                continue
            for alias in node.names:
                full = f"{target}.{alias.name}"
                yield node.lineno, full if _is_module(full) else target


def modules() -> Iterator[tuple[Path, str]]:
    for path in sorted(ROOT.rglob("*.py")):
        rel = path.relative_to(ROOT.parent).with_suffix("")
        names = list(rel.parts)
        if names[-1] == "__init__":
            names.pop()
        yield path, ".".join(names)


def violations(source: str, module: str, where: str, is_package: bool = False) -> list[str]:
    part = part_of(module)
    if part not in ALLOWED:
        return [f"{where}: {part} has no row in ALLOWED: say what it may import"]
    out = []
    for line, target in sorted(set(imports_of(source, module, is_package))):
        if not may_import(part, target):
            out.append(f"{where}:{line}: {part} imports {target} ({part} may import: {', '.join(sorted(allowed(part)))})")
    return out


def test_every_import_goes_down():
    found = []
    for path, module in modules():
        found += violations(path.read_text(encoding="utf-8"), module, str(path.relative_to(ROOT.parent)),
                            path.name == "__init__.py")
    assert found == []


def test_the_allowed_imports_are_layers():
    """No cycle in the table: it orders the parts, bottom first."""
    graph = {part: {a.split(".")[0] for a in allowed(part)} - {part} for part in ALLOWED}
    order = list(graphlib.TopologicalSorter(graph).static_order())
    assert order.index("errors") < order.index("dsl") < order.index("rules") < order.index("events") < order.index("cli")
    assert set(order) == set(ALLOWED) | BOTTOM


def test_upward_and_sideways_imports_are_found_wherever_they_stand():
    source = (
        "from __future__ import annotations\n"
        "from typing import TYPE_CHECKING\n"
        "from secpolicy.dsl.types import STR\n"  # down: fine
        "from secpolicy import __version__, errors\n"  # the bottom: fine
        "if TYPE_CHECKING:\n"
        "    from secpolicy.facts.base import FactRegistry\n"  # sideways
        "    from secpolicy.events import fields\n"  # sideways, a module named in from-import
        "def load():\n"
        "    import secpolicy.cli.main\n"  # upward, inside a function
        "    from .. import engine\n"  # upward, relative
        "    from . import loader\n"  # its own part: fine
    )
    found = violations(source, "secpolicy.policy.example", "example.py")
    assert [v.split(" (")[0] for v in found] == [
        "example.py:6: policy imports secpolicy.facts.base",
        "example.py:7: policy imports secpolicy.events.fields",
        "example.py:9: policy imports secpolicy.cli.main",
        "example.py:10: policy imports secpolicy.engine",
    ]
    # A part may be allowed one module of another, not the rest of it.
    assert violations("from secpolicy.dsl.types import STR\nfrom secpolicy.dsl.checker import Catalogue\n",
                      "secpolicy.facts.example", "f.py") == [
        "f.py:2: facts imports secpolicy.dsl.checker (facts may import: dsl.limits, dsl.regex, dsl.types, "
        + "errors, facts, kernel_names, models, secpolicy)"
    ]


def test_every_part_has_a_row():
    parts = {part_of(module) for _, module in modules()}
    assert parts - set(ALLOWED) == set()
