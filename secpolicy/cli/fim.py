"""`secpolicy fim init|check|update|status`: parse options, call secpolicy.fim, print a table
or JSON, exit 0 (no changes), 1 (changes), 2 (bad input), 3 (could not check), 5 (integrity)."""

from __future__ import annotations

import dataclasses
import json
import sys
import time
from collections.abc import Callable
from typing import Any, Self

import click

from secpolicy.auditlog import records
from secpolicy.auditlog.trail import AuditTrail, file_sha256, fim_change_record
from secpolicy.errors import (
    EXIT_NONCOMPLIANT,
    EXIT_OK,
    EXIT_RUNTIME,
    InputError,
    IntegrityError,
    SecpolicyError,
)
from secpolicy.fim import (
    CheckResult,
    FimConfig,
    Key,
    check,
    display_path,
    fim_status,
    init_baseline,
    load_config,
    update,
)

__all__ = ["exit_code_for", "fim"]


def exit_code_for(result: CheckResult) -> int:
    """1 when anything changed, else 3 when something could not be checked, else 0."""
    if result.has_changes:
        return EXIT_NONCOMPLIANT
    return EXIT_RUNTIME if result.errors else EXIT_OK


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


def _common(f: Callable[..., Any]) -> Callable[..., Any]:
    opts = [
        click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False),
                     help="FIM configuration (YAML)."),
        click.option("--db", "db", type=click.Path(dir_okay=False),
                     help="Baseline database (default: `database:` in the configuration)."),
        click.option("--root", "root", type=click.Path(file_okay=False), default=None,
                     help="Interpret watched paths under this directory (a mounted image)."),
        click.option("--key-file", type=click.Path(dir_okay=False), help="File holding the MAC key."),
        click.option("--key-env", metavar="VAR", help="Environment variable holding the MAC key."),
        click.option("--no-key", is_flag=True, help="Unkeyed baseline (detects damage, not rewriting)."),
        click.option("--progress/--no-progress", default=None,
                     help="Show progress on stderr (default: when stderr is a terminal)."),
        click.option("--workers", type=click.IntRange(1, 64), default=None,
                     help="Hashing processes (default: `workers:` in the configuration, 2)."),
        click.option("--audit-log", "audit_log", type=click.Path(file_okay=False), metavar="DIR",
                     help="Record the run (configuration, every change, summary, failures) in this "
                          "tamper-evident audit log (made by `secpolicy log init`)."),
    ]
    for o in reversed(opts):
        f = o(f)
    return f


class _Progress:
    """Throttled one-line progress on stderr, via rich when it is a terminal."""

    def __init__(self, enabled: bool | None, label: str) -> None:
        self.enabled = sys.stderr.isatty() if enabled is None else enabled
        self.label = label
        self.t0 = time.monotonic()
        self.last = 0.0
        self.console = None
        if self.enabled:
            from rich.console import Console

            self.console = Console(stderr=True)

    def __call__(self, entries: int, nbytes: int) -> None:
        now = time.monotonic()
        if not self.enabled or now - self.last < 0.25:
            return
        self.last = now
        text = f"{self.label}: {entries:,} entries, {nbytes / 1e6:,.0f} MB hashed, {now - self.t0:.1f} s"
        if self.console is not None and self.console.is_terminal:
            self.console.print(text, end="\r", highlight=False, soft_wrap=True)
        else:
            click.echo(text, err=True)

    def done(self) -> None:
        if self.enabled and self.console is not None and self.console.is_terminal and self.last:
            self.console.print(" " * 79, end="\r")


def _load(config_path: str) -> FimConfig:
    return load_config(config_path)


class _Trail:
    """`--audit-log` of a fim command: the run's start, the configuration (file sha256 and the
    digest baselines are bound to), each change with old and new attribute values, the summary
    with the baseline's id and generation, and failures; integrity failures are critical.
    Without --audit-log every method does nothing."""

    def __init__(self, directory: str | None, command: str, config_path: str, db: str | None,
                 root: str | None) -> None:
        self.trail: AuditTrail | None = None
        if directory:
            self.trail = AuditTrail.open(directory, "fim")
            try:
                self.trail.started(command=f"fim {command}", config=config_path, db=db, root=root or "/")
            except BaseException:
                self.trail.close()
                raise

    def __enter__(self) -> Self:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object) -> None:
        if self.trail is None:
            return
        trail, self.trail = self.trail, None
        try:
            if exc is not None:
                text = exc.render() if isinstance(exc, SecpolicyError) else f"{type(exc).__name__}: {exc}"
                integrity = isinstance(exc, IntegrityError)
                trail.failure(text, severity="critical" if integrity else "high",
                              kind="integrity" if integrity else type(exc).__name__,
                              exit_code=getattr(exc, "exit_code", None))
                trail.finished(None, text)
        finally:
            trail.close()

    def config(self, path: str, config: FimConfig) -> None:
        if self.trail is not None:
            rec = records.config_loaded(path, file_sha256(path), component="fim")
            # The digest is what baselines are bound to: cosmetic edits change the file's
            # sha256, not the digest.
            self.trail.record(dataclasses.replace(
                rec, details={**rec.details, "config_digest": config.digest, "name": config.name}))

    def changes(self, result: CheckResult, accepted: bool = False) -> None:
        if self.trail is None:
            return
        for e in result.added + result.removed + result.changed:
            self.trail.record(fim_change_record(display_path(e.path), e.kind, e.ftype,
                                                (c.to_dict() for c in e.changes), accepted=accepted))
        for err in result.errors:
            self.trail.failure(f"{display_path(err.path)}: {err.message}", severity="medium",
                               kind="unreadable entry", path=display_path(err.path))

    def finished(self, **details: Any) -> None:
        if self.trail is not None:
            self.trail.finished(None, None, **details)


def _fmt(v: Any) -> str:
    return "-" if v is None else str(v)


def _print_table(result: CheckResult, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=False, width=max(100, Console().width))
    summary = result.to_dict()["summary"]
    console.print(
        f"{title}: [bold]{result.status}[/bold] — {summary['entries']} entries, "
        f"{summary['added']} added, {summary['removed']} removed, {summary['changed']} changed, "
        f"{summary['errors']} errors ({summary['hashed']} hashed, {summary['duration_s']} s)"
    )
    if result.has_changes:
        table = Table(show_lines=False)
        for col in ("change", "type", "path", "attribute", "baseline", "now"):
            table.add_column(col, overflow="fold")
        for e in result.added + result.removed:
            table.add_row(e.kind, e.ftype, display_path(e.path), "", "", "")
        for e in result.changed:
            for i, c in enumerate(e.changes):
                first = i == 0
                table.add_row("changed" if first else "", e.ftype if first else "",
                              display_path(e.path) if first else "", c.name, _fmt(c.old), _fmt(c.new))
        console.print(table)
    for err in result.errors:
        console.print(f"error: {display_path(err.path)}: {err.message}")
    for note in result.notes:
        console.print(f"note: {display_path(note.path)}: {note.message}")


@click.group("fim")
def fim() -> None:
    """File integrity monitoring: baselines sealed with a keyed MAC, fast checks."""


@fim.command("init")
@_common
@click.option("--force", is_flag=True, help="Replace an existing baseline (kept as <db>.prev).")
def init_cmd(config_path: str, db: str | None, root: str | None, key_file: str | None,
             key_env: str | None, no_key: bool, progress: bool | None, workers: int | None,
             audit_log: str | None, force: bool) -> None:
    """Build and seal a baseline of every watched path."""
    with _Trail(audit_log, "init", config_path, db, root) as trail:
        config = _load(config_path)
        trail.config(config_path, config)
        key = _key(key_file, key_env, no_key)
        prog = _Progress(progress, "fim init")
        summary = init_baseline(config, db, root, key, force=force, progress=prog, workers=workers)
        prog.done()
        for err in summary.errors:
            if trail.trail is not None:
                trail.trail.failure(f"{display_path(err.path)}: {err.message}", severity="medium",
                                    kind="unreadable entry", path=display_path(err.path))
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
    for note in summary.notes:
        click.echo(f"note: {display_path(note.path)}: {note.message}", err=True)
    if summary.errors:
        click.get_current_context().exit(EXIT_RUNTIME)


@fim.command("check")
@_common
@click.option("--full", is_flag=True, help="Re-hash every file, not only those whose inode changed.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@click.option("--no-record", is_flag=True, help="Do not record this check in the baseline's history.")
def check_cmd(config_path: str, db: str | None, root: str | None, key_file: str | None,
              key_env: str | None, no_key: bool, progress: bool | None, workers: int | None,
              audit_log: str | None, full: bool, fmt: str, no_record: bool) -> None:
    """Compare the filesystem with the baseline. Exit 0 no changes, 1 changes, 3 errors only."""
    with _Trail(audit_log, "check", config_path, db, root) as trail:
        config = _load(config_path)
        trail.config(config_path, config)
        key = _key(key_file, key_env, no_key)
        prog = _Progress(progress, "fim check")
        result = check(config, db, root, key, full=full, record=not no_record, progress=prog, workers=workers)
        prog.done()
        trail.changes(result)
        trail.finished(result=result.status, **_summary_details(result))
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_table(result, "fim check")
    click.get_current_context().exit(exit_code_for(result))


@fim.command("update")
@_common
@click.option("--full", is_flag=True, help="Re-hash every file.")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def update_cmd(config_path: str, db: str | None, root: str | None, key_file: str | None,
               key_env: str | None, no_key: bool, progress: bool | None, workers: int | None,
               audit_log: str | None, full: bool, fmt: str) -> None:
    """Accept the current state as the new baseline (atomically; the old one is kept)."""
    with _Trail(audit_log, "update", config_path, db, root) as trail:
        config = _load(config_path)
        trail.config(config_path, config)
        key = _key(key_file, key_env, no_key)
        prog = _Progress(progress, "fim update")
        result = update(config, db, root, key, full=full, progress=prog, workers=workers)
        prog.done()
        trail.changes(result.check, accepted=True)
        if result.config_changed and trail.trail is not None:
            trail.trail.record(records.config_changed(config_path, result.check.baseline.config_digest,
                                                      config.digest, component="fim"))
        trail.finished(result="updated", **_summary_details(result.check), new_baseline=result.baseline.to_dict(),
                       previous=result.previous, config_changed=result.config_changed)
    if fmt == "json":
        click.echo(json.dumps(result.to_dict(), indent=2))
    else:
        _print_table(result.check, "fim update accepted")
        b = result.baseline
        click.echo(f"new baseline generation {b.generation} ({b.baseline_id}); previous kept at {result.previous}")
        if result.config_changed:
            click.echo("the configuration changed since the previous baseline")
    click.get_current_context().exit(EXIT_RUNTIME if result.check.errors else EXIT_OK)


def _summary_details(result: CheckResult) -> dict[str, Any]:
    b = result.baseline
    return {"summary": result.to_dict()["summary"], "baseline_id": b.baseline_id,
            "generation": b.generation, "baseline": b.path}


@fim.command("status")
@click.option("--db", "db", required=True, type=click.Path(dir_okay=False))
@click.option("--key-file", type=click.Path(dir_okay=False))
@click.option("--key-env", metavar="VAR")
@click.option("--no-key", is_flag=True)
@click.option("--deep", is_flag=True, help="Also verify every entry against the sealed MAC.")
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text", show_default=True)
def status_cmd(db: str, key_file: str | None, key_env: str | None, no_key: bool, deep: bool, fmt: str) -> None:
    """Show a baseline's verified state: age, last check and its counts. Exit 5 if it does not verify."""
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
        from secpolicy.errors import IntegrityError

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
    except click.exceptions.Abort:
        return 130
    return rv if isinstance(rv, int) else 0


if __name__ == "__main__":
    sys.exit(main())
