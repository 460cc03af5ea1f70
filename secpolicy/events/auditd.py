"""Reader of Linux audit logs (auditd RAW and ENRICHED formats): records grouped into audit
events exactly as aureport groups them, each audit event turned into at most one Event.

Grouping (aureport 3.x, ausearch-lol.c): a record joins the open event with the same node,
seconds, milliseconds and serial; an event completes when its first record is a single-record
type (user-space messages, LOGIN, PROCTITLE, anomaly, integrity ... records), when an event that
starts `end_of_event_timeout` (2) seconds after it is seen, or at the end of input. A record that
arrives after its event completed starts a new event, as in aureport; a stray EOE is dropped.

Every count and size taken from the input is bounded (line length, records per event, open
events, arguments), and a line that cannot be read as written is one bad line with its
`file:line` and reason, counted in the summary: never the end of the run, never silent.
"""

from __future__ import annotations

import errno
import heapq
import os
import re
import stat
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from secpolicy.errors import InputError
from secpolicy.events.audit_event import Rec, decode_value, parse_fields, timestamp
from secpolicy.events.audit_event import build_event as _build_event
from secpolicy.events.audit_names import RECORD_TYPES, record_type_number
from secpolicy.models import Event

__all__ = [
    "EOE_TIMEOUT",
    "MAX_LINE_BYTES",
    "RECORD_TYPES",
    "AccountNames",
    "AuditSummary",
    "AuditdReader",
    "AuditdSource",
    "BadLines",
    "Record",
    "build_event",
    "decode_value",
    "order_audit_logs",
    "parse_fields",
    "parse_record",
]

# --- Limits on what the input may make us hold --------------------------------------------

EOE_TIMEOUT = 2  # seconds: auditd.conf's end_of_event_timeout default, which aureport uses
MAX_LINE_BYTES = 1 << 20  # auditd writes at most 8970 bytes (+ its interpretations) per record
MAX_RECORDS_PER_EVENT = 8192  # an execve of 2 MiB of arguments takes a few hundred records
MAX_OPEN_EVENTS = 100_000  # events still collecting records; the oldest is completed beyond it
MAX_SECONDS = 253_402_300_799  # 9999-12-31T23:59:59Z: the last second an Event timestamp can say
_CHUNK = 1 << 20  # at most MAX_LINE_BYTES + 1: then only the first line of a read can be too long

# Record types after which aureport considers an event complete (check_events in ausearch-lol.c).
_FIRST_EVENT, _FIRST_ANOM, _KERNEL = 1300, 1700, 2000
_MAC_UNLBL_ALLOW, _MAC_CALIPSO_DEL = 1406, 1419
_PROCTITLE = 1327


def _is_single(type_num: int) -> bool:
    return (
        type_num == _PROCTITLE
        or type_num < _FIRST_EVENT
        or type_num >= _FIRST_ANOM
        or type_num == _KERNEL
        or _MAC_UNLBL_ALLOW <= type_num <= _MAC_CALIPSO_DEL
    )


_SINGLE: dict[str, bool] = {name: _is_single(num) for name, num in RECORD_TYPES.items()}
_ID_RE = re.compile(r"(\d{1,20})(?:\.(\d+))?(?::(\d{1,20}))?")


@dataclass
class BadLines:
    """Input lines that could not be read as written: how many, and where the first ones are
    (`file:line: why`). Some are still read (invalid UTF-8 shown as \\xNN escapes, a last line
    without its newline); the reason says whether the line was read or skipped."""

    count: int = 0
    where: list[str] = field(default_factory=list)
    limit: int = 100

    def add(self, where: str, why: str) -> None:
        self.count += 1
        if len(self.where) < self.limit:
            self.where.append(f"{where}: {why}")


@dataclass
class AuditSummary:
    """What a reader saw: records per type, audit events per first-record type (what
    `aureport -e --summary` counts), Events per type, bad lines, and (when asked for) the
    counts of `aureport --summary` and `aureport -k`."""

    records: Counter[str] = field(default_factory=Counter)
    audit_events: Counter[str] = field(default_factory=Counter)
    events: Counter[str] = field(default_factory=Counter)
    unmapped: Counter[str] = field(default_factory=Counter)
    not_in_aureport: Counter[str] = field(default_factory=Counter)
    records_not_in_ausearch: Counter[str] = field(default_factory=Counter)
    bad: BadLines = field(default_factory=BadLines)
    aureport: Any = None  # secpolicy.events.aureport.AureportCounts when the reader counts them
    files: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "files": list(self.files),
            "records": dict(sorted(self.records.items())),
            "audit_events": dict(sorted(self.audit_events.items())),
            "events": dict(sorted(self.events.items())),
            "unmapped_audit_events": dict(sorted(self.unmapped.items())),
            "audit_events_aureport_skips": dict(sorted(self.not_in_aureport.items())),
            "records_ausearch_skips": dict(sorted(self.records_not_in_ausearch.items())),
            "bad_lines": self.bad.count,
        }
        if self.aureport is not None:
            out["aureport"] = self.aureport.to_dict()
        return out


class AccountNames:
    """User names by uid from an account database (`ROOT/etc/passwd`), read once, for logs
    written without names (RAW format): the way `aureport -i` names users. The file is
    resolved inside ROOT (an image's links stay in the image) and read only if it is a
    regular file; what cannot be read is said once through `warn`, and users keep their uids."""

    def __init__(self, root: Path | str = "/", warn: Callable[[str], None] | None = None) -> None:
        self.root = Path(root)
        self.warn = warn
        self._names: dict[int, str] | None = None

    def _load(self) -> dict[int, str]:
        from secpolicy.confined import Refused  # only RAW logs need names: not at start-up

        names: dict[int, str] = {}
        shown = str(self.root / "etc" / "passwd")
        try:
            data = _read_in_root(str(self.root), ["etc", "passwd"], _ACCOUNTS_LIMIT)
        except FileNotFoundError:
            return names  # no account database: names stay unknown, ids are still reported
        except (OSError, Refused) as e:
            if self.warn is not None:
                why = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
                self.warn(f"{shown}: {why}: users of RAW audit records are shown by uid only")
            return names
        for n, line in enumerate(data.decode("utf-8", errors="replace").split("\n")):
            if n >= 1_000_000:
                break
            parts = line.split(":", 3)
            if len(parts) >= 3 and parts[2].isdigit() and len(parts[2]) <= 10 and parts[0]:
                names.setdefault(int(parts[2]), parts[0])
        return names

    def get(self, uid: int) -> str | None:
        if self._names is None:
            self._names = self._load()
        return self._names.get(uid)


_ACCOUNTS_LIMIT = 64 << 20  # bytes of an account database read at most
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC


def _read_in_root(root: str, parts: list[str], limit: int) -> bytes:
    """The regular file at `parts` inside `root`, symlinks resolved inside it and never followed
    by the kernel (confined.py), up to `limit` bytes. Absent: FileNotFoundError. Anything but a
    regular file (a FIFO would block a read, a device could act on an open) is never opened for
    reading; it, a link loop and a file on the way are confined.Refused."""
    from secpolicy.confined import ConfinedRoot, Refused, fd_closing

    croot = ConfinedRoot(root)
    try:
        where = croot.resolve(parts)
        if not where:
            raise IsADirectoryError(errno.EISDIR, os.strerror(errno.EISDIR))
        with fd_closing(croot.open_dir(where[:-1])) as d:
            # Looked at before it is opened: opening a device can act on it.
            with fd_closing(os.open(where[-1], os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=d)) as pfd:
                seen = os.fstat(pfd)
            if not stat.S_ISREG(seen.st_mode):
                raise Refused("not a regular file, not read")
            fd = os.open(where[-1], _READ_FLAGS, dir_fd=d)
    finally:
        croot.close()
    with fd_closing(fd):
        st = os.fstat(fd)
        if (st.st_dev, st.st_ino) != (seen.st_dev, seen.st_ino):
            raise Refused("replaced while being read")
        chunks = []
        size = 0
        while size < limit and (chunk := os.read(fd, min(1 << 20, limit - size))):
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks)


def _aureport_skips(group: list[Rec]) -> bool:
    """Whether aureport leaves this audit event out of its reports: its record parser rejects
    (as "malformed") the old NETFILTER_CFG form without pid= and AppArmor AVC records, which
    are not in SELinux `avc:` form. We still read them; the summary counts them apart."""
    first = group[0]
    return (first[0] == "NETFILTER_CFG" and "pid=" not in first[1]) or (first[0] == "AVC" and "avc:" not in first[1])



# --- One record at a time (for sources that make audit records themselves) -----------------


@dataclass(frozen=True)
class Record:
    """One audit record: `body` is the text after `msg=audit(...):`, `interp` the ENRICHED part
    after 0x1D (empty for RAW logs), `where` says where it was read."""

    type: str
    node: str | None
    sec: int
    milli: int
    serial: int
    body: str
    interp: str
    where: str = ""

    @property
    def key(self) -> tuple[str | None, int, int, int]:
        return (self.node, self.sec, self.milli, self.serial)

    @property
    def id(self) -> str:
        ident = f"{self.sec}.{self.milli:03d}:{self.serial}"
        return f"{self.node}/{ident}" if self.node else ident


def parse_record(line: str, where: str = "") -> Record | None:
    """One log line as a Record; None when it has no `type=... msg=audit(...)` header or its
    time stamp is out of range (the reader counts such lines as bad)."""
    line = line.rstrip("\n")
    head, sep, rest = line.partition(" msg=audit(")
    ident, sep2, body = rest.partition(")")
    if not (sep and sep2):
        return None
    body = body[1:] if body[:1] == ":" else body
    body, _, interp = body[1:].partition("\x1d") if body[:1] == " " else body.partition("\x1d")
    node: str | None = None
    if head.startswith("node="):
        node, sep, head = head[5:].partition(" ")
        if not sep:
            return None
    if not head.startswith("type=") or " " in head or len(head) < 6:
        return None
    m = _ID_RE.fullmatch(ident)
    if m is None or int(m.group(1)) > MAX_SECONDS or (m.group(2) is not None and len(m.group(2)) > 3):
        return None
    return Record(head[5:], node, int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0), body, interp, where)


def build_event(records: list[Record], names: AccountNames | None = None) -> Event | None:
    """The Event of the audit event these records make up (the reader's builders)."""
    if not records:
        return None
    first = records[0]
    recs = [(r.type, r.body, r.interp, 0) for r in records]
    return _build_event(first.id, first.sec, first.milli, recs, names)


# --- Reading and grouping -------------------------------------------------------------------


def _first_last_stamp(path: Path) -> tuple[tuple[int, int], tuple[int, int]] | None:
    """The (seconds, milliseconds) of the first and last readable records of a log; read in
    64 KiB blocks from each end until one is found (a garbled or zeroed block at the head of
    a log, as a crash leaves, must not make it look older than it is)."""
    stamp = re.compile(rb"msg=audit\((\d{1,12})(?:\.(\d{1,3}))?[:)]")
    block, overlap = 65536, 64  # the overlap keeps a stamp cut by a block boundary

    def found(data: bytes, last: bool) -> tuple[int, int] | None:
        ms = list(stamp.finditer(data)) if last else [m for m in [stamp.search(data)] if m]
        if not ms:
            return None
        m = ms[-1]
        return int(m.group(1)), int(m.group(2) or 0)

    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, os.SEEK_END)
            first = last = None
            at = 0
            while first is None and at < size:
                fh.seek(max(0, at - overlap))
                first = found(fh.read(block + overlap), last=False)
                at += block
            end = size
            while first is not None and last is None and end > 0:
                fh.seek(max(0, end - block))
                last = found(fh.read(min(block, end) + overlap), last=True)
                end -= block
    except OSError as exc:
        raise InputError(f"cannot read audit log: {exc.strerror}", str(path)) from None
    if first is None or last is None:
        return None
    return first, last


def order_audit_logs(paths: Iterable[Path | str]) -> list[Path]:
    """Audit logs in the order of their content (oldest first), whatever order they were given
    in (`audit.log*` globs newest first). Logs whose time ranges overlap by more than the
    grouping window cannot be read one after the other without mis-ordering: InputError."""
    files = [Path(p) for p in paths]
    if len(files) < 2:
        return files
    spans = []
    for i, p in enumerate(files):
        span = _first_last_stamp(p)
        spans.append((span[0] if span else (0, 0), i, span, p))
    spans.sort(key=lambda s: (s[0], s[1]))
    prev: tuple[Path, tuple[int, int]] | None = None
    for _, _, span, p in spans:
        if span is None:
            continue
        if prev is not None and span[0][0] + EOE_TIMEOUT < prev[1][0]:
            raise InputError(
                f"audit logs overlap in time: {prev[0]} runs to {timestamp(*prev[1])} but {p} starts at "
                f"{timestamp(*span[0])}; logs of different hosts or overlapping captures must be replayed "
                "separately (rotated logs of one host, in any order, are fine)"
            )
        if prev is None or span[1] > prev[1]:
            prev = (p, span[1])
    return [s[3] for s in spans]


Group = tuple[str, int, int, list[Rec]]


class _Groups:
    """The audit events still collecting records, completed as aureport completes them."""

    def __init__(self, reader: AuditdReader) -> None:
        self.reader = reader
        self.building: dict[str, tuple[int, int, list[Rec]]] = {}
        self.heap: list[tuple[int, int, str, list[Rec]]] = []
        self.seq = 0
        self.single = dict(_SINGLE)

    def start(self, key: str, node: str, ident: str, rec: Rec) -> list[Group]:
        """A record that joins no open event: it starts one (its time stamp checked once).
        Returns the events this completes."""
        reader, rtype, where = self.reader, rec[0], rec[3]
        if key in self.building:  # the open event has all the records it may have
            reader.bad_at(where, f"audit event {key} has more than {MAX_RECORDS_PER_EVENT} records: skipped")
            return []
        ts = _ID_RE.fullmatch(ident)
        if ts is None:
            reader.bad_at(where, f"audit({ident[:40]}) is not a time stamp sec.ms:serial: skipped")
            return []
        sec_s, ms_s, serial_s = ts.groups()
        sec = int(sec_s)
        if sec > MAX_SECONDS:
            reader.bad_at(where, f"time stamp {sec_s[:24]} is beyond the year 9999: skipped")
            return []
        if ms_s is not None and len(ms_s) > 3:
            reader.bad_at(where, f"milliseconds field {ms_s[:24]} has more than 3 digits: skipped")
            return []
        milli = int(ms_s) if ms_s else 0
        canon = f"{sec}.{milli:03d}:{int(serial_s) if serial_s else 0}"
        records = reader.summary.records
        if canon != ident:
            key = f"{node}/{canon}" if node else canon
            open_ = self.building.get(key)
            if open_ is not None:
                if len(open_[2]) < MAX_RECORDS_PER_EVENT:
                    open_[2].append(rec)
                    records[rtype] += 1
                else:
                    reader.bad_at(where, f"audit event {key} has more than {MAX_RECORDS_PER_EVENT} records: skipped")
                return []
        records[rtype] += 1
        if rtype == "EOE":  # aureport drops an EOE whose event is already complete
            reader.summary.records_not_in_ausearch[rtype] += 1
            return []
        done = self.complete_before(sec)
        is_single = self.single.get(rtype)
        if is_single is None:
            is_single = self.single[rtype] = _is_single(record_type_number(rtype))
        if is_single:
            done.append((key, sec, milli, [rec]))
            return done
        grp = [rec]
        self.seq += 1
        self.building[key] = (sec, milli, grp)
        heapq.heappush(self.heap, (sec, self.seq, key, grp))
        if len(self.building) > MAX_OPEN_EVENTS:
            _, _, old, _ = heapq.heappop(self.heap)
            opened = self.building.pop(old, None)
            if opened is not None:
                done.append((old, *opened))
        return done

    def complete_before(self, sec: int) -> list[Group]:
        """Events that started EOE_TIMEOUT seconds before `sec` are complete."""
        done: list[Group] = []
        heap, building = self.heap, self.building
        while heap and heap[0][0] + EOE_TIMEOUT <= sec:
            _, _, old, grp = heapq.heappop(heap)
            opened = building.get(old)
            if opened is not None and opened[2] is grp:
                del building[old]
                done.append((old, opened[0], opened[1], grp))
        return done

    def finish(self) -> list[Group]:
        """At the end of the input every open event is complete."""
        return self.complete_before(MAX_SECONDS + EOE_TIMEOUT + 1)


class AuditdReader:
    """Reads audit logs into Events (in the order their audit events complete) while counting
    records, audit events and bad lines into `summary`. Several logs are read in the order of
    their content (see order_audit_logs). User names come from the log when it is ENRICHED,
    else from `names` (an account database) when given. With `aureport=True` the summary also
    holds the counts of `aureport --summary` and `aureport -k`."""

    def __init__(self, paths: Iterable[Path | str], *, names: AccountNames | None = None,
                 aureport: bool = False) -> None:
        self.paths = [Path(p) for p in paths]
        self.names = names
        self.summary = AuditSummary()
        self._files: list[str] = []
        self._unterminated = -1  # position of the file's last line when it has no newline
        self._block_bad: dict[int, int] = {}  # lines of the block being read, counted bad -> index in `where`
        self._aureport: Any = None
        if aureport:
            from secpolicy.events.aureport import AureportCounts

            self._aureport = self.summary.aureport = AureportCounts()

    # Positions of records: file index in the top bits, line number below.
    def where(self, pos: int) -> str:
        return f"{self._files[pos >> 40]}:{pos & ((1 << 40) - 1)}"

    def bad_at(self, pos: int, why: str) -> None:
        """Count the line at `pos` bad, once: a second reason for a line of the block being
        read (a NUL cut it short, then it is no record) joins the first."""
        bad = self.summary.bad
        index = self._block_bad.get(pos)
        if index is not None:
            if index >= 0:
                bad.where[index] += f"; {why}"
            return
        self._block_bad[pos] = len(bad.where) if len(bad.where) < bad.limit else -1
        bad.add(self.where(pos), why)

    def _blocks(self, path: Path, fidx: int) -> Iterator[tuple[int, list[str]]]:
        """(number of the first line, whole lines) of a file: invalid UTF-8 shown as
        \\xNN and reported, over-long lines skipped and reported, a last line without newline
        reported (and read)."""
        try:
            fh = open(path, "rb")  # noqa: SIM115 - closed by the with below; OSError translated here
        except OSError as exc:
            raise InputError(f"cannot read audit log: {exc.strerror}", str(path)) from None
        base = fidx << 40
        lineno = 1  # number of the next line to hand out
        rest = b""
        skipping = False
        with fh:
            while True:
                try:
                    chunk = fh.read(_CHUNK)
                except OSError as exc:
                    raise InputError(f"cannot read audit log: {exc.strerror}", str(path)) from None
                if not chunk:
                    break
                if skipping:  # inside an over-long line: drop bytes up to its end
                    nl = chunk.find(b"\n")
                    if nl < 0:
                        continue
                    chunk = chunk[nl + 1 :]
                    skipping = False
                    lineno += 1
                data = rest + chunk if rest else chunk
                # Only the first line of `data` can be longer than a line may be (every other
                # lies within one chunk), and the limit is in bytes, before decoding: an
                # invalid byte decodes to four characters (\xNN).
                first_end = data.find(b"\n")
                if first_end > MAX_LINE_BYTES:
                    self.bad_at(base | lineno, f"line longer than {MAX_LINE_BYTES} bytes: skipped")
                    data = data[first_end + 1 :]
                    lineno += 1
                cut = data.rfind(b"\n")
                if cut < 0:
                    rest = data
                else:
                    rest = data[cut + 1 :]
                    self._block_bad.clear()  # the last block's lines are all read by now
                    lines = self._decode(data[:cut], base, lineno).split("\n")
                    yield lineno, lines
                    lineno += len(lines)
                if len(rest) > MAX_LINE_BYTES:
                    self.bad_at(base | lineno, f"line longer than {MAX_LINE_BYTES} bytes: skipped")
                    rest = b""
                    skipping = True
        if rest and not skipping:
            # Reported by audit_events, once: as cut short if it reads as a record, else as no record.
            self._unterminated = base | lineno
            self._block_bad.clear()
            yield lineno, self._decode(rest, base, lineno).split("\n")

    def _decode(self, block: bytes, base: int, first: int) -> str:
        if b"\r" in block:
            # CR LF line ends (a log that went through Windows or a syslog relay): the CR is
            # part of the line end, as ausearch and aureport read it, not of the last field
            # (the key, the cwd, the last argument ...).
            block = block.replace(b"\r\n", b"\n")
            if block[-1:] == b"\r":
                block = block[:-1]
        if b"\0" in block:
            block = self._cut_at_nul(block, base, first)
        try:
            return block.decode("utf-8")
        except UnicodeDecodeError:
            pass
        out = []
        for i, raw in enumerate(block.split(b"\n")):
            try:
                out.append(raw.decode("utf-8"))
            except UnicodeDecodeError as exc:
                out.append(raw.decode("utf-8", "backslashreplace"))
                self.bad_at(base | (first + i), f"invalid UTF-8 at byte {exc.start + 1} (shown as \\xNN): read")
        return "\n".join(out)

    def _cut_at_nul(self, block: bytes, base: int, first: int) -> bytes:
        """Each line up to its first NUL byte, as the audit tools read it (a C string ends
        there): the rest of such a line is not read, and the line is a bad line."""
        lines = block.split(b"\n")
        for i, raw in enumerate(lines):
            at = raw.find(b"\0")
            if at >= 0:
                lines[i] = raw[:at]
                self.bad_at(base | (first + i), f"NUL byte at byte {at + 1}: the rest of the line is not read")
        return b"\n".join(lines)

    def audit_events(self) -> Iterator[tuple[str, int, int, list[Rec]]]:
        """Grouped audit events: (id, seconds, milliseconds, records), in completion order."""
        groups = _Groups(self)
        building = groups.building
        records = self.summary.records
        self._files = [str(p) for p in self.paths]
        self.summary.files = list(self._files)
        for fidx, path in enumerate(self.paths):
            base = fidx << 40
            self._unterminated = -1
            for first, lines in self._blocks(path, fidx):
                lineno = first - 1
                for line in lines:
                    lineno += 1
                    # [node=NODE ]type=TYPE msg=audit(ID):[ ]BODY[<0x1D>INTERPRETATIONS]
                    head, sep, rest = line.partition(" msg=audit(")
                    ident, sep2, body = rest.partition("): ")
                    if not sep2:
                        ident, sep2, body = rest.partition(")")
                        body = body[1:] if body[:1] == ":" else body
                    if head[:5] == "type=":
                        node, rtype = "", head[5:]
                    else:
                        node, sep3, rtype = head[5:].partition(" type=")
                        sep2 = sep2 if sep3 and head[:5] == "node=" else ""
                    if not (sep and sep2 and rtype) or " " in rtype:
                        self._bad_line(line, base | lineno)
                        continue
                    cut = body.find("\x1d")
                    if cut >= 0:
                        rec = (rtype, body[:cut], body[cut + 1 :], base | lineno)
                    else:
                        rec = (rtype, body, "", base | lineno)
                    key = f"{node}/{ident}" if node else ident
                    open_ = building.get(key)
                    if open_ is not None and len(open_[2]) < MAX_RECORDS_PER_EVENT:
                        open_[2].append(rec)
                        records[rtype] += 1
                        continue
                    done = groups.start(key, node, ident, rec)
                    if done:
                        yield from done
            if self._unterminated >= 0:
                self.bad_at(self._unterminated, "no newline at end of file (the record may be cut short): read")
        yield from groups.finish()

    def _bad_line(self, line: str, pos: int) -> None:
        if not line or line.isspace():
            return
        if pos == self._unterminated:
            self._unterminated = -1  # one report for the line
            self.bad_at(pos, "no newline at end of file, and not an audit record "
                             "(no type=... msg=audit(...) header): skipped")
            return
        self.bad_at(pos, "not an audit record (no type=... msg=audit(...) header): skipped")

    def events(self) -> Iterator[Event]:
        s = self.summary
        counted = s.audit_events
        skipped = s.not_in_aureport
        unmapped = s.unmapped
        by_type = s.events
        aureport = self._aureport
        names, bad_at = self.names, self.bad_at
        for key, sec, milli, group in self.audit_events():
            first = group[0][0]
            if (first == "AVC" or first == "NETFILTER_CFG") and _aureport_skips(group):
                skipped[first] += 1
                if first == "AVC":
                    # ausearch drops these too (it keeps the old NETFILTER_CFG form).
                    s.records_not_in_ausearch.update(r[0] for r in group)
            else:
                counted[first] += 1
            if aureport is not None:
                aureport.add(key, group)
            ev = _build_event(key, sec, milli, group, names, bad_at)
            if ev is None:
                unmapped[first] += 1
                continue
            by_type[ev["type"]] += 1
            yield ev


class AuditdSource(AuditdReader):
    """EventSource over audit log files (see secpolicy.events.sources.EventSource)."""
