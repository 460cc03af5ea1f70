"""The application layer sits between the CLI and the rest: nothing below it imports it or
the CLI, it imports no CLI module, and the commands that run rules reach the engines only
through it (the CLI parses, calls, prints, exits)."""

from __future__ import annotations

import ast
from pathlib import Path

PKG = Path(__file__).resolve().parents[2] / "secpolicy"


def imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
        elif isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
    return out


def modules(*parts: str) -> list[Path]:
    return sorted((PKG.joinpath(*parts)).rglob("*.py"))


def test_nothing_below_the_app_layer_imports_it_or_the_cli() -> None:
    below = [p for p in modules() if p.relative_to(PKG).parts[0] not in ("cli", "app", "__main__.py")]
    assert len(below) > 100
    offending = {str(p.relative_to(PKG)): sorted(m for m in imports(p) if m.startswith(("secpolicy.app", "secpolicy.cli")))
                 for p in below}
    assert {k: v for k, v in offending.items() if v} == {}


def test_the_app_layer_imports_no_cli_module() -> None:
    assert {str(p.relative_to(PKG)): sorted(m for m in imports(p) if m.startswith("secpolicy.cli"))
            for p in modules("app") if any(m.startswith("secpolicy.cli") for m in imports(p))} == {}


def test_the_commands_that_run_rules_over_events_call_the_app_layer_only() -> None:
    # replay and monitor: no engine, source, store, sink or audit-log import left in their CLI
    for name in ("events.py", "live.py", "outputs.py"):
        used = {m for m in imports(PKG / "cli" / name) if m.startswith("secpolicy.")}
        assert not {m for m in used if m.startswith(("secpolicy.auditlog", "secpolicy.events.engine",
                                                        "secpolicy.events.replay", "secpolicy.events.bpf_monitor",
                                                        "secpolicy.redaction"))}, (name, used)
