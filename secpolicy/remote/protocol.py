"""One collection round on the wire: the POSIX shell script that runs on the target (find, tar
and, where present, python3; it writes nothing there) and the reader of the stream it sends."""

from __future__ import annotations

import io
import re
import tarfile
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Self

from secpolicy.errors import RuntimeFailure
from secpolicy.remote.snapshot import KINDS, Entry, Snapshot, is_pseudo

__all__ = ["BULK_CAP", "Request", "read_round", "round_script"]

BULK_CAP = 1 << 20  # regular files walked as part of a tree: bytes copied only up to this size
PSEUDO_LIMIT = 16 << 20  # as FactContext.read_bytes: a bigger /proc or /sys file is not read
_MAGIC = b"SECPOLICY-COLLECT-1\0"
_MAX_FIELD = 65536
_BATCH = 200  # paths per find command line


@dataclass(frozen=True, order=True)
class Request:
    """What to collect at one remote path. E: its entry; L: its entries one level down;
    M: its whole subtree's entries; T: the subtree with file contents (small files, or every
    readable file in /proc and /sys); C: one file with its content."""

    depth: int
    path: str
    kind: str

    @staticmethod
    def of(kind: str, path: str) -> Request:
        return Request(path.count("/") if path != "/" else 0, path, kind)


def _q(path: str) -> str:
    return "'" + path.replace("'", "'\\''") + "'"


# find -printf: type, permission bits, uid, gid, size, mtime, readable by us (r or u; with a -
# for a directory we cannot search, whose entries we cannot even look up), path, link target.
_HEAD = r"""LC_ALL=C; export LC_ALL
exec 2>/dev/null
R='M\0%y\0%m\0%U\0%G\0%s\0%T@\0r\0%p\0%l\0'
U='M\0%y\0%m\0%U\0%G\0%s\0%T@\0u\0%p\0%l\0'
RN='M\0%y\0%m\0%U\0%G\0%s\0%T@\0r-\0%p\0%l\0'
UN='M\0%y\0%m\0%U\0%G\0%s\0%T@\0u-\0%p\0%l\0'
DONE='
'
mode() { case $1 in /proc|/proc/*|/sys|/sys/*) F=-L;; *) F=-P;; esac; }
there() { [ -e "$1" ] || [ -h "$1" ]; }
out() { find $F "$@" \( -type d ! -executable \( -readable -printf "$RN" -o -printf "$UN" \) -o -readable -printf "$R" -o -printf "$U" \); }
E() { F=$1; shift; out "$@" -maxdepth 0; }
L() { F=$1; shift; out "$@" -maxdepth 1; for x in "$@"; do printf 'L\000%s\000' "$x"; done; }
M() {
  mode "$1"
  if there "$1"; then
    c=$(cd -- "$1" && pwd -P)
    case $DONE in
      *"
$c
"*) out "$1" -maxdepth 0 ;;
      *) [ -n "$c" ] && DONE="$DONE$c
"
         out "$1" \( \( -path /proc -o -path /sys \) -prune -o -true \) ;;
    esac
    printf 'T\000%s\000' "$1"
  else printf 'A\000%s\000' "$1"; fi
}
p() { find -L "$1" -type f -readable -print; }
q() { printf '%s\n' "$1"; }
t() {
  c=$(cd -- "$1" && pwd -P)
  case $TDONE in *"
$c
"*) return 0 ;; esac
  [ -n "$c" ] && TDONE="$TDONE$c
"
  find -P "$1" \( -path /proc -o -path /sys \) -prune -o -type f -readable -size -@CAP@c -print0
}
c() { if [ -f "$1" ] && [ ! -h "$1" ] && [ -r "$1" ]; then printf '%s\000' "$1"; fi; }
shread() {
  while IFS= read -r f; do
    if [ -f "$f" ]; then
      v=$(cat -- "$f" && printf x)
      case $v in
        *x) v=${v%x}; printf 'C\000%s\000%s\000%s' "$f" "${#v}" "$v" ;;
        *) printf 'X\000%s\000%s\000' "$f" "could not be read" ;;
      esac
    else printf 'X\000%s\000%s\000' "$f" "not a regular file"; fi
  done
}
PYREAD='
import os, stat, sys
o = sys.stdout.buffer
def bad(p, why):
    o.write(b"X\0" + p + b"\0" + why.encode() + b"\0")
for p in sys.stdin.buffer.read().split(b"\n"):
    if not p:
        continue
    try:
        fd = os.open(p, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY)
    except OSError as e:
        bad(p, e.strerror or "error")
        continue
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            bad(p, "not a regular file")
            continue
        parts, n = [], 0
        while n <= @LIMIT@:
            c = os.read(fd, 65536)
            if not c:
                break
            parts.append(c)
            n += len(c)
    except OSError as e:
        bad(p, e.strerror or "error")
        continue
    finally:
        os.close(fd)
    if n > @LIMIT@:
        bad(p, "larger than @LIMIT@ bytes")
        continue
    d = b"".join(parts)
    o.write(b"C\0" + p + b"\0" + str(len(d)).encode() + b"\0" + d)
o.flush()
'
pread() { if [ -n "$PY" ]; then "$PY" -I -c "$PYREAD"; else shread; fi; }
printf 'SECPOLICY-COLLECT-1\000'
"""


def script_head(python: str | None) -> str:
    """The shell functions every round uses, and which python3 reads /proc and /sys (if any)."""
    head = _HEAD.replace("@CAP@", str(BULK_CAP + 1)).replace("@LIMIT@", str(PSEUDO_LIMIT))
    return head + f"PY={_q(python) if python else ''}\n"


def round_script(requests: Sequence[Request], python: str | None) -> bytes:
    """The script of one round: entries first (ancestors before what is below them; a path
    with no entry in the stream is absent), then the contents of /proc and /sys files, then
    one tar stream of regular files."""
    lines = [script_head(python)]
    ordered = sorted(requests)
    for kind in ("E", "L"):
        for flag, pseudo_paths in (("-P", False), ("-L", True)):
            paths = [r.path for r in ordered if (r.kind == kind or kind == "E" and r.kind == "C")
                     and is_pseudo(r.path) == pseudo_paths]
            for i in range(0, len(paths), _BATCH):
                lines.append(f"{kind} {flag} " + " ".join(_q(p) for p in paths[i:i + _BATCH]))
    lines += [f"M {_q(r.path)}" for r in ordered if r.kind in ("M", "T")]
    pseudo = [f"{'p' if r.kind == 'T' else 'q'} {_q(r.path)}" for r in ordered
              if r.kind in ("T", "C") and is_pseudo(r.path)]
    files = [f"{'t' if r.kind == 'T' else 'c'} {_q(r.path)}" for r in ordered
             if r.kind in ("T", "C") and not is_pseudo(r.path)]
    if pseudo:
        lines.append("{ " + "; ".join(pseudo) + "; } | pread")
    lines.append(r"printf 'D\000'")
    if files:
        lines.append("{ TDONE='\n'; " + "; ".join(files)
                     + "; } | tar -c -f - -P --null --no-recursion --hard-dereference -T -")
    lines.append("exit 0\n")
    return "\n".join(lines).encode()


class _Stream:
    """NUL-separated fields over a channel's output, then the rest as a file for tarfile."""

    def __init__(self, source: Any) -> None:
        self.src = source
        self.buf = bytearray()
        self.eof = False

    def _fill(self) -> bool:
        if self.eof:
            return False
        chunk = self.src.read1(1 << 16)
        if not chunk:
            self.eof = True
            return False
        self.buf += chunk
        return True

    def seek_magic(self) -> None:
        while True:
            i = self.buf.find(_MAGIC)
            if i >= 0:
                del self.buf[: i + len(_MAGIC)]
                return
            if len(self.buf) > 1 << 20 or not self._fill():
                raise RuntimeFailure("the remote collection did not start (no answer from its shell script)")

    def field(self) -> bytes:
        start = 0
        while True:
            i = self.buf.find(b"\0", start)
            if i >= 0:
                out = bytes(self.buf[:i])
                del self.buf[: i + 1]
                return out
            start = len(self.buf)
            if start > _MAX_FIELD:
                raise RuntimeFailure("the remote collection sent a malformed record (a field too long)")
            if not self._fill():
                raise RuntimeFailure("the remote collection ended in the middle of a record")

    def exact(self, n: int) -> bytes:
        while len(self.buf) < n:
            if not self._fill():
                raise RuntimeFailure("the remote collection ended in the middle of a file")
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out

    # file interface for tarfile, over what is left
    def read(self, n: int = -1) -> bytes:
        if n < 0:
            while self._fill():
                pass
            n = len(self.buf)
        while len(self.buf) < n and self._fill():
            pass
        out = bytes(self.buf[:n])
        del self.buf[:n]
        return out


def _text(b: bytes) -> str:
    return b.decode("utf-8", "surrogateescape")


_ID_MAX = (1 << 32) - 1


def _entry(fields: list[bytes]) -> tuple[str, Entry] | None:
    """An `M` record, or None when any field is not what find prints (a host that lies)."""
    kind, mode, uid, gid, size, mtime, access, path, target = (_text(f) for f in fields)
    if kind not in KINDS or access not in ("r", "u", "r-", "u-"):
        return None
    if not (_MODE.fullmatch(mode) and _MTIME.fullmatch(mtime)
            and all(v.isascii() and v.isdigit() for v in (uid, gid, size))):
        return None
    e = Entry(kind, int(mode, 8) & 0o7777, int(uid), int(gid), int(size), float(mtime), access[0] == "r",
              target if kind == "l" else None, searchable=not access.endswith("-"))
    if e.uid > _ID_MAX or e.gid > _ID_MAX or e.size >= 1 << 63:
        return None
    return path, e


_MODE = re.compile(r"[0-7]{1,4}")
_MTIME = re.compile(r"-?[0-9]{1,12}(\.[0-9]{0,10})?")


def read_round(source: Any, snap: Snapshot) -> dict[str, int]:
    """Apply one round's stream to `snap`; counts of what arrived."""
    s = _Stream(source)
    s.seek_magic()
    counts = {"entries": 0, "files": 0}
    while True:
        tag = s.field()
        if tag == b"M":
            got = _entry([s.field() for _ in range(9)])
            if got is None:
                raise RuntimeFailure("the remote collection sent a malformed entry")
            snap.put_entry(*got)
            counts["entries"] += 1
        elif tag == b"A":
            snap.put_absent(_text(s.field()))
        elif tag in (b"L", b"T"):
            snap.mark_listed(_text(s.field()), tree=tag == b"T")
        elif tag == b"C":
            path, size = _text(s.field()), s.field()
            if not size.isdigit() or int(size) > PSEUDO_LIMIT:
                raise RuntimeFailure("the remote collection sent a malformed file record")
            snap.put_content(path, io.BytesIO(s.exact(int(size))), int(size))
            counts["files"] += 1
        elif tag == b"X":
            path, why = _text(s.field()), _text(s.field())
            snap.put_unread(path, "permission denied" if why in ("Permission denied", "Operation not permitted") else why)
        elif tag == b"D":
            break
        else:
            raise RuntimeFailure(f"the remote collection sent an unknown record {tag[:20]!r}")
    counts["files"] += _read_tar(s, snap)
    return counts


_LONG_HEADERS = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE, tarfile.XGLTYPE,
                 tarfile.SOLARIS_XHDTYPE)
_MAX_LONG_HEADER = 1 << 16  # a long name or a pax header: a path is at most 4096 bytes


class _BadTar(Exception):
    """What GNU tar never sends: tarfile would read it into memory, or take it as the end."""


class _Header(tarfile.TarInfo):
    """Every tar header as GNU tar writes one, or the stream is refused: a header cut short or
    garbled is not the end of the archive (tarfile takes it for one), a long-name or pax header
    is no bigger than a path can be (tarfile reads it whole into memory), and no member is
    sparse (a few bytes of map would become gigabytes here; `tar -c` without -S sends none)."""

    @classmethod
    def frombuf(cls, buf: bytes | bytearray, encoding: str, errors: str) -> Self:
        if len(buf) != tarfile.BLOCKSIZE:
            raise _BadTar("it ended without its end-of-archive blocks (cut short)")
        if buf.count(0) == tarfile.BLOCKSIZE:
            return super().frombuf(buf, encoding, errors)  # the end (EOFHeaderError)
        try:
            info = super().frombuf(buf, encoding, errors)
        except tarfile.HeaderError as e:
            raise _BadTar(f"a malformed header ({e})") from None
        if info.type in _LONG_HEADERS and info.size > _MAX_LONG_HEADER:
            raise _BadTar(f"a {info.size}-byte long-name or pax header (limit {_MAX_LONG_HEADER})")
        if info.type == tarfile.GNUTYPE_SPARSE:
            raise _BadTar("a sparse member")
        return info


def _read_tar(s: _Stream, snap: Snapshot) -> int:
    if not s.buf and not s._fill():
        return 0
    n = members = 0
    try:
        with tarfile.open(fileobj=s, mode="r|", tarinfo=_Header) as tar:  # type: ignore[call-overload]
            while (m := tar.next()) is not None:
                tar.members.clear()  # read once, in order: nothing to keep
                members += 1
                if members > snap.limits.max_entries:
                    raise _BadTar(f"more than {snap.limits.max_entries} members (limit)")
                name = "/" + m.name.lstrip("/")
                if not m.isreg() or m.issparse():
                    snap.skip(name, "unexpected tar member (not a regular file): ignored")
                    continue
                f = tar.extractfile(m)
                if f is not None:
                    snap.put_content(name, f, m.size, listed_size=True)
                    n += 1
    except (tarfile.TarError, EOFError, _BadTar) as e:
        raise RuntimeFailure(f"the remote file stream is not a valid tar: {e}") from None
    return n
