"""Every evidence source names where its value was read: a `path:line` is a line that holds the
key and the value (and, for a file read last-wins, the line the program uses), a "not set"
source means no file the program reads sets the key, and a bare path exists in the tree."""

from __future__ import annotations

import fnmatch
import json
import os
import re
import sys
from functools import cache
from pathlib import Path

import pytest

from secpolicy.engine import scan

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import corpus
import roots  # corpus puts tests/fixtures/packs on the path

# the corpus variants scanned, at least one per fact family
# fmt: off
VARIANTS = [
    # faillock, sudoers
    "5.3.3.1.2/unlock-beyond-a-week-ignored", "5.3.3.1.2/unlock-never-word",
    "5.3.3.1.3/root-unlock-follows-short-unlock-time", "5.2.2/use-pty-continued-line",
    "5.2.2/use-pty-in-dropin",
    # sshd: drop-in order, Match blocks, algorithm lists
    "5.1.13/logingracetime/dropin-sorting-first", "5.1.16/maxauthtries/dropin-sorting-last",
    "5.1.16/match-user", "5.1.16/match-in-included-dropin", "5.1.20/permitrootlogin/match-address",
    "5.1.6/ciphers/dropin-sorting-last",
    # sysctl: file order and masking
    "sysctl/ipv4-ip_forward/later-file-bad", "sysctl/ipv4-ip_forward/earlier-file-bad",
    "sysctl/sysctl-conf-read-last-bad", "sysctl/usr-lib-good-etc-masks", "sysctl/slash-notation",
    "sysctl/usr-lib-later-name-bad",
    # systemd .conf files and drop-ins, limits
    "6.1.2.4/storage-volatile-later", "6.1.2.4/storage-behind-a-continued-line",
    "6.1.2.4/storage-in-a-usr-lib-main-file", "6.1.2.1.2/upload-http-in-a-drop-in",
    "6.1.2.1.2/upload-url-without-scheme", "2.3.2.1/timesyncd-ntp-in-usr-lib-masked-by-etc",
    "1.5.3/core-raised-in-limits-d", "1.5.3/core-line-past-1023-bytes",
    # login.defs, useradd, pwquality, pwhistory
    "5.4.1.1/max-days-defined-twice", "5.4.1.2/min-days-hex", "5.4.1.1/max-days-not-a-number",
    "5.4.1.5/inactive-trailing-blank", "5.3.3.2.2/main-conf-overrides-dropin",
    "5.3.3.2.2/minlen-below-6", "5.3.3.2.2/later-dropin-weaker",
    "5.3.3.2/unknown-setting-stops-reading", "5.3.3.3.1/remember-5",
    # audit, grub, fstab, rsyslog, nft, postfix, ufw, services, fs_scan, modprobe
    "6.2.3.4/split-with-backslash", "6.2.3.20/later-e-1", "6.2.2/keys-mixed-case",
    "1.4.1/no-password", "1.1.2.1/tmp-second-fstab-line", "1.1.2.1/tmp-mount-unit",
    "6.1.3.4/later-include-0644", "6.1.3.3/later-dropin-overrides", "4.3.8/rules-in-include",
    "2.1.21/postfix-all-interfaces", "4.2.7/ufw-lowercase-policy",
    "4.2.7/ufw-output-accept-in-ufw-conf", "2.1.2/installed-enabled",
    "7.1.11/opt-file-world-writable", "1.1.1.1/install-by-pattern",
]
# fmt: on
# no corpus variant installs systemd-coredump: its main file and drop-ins, one masked
COREDUMP = (
    corpus.install("systemd-coredump", "252.19-1"),
    corpus.write("usr/lib/systemd/coredump.conf", "[Coredump]\nStorage=external\n"),
    corpus.write("usr/lib/systemd/coredump.conf.d/50-cis.conf", "[Coredump]\nStorage=external\n"),
    corpus.write("etc/systemd/coredump.conf.d/50-cis.conf", "[Coredump]\nStorage=none\n"),
    corpus.write("etc/systemd/coredump.conf.d/60-size.conf", "[Coredump]\nProcessSizeMax=0\n"),
)

# (rule, source) pairs whose line cannot show the value, and why
ALLOWED: dict[tuple[str, str], str] = {}

PATH_LINE = re.compile(r"(/[^\s:,;]+):(\d+)(?: (.*))?")
# calls whose first string argument is a key the named line must hold
KEYED = re.compile(
    r"\b(option|int|bool|size|has|arg|arg_int_icase|sysctl|kmod|mount_at_boot|fstab_entry"
    r"|mount_unit|mount|has_arg|package|hard)\(\"([^\"]+)\"\)"
)
# what a program makes of its line: (family of the source or expression, spelling) pairs
SPELLINGS: list[tuple[str, re.Pattern[str]]] = [
    # sshd: `1m` is 60 s; `without-password` is prohibit-password's old name; `+`/`-`/`^`
    # edit the default list, which the evidence shows expanded
    ("sshd_config", re.compile(r"(?i)^\s*(logingracetime|clientaliveinterval)\s*=?\s*\d+[smhdw]")),
    ("sshd_config", re.compile(r"(?i)^\s*permitrootlogin\s*=?\s*(without|prohibit)-password")),
    ("sshd_config", re.compile(r"(?i)^\s*(ciphers|macs|kexalgorithms)\s*=?\s*[-+^]")),
    # faillock `never` is 0, `-1` 65535 for deny; libpwquality's minlen floor is 6
    ("faillock.conf", re.compile(r"^\s*\w+\s*=\s*(never|-1)\s*$")),
    ("pwquality", re.compile(r"^\s*minlen\s*=\s*[0-5]\s*$")),
    ("limits", re.compile(r"\b(unlimited|infinity)\b")),
    ("pam.d", re.compile(r"\bremember=all\b")),
    ("modprobe.d", re.compile(r"^\s*(install|blacklist)\s+\S*[*?\[]")),
    # journal-upload adds the port and /upload, a scheme where none is written
    ("journal-upload", re.compile(r"^\s*URL\s*=")),
]


NOT_WRITTEN = {"true", "false", "present", "absent", "<absent>", "[REDACTED]"}


@cache
def _read(path: Path) -> list[str] | None:
    try:
        return path.read_text(errors="replace").split("\n")
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return None


def _observed(text: str | None) -> str | None:
    """The value a line must hold, or None where the evidence shows a verdict (true, present,
    a list, a mode computation, a derived password status) rather than a written value."""
    if text is None or text.startswith("[") or " & " in text or text in NOT_WRITTEN:
        return None
    v = json.loads(text) if text.startswith('"') else re.sub(r"^(\d+)B$", r"\1", text)  # sizes
    return str(v) if v not in ("", "true", "false") else None


def _holds(line: str, value: str) -> bool:
    if value.lower() in line.lower():
        return True
    try:
        n = float(value)
    except ValueError:
        return False
    for tok in re.findall(r"-?(?:0x[0-9a-fA-F]+|\d+(?:\.\d+)?)", line):
        forms = {float(tok)}
        if tok.lower().startswith(("0x", "-0x")):
            forms.add(int(tok, 16))
        elif re.fullmatch(r"-?0[0-7]+", tok):
            forms.add(int(tok, 8))
        if n in forms:
            return True
    return False


def _spelled(where: str, line: str) -> bool:
    return any(fam in where and rx.search(line) for fam, rx in SPELLINGS)


def _comment(line: str) -> bool:
    return not line.strip() or line.lstrip().startswith(("#", ";"))


def check_line(root: Path, expr: str, observed: str | None, path: str, n: int) -> str | None:
    """(1) the named line exists, is no comment, holds the key and the observed value."""
    lines = _read(root / path.lstrip("/"))
    if lines is None or not 1 <= n <= len(lines):
        return "no such line"
    line = lines[n - 1]
    if len(line.encode()) > 1023:  # a 1024-byte fgets buffer reads the tail as its own line
        line = line.encode()[1023:].decode(errors="replace")
    if _comment(line):
        return f"blank or comment: {line!r}"
    key = KEYED.search(expr)
    if key and re.search(r'["=<>+!]', expr[: key.start()]) or observed in NOT_WRITTEN - {"true"}:
        key = None  # a key inside another call's argument, or one the line is shown to lack
    if key and not _has_key(key.group(1), key.group(2), line) and not _spelled(path + expr, line):
        return f"no {key.group(2)!r} on {line!r}"
    value = _observed(observed)
    if path.startswith("/proc/net/") and value and value.isdigit():
        value = f":{int(value):04X} "  # the kernel writes ports in hex
    if "password_status" in expr or ".source" in expr:
        return None  # derived from the line (`!` = locked) or a kind ("fstab")
    if value is not None and not _holds(line, value) and not _spelled(path + expr, line):
        return f"no {value!r} on {line!r}"
    return None


def _has_key(call: str, key: str, line: str) -> bool:
    if call == "sysctl":
        written = line.split("=")[0].strip().lstrip("-").replace("/", ".")
        return fnmatch.fnmatch(key, written)
    if call == "kmod":
        return any(fnmatch.fnmatch(key, w) for w in re.split(r"\s+", line.strip()))
    if call == "has" and key.startswith("-"):  # an audit rule: auditctl drops a trailing /
        return all(w.rstrip("/") in line.replace("/ ", " ") for w in key.split())
    return key.lower() in line.lower()


# --- (2), (3): the files a program reads, in its order --------------------------------------
def _dropins(root: Path, dirs: tuple[str, ...], sub: str) -> list[str]:
    """`*.conf` under each dir/sub, a name in an earlier dir masking it in later ones."""
    seen: dict[str, str] = {}
    for d in dirs:
        for f in sorted((root / d / sub).glob("*.conf")):
            seen.setdefault(f.name, f"/{d}/{sub}/{f.name}")
    return [seen[k] for k in sorted(seen)]


def _sshd(root: Path, path: str) -> list[tuple[str, int, str]]:
    """sshd_config with its Includes expanded in place, Match blocks left out."""
    out, in_match = [], False
    for n, line in enumerate(_read(root / path.lstrip("/")) or [], 1):
        word = line.split()[0].lower() if line.split() else ""
        if word == "include":
            for pat in line.split()[1:]:
                for f in sorted((root / "etc/ssh").glob(pat.lstrip("/").removeprefix("etc/ssh/"))):
                    out += _sshd(root, "/" + str(f.relative_to(root)))
        elif word == "match":
            in_match = line.split()[1].lower() != "all"
        elif not in_match:
            out.append((path, n, line))
    return out


SYSTEMD = ("etc", "run", "usr/local/lib", "usr/lib")
SINGLE = {
    "/etc/login.defs",
    "/etc/security/faillock.conf",
    "/etc/audit/auditd.conf",
    "/etc/default/useradd",
    "/etc/default/ufw",
    "/etc/ufw/ufw.conf",
    "/etc/postfix/main.cf",
}


def _stream(root: Path, path: str) -> tuple[list[tuple[str, int, str]], bool] | None:
    """The lines the program reading `path` reads, in order, and whether the first wins."""
    if path.startswith("/etc/ssh/sshd_config"):
        return _sshd(root, "/etc/ssh/sshd_config"), True
    if "sysctl.d/" in path or path == "/etc/sysctl.conf":
        files = _dropins(root, ("etc", "run", "usr/local/lib", "usr/lib", "lib"), "sysctl.d")
        files.append("/etc/sysctl.conf")
    elif path.startswith("/etc/security/pwquality.conf"):
        files = _dropins(root, ("etc",), "security/pwquality.conf.d") + [
            "/etc/security/pwquality.conf"
        ]
    elif m := re.search(r"systemd/(journald|journal-upload|timesyncd|coredump)\.conf", path):
        mains = [f"/{d}/systemd/{m.group(1)}.conf" for d in SYSTEMD]
        main = next((f for f in mains if _read(root / f.lstrip("/")) is not None), mains[0])
        files = [main] + _dropins(root, SYSTEMD, f"systemd/{m.group(1)}.conf.d")
    elif path in SINGLE:
        files = [path]
    else:
        return None
    out, joined = [], False
    for f in files:
        for n, line in enumerate(_read(root / f.lstrip("/")) or [], 1):
            if not joined:  # systemd joins a line ending in \ with the next
                out.append((f, n, line))
            joined = "systemd/" in f and line.rstrip().endswith("\\") and not _comment(line)
    return out, False


def _key(line: str) -> str:
    m = re.match(r"\s*-?([^\s=]+)", line)
    return m.group(1).replace("/", ".").lower() if m and not _comment(line) else ""


def check_winner(root: Path, path: str, n: int) -> str | None:
    """(2) the named line is the assignment the program uses."""
    got = _stream(root, path)
    if got is None or (path, n) not in {(f, k) for f, k, _ in got[0]}:
        return None  # a file read otherwise, or a line inside an sshd Match block
    lines, first_wins = got
    key = _key(_read(root / path.lstrip("/"))[n - 1])  # type: ignore[index]
    hits = [(f, k) for f, k, line in lines if _key(line) and fnmatch.fnmatch(key, _key(line))]
    win = hits[0] if first_wins else hits[-1]
    return None if win == (path, n) else f"the program uses {win[0]}:{win[1]}"


def check_not_set(root: Path, expr: str, source: str) -> str | None:
    """(3) no line the program reads (before where it stopped) sets the key."""
    path = source.split(" (")[0]
    key = KEYED.search(expr)
    got = _stream(root, path)
    if key is None or got is None:
        return None
    stop = PATH_LINE.search(source.split("before ", 1)[-1]) if "before " in source else None
    for f, k, line in got[0]:
        if stop and (f, k) == (stop.group(1), int(stop.group(2))):
            break
        if fnmatch.fnmatch(key.group(2).replace("/", ".").lower(), _key(line) or "\0"):
            return f"{f}:{k} sets it: {line!r}"
    return None


def check_bare(root: Path, observed: str | None, source: str) -> str | None:
    """(4) a bare path is in the tree, or the evidence says it is absent."""
    head = source.split(" (")[0].split("; ")[0]
    absent = observed in ("false", "absent", "<absent>") or re.search(
        r"absent|not in the tree|no ", source
    )
    missing = [
        p
        for p in head.split(", ")
        if p.startswith("/") and not os.path.lexists(root / p.lstrip("/"))
    ]
    return None if not missing or absent else f"not in the tree: {', '.join(missing)}"


def problems(root: Path, report) -> list[str]:
    out = []
    for f in report.findings:
        for e in f.evidence:
            src = e.source or ""
            found = []
            if "(not set" in src:
                found.append(check_not_set(root, e.expression, src))
            elif (
                parts := [PATH_LINE.fullmatch(p) for p in src.split(", ")]
                if PATH_LINE.match(src)
                else []
            ):
                for m in parts:
                    if m is None:
                        continue
                    path, n = m.group(1), int(m.group(2))
                    found.append(
                        check_line(root, e.expression, e.observed, path, n)
                        if not m.group(3) and len(parts) == 1
                        else None
                    )
                    found.append(check_winner(root, path, n))
            elif src.startswith("/"):
                found.append(check_bare(root, e.observed, src))
            for p in found:
                if p and (f.rule_id, src) not in ALLOWED:
                    out.append(f"{f.rule_id}: {e.expression} = {e.observed} at {src}: {p}")
    return sorted(set(out))


@pytest.mark.parametrize("tree", ["weak", "base", "coredump", *VARIANTS])
def test_every_source_names_where_its_value_was_read(bundle, base_tree, tmp_path, tree) -> None:
    ps, reg = bundle
    if tree == "weak":
        root = roots.build_weak(tmp_path)
    elif tree == "base":
        root = base_tree
    elif tree == "coredump":
        root = corpus.edited_copy(tmp_path, base_tree, COREDUMP)
    else:
        root = corpus.build(tmp_path, next(v for v in corpus.VARIANTS if v.id == tree), base_tree)
    _read.cache_clear()
    assert problems(root, scan(ps, reg, root=str(root))) == []
