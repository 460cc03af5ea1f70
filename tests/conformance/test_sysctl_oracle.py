"""The persisted value of `sysctl(name)` is what systemd-sysctl (systemd 252) writes at boot:
each tree of sysctl.d files is applied by /lib/systemd/systemd-sysctl itself, in a private
mount and network namespace whose /proc/sys is a tmpfs of empty files, and the fact must name
exactly the values it wrote there (and nothing where it wrote nothing)."""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from secpolicy.engine import scan
from secpolicy.errors import EvaluationError
from secpolicy.facts import FactContext
from secpolicy.facts._common import as_value
from secpolicy.vocabulary import builtin_registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus

SYSTEMD_SYSCTL = "/lib/systemd/systemd-sysctl"

pytestmark = [
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mount and network namespaces)"),
    pytest.mark.skipif(not os.path.exists(SYSTEMD_SYSCTL), reason="systemd-sysctl is not installed"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare is not installed"),
]

# systemd 252's CONF_PATHS for sysctl.d, as the test lays them out: /run and /usr/local/lib get
# a tmpfs of their own in the namespace, the two that exist on the host one over the directory.
DIRS = ("/etc/sysctl.d", "/run/sysctl.d", "/usr/local/lib/sysctl.d", "/usr/lib/sysctl.d")

# The parameters the trees set, pre-created (empty) in the namespace's /proc/sys, slash form.
IFACES = ("all", "default", "lo", "eth0.100")
KEYS = (
    "net/ipv4/tcp_syncookies",
    "net/ipv4/icmp_echo_ignore_broadcasts",
    "net/ipv4/ip_forward",
    *(f"net/ipv4/conf/{i}/{p}" for i in IFACES
      for p in ("rp_filter", "send_redirects", "accept_redirects")),
    "net/ipv6/conf/all/accept_redirects",
    "net/ipv6/conf/default/accept_redirects",
    "kernel/randomize_va_space",
    "kernel/yama/ptrace_scope",
    "fs/suid_dumpable",
)

# What each file holds before systemd-sysctl runs: no value written equals it (systemd does not
# write a value a file already holds).
_UNTOUCHED = "untouched\n"

# Run as root inside `unshare --mount --net`: every mount below is gone with the namespace.
# Before anything is written it checks that /proc/sys is its own empty tmpfs, so the host's
# sysctls are never reached; the trees reach at most one level up with `..`, within it.
_DRIVER = r"""
import json, os, subprocess, sys
req = json.load(sys.stdin)
def mount_tmpfs(where):
    subprocess.run(["mount", "-t", "tmpfs", "-o", "mode=0755", "tmpfs", where], check=True)
mount_tmpfs("/proc/sys")
if os.listdir("/proc/sys"):
    sys.exit("/proc/sys is not an empty tmpfs")
with open("/proc/self/mountinfo") as f:
    if not any(l.split()[4] == "/proc/sys" and " - tmpfs " in l for l in f):
        sys.exit("no tmpfs on /proc/sys")
for d in ("/run", "/usr/local/lib", "/etc/sysctl.d", "/usr/lib/sysctl.d"):
    mount_tmpfs(d)
dirs = req["dirs"]
for d in dirs:
    os.makedirs(d, exist_ok=True)
out = []
for tree in req["trees"]:
    for k in req["keys"]:
        p = "/proc/sys/" + k
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, "w") as f:
            f.write(req["untouched"])
    for d in dirs:
        for n in os.listdir(d):
            os.unlink(os.path.join(d, n))
    for path, text in tree.items():
        if text is None:
            os.symlink("/dev/null", path)
        else:
            with open(path, "w", encoding="utf-8", errors="surrogateescape") as f:
                f.write(text)
    r = subprocess.run([req["tool"]], capture_output=True, text=True, errors="replace",
                       env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "SYSTEMD_LOG_LEVEL": "debug"})
    vals = {}
    for k in req["keys"]:
        with open("/proc/sys/" + k) as f:
            vals[k] = f.read()
    out.append({"vals": vals, "log": r.stderr})
json.dump(out, sys.stdout)
"""


def _systemd_sysctl(
    trees: list[dict[str, str | None]], keys: tuple[str, ...] = KEYS
) -> list[tuple[dict[str, str | None], str]]:
    """What systemd-sysctl writes for each tree ({path: text, None for a /dev/null link}):
    per key the value written (None if untouched), and its debug log."""
    req = {"tool": SYSTEMD_SYSCTL, "dirs": DIRS, "keys": keys, "trees": trees,
           "untouched": _UNTOUCHED}
    r = subprocess.run(
        ["unshare", "--mount", "--net", "--propagation", "private", sys.executable, "-c", _DRIVER],
        input=json.dumps(req),
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    results = []
    for o in json.loads(r.stdout):
        # each write ends with a newline and does not truncate the file: a shorter write
        # leaves the end of the text before it behind (two globs write one file)
        vals = {k: None if v == _UNTOUCHED else v.split("\n", 1)[0] for k, v in o["vals"].items()}
        results.append((vals, o["log"]))
    return results


def _ours(root: Path, tree: dict[str, str | None]) -> dict[str, object]:
    for path, text in tree.items():
        host = root / path.lstrip("/")
        host.parent.mkdir(parents=True, exist_ok=True)
        if text is None:
            host.symlink_to("/dev/null")
        else:
            host.write_text(text, encoding="utf-8", errors="surrogateescape")
    ctx = FactContext(builtin_registry(), str(root))
    out: dict[str, object] = {}
    for k in KEYS:
        dotted = k.translate(str.maketrans("./", "/."))
        s = ctx.fact("sysctl", (dotted,))
        assert ctx.fact("sysctl", (k,)).persisted == s.persisted, k  # either spelling
        out[k] = s.persisted
    return out


def _compare(tmp_path: Path, trees: list[dict[str, str | None]]) -> list[str]:
    problems = []
    for n, (tree, (written, log)) in enumerate(zip(trees, _systemd_sysctl(trees), strict=True)):
        ours = _ours(tmp_path / f"t{n}", tree)
        expected = {k: as_value(v) for k, v in written.items()}
        diff = {k: (ours[k], expected[k]) for k in KEYS if ours[k] != expected[k]}
        if diff:
            files = "".join(
                f"  {p}: {'-> /dev/null' if t is None else repr(t)}\n" for p, t in tree.items()
            )
            problems.append(f"tree {n}:\n{files}  (ours, systemd): {diff}\n  log: {log}")
    return problems


E, R, L, U = (d + "/" for d in DIRS)

# The red team's reproduction, and the corners the random trees are built from.
FIXED: list[dict[str, str | None]] = [
    {
        E + "10-cis.conf": "net.ipv4.tcp_syncookies = 1\nnet.ipv4.conf.all.rp_filter = 1\n"
        "net.ipv4.conf.all.send_redirects = 0\n",
        E + "90-x.conf": "net.ipv4..tcp_syncookies = 0\nnet.ipv4.*rp_filter = 0\n"
        "-net.ipv4.conf.all.send_redirects\nnet.ipv4.conf.*.send_redirects = 1\n"
        "net/ipv4/./icmp_echo_ignore_broadcasts = 0\n",
    },
    # a `..` level is never written (EINVAL), and does not keep the key from a glob
    {E + "10.conf": "net/ipv4/conf/../tcp_syncookies = 5\nnet.ipv4.tcp_sync* = 6\n"},
    {E + "10.conf": "net/ipv4/conf/*/../../tcp_syncookies = 7\n"},
    {E + "10.conf": "net.ipv4.conf.*.rp_filter = 3\nnet/ipv4//conf/lo/../all/rp_filter = 5\n"},
    # a glob set again to the same value keeps its place; to another value it moves last
    {E + "10.conf": "net.ipv4.conf.*.rp_filter = 1\nnet.ipv4.conf.a*.rp_filter = 2\n"
     "net.ipv4.conf.*.rp_filter = 1\n"},
    {E + "10.conf": "net.ipv4.conf.*.rp_filter = 1\nnet.ipv4.conf.a*.rp_filter = 2\n"
     "net.ipv4.conf.*.rp_filter = 3\n"},
    {E + "10.conf": "net.ipv4.conf.*.*filter = 1\n", E + "20.conf":
     "net.ipv4.conf.all.rp_filt* = 2\n", E + "30.conf": "net.ipv4.conf.*.*filter = 1\n"},
    # `-glob` drops the glob; `-key` then `-key = v` sets it again; `- key = v` is a key
    {E + "10.conf": "net.ipv4.conf.*.rp_filter = 1\n-net.ipv4.conf.*.rp_filter\n"},
    {E + "10.conf": "net.ipv4.conf.*.rp_filter = 1\n-net.ipv4.conf.all.rp_filter\n"
     "-net.ipv4.conf.all.rp_filter = 6\n"},
    {E + "10.conf": "- net.ipv4.tcp_syncookies = 3\n-net.ipv4.ip_forward\nnet.ipv4.ip_forward\n"},
    {E + "10.conf": "net.ipv4.tcp_syncookies = 1\n-net.ipv4.tcp_syncookies\n",
     E + "20.conf": "net.ipv4.tcp_syncookies=2\n"},
    # glob(3): brackets, negation with ! and ^, classes, escapes, FNM_PERIOD, one level each
    {E + "10.conf": "net.ipv4.conf.[!a]*.rp_filter = 4\nnet.ipv4.conf.[^d]??.send_redirects = 5\n"},
    {E + "10.conf": "net.ipv4.conf.\\a*.rp_filter = 4\nnet.ipv4.conf.[[:alpha:]]ll.send_redirects = 1\n"
     "net.ipv4.conf.[[:digit:]]*.accept_redirects = 2\nnet.ipv4.conf.[]a]*.accept_redirects = 3\n"},
    {E + "10.conf": "net.ipv4.conf.eth0[/]100.rp_filter = 8\nnet/ipv4/conf/eth0[.]1*/send_redirects = 2\n"
     "net/ipv4/conf/[a-e]*/accept_redirects = 7\nnet/ipv4/conf/[z-a]*/rp_filter = 1\n"},
    {E + "10.conf": "net.ipv4.conf.?o.rp_filter = 3\nnet.*.tcp_syncookies = 1\n*.ipv4.ip_forward = 1\n"
     "net.ipv4.conf.[a.rp_filter = 2\nkernel.*.ptrace_scope = 3\nnet.ipv*.conf.all.accept_redirects = 9\n"},
    # names: leading and trailing separators, `/` first, dots inside a level
    {E + "10.conf": ".net.ipv4.tcp_syncookies = 4\nnet.ipv4.ip_forward. = 1\n"
     "/kernel/randomize_va_space = 2\nnet.ipv4.conf.eth0/100.rp_filter = 8\n"
     "net//ipv4/conf/lo/rp_filter = 4\nnet.ipv4.conf.*..send_redirects = 3\n"},
    # values: stripped, inner blanks kept, empty; a repeated key with its first value
    {E + "10.conf": "net.ipv4.conf.*.rp_filter = \nnet.ipv4.tcp_syncookies =   a  b \n"
     "fs.suid_dumpable=0\nfs.suid_dumpable = 0 \n"},
    # directories: /etc masks /run masks /usr/local/lib masks /usr/lib; /dev/null masks
    {E + "50.conf": "net.ipv4.ip_forward = 1\n", R + "50.conf": "net.ipv4.ip_forward = 2\n",
     U + "50.conf": "net.ipv4.ip_forward = 3\n", U + "60.conf": "kernel.yama.ptrace_scope = 1\n",
     L + "60.conf": "kernel.yama.ptrace_scope = 2\n", E + "40.conf": "kernel.yama.ptrace_scope = 3\n"},
    {E + "50.conf": None, U + "50.conf": "net.ipv4.ip_forward = 3\n",
     R + "10.conf": None, L + "10.conf": "fs.suid_dumpable = 2\n"},
    {E + "50.conf": "net.ipv4.ip_forward = 1\n", U + "50.conf.bak": "net.ipv4.ip_forward = 2\n",
     U + ".60.conf": "net.ipv4.ip_forward = 3\n"},
]

_VALUES = ("0", "1", "2", "1 2", "", "  3\t")


def _spell(key: str, rng: random.Random) -> str:
    """A random spelling of `key` (slash form) that systemd reads as `key`, or one it reads
    differently (a `..` level, a glob that spans levels, an extra level)."""
    levels = key.split("/")
    roll = rng.random()
    if roll < 0.08 and len(levels) > 2:  # a `..` level: never written
        i = rng.randrange(1, len(levels) - 1)
        levels = [*levels[:i], "all" if levels[i] != "all" else "lo", "..", *levels[i:]]
        return "/".join(levels)
    if roll < 0.45:  # a glob in one level or across a separator
        i = rng.randrange(len(levels))
        lv = levels[i]
        kind = rng.randrange(7)
        if kind == 0:
            levels[i] = "*"
        elif kind == 1 and len(lv) > 1:
            j = rng.randrange(len(lv))
            levels[i] = lv[:j] + "*"
        elif kind == 2 and lv:
            j = rng.randrange(len(lv))
            levels[i] = lv[:j] + "?" + lv[j + 1 :]
        elif kind == 3 and lv:
            j = rng.randrange(len(lv))
            levels[i] = lv[:j] + "[" + rng.choice(("", "!", "^")) + lv[j] + "x]" + lv[j + 1 :]
        elif kind == 4 and i + 1 < len(levels):  # `*` meant to span two levels
            levels[i : i + 2] = ["*" + levels[i + 1][-3:]]
        elif kind == 5:
            levels[i] = "\\" + lv[0] + lv[1:] + rng.choice(("*", "[a-z]", ""))
        else:
            levels[i] = lv + rng.choice(("*", "?", "[0-9]"))
    slash = rng.random() < 0.4
    sep = "/" if slash else "."
    inner = "." if slash else "/"
    parts = [lv.replace(".", inner) if not slash else lv for lv in levels]
    out = parts[0]
    for p in parts[1:]:
        out += rng.choice((sep, sep, sep, sep + sep, sep + "." + sep if slash else sep + sep)) + p
    if rng.random() < 0.1:
        out = sep + out
    if rng.random() < 0.1:
        out += sep
    return out


def _line(rng: random.Random) -> str:
    key = _spell(rng.choice(KEYS), rng)
    roll = rng.random()
    if roll < 0.15:
        return f"-{key}"
    if roll < 0.18:
        return rng.choice(("# " + key + " = 1", "; " + key + " = 1", key, "-" + key + " # x"))
    dash = rng.choice(("", "", "", "-", "- "))
    pad = rng.choice(("", " ", "\t", "  "))
    return f"{dash}{pad}{key}{pad}={rng.choice(('', ' ', '  '))}{rng.choice(_VALUES)}"


def _random_tree(rng: random.Random) -> dict[str, str | None]:
    tree: dict[str, str | None] = {}
    for _ in range(rng.randrange(1, 5)):
        d = rng.choice(DIRS)
        name = rng.choice(("10-a.conf", "50-b.conf", "50-b.conf", "90-x.conf", "99-z.conf"))
        if rng.random() < 0.08:
            tree[f"{d}/{name}"] = None
            continue
        lines = [_line(rng) for _ in range(rng.randrange(1, 7))]
        tree[f"{d}/{name}"] = "".join(ln + "\n" for ln in lines)
    return tree


def test_fixed_trees_persist_what_systemd_sysctl_writes(tmp_path: Path) -> None:
    problems = _compare(tmp_path, FIXED)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("seed", [252, 1729])
def test_random_trees_persist_what_systemd_sysctl_writes(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    trees = [_random_tree(rng) for _ in range(300)]
    problems = _compare(tmp_path, trees)
    assert not problems, f"{len(problems)} of {len(trees)} trees differ:\n" + "\n".join(problems[:5])


def test_the_red_team_tree_fails_cis_3_3_10_and_3_3_2(bundle, tmp_path: Path) -> None:
    """Both passed: `..` was not simplified, so 10-cis.conf's 1 stood; `-key` was dropped, so
    its 0 stood where systemd-sysctl never writes the parameter at all."""
    (written, _log), = _systemd_sysctl([FIXED[0]])
    assert (written["net/ipv4/tcp_syncookies"], written["net/ipv4/conf/all/send_redirects"]) == (
        "0",
        None,
    )
    root = tmp_path / "r"
    _ours(root, FIXED[0])
    ps, reg = bundle
    ids = ["cis-3.3.10-ipv4-tcp-syncookies", "cis-3.3.2-ipv4-all-send-redirects"]
    findings = scan(ps, reg, root=str(root), rule_ids=ids).findings
    assert {f.rule_id: f.status.value for f in findings} == dict.fromkeys(ids, "fail")


@pytest.mark.parametrize(
    "name",
    [" net.ipv4.conf.eth0/100.rp_filter ", "net.ipv4.tcp_syncookies.", "net/ipv4/tcp_syncookies/",
     "net.ipv4.tcp syncookies", "", "net/ipv4/conf/../tcp_syncookies", "net.ipv4.conf.*.rp_filter"],
)
def test_a_name_sysctl8_cannot_read_as_one_parameter_is_an_error(tmp_path: Path, name: str) -> None:
    """`sysctl -n` fails on blanks around the name and on a trailing separator; a `..` level
    or a glob names no single parameter. The fact is an error, not an absent parameter."""
    ctx = FactContext(builtin_registry(), str(tmp_path))
    with pytest.raises(EvaluationError, match="not a parameter name"):
        ctx.fact("sysctl", (name,))


@pytest.mark.parametrize(
    ("name", "canonical"),
    [
        ("net.ipv4..tcp_syncookies", "net.ipv4.tcp_syncookies"),
        ("net/ipv4/./tcp_syncookies", "net.ipv4.tcp_syncookies"),
        ("net//ipv4/tcp_syncookies", "net.ipv4.tcp_syncookies"),
        (".net.ipv4.tcp_syncookies", "net.ipv4.tcp_syncookies"),
        ("/net/ipv4/tcp_syncookies", "net.ipv4.tcp_syncookies"),
        ("net/ipv4/conf/eth0.100/rp_filter", "net.ipv4.conf.eth0/100.rp_filter"),
    ],
)
def test_names_sysctl8_reads_are_the_parameter_it_reads(name: str, canonical: str) -> None:
    """`sysctl -n` reads these (warning about repeated separators): the kernel resolves `//`
    and `.` levels. The host's /proc/sys says which parameter that is."""
    ctx = FactContext(builtin_registry(), "/")
    s = ctx.fact("sysctl", (name,))
    assert s.name == canonical
    if canonical == "net.ipv4.tcp_syncookies":
        tool = shutil.which("sysctl") or "/usr/sbin/sysctl"
        shown = subprocess.run([tool, "-n", name], capture_output=True, text=True, check=True)
        assert s.running == as_value(shown.stdout)


def _files_of(root: Path) -> dict[str, str | None]:
    """The sysctl.d directories of a root as a tree for _systemd_sysctl(): links resolved
    inside the root (99-sysctl.conf -> ../sysctl.conf), a link to /dev/null kept as a mask."""
    tree: dict[str, str | None] = {}
    for d in DIRS:
        host = root / d.lstrip("/")
        for name in sorted(os.listdir(host)) if host.is_dir() else ():
            p = host / name
            for _ in range(40):
                if not p.is_symlink():
                    break
                target = os.readlink(p)
                if target == "/dev/null":
                    tree[f"{d}/{name}"] = None
                    break
                p = root / target.lstrip("/") if target.startswith("/") else p.parent / target
            else:
                continue
            if f"{d}/{name}" not in tree and p.is_file():
                tree[f"{d}/{name}"] = p.read_bytes().decode("utf-8", "surrogateescape")
    return tree


def test_corpus_sysctl_variants_persist_what_systemd_sysctl_writes(base_tree, tmp_path) -> None:
    """The corpus's sysctl variants, asked of systemd-sysctl rather than of our reading of
    `systemd-analyze cat-config` (test_oracles)."""
    keys = tuple(k.replace(".", "/") for _r, k, _g, _b in corpus._SYSCTL)
    variants = [None, *(v for v in corpus.VARIANTS if v.oracle == "sysctl")]
    roots = []
    for n, v in enumerate(variants):
        root = tmp_path / f"v{n}"
        corpus._link_copy(base_tree, root)
        for e in v.edits if v else ():
            corpus._apply(root, e)
        roots.append(root)
    results = _systemd_sysctl([_files_of(r) for r in roots], keys)
    problems = []
    for v, root, (written, _log) in zip(variants, roots, results, strict=True):
        ctx = FactContext(builtin_registry(), str(root))
        ours = {k: ctx.fact("sysctl", (k,)).persisted for k in keys}
        expected = {k: as_value(w) for k, w in written.items()}
        if ours != expected:
            diff = {k: (ours[k], expected[k]) for k in keys if ours[k] != expected[k]}
            problems.append(f"{v.id if v else 'base'}: (ours, systemd) {diff}")
    assert not problems, "\n".join(problems)
