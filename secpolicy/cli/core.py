"""Core commands: scan, lint, explain, test, schema, coverage."""

from __future__ import annotations

import contextlib
import json
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import IO, Any

import click

from secpolicy import outfile
from secpolicy.app.policies import load_policy_set
from secpolicy.app.scan import ScanRequest, load_tailoring_for, run_scan, write_scan_outputs
from secpolicy.cli import progress
from secpolicy.cli.choices import StrictChoice, unknown_name
from secpolicy.cli.outputs import redaction_option
from secpolicy.errors import EXIT_NONCOMPLIANT, InputError, LocatedError
from secpolicy.facts.base import FactRegistry
from secpolicy.models import Severity, Status, deciding_lines
from secpolicy.policy import PolicyErrors, PolicySet
from secpolicy.policy.coverage import compute_coverage
from secpolicy.policy.waivers import load_waivers
from secpolicy.resources import load_schema, schema_path
from secpolicy.terminal import inert_line
from secpolicy.vocabulary import builtin_registry

__all__ = ["COMMANDS", "FAIL_ON", "SCAN_FORMATS", "load", "registry"]

SEVERITIES = [s.value for s in Severity]
# `table` and `json` are the scan's own; the rest are the report formats (secpolicy.reports
# is imported only when one is asked for: WeasyPrint is slow to import).
SCAN_FORMATS = ("table", "json", "html", "pdf", "sarif", "junit", "csv", "ocsf")
FAIL_ON = (*SEVERITIES, "new")


def registry() -> FactRegistry:
    return builtin_registry()


def load(policy_paths: Sequence[str], reg: FactRegistry | None = None) -> PolicySet:
    return load_policy_set(policy_paths, reg or registry())


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
_SHOWN_ORDER = {"error": 0, "fail": 1, "waived": 2}


def _shown(results: dict[str, Any], verbose: bool) -> list[dict[str, Any]]:
    shown = [r for r in results["results"] if verbose or r["status"] in ("fail", "error", "waived")]
    shown.sort(key=lambda r: (_SHOWN_ORDER.get(r["status"], 3), -SEVERITIES.index(r["severity"]), r["rule_id"]))
    return shown


def _evidence_lines(r: dict[str, Any]) -> list[str]:
    """The comparisons the verdict turned on (not a guard it got past); for an error, the
    reason. A rule that does not apply says why in its evidence's message. One line each,
    inert: a newline inside a value (a file name, a line read from the host) is escaped."""
    if r["status"] == "error":
        lines = [r.get("reason") or ""]
    else:
        lines = deciding_lines(r["evidence"]) or [r.get("reason") or ""]
    return [inert_line(line) for line in lines if line]


def _headline(results: dict[str, Any]) -> str:
    scan, summary = results["scan"], results["summary"]
    return (f"secpolicy scan of {scan['host']} (root {scan['root']}), "
            f"{len(scan['policies'])} policies, {summary['total']} rules")


def _summary_lines(results: dict[str, Any], verbose: bool) -> list[str]:
    summary = results["summary"]
    counts = ", ".join(f"{v} {k}" for k, v in summary["by_status"].items() if v)
    lines = [f"Summary: {counts or 'no rules selected'}"]
    for fw, e in summary["frameworks"].items():
        pct = "n/a" if e["compliance_pct"] is None else f"{e['compliance_pct']:.1f}%"
        left_out = f"; {e['not_applicable']} not applicable left out" if e["not_applicable"] else ""
        lines.append(f"  {fw:<12} {pct:>7} compliant  ({e['pass']} pass, {e['fail']} fail, {e['error']} error, "
                     f"{e['waived']} waived{left_out})")
    reg = results.get("regressions")
    if reg is not None:
        b = reg["baseline"]
        lines.append(f"New failures relative to the baseline ({b['host']}, {b['started_at']}, scan {b['id']}): "
                     f"{len(reg['new_failures'])}")
        for c in reg["new_failures"]:
            lines.append(f"  NEW {c['new_status']:<5} {c['severity']:<8} {c['rule_id']}  "
                         f"({c['old_status'] or 'absent'} -> {c['new_status']})  {c['title']}")
    return (lines + _requirement_lines(results, verbose) + _tailoring_lines(results.get("tailoring"))
            + _not_selected_lines(results.get("not_selected")) + _expired_waiver_lines(results.get("waivers")))


def _not_selected_lines(rules: list[dict[str, Any]] | None) -> list[str]:
    """The rules the tailoring deselected: deliberately not evaluated (XCCDF notselected)."""
    if not rules:
        return []
    lines = [f"Not selected by the tailoring: {len(rules)} rule(s), not evaluated"]
    lines.extend(f"  notselected {r['rule_id']}: {r['reason']} ({r['source']})" for r in rules)
    return lines


def _expired_waiver_lines(waivers: list[dict[str, Any]] | None) -> list[str]:
    """Each waiver past its date, as the reports list it: in CI the terminal is all one
    reads, and a lapsed exception must not pass unseen there."""
    expired = [w for w in waivers or () if w.get("status") == "expired"]
    if not expired:
        return []
    lines = [f"Expired waivers: {len(expired)} (past their date: not applied)"]
    for w in expired:
        terms = [f"expired {w['expires']}"] + ([f"approved by {w['approver']}"] if w.get("approver") else [])
        where = f"; {w['source']}" if w.get("source") else ""
        lines.append(f"  {w['rule_id']}: {w['justification']} ({', '.join(terms)}{where})")
    return lines


_MARK = {"automated": "A", "partial": "P", "manual": "M", "undeclared": "?"}


def _requirement_lines(results: dict[str, Any], verbose: bool) -> list[str]:
    """Per framework requirement: counts, and the requirements not passing (all with -v)."""
    reqs = results.get("requirements") or {}
    if not reqs:
        return []
    lines = ["Requirements (a requirement fails if any of its rules fails; coverage A automated, P partial, M manual):"]
    for fw, rows in reqs.items():
        e = results["summary"]["frameworks"].get(fw, {})
        counts = e.get("requirements_by_status") or {}
        pct = e.get("requirements_compliance_pct")
        text = ", ".join(f"{n} {k.replace('_', ' ')}" for k, n in counts.items() if n)
        lines.append(f"  {fw:<12} {'n/a' if pct is None else f'{pct:.1f}%':>7} of decided requirements pass  ({text})")
        shown = rows if verbose else [r for r in rows if r["status"] in ("fail", "error")]
        for r in shown:
            n = sum(r["rules"][k] for k in ("pass", "fail", "error", "waived", "not_applicable"))
            rules = f"{r['rules'].get(r['status'], 0)} of {n} rule(s) {r['status'].replace('_', ' ')}" if n else "no rule evaluated"
            lines.append(f"    {r['status']:<14} {r['id']:<14} {_MARK.get(r['coverage'], '?')}  {rules}")
    return lines


def _tailoring_lines(t: dict[str, Any] | None) -> list[str]:
    if not t:
        return []
    lines = [f"Tailoring: {t['id']} ({t['path']}, sha256 {t['sha256'][:12]}...)"]
    if t.get("profile"):
        lines.append(f"  profile {t['profile']}")
    for v in t["vars"]:
        lines.append(f"  var {v['name']} = {v['value']} (default {v['default']})")
    for r in t["rules"]:
        state = "enabled" if r["enabled"] else "disabled"
        default = "enabled" if r["default_enabled"] else "disabled"
        lines.append(f"  rule {r['rule_id']} {state} (default {default}): {r['reason']}")
    return lines


def _print_plain(results: dict[str, Any], out: IO[str], verbose: bool) -> None:
    """For pipes, files and NO_COLOR: no colour, no box drawing; one finding per line, its
    evidence indented on the next, so `grep` and `awk` read it."""
    out.write(inert_line(_headline(results)) + "\n")
    for r in _shown(results, verbose):
        out.write(inert_line(f"{r['status']:<6} {r['severity']:<8} {r['rule_id']}  {r['title']}") + "\n")
        for line in _evidence_lines(r):
            out.write(f"    {line}\n")
    for line in _summary_lines(results, verbose):
        out.write(inert_line(line) + "\n")


def _print_table(results: dict[str, Any], out: IO[str], verbose: bool) -> None:
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(file=out, soft_wrap=False)
    scan = results["scan"]
    console.print(f"[bold]secpolicy scan[/bold] of {escape(inert_line(scan['host']))} (root {escape(inert_line(scan['root']))}), "
                  f"{len(scan['policies'])} policies, {results['summary']['total']} rules")
    shown = _shown(results, verbose)
    if shown:
        t = Table(show_lines=False, header_style="bold")
        for col in ("status", "severity", "rule"):
            t.add_column(col)
        t.add_column("evidence", overflow="fold")
        for r in shown:
            t.add_row(f"[{_STATUS_STYLE[r['status']]}]{r['status']}[/]", r["severity"],
                      f"{escape(inert_line(r['rule_id']))}\n[dim]{escape(inert_line(r['title']))}[/dim]",
                      escape("\n".join(_evidence_lines(r))))
        console.print(t)
    for i, line in enumerate(_summary_lines(results, verbose)):
        line = inert_line(line)
        console.print(escape(line) if i else f"[bold]Summary:[/bold]{escape(line[len('Summary:'):])}",
                      highlight=False)


@click.command()
@policy_option
@click.option("--root", default="/", show_default=True, type=click.Path(file_okay=False), help="Scan a mounted image or container root instead of this host.")
@click.option("--image", metavar="PATH", help="Scan a container image: a `docker save`/`podman save` archive or an OCI layout (directory or tar), read without a daemon.")
@click.option("--target", metavar="ssh://[USER@]HOST[:PORT]", help="Scan a remote host over SSH (OpenSSH, your ssh_config and known_hosts); nothing is installed there.")
@click.option("--ssh-option", "ssh_options", multiple=True, metavar="KEY=VALUE", help="An ssh_config option for --target (repeatable), e.g. IdentityFile=~/.ssh/scan.")
@click.option("--waivers", type=click.Path(dir_okay=False), help="YAML file of waivers.")
@click.option("--tailoring", type=click.Path(dir_okay=False), help="Tailoring file: var values, profile, rules enabled or disabled (`secpolicy schema tailoring`).")
@click.option("--profile", help="Only rules of this profile (e.g. level1-server).")
@click.option("--standard", help="Only rules serving this framework (cis, pci-dss, hipaa, soc2, ...).")
@click.option("--rule", "rule_ids", multiple=True, metavar="ID", help="Only these rules (repeatable).")
@click.option("--format", "fmt", default="table", show_default=True, type=StrictChoice(SCAN_FORMATS), help="Output format: the scan's table or results JSON, or a report format.")
@click.option("--output", "-o", metavar="FILE", help="Write the output here instead of stdout.")
@click.option("--fail-on", default="low", show_default=True, type=StrictChoice(FAIL_ON), help="Lowest severity that fails the scan, or `new` (with --baseline).")
@click.option("--baseline", type=click.Path(dir_okay=False), help="Results JSON of an earlier scan: lists the new failures; with --fail-on new, only they fail.")
@click.option("--report-dir", type=click.Path(file_okay=False), help="Also write results.json, report.html and report.pdf here (created 0700).")
@click.option("--fim", "fim_dbs", multiple=True, metavar="NAME=DB", help="Baseline database behind fim(\"NAME\") (default /var/lib/secpolicy/fim/NAME.db).")
@click.option("--fim-key-file", type=click.Path(dir_okay=False), help="Key of the FIM baselines (a file).")
@click.option("--fim-key-env", metavar="VAR", help="Key of the FIM baselines (an environment variable).")
@click.option("--monitor-summary", "monitor_summaries", multiple=True, type=click.Path(dir_okay=False), help="A `monitor --summary-json` file: its lost events become a finding.")
@click.option("--audit-log", "audit_log", type=click.Path(file_okay=False), help="Record the scan in this tamper-evident audit log (made by `secpolicy log init`).")
@redaction_option
@click.option("-v", "--verbose", is_flag=True, help="Show passing rules too.")
@click.option("-q", "--quiet", is_flag=True, help="No progress and no notes on stderr.")
def scan(
    policies: tuple[str, ...],
    root: str,
    image: str | None,
    target: str | None,
    ssh_options: tuple[str, ...],
    waivers: str | None,
    tailoring: str | None,
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
    redaction: str | None,
    verbose: bool,
    quiet: bool,
) -> None:
    """Scan this host (or --root, --image, --target) against policies and report findings with evidence.

    Secrets the rules read (passwords, keys, card numbers in files) are masked in evidence,
    results and reports (--redaction)."""
    progress.set_quiet(quiet)
    req = ScanRequest(policies, root, image, waivers, tailoring, profile, standard, rule_ids, fmt, output, fail_on,
                      baseline, report_dir, fim_dbs, fim_key_file, fim_key_env, monitor_summaries, audit_log,
                      redaction, target, ssh_options)
    run = run_scan(req, progress=_scan_progress)
    if not quiet:
        for note in run.notes:
            click.echo(f"secpolicy: note: {inert_line(note)}", err=True)
    if fmt == "table":
        with outfile.open_output(output) as out:
            if progress.plain_output(out):
                _print_plain(run.results, out, verbose)
            else:
                _print_table(run.results, out, verbose)
    write_scan_outputs(run, req, _rendering)
    if report_dir and not quiet:
        click.echo(f"reports written to {report_dir}", err=True)
    if not quiet:
        _non_root_banner(run.results)
    sys.exit(run.exit_code)


@contextlib.contextmanager
def _scan_progress() -> Iterator[Callable[[int, int], None]]:
    with progress.Progress("scan") as prog:
        yield lambda done, total: prog.count(done, total, "rules")


def _rendering(fmt: str) -> contextlib.AbstractContextManager[Any]:
    return progress.pdf_progress("PDF report") if fmt == "pdf" else contextlib.nullcontext()


# What a failed read or a refused system call says when privileges are missing.
_PRIVILEGE_WORDS = ("permission denied", "operation not permitted", "needs root", "cap_sys_admin")


def _non_root_banner(results: dict[str, Any]) -> None:
    """As Lynis' NON-PRIVILEGED SCAN MODE: say so, and how many checks that cost (nothing when
    none did: a root tree the user may read whole is scanned completely)."""
    if os.geteuid() == 0:
        return
    blocked = [r["rule_id"] for r in results["results"]
               if r["status"] == Status.ERROR.value and any(w in (r.get("reason") or "").lower() for w in _PRIVILEGE_WORDS)]
    if not blocked:
        return
    click.echo(
        f"secpolicy: NON-PRIVILEGED SCAN MODE (uid {os.geteuid()}): {len(blocked)} rule(s) could not be "
        "evaluated for lack of privileges (they are errors, never passes); run as root for a complete scan.",
        err=True,
    )


# lint ------------------------------------------------------------------------------------
@click.command()
@click.argument("paths", nargs=-1, type=click.Path())
@click.option("--waivers", type=click.Path(dir_okay=False), help="Also check a waiver file against the rules.")
@click.option("--tailoring", type=click.Path(dir_okay=False), help="Also check a tailoring file against the rules and vars.")
def lint(paths: tuple[str, ...], waivers: str | None, tailoring: str | None) -> None:
    """Validate policy files: schema, expressions, types, references, coverage data."""
    ps = load(paths)
    load_tailoring_for(tailoring, ps, None)
    problems: list[InputError] = []
    if waivers:
        wset = load_waivers(Path(waivers))
        problems.extend(wset.unknown_rule_errors(r.id for r in ps.rules))
    read = {n for r in ps.rules for n in r.params}
    for v in ps.vars.values():
        if v.name not in read:
            path, _, line = v.source.rpartition(":")
            problems.append(LocatedError(f"var {v.name!r} is read by no rule", path, int(line))
                            if line.isdigit() else InputError(f"var {v.name!r} is read by no rule", v.source))
    for fw, cov in compute_coverage(ps).items():
        for req in cov.unbacked:
            problems.append(InputError(f"coverage: {fw} {req} is declared automated/partial but no rule references it"))
        for req in cov.conflicting:
            problems.append(InputError(f"coverage: {fw} {req} is declared in more than one of automated, partial "
                                       "and manual (the strongest is counted)"))
    for w in ps.warnings:
        click.echo(w.render(), err=True)
    if problems:
        raise PolicyErrors(problems)  # each rendered on its own, located ones as file:line:col
    n_rules = len(ps.rules)
    warned = f", {len(ps.warnings)} warning(s)" if ps.warnings else ""
    n_vars = f", {len(ps.vars)} vars" if ps.vars else ""
    click.echo(f"ok: {len(ps.policies)} policies, {n_rules} rules ({len(ps.check_rules)} checks, "
               f"{len(ps.event_rules)} event rules){n_vars}{warned}")


# explain ---------------------------------------------------------------------------------
@click.command()
@click.argument("rule_id")
@policy_option
def explain(rule_id: str, policies: tuple[str, ...]) -> None:
    """Show a rule, its compiled form, the facts or event fields it reads, and its index keys.

    RULE_ID may be the id's leading part up to a `-` (`cis-5.1.20`) when one rule has it."""
    from secpolicy.dsl.explain import render_tree

    ps = load(policies)
    rule = ps.rule(_resolve_rule_id(rule_id, [r.id for r in ps.rules]))
    assert rule is not None
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


def _resolve_rule_id(given: str, ids: Sequence[str]) -> str:
    """The rule id itself, or the one rule whose id starts with it followed by `-` (rule ids
    are `cis-5.1.20-sshd-permit-root-login`: `cis-5.1.20` names that rule and not
    `cis-5.1.2...`). Anything else is exit 2 with the candidates."""
    if given in ids:
        return given
    matches = [i for i in ids if i.startswith(given + "-")]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise InputError(f"rule id {given!r} is ambiguous: {', '.join(sorted(matches)[:20])}")
    raise unknown_name("rule id", given, ids)
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
    ids = {r.id for r in ps.rules}
    for rid in rule_ids:
        if rid not in ids:
            raise unknown_name("rule id", rid, ids)  # as scan does: a typo must not test nothing
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
    if not passed + failed:
        # Nothing was tested: a green run here would vouch for rules no case exercised.
        raise InputError("no inline tests in the rules selected: nothing was tested")
    if failed or (require_tests and untested):
        sys.exit(EXIT_NONCOMPLIANT)


def _event_tests(rule: Any) -> list[Any]:
    from secpolicy.events.testing import run_rule_tests

    return run_rule_tests(rule)


# schema ----------------------------------------------------------------------------------
@click.command()
@click.argument("name", type=click.Choice(["policy", "results", "tailoring", "event", "alert", "fim", "redaction"]))
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
    if standard is not None and standard not in cov:
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
