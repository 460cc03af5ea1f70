"""`scan` as a run: every input and output checked first, the policies, waivers and tailoring
loaded, the host (a root, an image) evaluated, the results built, recorded and written."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import os
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from secpolicy import engine, outfile
from secpolicy.app.names import unknown_name
from secpolicy.app.policies import fact_memo, load_policy_set
from secpolicy.errors import EXIT_NONCOMPLIANT, EXIT_OK, InputError
from secpolicy.models import Severity
from secpolicy.policy import PolicySet
from secpolicy.policy.waivers import WaiverSet, load_waivers
from secpolicy.resultsfile import read_json_file, results_bytes, sha256_hex
from secpolicy.vocabulary import builtin_registry

if TYPE_CHECKING:
    from secpolicy.policy.tailoring import Tailoring
    from secpolicy.redaction import Redactor

__all__ = ["REPORT_DIR_FILES", "ScanRequest", "ScanRun", "load_tailoring_for", "run_scan", "write_scan_outputs"]

REPORT_DIR_FILES = {"results.json": "json", "report.html": "html", "report.pdf": "pdf"}

# What the CLI hands in to show progress: a context giving the callback of rules done.
Progress = Callable[[], contextlib.AbstractContextManager[Callable[[int, int], None]]]


@dataclass(frozen=True)
class ScanRequest:
    policies: tuple[str, ...] = ()
    root: str = "/"
    image: str | None = None
    waivers: str | None = None
    tailoring: str | None = None
    profile: str | None = None
    standard: str | None = None
    rule_ids: tuple[str, ...] = ()
    fmt: str = "table"  # the scan's table (printed by the caller), the results JSON or a report format
    output: str | None = None
    fail_on: str = "low"  # a severity, or "new" (with a baseline)
    baseline: str | None = None
    report_dir: str | None = None
    fim_dbs: tuple[str, ...] = ()
    fim_key_file: str | None = None
    fim_key_env: str | None = None
    monitor_summaries: tuple[str, ...] = ()
    audit_log: str | None = None
    redaction: str | None = None
    target: str | None = None  # ssh://USER@HOST[:PORT]
    ssh_options: tuple[str, ...] = ()

    def check(self) -> None:
        """Every input and output path, before any work: a scan never runs only to fail at
        the end."""
        outfile.check_given([*(("--policy", p) for p in self.policies), ("--root", self.root), ("--image", self.image),
                             ("--waivers", self.waivers), ("--tailoring", self.tailoring), ("--output", self.output),
                             ("--baseline", self.baseline), ("--report-dir", self.report_dir),
                             ("--fim-key-file", self.fim_key_file),
                             *(("--monitor-summary", m) for m in self.monitor_summaries),
                             ("--audit-log", self.audit_log), ("--redaction", self.redaction)])
        given = [n for n, on in (("--image", self.image is not None), ("--root", self.root != "/"),
                                 ("--target", self.target is not None)) if on]
        if len(given) > 1:
            raise InputError(f"{' and '.join(given)} name different things to scan: give one")
        if self.ssh_options and self.target is None:
            raise InputError("--ssh-option applies to --target only")
        if self.target is not None:
            from secpolicy.remote import check_ssh_options, parse_target

            parse_target(self.target)
            check_ssh_options(self.ssh_options)
        if self.fail_on == "new" and not self.baseline:
            raise InputError("--fail-on new needs --baseline OLD.json")
        if not os.path.isdir(self.root):
            raise InputError(f"--root {self.root}: not a directory")
        self._check_outputs_are_not_inputs()
        outfile.check_writable(self.output)
        if self.output in (None, "-"):
            outfile.check_stdout()
        if self.fmt == "pdf" and outfile.is_terminal(self.output):
            raise InputError("refusing to write a PDF to a terminal; give --output FILE or redirect")
        if self.report_dir:
            outfile.check_directory(self.report_dir)
            if os.path.isdir(self.report_dir):
                for name in REPORT_DIR_FILES:
                    outfile.check_writable(os.path.join(self.report_dir, name))
        if self.audit_log and not os.path.isfile(os.path.join(self.audit_log, "state.json")):
            raise InputError("not an audit log directory (make one with `secpolicy log init`)", self.audit_log)
        if self.redaction is not None:
            outfile.check_readable(self.redaction, "redaction policy")

    def _check_outputs_are_not_inputs(self) -> None:
        """`-o` (or a file of `--report-dir`) naming the policy, the baseline or another input
        would replace it with the scan's output: refused before the scan."""
        from secpolicy.app.policies import bundled_policies
        from secpolicy.policy.loader import find_policy_files

        paths = [Path(p) for p in self.policies] or [bundled_policies(False)]
        try:
            policy_files = [str(p) for p in find_policy_files(paths)]
        except InputError:
            policy_files = list(self.policies)  # the loader says what is wrong with them
        inputs = [*(("policy", p) for p in policy_files), ("--waivers", self.waivers), ("--tailoring", self.tailoring),
                  ("--baseline", self.baseline), *(("--monitor-summary", m) for m in self.monitor_summaries),
                  ("--redaction", self.redaction), ("--fim-key-file", self.fim_key_file),
                  *(("--fim", db.partition("=")[2]) for db in self.fim_dbs), ("--image", self.image)]
        in_dir = [os.path.join(self.report_dir, name) for name in REPORT_DIR_FILES] if self.report_dir else []
        outputs = [("--output", self.output), *(("--report-dir", path) for path in in_dir)]
        outfile.check_not_input(outputs, inputs, directories=[("--audit-log", self.audit_log)])
        for path in in_dir:
            if self.output and outfile.same_file(self.output, path):
                raise InputError(f"--output {self.output} is also written by --report-dir ({path}): give another file")


@dataclass
class ScanRun:
    result: engine.ScanResult
    results: dict[str, Any]  # the results document
    raw: bytes  # its one serialisation (what is written and hashed)
    audit: Any  # reports.model.AuditRef of the audit record holding the results' SHA-256, or None
    exit_code: int
    notes: list[str]  # for the operator (a baseline of another host ...)


def run_scan(req: ScanRequest, *, progress: Progress | None = None) -> ScanRun:
    """Load, check, scan and build the results (not yet written: `write_scan_outputs`)."""
    from secpolicy.app.redaction import open_redactor

    req.check()
    base = _Baseline(req.baseline) if req.baseline else None
    summaries = [(path, _read_json(path)) for path in req.monitor_summaries]
    options: dict[str, Any] = {"fim": _fim_options(req.fim_dbs, req.fim_key_file, req.fim_key_env)}
    memo = fact_memo()
    if memo is not None:
        options["memo"] = memo
    redactor = open_redactor(req.redaction, req.audit_log)
    reg = builtin_registry()
    ps = load_policy_set(req.policies, reg)
    wset = load_waivers(Path(req.waivers)) if req.waivers else WaiverSet()
    unknown = wset.unknown_rule_errors(r.id for r in ps.rules)
    if unknown:
        raise unknown[0]
    _check_selection(ps, req.profile, req.standard, req.rule_ids)
    tailored = load_tailoring_for(req.tailoring, ps, req.profile)
    _check_selected(ps, req, tailored)
    severity = Severity.LOW if req.fail_on == "new" else Severity(req.fail_on)
    scan_id = str(uuid.uuid4())
    trail = _ScanTrail(req.audit_log, scan_id, ps, req.profile, tailored, redactor) if req.audit_log else None
    extracted = remote = None
    try:
        # An image or a remote host is scanned from a private scratch copy, removed as soon as
        # the scan is done.
        with contextlib.ExitStack() as scratch:
            count = scratch.enter_context(progress()) if progress is not None else None
            root, extracted = _scanned_tree(req, scratch)
            run = functools.partial(
                engine.scan, ps, reg, waivers=wset, profile=req.profile, standard=req.standard,
                rule_ids=req.rule_ids or None, fail_on=severity, scan_id=scan_id, options=options,
                tailoring=tailored, progress=count, redactor=redactor,
                scan_kind="image" if extracted is not None else "remote" if req.target is not None else None,
            )
            if req.target is not None:
                from secpolicy.remote import RemoteScan

                remote = scratch.enter_context(RemoteScan(req.target, ssh_options=req.ssh_options))
                # The rules and vars only guide what is fetched first; the scan itself decides.
                result = remote.scan(reg, lambda ctx: run(root=ctx.root, context=ctx), options=options,
                                     rules=engine.select_rules(ps, profile=req.profile, standard=req.standard,
                                                               rule_ids=req.rule_ids or None),
                                     values=tailored.values() if tailored else None)
            else:
                result = run(root=root)
    except BaseException as e:
        if trail:
            trail.failed(e)
        raise
    for path, summary in summaries:
        result.findings.append(engine.lost_events_finding(summary, path))
        result.lost_events.extend(
            dict(w, source=path) for w in summary.get("loss_windows") or [] if isinstance(w, dict)
        )
    results = result.to_results()
    if remote is not None:
        results = remote.annotate(results)
    if extracted is not None:
        # The scratch directory is gone: the results name the image, as a scan of a root names it.
        results["scan"].update(root=f"image:{extracted.path}", image=extracted.describe())
    notes = []
    if base is not None:
        results["regressions"] = base.regressions(results)
        note = base.other_host(results)
        if note:
            notes.append(note)
    raw = results_bytes(results)
    audit = trail.finished(result, sha256_hex(raw)) if trail else None
    if req.fail_on == "new":
        code = EXIT_NONCOMPLIANT if results["regressions"]["new_failures"] else EXIT_OK
    else:
        code = engine.exit_code(result.findings, severity)
    return ScanRun(result, results, raw, audit, code, notes)


def _scanned_tree(req: ScanRequest, scratch: contextlib.ExitStack) -> tuple[str, Any]:
    """The root to scan: `req.root`, or an image extracted to a private scratch copy that is
    removed as soon as the scan is done (the ExtractedImage is returned too)."""
    if req.image is None:
        return req.root, None
    from secpolicy.image import ExtractedImage

    extracted = scratch.enter_context(ExtractedImage(req.image))
    return extracted.root, extracted


Rendering = Callable[[str], contextlib.AbstractContextManager[Any]]


def write_scan_outputs(run: ScanRun, req: ScanRequest, rendering: Rendering | None = None) -> None:
    """The results JSON or report format to `req.output` (not `table`, which the caller
    prints), and the report directory. `rendering(fmt)` wraps each report rendered (the
    CLI's progress on a PDF)."""
    if req.fmt == "json":
        outfile.write_bytes(req.output, run.raw)
    elif req.fmt != "table":
        _write_report(req.fmt, run, req.output, rendering)
    if req.report_dir:
        outfile.make_private_dir(req.report_dir)
        for name, fmt in REPORT_DIR_FILES.items():
            path = os.path.join(req.report_dir, name)
            if fmt == "json":
                outfile.write_bytes(path, run.raw)
            else:
                _write_report(fmt, run, path, rendering)


def _write_report(fmt: str, run: ScanRun, output: str | None, rendering: Rendering | None) -> None:
    from secpolicy.reports import render_results  # imported on use: WeasyPrint is slow to import

    with rendering(fmt) if rendering is not None else contextlib.nullcontext():
        render_results(run.results, fmt, output, raw=run.raw, audit=run.audit)


def load_tailoring_for(path: str | None, ps: PolicySet, profile: str | None) -> Tailoring | None:
    """The tailoring file checked against the policies (and `--profile`), or None."""
    if path is None:
        return None
    from secpolicy.policy.tailoring import load_tailoring

    t = load_tailoring(Path(path), ps)
    if profile and t.profile and profile != t.profile:
        raise InputError(f"--profile {profile} contradicts the tailoring file's profile {t.profile!r}", path)
    return t


def _check_selection(ps: PolicySet, profile: str | None, standard: str | None, rule_ids: Sequence[str]) -> None:
    """A filter that names nothing is a typo, not an empty (and so compliant) scan."""
    for option, value in (("--standard", standard), ("--profile", profile), *(("--rule", r) for r in rule_ids)):
        if value is not None and not value.strip():
            raise InputError(f"{option} is empty: give a name, or leave the option out")
    if standard:
        known = {fw for r in ps.rules for fw in r.references} | {p.standard for p in ps.policies if p.standard}
        if standard not in known:
            raise unknown_name("standard", standard, known)
    if profile:
        known = {p for r in ps.rules for p in r.profiles}
        if profile not in known:
            raise unknown_name("profile", profile, known)
    ids = {r.id for r in ps.rules}
    for rid in rule_ids:
        if rid not in ids:
            raise unknown_name("rule id", rid, ids)


def _check_selected(ps: PolicySet, req: ScanRequest, tailored: Tailoring | None) -> None:
    """Filters that each name something may still select no check rule together (`--standard
    hipaa --rule cis-...`), or the policies hold none: a scan that checks nothing is an
    error, not a clean report."""
    profile = req.profile or (tailored.profile if tailored is not None else None)
    selected = engine.select_rules(ps, profile=profile, standard=req.standard, rule_ids=req.rule_ids or None,
                                   enabled=tailored.enabled() if tailored is not None else None)
    if any(not r.is_event_rule for r in selected):
        return
    filters = [f"--profile {req.profile}" if req.profile else "", f"--standard {req.standard}" if req.standard else "",
               *(f"--rule {r}" for r in req.rule_ids)]
    if tailored is not None and (tailored.profile or tailored.rules):
        filters.append(f"the tailoring file {tailored.path}")
    given = ", ".join(f for f in filters if f)
    if given:
        raise InputError(f"no check rule is selected by these filters together ({given}): the scan would check nothing")
    raise InputError("the policies hold no enabled check rule (event rules are for `monitor` and `replay`): "
                     "the scan would check nothing")


class _Baseline:
    """The --baseline results, read and validated before the scan."""

    def __init__(self, path: str) -> None:
        from secpolicy.reports.diff import load_results

        self.path = path
        self.results = load_results(path)

    def regressions(self, results: dict[str, Any]) -> dict[str, Any]:
        from secpolicy.reports.diff import diff_results

        d = diff_results(self.results, results)
        scan = self.results["scan"]
        return {
            "baseline": {"id": scan["id"], "host": scan["host"], "started_at": scan["started_at"], "path": self.path},
            "new_failures": [c.to_dict() for c in d.new_failures],
        }

    def other_host(self, results: dict[str, Any]) -> str | None:
        """A note when the baseline is of another host, else None."""
        from secpolicy.reports.model import MixedHostsError, check_same_host

        try:
            check_same_host([("the baseline", self.results), ("this scan", results)])
        except MixedHostsError as e:
            return e.message.split(": refusing")[0]
        return None


def _read_json(path: str) -> dict[str, Any]:
    data, _ = read_json_file(path, "monitor summary")
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


class _ScanTrail:
    """Scan start, the policies loaded, every finding and the scan's end (with the SHA-256 of
    the results), in the audit log. A log that cannot be written (full disk) is exit 2."""

    def __init__(self, directory: str, scan_id: str, ps: PolicySet, profile: str | None,
                 tailoring: Tailoring | None, redactor: Redactor) -> None:
        from secpolicy.auditlog.trail import AuditTrail

        self.directory = directory
        self.scan_id = scan_id
        with self._writing():
            self.trail = AuditTrail.open(directory, "scanner", scan_id, redactor=redactor)
            self.trail.started(profile or (tailoring.profile if tailoring else None), [p.id for p in ps.policies])
            for p in ps.policies:
                self.trail.config_loaded(p.path, p.sha256)
            if tailoring is not None:
                self.trail.config_loaded(tailoring.path, tailoring.sha256)

    @contextlib.contextmanager
    def _writing(self) -> Iterator[None]:
        try:
            yield
        except OSError as exc:
            raise outfile.OutputError(f"audit log {self.directory}", outfile.describe(exc)) from None

    def finished(self, result: engine.ScanResult, results_sha256: str) -> Any:
        """Returns the AuditRef of the record holding the results' SHA-256."""
        from secpolicy.auditlog import records
        from secpolicy.reports.model import AuditRef

        with self._writing():
            for f in result.findings:
                self.trail.finding(f)
            rec = records.scan_finished(self.scan_id, result.summary()["by_status"])
            rec = dataclasses.replace(rec, details={**rec.details, "results_sha256": results_sha256})
            seq = self.trail.record(rec)
            self.trail.close()
        return AuditRef(scan_id=self.scan_id, seq=seq, log=self.directory)

    def failed(self, e: BaseException) -> None:
        try:
            with self._writing():
                self.trail.failure(f"{type(e).__name__}: {e}")
                self.trail.finished({}, error=f"{type(e).__name__}: {e}")
                self.trail.close()
        except outfile.OutputError:
            pass  # the scan's own error is the one to report
