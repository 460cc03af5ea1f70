"""`secpolicy fim init|check|update|status`: parse options, call secpolicy.fim, print a table
or JSON, exit 0 (no changes), 1 (changes), 2 (bad input), 3 (could not check), 5 (integrity)."""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import click

from secpolicy.app.fim import FimRun
from secpolicy.cli.choices import input_file
from secpolicy.cli.outputs import redaction_option
from secpolicy.errors import (
    EXIT_NONCOMPLIANT,
    EXIT_OK,
    EXIT_RUNTIME,
    InputError,
    IntegrityError,
    SecpolicyError,
)
from secpolicy.fim.config import FimConfig, load_config
from secpolicy.fim.record import display_path
from secpolicy.fim.scan import (
    CheckResult,
    check,
    count_tree,
    init_baseline,
    update,
)
from secpolicy.fim.store import Key
from secpolicy.fim.walker import MAX_DEPTH
from secpolicy.terminal import inert

if TYPE_CHECKING:
    from secpolicy.redaction import Redactor

__all__ = ["exit_code_for", "fim"]

def exit_code_for(result: CheckResult) -> int:
    """1 when anything changed, else 3 when something could not be checked, else 0."""
    if result.has_changes:
        return EXIT_NONCOMPLIANT
    return EXIT_RUNTIME if result.errors else EXIT_OK


def _exit(run: FimRun, code: int) -> None:
    """Exit with `code`, after naming the checkpoint copies of the audit log that failed: the
    log itself is sealed and the result above stands, so only a clean run becomes exit 3."""
    if run.copy_failure is not None:
        click.echo(f"secpolicy: audit log: {run.copy_failure.render()}", err=True)
        if code == EXIT_OK:
            code = EXIT_RUNTIME
    click.get_current_context().exit(code)


def _key(key_file: str | None, key_env: str | None, no_key: bool) -> Key:
    given = [x for x in (key_file, key_env) if x]
    if len(given) > 1 or (given and no_key):
        raise InputError("give one of --key-file, --key-env or --no-key")
    if key_file:
        return Key.from_file(key_file)
    if key_env:
        return Key.from_env(key_env)
    if no_key:
        return Key.none()
    raise InputError(
        "a key is required to seal and verify the baseline: --key-file FILE or --key-env VAR "
        "(or --no-key for an unkeyed baseline that only detects accidental damage)"
    )


def _not_empty(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """An empty path is a mistake (an unset shell variable), never the current directory."""
    if value is not None and not value.strip():
        raise click.BadParameter("must not be empty", ctx=ctx, param=param)
    return value


def _config_file(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """Not empty, and a file to read: a device (`/dev/zero`) would be read without end."""
    return input_file("FIM configuration")(ctx, param, _not_empty(ctx, param, value))


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
                     callback=_config_file, help="FIM configuration (YAML)."),
        click.option("--db", "db", type=click.Path(dir_okay=False), callback=_not_empty,
                     help="Baseline database (default: `database:` in the configuration)."),
        click.option("--root", "root", type=click.Path(file_okay=False), default=None, callback=_not_empty,
                     help="Interpret watched paths under this directory (a mounted image)."),
        click.option("--key-file", type=click.Path(dir_okay=False), callback=_not_empty,
                     help="File holding the MAC key."),
        click.option("--key-env", metavar="VAR", callback=_not_empty,
                     help="Environment variable holding the MAC key."),
        click.option("--no-key", is_flag=True, help="Unkeyed baseline (detects damage, not rewriting)."),
        click.option("--progress/--no-progress", default=None,
                     help="Show progress on stderr (default: when stderr is a terminal)."),
        click.option("--quiet", "-q", is_flag=True, help="No progress and no notes on stderr."),
        click.option("--workers", type=click.IntRange(1, 64), default=None,
                     help="Hashing processes (default: `workers:` in the configuration, 2)."),
        click.option("--audit-log", "audit_log", type=click.Path(file_okay=False), metavar="DIR", callback=_not_empty,
                     help="Record the run (configuration, every change, summary, failures, each baseline "
                          "generation) in this tamper-evident audit log (made by `secpolicy log init`); "
                          "`check` and `update` refuse a baseline older than the newest generation recorded."),
        redaction_option,
    ]
    for o in reversed(opts):
        f = o(f)
    return f


def _raise_fd_limit() -> None:
    """Deep trees hold one descriptor per directory level: allow MAX_DEPTH of them."""
    try:
        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        want = MAX_DEPTH + 1024
        if soft != resource.RLIM_INFINITY and soft < want:
            resource.setrlimit(resource.RLIMIT_NOFILE, (want if hard == resource.RLIM_INFINITY else min(want, hard), hard))
    except (OSError, ValueError):
        pass  # the walk reports directories it cannot open


class _Progress:
    """Entries (and bytes) done of the totals a first stat pass found, on one rewritten line
    of stderr: on a terminal only, never on a pipe or with --quiet."""

    def __init__(self, enabled: bool | None, quiet: bool, label: str) -> None:
        self.enabled = not quiet and (sys.stderr.isatty() if enabled is None else enabled)
        self.label = label
        self.t0 = time.monotonic()
        self.last = 0.0
        self.entries_total = 0
        self.bytes_total = 0
        self.drawn = False

    def totals(self, config: FimConfig, root: str | None, with_bytes: bool) -> None:
        if self.enabled:
            entries, nbytes = count_tree(config, root)
            self.entries_total = entries
            self.bytes_total = nbytes if with_bytes else 0

    def __call__(self, entries: int, nbytes: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.2:
            return
        self.last = now
        done = f"{entries:,}/{self.entries_total:,}" if self.entries_total else f"{entries:,}"
        size = (f"{nbytes / 1e6:,.0f}/{self.bytes_total / 1e6:,.0f} MB" if self.bytes_total
                else f"{nbytes / 1e6:,.0f} MB")
        text = f"{self.label}: {done} entries, {size} hashed, {now - self.t0:.1f} s"
        sys.stderr.write("\r" + text + "\033[K")
        sys.stderr.flush()
        self.drawn = True

    def done(self) -> None:
        if self.drawn:
            sys.stderr.write("\r\033[K")
            sys.stderr.flush()
            self.drawn = False


def _fmt(v: Any) -> str:
    return "-" if v is None else str(v)


def _redacted(data: dict[str, Any], redactor: Redactor) -> dict[str, Any]:
    """A check's JSON through the redaction policy, its diffs line by line (`redact_diff`)."""
    diffs = [c.pop("diff", None) for c in data["changed"]]
    out = redactor.details(data)[0]
    if any(d is not None for d in diffs):
        from secpolicy.fim.diff import redact_diff

        for c, diff in zip(out["changed"], diffs, strict=True):
            if diff is not None:
                c["diff"] = redact_diff(diff, redactor.text)
    return out


def _print_table(result: CheckResult, title: str, redactor: Redactor) -> None:
    summary = result.to_dict()["summary"]
    click.echo(
        f"{title}: {result.status} — {summary['entries']} entries, "
        f"{summary['added']} added, {summary['removed']} removed, {summary['changed']} changed, "
        f"{summary['errors']} errors ({summary['hashed']} hashed, {summary['duration_s']} s)"
    )
    if result.has_changes:
        from rich import box
        from rich.console import Console
        from rich.table import Table
        from rich.text import Text

        console = Console(highlight=False, soft_wrap=False, width=max(100, Console().width))
        table = Table(show_lines=False, box=box.HEAVY_HEAD if console.is_terminal else box.ASCII)
        for col in ("change", "type", "path", "attribute", "baseline", "now"):
            table.add_column(col, overflow="fold")
        # Cells are Text, not markup: a `[bold]` in a path or a link target is shown as it is.
        for e in result.added + result.removed:
            table.add_row(e.kind, e.ftype, Text(display_path(e.path)), "", "", "")
        for e in result.changed:
            for i, c in enumerate(e.changes):
                first = i == 0
                table.add_row("changed" if first else "", e.ftype if first else "",
                              Text(display_path(e.path)) if first else "", c.name,
                              Text(inert(redactor.text(_fmt(c.old)))),
                              Text(inert(redactor.text(_fmt(c.new)))))
        console.print(table)
    for e in result.changed:
        if e.diff is not None:
            from secpolicy.fim.diff import redact_diff

            # A watched file's content must not reach the terminal as control sequences.
            click.echo(inert(redact_diff(e.diff, redactor.text)))
        if e.diff_note is not None:
            click.echo(f"diff: {display_path(e.path)}: {e.diff_note}")
    for err in result.errors:
        click.echo(f"error: {display_path(err.path)}: {err.message}")
    for note in result.notes:
        click.echo(f"note: {display_path(note.path)}: {note.message}")


@click.group("fim")
def fim() -> None:
    """File integrity monitoring: baselines sealed with a keyed MAC, fast checks."""


@fim.command("init")
@_common
@click.option("--force", is_flag=True, help="Replace an existing baseline (kept as <db>.prev).")
def init_cmd(config_path: str, db: str | None, root: str | None, key_file: str | None,
             key_env: str | None, no_key: bool, progress: bool | None, quiet: bool, workers: int | None,
             audit_log: str | None, redaction: str | None, force: bool) -> None:
    """Build and seal a baseline of every watched path."""
    _raise_fd_limit()
    with FimRun(audit_log, "init", config_path, db, root, redaction) as trail:
        config = load_config(config_path)
        trail.config(config_path, config)
        key = _key(key_file, key_env, no_key)
        prog = _Progress(progress, quiet, "fim init")
        prog.totals(config, root, with_bytes=True)
        try:
            summary = init_baseline(config, db, root, key, force=force, progress=prog, workers=workers)
        finally:
            prog.done()
        trail.generation(summary.baseline.path, summary.baseline, "init")
        trail.errors(summary.errors)
        trail.finished(result="error" if summary.errors else "created", entries=summary.entries,
                       errors=len(summary.errors), baseline=summary.baseline.to_dict(),
                       previous=summary.previous)
    b = summary.baseline
    click.echo(
        f"baseline {b.path}: {summary.entries} entries, {summary.hashed} hashed "
        f"({summary.bytes_hashed / 1e6:.1f} MB) in {summary.duration_s:.2f} s; "
        f"generation {b.generation}, id {b.baseline_id}, {'keyed' if b.keyed else 'UNKEYED'}"
    )
    for err in summary.errors:
        click.echo(f"error: {display_path(err.path)}: {err.message}", err=True)
    if not quiet:
        for note in summary.notes:
            click.echo(f"note: {display_path(note.path)}: {note.message}", err=True)
    _exit(trail, EXIT_RUNTIME if summary.errors else EXIT_OK)


@fim.command("check")
@_common
@click.option("--full", is_flag=True, help="Re-hash every file, not only those whose inode changed.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--no-record", is_flag=True, help="Do not record this check in the baseline's history.")
def check_cmd(config_path: str, db: str | None, root: str | None, key_file: str | None,
              key_env: str | None, no_key: bool, progress: bool | None, quiet: bool, workers: int | None,
              audit_log: str | None, redaction: str | None, full: bool, fmt: str, no_record: bool) -> None:
    """Compare the filesystem with the baseline. Exit 0 no changes, 1 changes, 3 errors only."""
    _raise_fd_limit()
    with FimRun(audit_log, "check", config_path, db, root, redaction) as trail:
        config = load_config(config_path)
        trail.config(config_path, config)
        key = _key(key_file, key_env, no_key)
        recorded = trail.recorded()
        prog = _Progress(progress, quiet, "fim check")
        prog.totals(config, root, with_bytes=full)
        try:
            result = check(config, db, root, key, full=full, record=not no_record, progress=prog,
                           workers=workers, recorded=recorded)
        finally:
            prog.done()
        trail.changes(result)
        trail.finished(result=result.status, **_summary_details(result))
    if fmt == "json":
        click.echo(json.dumps(_redacted(result.to_dict(), trail.redactor), indent=2))
    else:
        _print_table(result, "fim check", trail.redactor)
    _exit(trail, exit_code_for(result))


@fim.command("update")
@_common
@click.option("--full", is_flag=True, help="Re-hash every file.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def update_cmd(config_path: str, db: str | None, root: str | None, key_file: str | None,
               key_env: str | None, no_key: bool, progress: bool | None, quiet: bool, workers: int | None,
               audit_log: str | None, redaction: str | None, full: bool, fmt: str) -> None:
    """Accept the current state as the new baseline (atomically; the old one is kept)."""
    _raise_fd_limit()
    with FimRun(audit_log, "update", config_path, db, root, redaction) as trail:
        config = load_config(config_path)
        trail.config(config_path, config)
        key = _key(key_file, key_env, no_key)
        recorded = trail.recorded()
        prog = _Progress(progress, quiet, "fim update")
        prog.totals(config, root, with_bytes=full)
        try:
            result = update(config, db, root, key, full=full, progress=prog, workers=workers, recorded=recorded)
        finally:
            prog.done()
        trail.generation(result.baseline.path, result.baseline, "update")
        trail.changes(result.check, accepted=True)
        if result.config_changed:
            trail.config_changed(config_path, result.check.baseline.config_digest, config.digest)
        trail.finished(result="updated", **_summary_details(result.check), new_baseline=result.baseline.to_dict(),
                       previous=result.previous, config_changed=result.config_changed)
    if fmt == "json":
        click.echo(json.dumps(_redacted(result.to_dict(), trail.redactor), indent=2))
    else:
        _print_table(result.check, "fim update accepted", trail.redactor)
        b = result.baseline
        click.echo(f"new baseline generation {b.generation} ({b.baseline_id}); previous kept at {result.previous}")
        if result.config_changed:
            click.echo("the configuration changed since the previous baseline")
    _exit(trail, EXIT_RUNTIME if result.check.errors else EXIT_OK)


def _summary_details(result: CheckResult) -> dict[str, Any]:
    b = result.baseline
    return {"summary": result.to_dict()["summary"], "baseline_id": b.baseline_id,
            "generation": b.generation, "baseline": b.path, "root_hash": b.root_hash}


@fim.command("status")
@click.option("--db", "db", required=True, type=click.Path(dir_okay=False), callback=_not_empty)
@click.option("--key-file", type=click.Path(dir_okay=False), callback=_not_empty)
@click.option("--key-env", metavar="VAR", callback=_not_empty)
@click.option("--no-key", is_flag=True)
@click.option("--deep", is_flag=True, help="Also verify every entry against the sealed MAC.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status_cmd(db: str, key_file: str | None, key_env: str | None, no_key: bool, deep: bool, fmt: str) -> None:
    """Show a baseline's verified state: age, last check and its counts. Exit 5 if it does not verify."""
    from secpolicy.fim.status import fim_status

    key = _key(key_file, key_env, no_key)
    st = fim_status(db, key, deep=deep)
    if fmt == "json":
        click.echo(json.dumps(st.to_dict(), indent=2))
    else:
        for k, v in st.to_dict().items():
            click.echo(f"{k}: {_fmt(v)}")
    if not st.exists:
        raise InputError("no baseline database here", db)
    if not st.verified:
        raise IntegrityError(st.reason or "baseline does not verify")


def main(argv: list[str] | None = None) -> int:
    """Run the group standalone (tests, benchmarks) the way `secpolicy` will."""
    try:
        rv = fim.main(args=argv, prog_name="secpolicy fim", standalone_mode=False)
    except SecpolicyError as e:
        click.echo(f"secpolicy: {e.render()}", err=True)
        return e.exit_code
    except click.exceptions.Exit as e:
        return e.exit_code
    except click.ClickException as e:
        e.show()
        return 2
    except (click.exceptions.Abort, KeyboardInterrupt):
        click.echo("secpolicy: interrupted", err=True)
        return 130
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
