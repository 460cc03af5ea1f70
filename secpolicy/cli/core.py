"""Core commands: scan, lint, explain, test, schema, coverage."""

from __future__ import annotations

import json
import os
import sys
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import click
from rich.console import Console
from rich.table import Table

from secpolicy import engine
from secpolicy.errors import EXIT_NONCOMPLIANT, EXIT_OK, InputError
from secpolicy.facts import builtin_registry
from secpolicy.facts.base import FactRegistry
from secpolicy.models import Severity
from secpolicy.policy import PolicySet, load_policies
from secpolicy.policy.coverage import compute_coverage
from secpolicy.policy.waivers import WaiverSet, load_waivers
from secpolicy.resources import load_schema, policies_dir, schema_path

__all__ = ["COMMANDS", "load", "open_output", "registry"]

SEVERITIES = [s.value for s in Severity]


def registry() -> FactRegistry:
    return builtin_registry()


def _cache_dir() -> Path | None:
    """Compile cache: $XDG_CACHE_HOME/secpolicy (or ~/.cache/secpolicy); SECPOLICY_NO_CACHE=1 disables."""
    if os.environ.get("SECPOLICY_NO_CACHE"):
        return None
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "secpolicy" / "policies"


def _bundled() -> Path:
    """The bundled packs, named relative to the working directory when inside it, so rule
    sources read `policies/cis/5-access-control.yaml:120` (SARIF locations need that too)."""
    p = policies_dir()
    try:
        return p.relative_to(Path.cwd())
    except ValueError:
        return p


def load(policy_paths: Sequence[str], reg: FactRegistry | None = None) -> PolicySet:
    paths = [Path(p) for p in policy_paths] or [_bundled()]
    return load_policies(paths, reg or registry(), cache_dir=_cache_dir())


def open_output(path: str | None) -> IO[str]:
    if path in (None, "-"):
        return sys.stdout
    try:
        return open(path, "w", encoding="utf-8")
    except OSError as e:
        raise InputError(f"cannot write: {e.strerror}", path) from None


policy_option = click.option(
    "--policy",
    "-p",
    "policies",
    multiple=True,
    metavar="PATH",
    help="Policy file or directory (repeatable). Default: the bundled packs.",
)


# scan ------------------------------------------------------------------------------------
_STATUS_STYLE = {
    "pass": "green",
    "fail": "bold red",
    "error": "bold magenta",
    "not_applicable": "dim",
    "waived": "yellow",
    "skipped": "dim",
}


def _print_table(results: dict[str, Any], console: Console, verbose: bool) -> None:
    scan = results["scan"]
    summary = results["summary"]
    console.print(
        f"[bold]secpolicy scan[/bold] of {scan['host']} (root {scan['root']}), "
        f"{len(scan['policies'])} policies, {summary['total']} rules"
    )
    shown = [r for r in results["results"] if verbose or r["status"] in ("fail", "error", "waived")]
    if shown:
        t = Table(show_lines=False, header_style="bold")
        t.add_column("status")
        t.add_column("severity")
        t.add_column("rule")
        t.add_column("evidence", overflow="fold")
        order = {"error": 0, "fail": 1, "waived": 2}
        shown.sort(key=lambda r: (order.get(r["status"], 3), -SEVERITIES.index(r["severity"]), r["rule_id"]))
        for r in shown:
            text = _evidence_cell(r)
            t.add_row(
                f"[{_STATUS_STYLE[r['status']]}]{r['status']}[/]",
                r["severity"],
                f"{r['rule_id']}\n[dim]{r['title']}[/dim]",
                text,
            )
        console.print(t)
    counts = ", ".join(f"{v} {k}" for k, v in summary["by_status"].items() if v)
    console.print(f"[bold]Summary:[/bold] {counts or 'no rules selected'}")
    for fw, e in summary["frameworks"].items():
        pct = "n/a" if e["compliance_pct"] is None else f"{e['compliance_pct']:.1f}%"
        console.print(f"  {fw:<12} {pct:>7} compliant  ({e['pass']} pass, {e['fail']} fail, {e['error']} error, {e['waived']} waived)")


def _evidence_cell(r: dict[str, Any]) -> str:
    """The comparisons the verdict turned on (not a guard it got past); for an error or a
    rule that does not apply, the reason first."""
    if r["status"] == "error":
        return r.get("reason") or ""
    evidence = r["evidence"]
    deciding = [e for e in evidence if e.get("decisive", True)] or evidence
    lines = [r["reason"]] if r["status"] == "not_applicable" and r.get("reason") else []
    for ev in deciding[:3]:
        text = ev["expression"]
        if ev.get("expected") is not None:
            text += f"  expected {ev['expected']}, observed {ev['observed']}"
        if ev.get("source"):
            text += f"  ({ev['source']})"
        lines.append(text)
    if len(deciding) > 3:
        lines.append(f"... and {len(deciding) - 3} more")
    return "\n".join(lines) or (r.get("reason") or "")


@click.command()
@policy_option
@click.option("--root", default="/", show_default=True, type=click.Path(file_okay=False), help="Scan a mounted image or container root instead of this host.")
@click.option("--waivers", type=click.Path(dir_okay=False), help="YAML file of waivers.")
@click.option("--profile", help="Only rules of this profile (e.g. level1-server).")
@click.option("--standard", help="Only rules serving this framework (cis, pci-dss, hipaa, soc2, ...).")
@click.option("--rule", "rule_ids", multiple=True, metavar="ID", help="Only these rules (repeatable).")
@click.option("--format", "fmt", default="table", show_default=True, help="table, json, or a report format (html, pdf, sarif, junit, csv, ocsf).")
@click.option("--output", "-o", metavar="FILE", help="Write the output here instead of stdout.")
@click.option("--fail-on", default="low", show_default=True, help="Lowest severity that fails the scan, or `new` (with --baseline).")
@click.option("--baseline", type=click.Path(dir_okay=False), help="Results JSON of an earlier scan: with --fail-on new, only regressions fail.")
@click.option("--report-dir", type=click.Path(file_okay=False), help="Also write results.json, report.html and report.pdf here.")
@click.option("--fim", "fim_dbs", multiple=True, metavar="NAME=DB", help="Baseline database behind fim(\"NAME\") (default /var/lib/secpolicy/fim/NAME.db).")
@click.option("--fim-key-file", type=click.Path(dir_okay=False), help="Key of the FIM baselines (a file).")
@click.option("--fim-key-env", metavar="VAR", help="Key of the FIM baselines (an environment variable).")
@click.option("--monitor-summary", "monitor_summaries", multiple=True, type=click.Path(dir_okay=False), help="A `monitor --summary-json` file: its lost events become a finding.")
@click.option("--audit-log", "audit_log", type=click.Path(file_okay=False), help="Record the scan in this tamper-evident audit log (made by `secpolicy log init`).")
@click.option("-v", "--verbose", is_flag=True, help="Show passing rules too.")
def scan(
    policies: tuple[str, ...],
    root: str,
    waivers: str | None,
    profile: str | None,
    standard: str | None,
    rule_ids: tuple[str, ...],
    fmt: str,
    output: str | None,
    fail_on: str,
    baseline: str | None,
    report_dir: str | None,
    fim_dbs: tuple[str, ...],
    fim_key_file: str | None,
    fim_key_env: str | None,
    monitor_summaries: tuple[str, ...],
    audit_log: str | None,
    verbose: bool,
) -> None:
    """Scan this host (or --root) against policies and report findings with evidence."""
    if fail_on != "new" and fail_on not in SEVERITIES:
        raise InputError(f"--fail-on must be one of {', '.join(SEVERITIES)} or new, not {fail_on!r}")
    if fail_on == "new" and not baseline:
        raise InputError("--fail-on new needs --baseline OLD.json")
    if not os.path.isdir(root):
        raise InputError("--root: not a directory", root)
    # The report stack (110 ms to import) only when a report format is asked for.
    renderers = _report_renderers() if fmt not in ("table", "json") or report_dir else {}
    if fmt not in ("table", "json") and fmt not in renderers:
        raise InputError(f"--format must be table, json or one of {', '.join(sorted(renderers))}")
    reg = registry()
    ps = load(policies, reg)
    wset = load_waivers(Path(waivers)) if waivers else WaiverSet()
    unknown = wset.unknown_rules(r.id for r in ps.rules)
    if unknown:
        w = unknown[0]
        raise InputError(f"waiver for unknown rule id {w.rule_id!r}", w.source)
    known = {r.id for r in ps.rules}
    for rid in rule_ids:
        if rid not in known:
            raise InputError(f"--rule: unknown rule id {rid!r}")
    severity = Severity.LOW if fail_on == "new" else Severity(fail_on)
    options = {"fim": _fim_options(fim_dbs, fim_key_file, fim_key_env)}
    scan_id = str(uuid.uuid4())
    trail = _AuditTrail(audit_log, scan_id, ps, profile) if audit_log else None
    try:
        result = engine.scan(
            ps, reg, root=root, waivers=wset, profile=profile, standard=standard,
            rule_ids=rule_ids or None, fail_on=severity, scan_id=scan_id, options=options,
        )
    except BaseException as e:
        if trail:
            trail.failed(e)
        raise
    for path in monitor_summaries:
        summary = _read_json(path)
        result.findings.append(engine.lost_events_finding(summary, path))
        result.lost_events.extend(
            dict(w, source=path) for w in summary.get("loss_windows") or [] if isinstance(w, dict)
        )
    if trail:
        trail.finished(result)
    results = result.to_results()
    if fmt == "table":
        out = open_output(output)
        _print_table(results, Console(file=out, soft_wrap=False, width=None if out.isatty() else 160), verbose)
    elif fmt == "json":
        with _closing(open_output(output)) as out:
            json.dump(results, out, indent=2, sort_keys=False)
            out.write("\n")
    else:
        _write_report(renderers, fmt, results, output)
    if report_dir:
        os.makedirs(report_dir, exist_ok=True)
        with open(os.path.join(report_dir, "results.json"), "w", encoding="utf-8") as f:
            json.dump(results, f, indent=2)
        for name, f_ in (("html", "report.html"), ("pdf", "report.pdf")):
            if name in renderers:
                _write_report(renderers, name, results, os.path.join(report_dir, f_))
        click.echo(f"reports written to {report_dir}", err=True)
    if fail_on == "new":
        code = _regressions_exit(baseline, results)
    else:
        code = engine.exit_code(result.findings, severity)
    sys.exit(code)


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except OSError as e:
        raise InputError(f"cannot read: {e.strerror}", path) from None
    except ValueError as e:
        raise InputError(f"not JSON: {e}", path) from None
    if not isinstance(data, dict):
        raise InputError("expected a JSON object", path)
    return data


def _fim_options(dbs: Sequence[str], key_file: str | None, key_env: str | None) -> dict[str, Any]:
    """--fim NAME=DB pairs (and a shared key) as the options the fim() fact reads."""
    from secpolicy.facts.fim import DEFAULT_DB_DIR
    from secpolicy.fim.store import Key

    key = Key.from_file(key_file) if key_file else Key.from_env(key_env) if key_env else None
    out: dict[str, Any] = {}
    for item in dbs:
        name, sep, db = item.partition("=")
        if not sep or not name or not db:
            raise InputError(f"--fim takes NAME=DB, not {item!r}")
        out[name] = {"db": db, "key": key}
    out["*"] = {"key": key, "dir": DEFAULT_DB_DIR}
    return out


class _AuditTrail:
    """Scan start, the policies loaded, every finding and the scan's end, in the audit log."""

    def __init__(self, directory: str, scan_id: str, ps: PolicySet, profile: str | None) -> None:
        from secpolicy.auditlog.trail import AuditTrail

        self.trail = AuditTrail.open(directory, "scanner", scan_id)
        self.trail.started(profile, [p.id for p in ps.policies])
        for p in ps.policies:
            self.trail.config_loaded(p.path, p.sha256)

    def finished(self, result: engine.ScanResult) -> None:
        for f in result.findings:
            self.trail.finding(f)
        self.trail.finished(result.summary()["by_status"])
        self.trail.close()

    def failed(self, e: BaseException) -> None:
        self.trail.failure(f"{type(e).__name__}: {e}")
        self.trail.finished({}, error=f"{type(e).__name__}: {e}")
        self.trail.close()


class _closing:
    def __init__(self, f: IO[str]) -> None:
        self.f = f

    def __enter__(self) -> IO[str]:
        return self.f

    def __exit__(self, *exc: object) -> None:
        if self.f is not sys.stdout:
            self.f.close()


def _report_renderers() -> dict[str, Any]:
    from secpolicy.reports import RENDERERS  # imported on use: WeasyPrint is slow to import

    return dict(RENDERERS)


def _write_report(renderers: dict[str, Any], fmt: str, results: dict[str, Any], output: str | None) -> None:
    from secpolicy.reports import render_results

    render_results(results, fmt, output)


def _regressions_exit(baseline: str | None, results: dict[str, Any]) -> int:
    from secpolicy.reports.diff import diff_results, load_results

    assert baseline is not None
    d = diff_results(load_results(baseline), results)
    return EXIT_NONCOMPLIANT if d.new_failures else EXIT_OK


# lint ------------------------------------------------------------------------------------
@click.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--waivers", type=click.Path(dir_okay=False), help="Also check a waiver file against the rules.")
def lint(paths: tuple[str, ...], waivers: str | None) -> None:
    """Validate policy files: schema, expressions, types, references, coverage data."""
    ps = load(paths)
    problems: list[str] = []
    if waivers:
        wset = load_waivers(Path(waivers))
        for w in wset.unknown_rules(r.id for r in ps.rules):
            problems.append(f"{w.source}: waiver for unknown rule id {w.rule_id!r}")
    read = {n for r in ps.rules for n in r.params}
    problems.extend(f"{v.source}: var {v.name!r} is read by no rule" for v in ps.vars.values() if v.name not in read)
    for fw, cov in compute_coverage(ps).items():
        for req in cov.unbacked:
            problems.append(f"coverage: {fw} {req} is declared automated/partial but no rule references it")
    if problems:
        raise InputError("\n".join(problems))
    n_rules = len(ps.rules)
    n_vars = f", {len(ps.vars)} vars" if ps.vars else ""
    click.echo(f"ok: {len(ps.policies)} policies, {n_rules} rules ({len(ps.check_rules)} checks, {len(ps.event_rules)} event rules){n_vars}")


# explain ---------------------------------------------------------------------------------
@click.command()
@click.argument("rule_id")
@policy_option
def explain(rule_id: str, policies: tuple[str, ...]) -> None:
    """Show a rule, its compiled form, the facts or event fields it reads, and its index keys."""
    from secpolicy.dsl.explain import render_tree

    ps = load(policies)
    rule = ps.rule(rule_id)
    if rule is None:
        raise InputError(f"unknown rule id {rule_id!r}")
    click.echo(f"{rule.id}: {rule.title}")
    click.echo(f"  defined at  {rule.source} (policy {rule.policy_id})")
    click.echo(f"  severity    {rule.severity.value}")
    for fw, ids in rule.references.items():
        click.echo(f"  {fw:<11} {', '.join(ids)}")
    _explain_applicability(rule)
    exprs = [("check", rule.check), ("when", rule.when)]
    if rule.sequence:
        exprs += [(f"step {i + 1}", s) for i, s in enumerate(rule.sequence.steps)]
    for label, expr in exprs:
        if expr is None:
            continue
        click.echo(f"\n{label}: {expr.text.strip()}")
        click.echo("compiled:")
        click.echo(render_tree(expr.node, indent="  "))
        if expr.facts_used:
            click.echo(f"facts read: {', '.join(sorted(expr.facts_used))}")
        if expr.fields_used:
            click.echo(f"event fields read: {', '.join(sorted('.'.join(p) for p in expr.fields_used))}")
    if rule.threshold:
        t = rule.threshold
        click.echo(f"\nthreshold: {t.count} within {t.within:g}s by {', '.join(t.by) or '(all)'}")
    if rule.sequence:
        click.echo(f"\nsequence: within {rule.sequence.within:g}s by {', '.join(rule.sequence.by) or '(all)'}")
    if rule.is_event_rule:
        _explain_event_rule(rule)


def _explain_applicability(rule: Any) -> None:
    if rule.applicable:
        click.echo("\napplies only when (checked in order, before the check):")
        for c in rule.applicable:
            click.echo(f"  {' '.join(c.expr.text.split())}")
            click.echo(f"    else not applicable: {c.reason}  [{c.scope}, {c.source}]")
    if rule.params:
        click.echo("\nvars read:")
        for v in rule.params.values():
            bounds = [f"{k} {x}" for k, x in v.to_dict().items() if k in ("min", "max")]
            if v.choices is not None:
                bounds.append("one of " + ", ".join(v.to_dict()["choices"]))
            extra = f" ({'; '.join(bounds)})" if bounds else ""
            click.echo(f"  {v.name}: {v.type_name} = {v.show(v.default)}{extra}  [{v.source}]")
            click.echo(f"    {v.description}")


def _explain_event_rule(rule: Any) -> None:
    from secpolicy.events.bpf_plan import plan_for_rules
    from secpolicy.events.fields import EVENT_TYPES
    from secpolicy.events.matcher import describe_rule

    info = describe_rule(rule)
    click.echo("\nmatcher (user space):")
    for k, v in info.items():
        click.echo(f"  {k}: {v}")
    plan = plan_for_rules([rule])
    click.echo("\nkernel tier (eBPF filter when this rule alone is loaded):")
    types = info.get("index", {}).get("types") or sorted(plan.types) or EVENT_TYPES
    for t in types:
        click.echo(f"  {plan.describe(t)}")


# test ------------------------------------------------------------------------------------
@click.command(name="test")
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--rule", "rule_ids", multiple=True, metavar="ID", help="Only these rules.")
@click.option("--require-tests", is_flag=True, help="Fail if a rule has no passing and no failing case.")
@click.option("-v", "--verbose", is_flag=True, help="List passing tests too.")
def test_cmd(paths: tuple[str, ...], rule_ids: tuple[str, ...], require_tests: bool, verbose: bool) -> None:
    """Run the rules' inline tests (no kernel needed)."""
    from secpolicy.ruletests import run_check_tests

    reg = registry()
    ps = load(paths, reg)
    wanted = set(rule_ids)
    passed = failed = 0
    untested: list[str] = []
    for rule in ps.rules:
        if wanted and rule.id not in wanted:
            continue
        if rule.is_event_rule:
            outcomes = _event_tests(rule)
        else:
            outcomes = run_check_tests(rule, reg)
        expects = {t.expect for t in rule.tests}
        if rule.check is not None and not ({"pass"} <= expects and expects & {"fail", "error"}) or rule.is_event_rule and not ({"fire", "no_fire"} <= expects):
            untested.append(rule.id)
        for o in outcomes:
            if o.passed:
                passed += 1
                if verbose:
                    click.echo(f"PASS {o.rule_id}: {o.name}")
            else:
                failed += 1
                click.echo(f"FAIL {o.rule_id}: {o.name}: {o.detail} [{o.source}]")
    if untested:
        msg = f"{len(untested)} rule(s) without both a passing and a failing case: {', '.join(untested[:20])}"
        msg += " ..." if len(untested) > 20 else ""
        click.echo(msg, err=True)
    click.echo(f"{passed} passed, {failed} failed")
    if failed or (require_tests and untested):
        sys.exit(EXIT_NONCOMPLIANT)


def _event_tests(rule: Any) -> list[Any]:
    from secpolicy.events.testing import run_rule_tests

    return run_rule_tests(rule)


# schema ----------------------------------------------------------------------------------
@click.command()
@click.argument("name", type=click.Choice(["policy", "results", "event", "alert", "fim"]))
def schema(name: str) -> None:
    """Print a JSON Schema shipped with secpolicy."""
    if not schema_path(name).exists():
        raise InputError(f"no schema named {name!r} in this build")
    click.echo(json.dumps(load_schema(name), indent=2))


# coverage --------------------------------------------------------------------------------
@click.command()
@policy_option
@click.option("--standard", help="Only this framework.")
@click.option("--details/--no-details", default=False, help="List the requirements in each class.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def coverage(policies: tuple[str, ...], standard: str | None, details: bool, fmt: str) -> None:
    """Per framework: how many requirements are automated, partial or manual."""
    ps = load(policies)
    cov = compute_coverage(ps, standard)
    if standard and standard not in cov:
        raise InputError(f"no coverage data for framework {standard!r} (known: {', '.join(sorted(compute_coverage(ps))) or 'none'})")
    if fmt == "json":
        click.echo(
            json.dumps(
                {
                    fw: {
                        "automated": c.automated,
                        "partial": c.partial,
                        "manual": c.manual,
                        "claimed_but_unbacked": c.unbacked,
                        "referenced_but_undeclared": c.undeclared,
                        "total": c.total,
                    }
                    for fw, c in cov.items()
                },
                indent=2,
            )
        )
        return
    for c in cov.values():
        click.echo(c.line())
        if c.unbacked:
            click.echo(f"  ! declared automated/partial without any rule, counted as manual: {', '.join(c.unbacked)}")
        if details:
            for label, items in (("automated", c.automated), ("partial", c.partial), ("manual", c.manual)):
                click.echo(f"  {label} ({len(items)}): {', '.join(items) or '-'}")


COMMANDS = [scan, lint, explain, test_cmd, schema, coverage]
