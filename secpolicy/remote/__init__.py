"""Agentless remote scans: collect what the rules read from a host over one SSH connection into a
private snapshot, in rounds until the facts ask for nothing more, and evaluate it locally."""

from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Self

from secpolicy.confined import Refused
from secpolicy.engine import evaluate_rule
from secpolicy.errors import RuntimeFailure
from secpolicy.facts.base import FactRegistry
from secpolicy.facts.services import UNIT_PATH
from secpolicy.facts.system import MODPROBE_DIRS
from secpolicy.remote.context import RemoteFacts
from secpolicy.remote.protocol import Request, read_round, round_script
from secpolicy.remote.snapshot import Snapshot, SnapshotLimits, is_pseudo
from secpolicy.remote.ssh import Connection, RemoteInfo, Target, check_ssh_options, parse_target
from secpolicy.rules import Rule

__all__ = ["RemoteLimits", "RemoteScan", "Target", "base_requests", "check_ssh_options", "facts_read", "parse_target",
           "with_parents"]


@dataclass(frozen=True)
class RemoteLimits:
    """Bounds on a remote scan: a hostile or broken host ends it with an error, never a hang."""

    max_rounds: int = 64
    max_bytes: int = 4 << 30  # received over the connection, all rounds together
    round_timeout: float = 600.0
    connect_timeout: float = 60.0
    snapshot: SnapshotLimits = field(default_factory=SnapshotLimits)


# What the first round fetches, by the facts the scanned rules read; everything else a fact
# asks for is found by evaluating and fetched in the next rounds.
_ALWAYS = (("E", "/"), ("T", "/etc"), ("C", "/usr/lib/os-release"))
_UNIT_DIRS = tuple(d for d in UNIT_PATH if not d.startswith("/etc/"))  # /etc comes whole
_BASE: dict[str, tuple[tuple[str, str], ...]] = {
    "sysctl": (("T", "/proc/sys"), *(("T", d) for d in ("/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d"))),
    "kernel": (("T", "/proc/sys"), ("C", "/proc/cmdline"), ("C", "/sys/kernel/security/lockdown"),
               ("E", "/sys/kernel/btf/vmlinux")),
    "kmod": (("C", "/proc/modules"), ("L", "/lib/modules"),
             *(("T", d) for d in MODPROBE_DIRS if not d.startswith("/etc/"))),
    "mounts": (("C", "/proc/self/mounts"),),
    "mount": (("C", "/proc/self/mounts"),),
    "services": tuple(("T", d) for d in _UNIT_DIRS),
    "service": tuple(("T", d) for d in _UNIT_DIRS),
    "packages": (("C", "/var/lib/dpkg/status"), ("C", "/var/lib/dpkg/diversions"), ("T", "/var/lib/dpkg/updates")),
    "package": (("C", "/var/lib/dpkg/status"), ("C", "/var/lib/dpkg/diversions"), ("T", "/var/lib/dpkg/updates")),
    "package_files": (("C", "/var/lib/dpkg/status"), ("C", "/var/lib/dpkg/diversions"), ("T", "/var/lib/dpkg/updates"),
                      ("C", "/var/lib/dpkg/info/format")),
    "apparmor": (("C", "/sys/module/apparmor/parameters/enabled"), ("C", "/sys/kernel/security/apparmor/profiles")),
    "listening": tuple(("C", f"/proc/net/{p}") for p in ("tcp", "tcp6", "udp", "udp6")),
}


def base_requests(facts: Iterable[str]) -> set[Request]:
    wanted = set(_ALWAYS)
    for name in facts:
        wanted.update(_BASE.get(name, ()))
    return {Request.of(k, p) for k, p in wanted}


_DPKG_INFO = re.compile(r"(/var/lib/dpkg/info/[^/]+)\.(list|md5sums|conffiles)\Z")


def _with_siblings(wants: Iterable[Request]) -> set[Request]:
    """A package's file list, md5sums and conffiles are read one after the other: one round."""
    out = set(wants)
    for r in wants:
        m = _DPKG_INFO.match(r.path)
        if m and r.kind == "C":
            out.update(Request.of("C", f"{m.group(1)}.{ext}") for ext in ("list", "md5sums", "conffiles"))
    return out


def facts_read(rules: Iterable[Rule]) -> set[str]:
    """The facts the check and applicability expressions of `rules` name."""
    out: set[str] = set()
    for r in rules:
        for expr in (r.check, *(c.expr for c in r.applicable)):
            if expr is not None:
                out.update(expr.facts_used)
    return out


def with_parents(snap: Snapshot, requests: Iterable[Request]) -> set[Request]:
    """`requests` with the entries of the parent directories the snapshot does not know yet,
    so that links among them are known before what is below them is stored."""
    out = set(requests)
    trees = [r.path for r in out if r.kind in ("M", "T")]
    for r in list(out):
        p = r.path
        while p != "/":
            p = p.rsplit("/", 1)[0] or "/"
            if any(p == t or p.startswith(t.rstrip("/") + "/") for t in trees):
                break  # walked with its tree
            if not snap.knows_entry(p):
                out.add(Request.of("E", p))
    # an entry comes with any other request for its path, and with a tree fetched in the same round
    more = {r.path for r in out if r.kind != "E"}
    return {r for r in out if not (r.kind == "E" and (r.path in more or any(
        r.path.startswith(t.rstrip("/") + "/") and is_pseudo(r.path) == is_pseudo(t) for t in trees)))}


@dataclass(frozen=True)
class RoundLog:
    """One collection round: requests sent (with parent directories), bytes received, entries
    and file contents applied, seconds from sending the script to the end of its output."""

    requests: int
    bytes: int
    entries: int
    files: int
    seconds: float


class RemoteScan:
    """A remote host for as long as the `with` block lasts: connected on entry, evaluated by
    `scan()`, and on exit disconnected with its snapshot removed."""

    def __init__(self, target: str, *, ssh_options: Sequence[str] = (), limits: RemoteLimits | None = None,
                 workdir: str | None = None, use_python: bool = True) -> None:
        self.target = parse_target(target)
        self.limits = limits or RemoteLimits()
        self.conn = Connection(self.target, ssh_options, connect_timeout=self.limits.connect_timeout)
        self.workdir = workdir
        self.use_python = use_python
        self.info: RemoteInfo | None = None
        self.snapshot: Snapshot | None = None
        self.rounds: list[RoundLog] = []
        self.connect_seconds = 0.0
        self._requested: set[Request] = set()
        self._bytes = 0
        self._final: tuple[str, dict[str, Any], dict[str, str]] = ("", {}, {})

    def __enter__(self) -> Self:
        t0 = time.monotonic()
        try:
            self.info = self.conn.open()
            root = tempfile.mkdtemp(prefix="secpolicy-remote-", dir=self.workdir)  # 0700
            self.snapshot = Snapshot(root, self.limits.snapshot)
        except BaseException:
            self.close()
            raise
        self.connect_seconds = time.monotonic() - t0
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        self.conn.close()
        if self.snapshot is not None:
            self.snapshot.close()
            shutil.rmtree(self.snapshot.root, ignore_errors=True)
            self.snapshot = None

    @property
    def label(self) -> str:
        return f"ssh://{self.info.label}" if self.info else self.target.url

    # collection ------------------------------------------------------------------------------
    def fetch(self, requests: Iterable[Request]) -> RoundLog:
        """One round: `requests` (with the entries of their unknown parent directories) over one
        channel of the connection, applied to the snapshot."""
        snap, info = self.snapshot, self.info
        assert snap is not None and info is not None
        batch = with_parents(snap, requests)
        self._requested |= batch
        python = info.python if self.use_python else None
        left = self.limits.max_bytes - self._bytes
        t0 = time.monotonic()
        snap.begin_round()
        counts, n = self.conn.run(round_script(sorted(batch), python), lambda ch: read_round(ch, snap),
                                  budget=left, timeout=self.limits.round_timeout)
        self._bytes += n
        for r in sorted(batch):  # parents first: a path below one the remote user cannot search is denied
            try:
                key = snap.key(r.path)
            except Refused:
                continue
            e = snap.entries.get(key)
            if r.kind in ("E", "L", "C") and key not in snap.seen:
                snap.put_absent(r.path)  # find reported nothing: nothing there, or not searchable
            elif r.kind == "C" and e is not None and e.kind == "f" and key not in snap.content \
                    and key not in snap.unread:
                snap.put_unread(r.path, "could not be read on the remote host")
        log = RoundLog(len(batch), n, counts["entries"], counts["files"], time.monotonic() - t0)
        self.rounds.append(log)
        return log

    def scan(self, registry: FactRegistry, evaluate: Callable[[RemoteFacts], Any], *, rules: Sequence[Rule] = (),
             values: Mapping[str, Any] | None = None, options: dict[str, Any] | None = None) -> Any:
        """Collect what `rules` read, then `evaluate(context)` (the real scan) on the snapshot.
        The first round fetches a base chosen by the facts the rules name; each later round
        fetches what evaluating the rules asked for and the snapshot lacked, evaluating again
        only the rules that saw incomplete data, until none asks for anything new."""
        assert self.snapshot is not None
        self.fetch(base_requests(facts_read(rules)))
        pending = list(rules)
        while pending:
            ctx = self._context(registry, options)
            seen_incomplete = []
            for rule in pending:
                ctx.begin_rule()
                evaluate_rule(rule, ctx, values=values, scan_kind="remote")
                if ctx.end_rule():
                    seen_incomplete.append(rule)
            if not ctx.wants:
                break
            self._next_round(ctx)
            pending = seen_incomplete
        while True:  # the rules evaluated once more, as the scan's answer; rarely asks for more
            ctx = self._context(registry, options)
            result = evaluate(ctx)
            if not ctx.wants:
                self._final = self._summary()
                return result
            self._next_round(ctx)

    def _context(self, registry: FactRegistry, options: dict[str, Any] | None) -> RemoteFacts:
        assert self.snapshot is not None
        return RemoteFacts(registry, self.snapshot, self.label, options=options)

    def _next_round(self, ctx: RemoteFacts) -> None:
        if len(self.rounds) >= self.limits.max_rounds:
            raise RuntimeFailure(f"{self.label}: the facts still asked for {len(ctx.wants)} more path(s) after "
                                 f"{self.limits.max_rounds} collection rounds (limit), e.g. "
                                 f"{', '.join(sorted(r.path for r in ctx.wants)[:5])}")
        requests = _with_siblings(ctx.wants) - self._requested
        if not requests:
            raise RuntimeFailure(f"{self.label}: the remote host did not give what the facts asked for "
                                 f"({', '.join(sorted(r.path for r in ctx.wants)[:10])}): the scan cannot be completed")
        self.fetch(requests)

    # results -----------------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        info, snap = self.info, self.snapshot
        assert info is not None and snap is not None
        return {
            "target": self.label,
            "user": info.user,
            "host": info.hostname,
            "port": info.port,
            "host_key": {"type": info.host_key_type, "fingerprint": info.host_key_fingerprint},
            "remote_uid": info.uid,
            "architecture": info.arch,
            "pseudo_files_read_by": "python3" if info.python and self.use_python else "sh",
            "rounds": len(self.rounds),
            "channels": self.conn.channels,
            "bytes": self._bytes,
            "entries": len(snap.entries),
            "files": len(snap.content),
            "connect_seconds": round(self.connect_seconds, 3),
            "collect_seconds": round(sum(r.seconds for r in self.rounds), 3),
            "not_collected": [{"path": p, "why": w} for p, w in sorted(snap.unread.items())[:100]]
            + [{"path": p, "why": w} for p, w in snap.skipped[:100]],
        }

    def _summary(self) -> tuple[str, dict[str, Any], dict[str, str]]:
        snap = self.snapshot
        assert snap is not None
        kernel = {name: text.strip() for name, path in (("release", "/proc/sys/kernel/osrelease"),
                                                        ("version", "/proc/sys/kernel/version"))
                  if (text := snap.text(path)) is not None}
        return snap.root, self.describe(), kernel

    def annotate(self, results: dict[str, Any]) -> dict[str, Any]:
        """The results of `scan()` as the target's (also once the snapshot is gone): the scratch
        directory's name, which facts may quote ("under --root DIR"), becomes the target's;
        `scan.root` names it, `scan.remote` says how it was collected, and the host identity
        carries the kernel the target runs."""
        root, described, kernel = self._final
        out: dict[str, Any] = _replaced(results, root, self.label)
        scan = out["scan"]
        scan["root"] = self.label
        scan["remote"] = described
        ident = scan.get("host_identity")
        if isinstance(ident, dict) and kernel:
            ident["kernel"] = {**kernel, "machine": described["architecture"]}
        return out


def _replaced(value: Any, old: str, new: str) -> Any:
    if isinstance(value, str):
        return value.replace(old, new) if old in value else value
    if isinstance(value, dict):
        return {k: _replaced(v, old, new) for k, v in value.items()}
    if isinstance(value, list):
        return [_replaced(v, old, new) for v in value]
    return value
