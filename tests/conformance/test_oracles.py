"""The corpus trees where a real tool decides, asked of that tool: `sshd -T -C` for every
connection a Match block selects, `augenrules` and `auditctl -R` into the running kernel (with
keys of this test's own, removed afterwards), `systemd-analyze cat-config` for drop-in
precedence, `systemctl is-enabled` for the state of units, kmod's `modprobe` for modprobe.d,
`rsyslogd -N1 -o` and `chronyd -p` for the configuration they read, shadow's
`useradd`/`chgpasswd` for login.defs and its defaults and `useradd -D` for
/etc/default/useradd, ufw's own `ufw-init` (in a network namespace) and `sh` for the files it
sources, `cvtsudoers` for what sudo reads of sudoers. The facts and rules must agree with what
the tools say."""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import random
import re
import shutil
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import pytest

from secpolicy.engine import evaluate_rule, scan
from secpolicy.errors import EvaluationError
from secpolicy.facts import FactContext, shell
from secpolicy.facts import kv as kv_fact
from secpolicy.facts import sshd as sshd_fact
from secpolicy.facts._common import config_parse, config_parse_files, systemd_conf_files
from secpolicy.facts.audit_rules import RuleSyntaxError, parse_rule
from secpolicy.facts.auditctl import parse_words, words
from secpolicy.facts.kv import JOURNALD_DEFAULTS, parse_boolean, parse_size
from secpolicy.facts.sshd_defaults import DEFAULTS, GLOBAL_ONLY, KEYWORDS
from secpolicy.facts.system import CHRONY_CONF, MODPROBE_DIRS, _chrony_file
from secpolicy.vocabulary import builtin_registry

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import corpus
import modprobe_trees
import systemd_conf
import unit_trees
from augenrules_run import run_augenrules
from rsyslogd_run import rsyslogd_modes

ROOT_NEEDED = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (mount namespaces, audit rules, chroot)"
)


def _tool(name: str) -> str:
    path = shutil.which(name) or next(
        (p for p in (f"/usr/sbin/{name}", f"/sbin/{name}") if os.path.exists(p)), None
    )
    if path is None:
        pytest.skip(f"{name} is not installed")
    return path


def _variants(oracle: str) -> list[corpus.Variant | None]:
    return [None] + [v for v in corpus.VARIANTS if v.oracle == oracle]


def _id(v: corpus.Variant | None) -> str:
    return "base" if v is None else v.id


def _tree(tmp_path: Path, base: Path, v: corpus.Variant | None) -> Path:
    root = tmp_path / "t"
    corpus._link_copy(base, root)
    for e in v.edits if v else ():
        corpus._apply(root, e)
    return root


def _namespaced(script: str, env: dict[str, str] | None = None, args: Sequence[str] = (),
                timeout: int = 60) -> subprocess.CompletedProcess[str]:
    """A shell script (given `args` as $1...) in a private mount namespace: its mounts vanish
    with it. Output a tool writes that is not UTF-8 is shown with replacement characters."""
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *args],
        capture_output=True,
        text=True,
        errors="replace",
        timeout=timeout,
        check=False,
        env=env,
    )


def _statuses(bundle, root: Path, prefix: str) -> dict[str, str]:
    ps, reg = bundle
    ids = [r.id for r in ps.rules if r.id.startswith(prefix)]
    return {f.rule_id: f.status.value for f in scan(ps, reg, root=str(root), rule_ids=ids).findings}


# --- sshd -T -C ------------------------------------------------------------------------------
_WEAK_CIPHERS = r"(^|,)(3des-cbc|aes128-cbc|aes192-cbc|aes256-cbc|rijndael-cbc@lysator\.liu\.se|chacha20-poly1305@openssh\.com)(,|$)"
_WEAK_MACS = (
    r"(^|,)(hmac-md5|hmac-md5-96|hmac-ripemd160|hmac-sha1-96|umac-64@openssh\.com|hmac-md5-etm@openssh\.com|"
    r"hmac-md5-96-etm@openssh\.com|hmac-ripemd160-etm@openssh\.com|hmac-sha1-96-etm@openssh\.com|umac-64-etm@openssh\.com)(,|$)"
)
_WEAK_KEX = r"(^|,)(diffie-hellman-group1-sha1|diffie-hellman-group14-sha1|diffie-hellman-group-exchange-sha1)(,|$)"
# CIS 5.1.x as the benchmark states it, over what `sshd -T -C` prints for one connection
SSHD_BENCHMARK = {
    "cis-5.1.4-sshd-access-limited": lambda c: any(
        k in c for k in ("allowusers", "allowgroups", "denyusers", "denygroups")
    ),
    "cis-5.1.5-sshd-banner": lambda c: c["banner"] != "none",
    "cis-5.1.6-sshd-ciphers": lambda c: not re.search(_WEAK_CIPHERS, c["ciphers"]),
    "cis-5.1.7-sshd-client-alive": lambda c: (
        int(c["clientaliveinterval"]) > 0 and int(c["clientalivecountmax"]) > 0
    ),
    "cis-5.1.8-sshd-disable-forwarding": lambda c: c["disableforwarding"] == "yes",
    "cis-5.1.9-sshd-gssapi-disabled": lambda c: c["gssapiauthentication"] == "no",
    "cis-5.1.10-sshd-hostbased-disabled": lambda c: c["hostbasedauthentication"] == "no",
    "cis-5.1.11-sshd-ignore-rhosts": lambda c: c["ignorerhosts"] == "yes",
    "cis-5.1.12-sshd-kex": lambda c: not re.search(_WEAK_KEX, c["kexalgorithms"]),
    "cis-5.1.13-sshd-login-grace-time": lambda c: 0 < int(c["logingracetime"]) <= 60,
    "cis-5.1.14-sshd-log-level": lambda c: c["loglevel"].lower() in ("info", "verbose"),
    "cis-5.1.15-sshd-macs": lambda c: not re.search(_WEAK_MACS, c["macs"]),
    "cis-5.1.16-sshd-max-auth-tries": lambda c: int(c["maxauthtries"]) <= 4,
    "cis-5.1.17-sshd-max-sessions": lambda c: int(c["maxsessions"]) <= 10,
    "cis-5.1.18-sshd-max-startups": lambda c: (
        re.fullmatch(r"([0-9]|10):([0-9]|[12][0-9]|30):([0-9]|[1-5][0-9]|60)", c["maxstartups"])
        is not None
    ),
    "cis-5.1.19-sshd-permit-empty-passwords": lambda c: c["permitemptypasswords"] == "no",
    "cis-5.1.20-sshd-permit-root-login": lambda c: c["permitrootlogin"] == "no",
    "cis-5.1.21-sshd-permit-user-environment": lambda c: c["permituserenvironment"] == "no",
    "cis-5.1.22-sshd-use-pam": lambda c: c["usepam"] == "yes",
}
_BASE_SPEC = {
    "user": "nobody",
    "host": "unmatched.invalid",
    "addr": "192.0.2.200",
    "laddr": "192.0.2.1",
    "lport": "22",
}


def _first_positive(patterns: str) -> str | None:
    return next((p for p in patterns.split(",") if p and not p.startswith("!")), None)


def _specs(root: Path) -> list[dict[str, str]]:
    """A connection no Match block selects, and one for each Match block of the tree."""
    s = FactContext(builtin_registry(), str(root)).fact("sshd", ())
    groups = {}
    for line in (root / "etc/group").read_text().splitlines():
        parts = line.split(":")
        if len(parts) >= 4:
            groups[parts[0]] = [m for m in parts[3].split(",") if m]
    specs = [dict(_BASE_SPEC)]
    for m in s.matches:
        spec = dict(_BASE_SPEC)
        parts = (m.criteria or "").split()
        for key, value in zip(parts[0::2], parts[1::2], strict=False):
            first = _first_positive(value)
            if first is None:
                continue
            k = key.lower()
            if k == "user":
                spec["user"] = first.replace("*", "x").replace("?", "x")
            elif k == "group":
                spec["user"] = next(iter(groups.get(first, [])), "root")
            elif k == "host":
                spec["host"] = first.replace("*", "x").replace("?", "x")
            elif k == "address":
                spec["addr"] = (
                    str(
                        next(ipaddress.ip_network(first, strict=False).hosts(), first.split("/")[0])
                    )
                    if "/" in first
                    else first.replace("*", "1")
                )
            elif k == "localport":
                spec["lport"] = first
            elif k == "localaddress":
                spec["laddr"] = first.split("/")[0]
        specs.append(spec)
    return specs


def _sshd_T(root: Path, key: Path, specs: list[dict[str, str]]) -> list[dict[str, str]]:
    """`sshd -T -C ...` for each spec, with the tree's /etc/ssh, passwd and group bound over the
    host's in a private mount namespace (Include paths and Match Group resolve as on the tree),
    over a fresh /run holding the privilege separation directory sshd insists on (whether or
    not the host has one)."""
    sshd = _tool("sshd")
    runs = " ; ".join(
        f"{sshd} -T -h {key} -f /etc/ssh/sshd_config -C "
        + ",".join(f"{k}={v}" for k, v in spec.items())
        + " ; echo __END__"
        for spec in specs
    )
    script = (
        "mount -t tmpfs none /run && mkdir /run/sshd && "
        f"mount --bind {root}/etc/ssh /etc/ssh && mount --bind {root}/etc/passwd /etc/passwd "
        f"&& mount --bind {root}/etc/group /etc/group && {{ {runs} ; }}"
    )
    out = _namespaced(script)
    blocks = out.stdout.split("__END__\n")[: len(specs)]
    res = []
    for b in blocks:
        conf: dict[str, str] = {}
        for line in b.splitlines():
            k, _, v = line.partition(" ")
            conf.setdefault(k, v)
        assert conf, f"sshd -T printed nothing: {out.stderr.strip()}"
        res.append(conf)
    return res


@pytest.fixture(scope="module")
def host_key(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("sshkey")
    subprocess.run(
        [_tool("ssh-keygen"), "-q", "-t", "ed25519", "-N", "", "-f", str(d / "key")], check=True
    )
    return d / "key"


@ROOT_NEEDED
@pytest.mark.parametrize("variant", _variants("sshd"), ids=_id)
def test_sshd_rules_agree_with_sshd_T_for_every_match_block(
    bundle, base_tree, tmp_path, host_key, variant
) -> None:
    root = _tree(tmp_path, base_tree, variant)
    configs = _sshd_T(root, host_key, _specs(root))
    got = _statuses(bundle, root, "cis-5.1.")
    for rid, holds in SSHD_BENCHMARK.items():
        oracle = "pass" if all(holds(c) for c in configs) else "fail"
        assert got[rid] == oracle, (
            rid,
            [
                {k: c.get(k) for k in ("maxauthtries", "permitrootlogin", "banner", "loglevel")}
                for c in configs
            ],
        )


# --- augenrules and auditctl -R ----------------------------------------------------------------
_PREFIX = f"zzsp{os.getpid()}_"
_CONTROL = {
    "-e",
    "-b",
    "-f",
    "-r",
    "--backlog_wait_time",
    "--loginuid-immutable",
    "--reset-lost",
    "-D",
}


def _safe_rules(text: str) -> str:
    """The generated audit.rules made safe for a shared kernel: every key gets this test's
    prefix (a keyless rule gets one), and each line that would change the kernel's settings
    (-D, -e, -b, -f, -r ...) becomes a rule of ours that says it was reached. Lines auditctl
    refuses stay refused."""
    out = []
    for n, line in enumerate(text.split("\n"), 1):
        w = line.split()
        if not w or w[0].startswith("#"):
            out.append(line)
            continue
        if w[0] in _CONTROL:
            value = w[1] if len(w) > 1 else ""
            ok = (
                (w[0] == "-D" and len(w) == 1)
                or (w[0] in ("-e", "-f") and value in ("0", "1", "2") and len(w) == 2)
                or (
                    w[0] in ("-b", "-r", "--backlog_wait_time")
                    and value[:1].isdigit()
                    and len(w) == 2
                )
                or (w[0] in ("--loginuid-immutable", "--reset-lost") and len(w) == 1)
            )
            tag = f"{w[0].lstrip('-')}{value}"
            out.append(
                f"-a always,exit -F arch=b64 -S uname -F uid=424242 -k {_PREFIX}ctl_{tag}_{n}"
                if ok
                else line
            )
            continue
        line = re.sub(r"(^| )-k ?(\S+)", lambda m: f"{m.group(1)}-k {_PREFIX}{m.group(2)}", line)
        line = re.sub(r"-F key=(\S*)", lambda m: f"-F key={_PREFIX}{m.group(1)}", line)
        if _PREFIX not in line and w[0] in ("-a", "-A", "-w", "-d", "-W"):
            line += f" -k {_PREFIX}nokey"
        out.append(line)
    return "\n".join(out)


def _ours(keys: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(
        sorted(k[len(_PREFIX) :] for k in keys if k.startswith(_PREFIX) and k != f"{_PREFIX}nokey")
    )


def _shape(r) -> tuple:
    return (r.list, r.action, r.arch, r.syscalls, r.fields, r.path, r.perm)


def _kernel_load(rules_file: Path) -> list[str]:
    auditctl = _tool("auditctl")
    status = subprocess.run([auditctl, "-s"], capture_output=True, text=True, check=False).stdout
    if re.search(r"^enabled 2", status, re.MULTILINE):
        pytest.fail(
            "the kernel's audit rules are locked (-e 2) until reboot: cannot load test rules"
        )
    subprocess.run([auditctl, "-R", str(rules_file)], capture_output=True, text=True, check=False)
    listed = subprocess.run([auditctl, "-l"], capture_output=True, text=True, check=True).stdout
    mine = [line for line in listed.splitlines() if _PREFIX in line]
    if mine:  # leave nothing behind: one auditctl reads every deletion
        undo = rules_file.with_name(rules_file.name + ".undo")
        undo.write_text("".join({"-a": "-d", "-w": "-W"}[line[:2]] + line[2:] + "\n" for line in mine))
        subprocess.run([auditctl, "-R", str(undo)], capture_output=True, check=False)
    after = subprocess.run([auditctl, "-l"], capture_output=True, text=True, check=True).stdout
    assert _PREFIX not in after, "test audit rules left in the kernel"
    return mine


@ROOT_NEEDED
@pytest.mark.xdist_group("live")  # loads rules into the kernel, which the live scans read
@pytest.mark.parametrize("variant", _variants("auditctl"), ids=_id)
def test_audit_rules_are_what_augenrules_and_auditctl_load(base_tree, tmp_path, variant) -> None:
    root = _tree(tmp_path, base_tree, variant)
    fact = FactContext(builtin_registry(), str(root)).fact("audit_rules", ())
    augenrules = _tool("augenrules")
    audit_dir = root / "etc/audit"
    if (audit_dir / "audit.rules").is_file():
        corpus._detach(audit_dir / "audit.rules")
    subprocess.run(
        [
            "unshare",
            "--mount",
            "--propagation",
            "private",
            "sh",
            "-c",
            f"mount --bind {audit_dir} /etc/audit && {augenrules} >/dev/null 2>&1; true",
        ],
        check=True,
        timeout=60,
    )
    safe = tmp_path / "load.rules"
    safe.write_text(_safe_rules((audit_dir / "audit.rules").read_text()))
    loaded = _kernel_load(safe)
    kernel = sorted(
        (repr(_shape(r)), _ours(r.keys))
        for r in (parse_rule(x) for x in loaded)
        if "ctl_" not in " ".join(r.keys)
    )
    ours = sorted((repr(_shape(r)), tuple(sorted(r.keys))) for r in fact.persisted)
    assert kernel == ours, (fact.errors, fact.stopped_at)
    reached_e2 = [x for x in loaded if f"{_PREFIX}ctl_e2_" in x]
    last_e = [x for x in loaded if re.search(f"{_PREFIX}ctl_e[012]_", x)]
    assert fact.immutable == (bool(reached_e2) and "ctl_e2_" in last_e[-1]), (
        fact.immutable,
        last_e,
    )


_AUDIT_VARIANTS = [None] + [
    v for v in corpus.VARIANTS
    if any(isinstance(e[1], str) and e[1].startswith("etc/audit") for e in v.edits)
]


@ROOT_NEEDED
@pytest.mark.parametrize("variant", _AUDIT_VARIANTS, ids=_id)
def test_cis_6_2_3_21_is_what_augenrules_check_says(base_tree, tmp_path, variant) -> None:
    """On every corpus tree that touches etc/audit: the fact says what `augenrules --check`
    says, and the corpus's verdict for 6.2.3.21 follows it (PASS exactly on "No change")."""
    root = _tree(tmp_path, base_tree, variant)
    if not (root / "etc/audit").is_dir():
        assert variant is not None and variant.expect.get("6.2.3.21") == "not_applicable"
        return
    said = run_augenrules(_tool("augenrules"), root / "etc/audit", "--check")
    message = said.stdout.decode().strip().split(": ", 1)[-1]
    fact = FactContext(builtin_registry(), str(root)).fact("audit_rules", ())
    assert fact.augenrules_check == message, said
    expect = (variant.expect if variant else {}).get("6.2.3.21") or corpus.BASE_EXPECT.get(
        "cis-6.2.3.21-audit-loaded-matches-disk", "pass")
    if expect != "not_applicable":
        assert expect == ("pass" if message == "No change" else "fail"), message


_LINES = [
    "-a always,exit -F arch=b64 -S adjtimex,settimeofday -k time-change",
    "-a always,exit -F arch=b64 -S adjtimex \\",
    "-S settimeofday -k time-change",
    "-a always,exit -S all -F arch=b64",
    "-a always,exit -F arch=b64 -S mountx",
    "-a always,exit -F arch=b64 -S socketcall",
    "-a always,exit -F arch=b32 -S socketcall -F auid>=1000 -F auid!=-1",
    "-F arch=b64 -a always,exit -S open",
    "-a always,exit -F arch=b64 -F auid>=1000 -k x",
    "-a always,exit -F path=/usr/bin/chcon -F perm=x -F auid>=1000 -F auid!=unset -k perm_chng",
    "-a always,exit -F arch=b64 -S open -F success=yes",
    "-a always,exit -F arch=b64 -S open -F exit=-EFOO",
    "-a always,exit -F arch=b64 -S open -F exit=-EACCES",
    "-w /etc/passwd -p wa -k identity # passwd",
    "-w etc/passwd -p wa",
    "-w /etc/sudoers.d/ -p aw",
    "-a always,exit -a always,exit -S open",
    "-a exit,always -F arch=b32 -S settimeofday -S adjtimex -F key=time-change",
    "-a always,exit -F arch=b64 -C euid!=uid -F auid!=unset -S execve -k user_emulation",
    "-a always,exit -F arch=b64 -S open -C auid!=foo",
    "-a always,exit -F arch=b64 -S open -k",
    "-a never,exclude -F msgtype=CWD",
    "-a always,exit -F arch=b64 -S open -F msgtype=CWD",
    "-e 3",
    "-b x",
    "-S open",
    "-a always,exit -F arch=b64 -S open -F AUID>=1000",
    "-a always,exit -F arch=b64 -S open -F filetype=bogus",
    "-a possible,exit -S open",
]


def _auditctl_refuses(argv: list[str]) -> bool:
    """auditctl's own parser, run in a user namespace where it cannot reach the kernel: it
    prints why it refuses a line, and only 'disabled' (or a warning) for one it accepts."""
    out = subprocess.run(
        ["unshare", "-Ur", _tool("auditctl"), *argv],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    msgs = [
        m
        for m in (out.stdout + out.stderr).splitlines()
        if m.strip() and "disabled" not in m and not m.startswith("WARNING")
    ]
    return bool(msgs)


def test_each_line_is_refused_exactly_when_auditctl_refuses_it(base_tree) -> None:
    lines = _LINES + [
        ln
        for ln in (base_tree / "etc/audit/rules.d/50-cis.rules").read_text().splitlines()
        if ln.strip() and not ln.startswith("#")
    ]
    for line in lines:
        argv = words(line) or []
        try:
            parse_words(argv, line)
            ours = False
        except RuleSyntaxError:
            ours = True
        assert ours == _auditctl_refuses(argv), line


# --- systemd-analyze cat-config --------------------------------------------------------------------
def _cat_config(root: Path, what: str) -> list[tuple[str, str]]:
    """(file, text) in the order systemd applies them (a masked file shows empty)."""
    out = subprocess.run(
        [_tool("systemd-analyze"), f"--root={root}", "cat-config", what],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    files: list[tuple[str, list[str]]] = []
    for line in out.splitlines():
        m = re.match(r"# (/\S+)$", line)
        if m and m.group(1).startswith(str(root)):
            files.append((m.group(1)[len(str(root)) :], []))
        elif files:
            files[-1][1].append(line)
    return [(f, "\n".join(t)) for f, t in files]


def _sysctl_oracle(root: Path) -> dict[str, str]:
    exact: dict[str, str] = {}
    globs: list[tuple[str, str]] = []
    for _f, text in _cat_config(root, "sysctl.d/"):
        for raw in text.splitlines():
            line = raw.strip()
            if not line or line[0] in "#;" or "=" not in line:
                continue
            k, v = (x.strip() for x in line.split("=", 1))
            k = k.lstrip("-")
            if "/" in k.split(".")[0]:
                k = k.replace("/", ".")
            (globs.append((k, v)) if any(c in k for c in "*?[") else exact.__setitem__(k, v))
    import fnmatch

    keys = {k for _r, k, _g, _b in corpus._SYSCTL}
    return {
        k: exact.get(k) or next((v for p, v in reversed(globs) if fnmatch.fnmatchcase(k, p)), None)
        for k in keys
    }


@pytest.mark.parametrize("variant", _variants("sysctl"), ids=_id)
def test_sysctl_persisted_values_follow_systemds_file_order(base_tree, tmp_path, variant) -> None:
    root = _tree(tmp_path, base_tree, variant)
    ctx = FactContext(builtin_registry(), str(root))
    oracle = _sysctl_oracle(root)
    ours = {k: ctx.fact("sysctl", (k,)).persisted for k in oracle}
    assert {k: None if v is None else str(v) for k, v in ours.items()} == oracle


def _systemd_settings(parser: systemd_conf.SystemdParser, root: Path, what: str, section: str) -> dict[str, str]:
    """The settings of `section` in force: the files in the order `systemd-analyze cat-config`
    gives, each read by systemd's own config_parse() (one it stops reading stops the rest).
    cat-config also lists a main file under /run or /usr/lib where /etc has none; the daemons
    never open it (test_the_daemons_read_the_files_the_facts_read), so it is left out."""
    out: dict[str, str] = {}
    for f, _text in _cat_config(root, what):
        if f != f"/etc/{what}" and f"/{what}.d/" not in f:
            continue
        r, got = parser.parse(root / f.lstrip("/"), [section])
        out.update((key, value) for _, key, value in got)
        if r < 0:
            break
    return out


@pytest.mark.parametrize("variant", _variants("systemd-analyze"), ids=_id)
def test_journald_timesyncd_and_journal_upload_follow_systemds_drop_in_precedence(
    base_tree, tmp_path, systemd_parser, variant
) -> None:
    root = _tree(tmp_path, base_tree, variant)
    ctx = FactContext(builtin_registry(), str(root))
    j = ctx.fact("journald", ())
    oracle = _systemd_settings(systemd_parser, root, "systemd/journald.conf", "Journal")
    for key in ("Storage", "Compress", "ForwardToSyslog", "SystemMaxUse"):
        assert j.option(key) == oracle.get(key, JOURNALD_DEFAULTS.get(key)), key
    t = ctx.fact("timesync", ())
    ntp = _systemd_settings(systemd_parser, root, "systemd/timesyncd.conf", "Time").get("NTP")
    assert list(t.timesyncd_servers) == (ntp.split() if ntp else [])
    upload = ctx.fact("journal_upload", ())
    theirs = _systemd_settings(systemd_parser, root, "systemd/journal-upload.conf", "Upload")
    for key in ("URL", "ServerKeyFile", "ServerCertificateFile", "TrustedCertificateFile"):
        assert upload.option(key) == (theirs.get(key) or None), key  # an empty value unsets


@pytest.mark.parametrize("path", ["/etc/ssl/ca.pem", "/etc//ssl/./ca.pem", "/etc/ssl/", "//x", "/", "etc/ssl/ca.pem",
                                  "./ca.pem", "/etc/../ca.pem", "/etc/ssl/..", "/a/.../b", "/a/b/.", "~/ca.pem"])
def test_journal_upload_paths_are_the_ones_systemd_keeps(systemd_parser, path) -> None:
    # systemd-journal-upload reads its key and certificate paths with config_parse_path_or_ignore()
    theirs = systemd_parser.absolute_path(path)
    assert kv_fact._journal_upload_value("ServerKeyFile", path) == theirs


# --- systemd-journal-upload ----------------------------------------------------------------------
# scripts/setup.sh --with-test-tools unpacks systemd-journal-remote here (not installed on the host)
_UPLOAD_SCHEMES = ("", "", "https://", "http://", "HTTPS://", "Https://", "https:/", "https:", "ftp://", " https://")
_UPLOAD_HOSTS = ("127.0.0.1", "loghost", "[::1]", "", "u:p@h", "a b", "h/")
_UPLOAD_PORTS = ("", "", ":19532", ":1", ":", ":65536", ":x")
_UPLOAD_PATHS = ("", "", "/", "//", "/x", "/x/", "?q=1", "#f", " ")
_UPLOAD_ODD = ("192.168.50.42", "https://", "https:///", "/", "//", "h//", "h:1/", ":", "0x7f.1",
               "[fe80::1%25eth0]:1", "a\udcffb", "https://h:1\\", "h\tx", 'h"x', "h'x", "h\x7fx", "hü", "h x")


def _uploader() -> Path:
    path = _UNPACKED / "lib/systemd/systemd-journal-upload"
    if not path.exists():
        pytest.skip("systemd-journal-remote is not unpacked by scripts/setup.sh --with-test-tools")
    return path


def _upload_urls(roots: list[Path]) -> list[str | None]:
    """The URL systemd-journal-upload says it uploads to, for each tree's /etc (and
    usr/lib/systemd, where it has one) bound over the host's: it runs in a network namespace of
    its own with nothing to send (no address can be reached there), and its "Upload to URL
    failed" names the URL. None where it does not start."""
    script = ('up="$1"; shift; for d; do mount --bind "$d/etc" /etc || exit 1; '
              '[ ! -d "$d/usr/lib/systemd" ] || mount --bind "$d/usr/lib/systemd" /usr/lib/systemd || exit 1; '
              'unshare --net "$up" - </dev/null 2>&1; echo @@; '
              'umount /usr/lib/systemd 2>/dev/null; umount /etc; done')
    done = _namespaced(script, args=[str(_uploader()), *map(str, roots)], timeout=120)
    runs = done.stdout.split("@@\n")[:-1]
    assert len(runs) == len(roots), done
    said = [re.search(r"^Upload to (.*) failed: ", run, re.MULTILINE) for run in runs]
    return [m.group(1) if m else None for m in said]


@ROOT_NEEDED
def test_journal_upload_url_is_the_one_the_uploader_uses(tmp_path) -> None:
    # 120 URL= values, random pieces of a URL and odd ones, each in journal-upload.conf (the
    # first 20 in a drop-in over an https one): the uploader's own "Upload to URL" must be the
    # fact's upload_url, the URL CIS 6.1.2.1.2 wants over https
    rng = random.Random(6121)
    values = [*_UPLOAD_ODD] + [
        "".join(rng.choice(p) for p in (_UPLOAD_SCHEMES, _UPLOAD_HOSTS, _UPLOAD_PORTS, _UPLOAD_PATHS))
        for _ in range(120 - len(_UPLOAD_ODD))
    ]
    roots = []
    for i, value in enumerate(values):
        root = tmp_path / str(i)
        conf = root / "etc/systemd/journal-upload.conf"
        conf.parent.mkdir(parents=True)
        text = f"[Upload]\nURL={value}\n".encode("utf-8", "surrogateescape")
        if i < 20:
            (conf.parent / "journal-upload.conf.d").mkdir()
            (conf.parent / "journal-upload.conf.d/50-site.conf").write_bytes(text)
            text = b"[Upload]\nURL=https://loghost.example:19532\n"
        conf.write_bytes(text)
        roots.append(root)
    theirs = _upload_urls(roots)
    ours = [FactContext(builtin_registry(), str(r)).fact("journal_upload", ()).upload_url for r in roots]
    assert list(zip(values, ours, strict=True)) == list(zip(values, theirs, strict=True))
    # both kinds occur: URLs the uploader sends to over TLS, and ones it sends in clear
    assert sum(u is not None and u.startswith("https://") for u in theirs) >= 30
    assert sum(u is not None and u.startswith("http://") for u in theirs) >= 5


@ROOT_NEEDED
@pytest.mark.parametrize("variant", [v for v in corpus.VARIANTS if v.oracle == "journal-upload"], ids=_id)
def test_journal_upload_verdict_follows_the_uploaders_url(base_tree, tmp_path, bundle, variant) -> None:
    root = _tree(tmp_path, base_tree, variant)
    [theirs] = _upload_urls([root])
    assert FactContext(builtin_registry(), str(root)).fact("journal_upload", ()).upload_url == theirs
    verdict = _statuses(bundle, root, "cis-6.1.2.1.2-")["cis-6.1.2.1.2-journal-upload-authentication"]
    assert verdict == ("pass" if theirs is not None and theirs.startswith("https://") else "fail")


# Which files the daemons open: systemd-journald and systemd-timesyncd (installed with systemd)
# and systemd-journal-upload (unpacked) run under strace, in a private mount namespace where the
# tree's etc/systemd, usr/lib/systemd and usr/local/lib/systemd stand over the host's and /run,
# /var/log and /var/lib/systemd are empty, and in a network namespace of their own.
_DAEMON_LAYOUTS = {  # each file holds an empty section: the daemon has nothing to warn about
    "main-in-etc": ("etc/systemd/{n}",),
    "main-in-usr-lib-only": ("usr/lib/systemd/{n}",),
    "main-in-usr-local-lib-only": ("usr/local/lib/systemd/{n}",),
    "main-in-etc-and-usr-lib": ("etc/systemd/{n}", "usr/lib/systemd/{n}"),
    "drop-ins-everywhere": ("usr/lib/systemd/{n}", "usr/lib/systemd/{n}.d/20-a.conf", "etc/systemd/{n}.d/20-a.conf",
                            "usr/local/lib/systemd/{n}.d/10-b.conf", "usr/lib/systemd/{n}.d/30-c.conf",
                            "etc/systemd/{n}.d/x.txt"),
}
_DAEMON_SCRIPT = """
set -e
tree="$1"; shift
mount -t tmpfs tmpfs /run
mount -t tmpfs tmpfs /var/lib/systemd
mount -t tmpfs tmpfs /var/log
mount -t tmpfs tmpfs /usr/local/lib
mkdir -p "$tree/etc/systemd" "$tree/usr/lib/systemd" "$tree/usr/local/lib/systemd" /usr/local/lib/systemd
mount --bind "$tree/etc/systemd" /etc/systemd
mount --bind "$tree/usr/lib/systemd" /usr/lib/systemd
mount --bind "$tree/usr/local/lib/systemd" /usr/local/lib/systemd
SYSTEMD_LOG_TARGET=console timeout 5 unshare --net "$@" </dev/null >/dev/null 2>&1 || true
"""


def _opened(tmp_path: Path, tree: Path, name: str, daemon: Path, args: Sequence[str], stop: str | None) -> list[str]:
    """The configuration files (`name` and its drop-ins) `daemon` opens for reading. A daemon
    that would not end by itself is killed at `stop` (`SYSCALL:when=N`), a call that follows
    reading its configuration: a kill before that would show as files it did not open."""
    binary = tmp_path / daemon.name  # /usr/lib/systemd is covered where the daemon runs
    shutil.copy(daemon, binary)
    trace = tmp_path / f"{daemon.name}.trace"
    strace = [_tool("strace"), "-f", "-qq", "-o", str(trace), "-e", "trace=openat"]
    if stop is not None:
        strace[-1] += "," + stop.split(":")[0]
        strace += ["-e", f"inject={stop.replace(':', ':signal=KILL:', 1)}"]
    done = _namespaced(_DAEMON_SCRIPT, args=[str(tree), *strace, str(binary), *args], timeout=60)
    assert done.returncode == 0, done
    opened = re.findall(r'openat\(AT_FDCWD, "([^"]+)", O_RDONLY[^)]*\) = \d+$', trace.read_text(), re.MULTILINE)
    return [p for p in opened if p.endswith(".conf") and os.path.basename(name) in p]


@ROOT_NEEDED
@pytest.mark.parametrize("layout", _DAEMON_LAYOUTS, ids=str)
def test_the_daemons_read_the_files_the_facts_read(tmp_path, layout) -> None:
    # journald (killed before it starts serving: it opens its sockets under the empty /run) and
    # timesyncd run on; journal-upload ends with nothing to send
    daemons = {"systemd/journald.conf": (Path("/lib/systemd/systemd-journald"), "Journal", (), "access:when=3"),
               "systemd/timesyncd.conf": (Path("/lib/systemd/systemd-timesyncd"), "Time", (), "timerfd_create:when=2"),
               "systemd/journal-upload.conf": (_uploader(), "Upload", ("-",), None)}
    for name, (daemon, section, args, stop) in daemons.items():
        if not daemon.exists():
            pytest.skip(f"{daemon} is not installed")
        tree = tmp_path / name.replace("/", "_")
        for path in _DAEMON_LAYOUTS[layout]:
            f = tree / path.format(n=os.path.basename(name))
            f.parent.mkdir(parents=True, exist_ok=True)
            f.write_text(f"[{section}]\n")
        ctx = FactContext(builtin_registry(), str(tree))
        ours = config_parse_files(ctx, systemd_conf_files(ctx, name), None)[1]
        assert ours == _opened(tmp_path, tree, name, daemon, args, stop), name


@pytest.mark.parametrize("value", ["yes", "no", "1K", "0", "1", "512", "1.5K", "on", "off", "1x", "0K", "-1",
                                   "16E", "99999999E", "true", "", "2 K"])
def test_journald_compresses_as_systemds_parsers_read_compress(tmp_path, bundle, systemd_parser, value) -> None:
    # journald 252's config_parse_compress(): a boolean; else a size, a threshold that turns
    # compression on; else the line is ignored and the default, yes, stays (so does an empty
    # value): only a false boolean turns compression off. The parsers are systemd's own.
    boolean = systemd_parser.parse_boolean(value)
    theirs = boolean if boolean is not None else True
    conf = tmp_path / "etc/systemd/journald.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text(f"[Journal]\nCompress={value}\n")
    ps, reg = bundle
    [rule] = [r for r in ps.rules if r.id == "cis-6.1.2.3-journald-compress"]
    finding = evaluate_rule(dataclasses.replace(rule, applicable=()), FactContext(reg, str(tmp_path)))
    assert finding.status.value == ("pass" if theirs else "fail")


def test_journald_defaults_are_the_ones_systemd_ships() -> None:
    # the commented values of the journald.conf Debian's systemd package installs are its
    # compiled-in defaults
    shipped = Path("/etc/systemd/journald.conf")
    if not shipped.is_file():
        pytest.skip("systemd's journald.conf is not installed here")
    commented = dict(re.findall(r"^#(\w+)=(\S*)$", shipped.read_text(), re.MULTILINE))
    checked = {k: v for k, v in JOURNALD_DEFAULTS.items() if k in commented}
    assert len(checked) >= 10
    assert checked == {k: commented[k] for k in checked}


# --- systemd's config_parse() (libsystemd-shared, through ctypes) ------------------------------
_SYSTEMD_LINES = [
    # a trailing backslash joins the next line: the setting after it is part of the value
    "[Journal]\nForwardToSyslog=no \\\nStorage=persistent\n",
    "[Journal]\nStorage=persistent \\",
    "[Journal]\nStorage=a \\\n# comment\n; comment\n  b\n",
    "[Journal]\nStorage=a \\\n\nCompress=no\n",
    "[Journal]\n# note \\\nStorage=b\n",
    "[Journal]\nStorage=persistent\\\\\nCompress=no\n",
    "[Journal]\nStorage=a\\ \nCompress=no\n",
    "[Journal]\rStorage=a \\\r\nb\r\n",
    "[Journal]\nStorage=per\0sistent\n",
    # sections: kept as written, a broken header stops the reading
    "[ Journal ]\nStorage=persistent\n",
    "[Journal]\nStorage=volatile\n[Foo\nStorage=persistent\n",
    "[Journal] x\nStorage=persistent\n",
    "Storage=persistent\n[Journal]\n",
    "[Foo]\nStorage=volatile\n[Journal]\nCompress=no\n[]\nStorage=persistent\n",
    # lines without `=` or key; blanks systemd does not strip
    "[Journal]\nStorage=volatile\nbogus line\n=x\nStorage=persistent\n",
    "[Journal]\n  Storage  =  persistent  \nCompress=\x0bno\x0c\nSto rage=x\n",
    # a byte order mark, first or later
    "\ufeff[Journal]\nStorage=persistent\n",
    "[Journal]\n\ufeffStorage=persistent\n",
    "\ufeff# c \\\n[Journal]\nStorage=b\n",
    # what is not UTF-8 stops the reading, wherever it is but in a comment
    "[Journal]\n# \udcff\nStorage=b\n",
    "[Journal]\nStorage=\udcff\nCompress=no\n",
    "[Jour\udcffnal]\nStorage=a\n",
    "[Journal]\nStorage=\udced\udca0\udc80\n",
    "[Journal]\nStorage=\ufffe\nCompress=no\n",
    "[Journal]\nStorage=\ufdd0\n",
    "[Journal]\nStorage=\U0010ffff\n",
    "[Journal]\nStorage=\u00e9\U0001f600\n",
]


@pytest.fixture(scope="module")
def systemd_parser() -> systemd_conf.SystemdParser:
    if not systemd_conf.available():
        pytest.skip("needs systemd's libsystemd-shared (the systemd package)")
    return systemd_conf.SystemdParser()


@pytest.mark.parametrize("text", _SYSTEMD_LINES)
def test_systemd_files_are_read_as_config_parse_reads_them(tmp_path, systemd_parser, text) -> None:
    path = tmp_path / "journald.conf"
    path.write_bytes(text.encode("utf-8", "surrogateescape"))
    r, theirs = systemd_parser.parse(path, ["Journal"])
    ours, stopped = config_parse(text, {"Journal"})
    assert [(a.section, a.key, a.value) for a in ours] == theirs
    assert (stopped is not None) == (r < 0)


def _is_enabled(root: Path, unit: str) -> tuple[str | None, str]:
    """What `systemctl --root=ROOT is-enabled UNIT` prints: its word, or None and its error."""
    out = subprocess.run([_tool("systemctl"), f"--root={root}", "is-enabled", unit], capture_output=True, text=True,
                         timeout=60, check=False)
    words = out.stdout.split()
    errors = out.stderr.strip().splitlines()
    return (words[-1] if words else None), (errors[-1] if errors else "")


def _unit_disagreement(root: Path, unit: str) -> str | None:
    """How service(unit) differs from what systemctl says of it, if it does. An alias is
    reported with the state of the unit it names; where systemctl fails, the state is
    not-found (no such file) or bad, with systemctl's reason."""
    s = FactContext(builtin_registry(), str(root)).fact("service", (unit,))
    word, error = _is_enabled(root, unit)
    ours = (s.state, s.alias_of, s._unit.why)
    if word == "alias":
        assert s.alias_of is not None, f"{unit}: systemctl says alias, we say {ours}"
        word, error = _is_enabled(root, s.alias_of)
    elif s.alias_of is not None:
        return f"{unit}: systemctl says {word or error!r}, we say an alias of {s.alias_of}"
    if s.enabled != (s.state in ("enabled", "enabled-runtime")):
        return f"{unit}: enabled is {s.enabled} for state {s.state}"
    if word is not None:
        return None if s.state == word else f"{unit}: systemctl says {word}, we say {ours}"
    enoent = "No such file or directory"
    if error.endswith(enoent) and (s.state == "not-found" or s._unit.why == enoent):
        return None
    if s.state == "bad" and s._unit.why and error.endswith(s._unit.why):
        return None
    return f"{unit}: systemctl fails ({error}), we say {ours}"


@pytest.mark.parametrize("case", list(unit_trees.CASES), ids=lambda c: c.replace(" ", "-"))
def test_unit_states_are_what_systemctl_is_enabled_says(tmp_path, case) -> None:
    entries, asked = unit_trees.CASES[case]
    unit_trees.build(tmp_path, entries)
    assert [d for u in asked if (d := _unit_disagreement(tmp_path, u)) is not None] == []


@pytest.mark.parametrize("block", range(4))
def test_random_unit_trees_get_the_states_systemctl_gives(tmp_path, block) -> None:
    # 4 x 40 trees. Trees like these found what the named cases alone did not: the order of
    # drop-ins and linked files, the pre-check without generator directories, hidden
    # drop-ins, an Also= that never resets.
    disagreements = []
    for seed in range(block * 40, block * 40 + 40):
        root = tmp_path / f"seed{seed}"
        root.mkdir()
        unit_trees.random_tree(root, seed)
        disagreements += [f"seed {seed}: {d}" for u in unit_trees.ASKED if (d := _unit_disagreement(root, u))]
    assert disagreements == []


@pytest.mark.parametrize(
    "text",
    [
        "[Unit]\nDescription=x\n[Service]\nExecStart=/bin/true \\\n# c\n  --flag\n[Install]\nWantedBy=multi-user.target\n",
        "[Install]\nAlias=x \\\nWantedBy=multi-user.target\n",
        "[Service]\nExecStart=/bin/true\n[Install\nWantedBy=multi-user.target\n",
        "WantedBy=multi-user.target\n[ Install ]\nWantedBy=default.target\n[Install]\nAlso=y.service\n",
    ],
)
def test_unit_files_are_read_as_config_parse_reads_them(tmp_path, systemd_parser, text) -> None:
    from secpolicy.facts.services import _unit_sections

    path = tmp_path / "x.service"
    path.write_text(text)
    _, theirs = systemd_parser.parse(path, ["Unit", "Service", "Install"])
    ours = _unit_sections(FactContext(builtin_registry(), str(tmp_path)), "/x.service")
    assert [(section, k, v) for section in ("Unit", "Service", "Install") for k, v in ours.get(section, [])] == \
        sorted(theirs, key=lambda t: ("Unit", "Service", "Install").index(t[0]))


def test_sizes_and_booleans_are_read_as_systemd_reads_them(systemd_parser) -> None:
    """journald's sizes and yes/no values, against systemd's own parse_size(t, 1024) and
    parse_boolean(): fixed cases, then random strings of their alphabet."""
    sizes = ["1K", "1.5M", "100", " 1K", "1 K", "1KiB", "1KB", "1k", "-1", " -1", "1.", "", ".5K", "1e3", "0x10",
             "1G 512M", "1G512M", "1M 1G", "1G1G", "1B", "1Ki", "18446744073709551615", "18446744073709551616",
             "16E", "15E", "+5", " 5 ", "\v5", "1.05K", "0.999999999999E", "1..5", "1.K", "5x",
             "1.99999999999999999999999K", "\v-1", "\f-5K", "\v+2M"]
    rng = random.Random(7)
    sizes += ["".join(rng.choice("0123456789 .+-KMGTPEBkix\t\v") for _ in range(rng.randint(1, 8))) for _ in range(2000)]
    assert [(t, parse_size(t)) for t in sizes] == [(t, systemd_parser.parse_size(t)) for t in sizes]
    words = ["yes", "YES", "y", "Y", "t", "true", "on", "oN", "1", "0", "no", "off", "n", "f", "false", "01", " yes",
             "yes ", "", "nope", "enabled"]
    assert [(w, parse_boolean(w)) for w in words] == [(w, systemd_parser.parse_boolean(w)) for w in words]


@pytest.mark.parametrize(
    ("main", "dropins"),
    [
        ("[Journal]\nStorage=volatile\n", {"10-a.conf": "[Journal]\nStorage=persistent\n",
                                            "20-b.conf": "[Journal]\nCompress=no\n"}),
        # a file systemd stops reading stops the drop-ins after it
        ("[Journal]\nStorage=volatile\n[Bad\n", {"10-a.conf": "[Journal]\nStorage=persistent\n"}),
        ("[Journal]\nStorage=volatile\n", {"10-a.conf": "[Bad\n", "20-b.conf": "[Journal]\nStorage=persistent\n"}),
        ("[Journal]\nForwardToSyslog=no \\\nStorage=persistent\n", {}),
        # assignments journald refuses keep the value before them
        ("[Journal]\nStorage=persistent\nCompress=no\nForwardToSyslog=no\n",
         {"50-x.conf": "[Journal]\nStorage=Persistent\nCompress=1.5M\nForwardToSyslog=nope\n"}),
        ("[Journal]\nCompress=no\n", {"50-x.conf": "[Journal]\nCompress=\n"}),
        ("[Journal]\nCompress=no\n", {"50-x.conf": "[Journal]\nCompress=1KiB\nForwardToSyslog=OFF\n"}),
    ],
)
def test_journald_settings_are_what_systemd_reads_from_its_files(tmp_path, systemd_parser, main, dropins) -> None:
    etc = tmp_path / "etc/systemd"
    (etc / "journald.conf.d").mkdir(parents=True)
    (etc / "journald.conf").write_text(main)
    for name, text in dropins.items():
        (etc / "journald.conf.d" / name).write_text(text)
    places = [tmp_path / p for p in ("etc/systemd", "run/systemd", "usr/local/lib/systemd", "usr/lib/systemd")]
    r, theirs = systemd_parser.parse_many([p / "journald.conf" for p in places], places, "journald.conf.d",
                                          ["Journal"])
    journald = FactContext(builtin_registry(), str(tmp_path)).fact("journald", ())
    # journald keeps the value before an assignment its parser refuses (booleans and sizes
    # as systemd's own parse_boolean() and parse_size() read them; Storage from its table)
    accepts = {
        "ForwardToSyslog": lambda v: systemd_parser.parse_boolean(v) is not None,
        "Compress": lambda v: v == "" or systemd_parser.parse_boolean(v) is not None
        or systemd_parser.parse_size(v) is not None,
        "Storage": lambda v: v in ("volatile", "persistent", "auto", "none"),
    }
    last: dict[str, str] = {}
    for _, key, value in theirs:
        if key in accepts and accepts[key](value):
            last[key] = value
            if key == "Compress" and value == "":
                del last[key]  # an empty Compress= puts the default back
    for key in ("Storage", "Compress", "ForwardToSyslog"):
        assert journald.option(key) == last.get(key, JOURNALD_DEFAULTS[key]), key
    assert any("systemd reads no further" in e for e in journald.errors) == (r < 0)


# --- systemd-fstab-generator -----------------------------------------------------------------------
def _fstab_generator(root: Path, out: Path) -> None:
    """Run systemd's own fstab generator on ROOT's /etc/fstab, writing its units to OUT."""
    gen = Path("/usr/lib/systemd/system-generators/systemd-fstab-generator")
    if not gen.exists():
        pytest.skip("systemd-fstab-generator is not installed")
    for d in ("", ".early", ".late"):
        Path(f"{out}{d}").mkdir(parents=True, exist_ok=True)
    subprocess.run([str(gen), str(out), f"{out}.early", f"{out}.late"], capture_output=True, timeout=60, check=False,
                   env={"SYSTEMD_FSTAB": str(root / "etc/fstab"), "SYSTEMD_PROC_CMDLINE": "",
                        "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"})


def _last_options(parser: systemd_conf.SystemdParser, files: list[Path], options: str | None = None) -> str | None:
    for f in files:
        for section, key, value in parser.parse(f, ["Mount"])[1]:
            if section == "Mount" and key == "Options":
                options = value or None
    return options


@pytest.mark.parametrize("variant", _variants("fstab-generator"), ids=_id)
def test_tmp_mount_is_what_the_fstab_generator_and_the_unit_files_make(
    base_tree, tmp_path, systemd_parser, variant
) -> None:
    root = _tree(tmp_path, base_tree, variant)
    out = tmp_path / "generator"
    _fstab_generator(root, out)
    ours = FactContext(builtin_registry(), str(root)).fact("mount_unit", ("/tmp",))
    units = FactContext(builtin_registry(), str(root)).fact("_units", ())
    native = units.native_file("tmp.mount")
    generated = out / "tmp.mount"
    if native is not None and (not generated.exists() or native.startswith(("/etc/", "/run/"))):
        fragment: Path | None = root / native.lstrip("/")
    else:
        fragment = generated if generated.exists() else None
    if ours.masked or fragment is None:
        assert ours.source is None
        return
    theirs = _last_options(systemd_parser, [fragment, *(root / d.lstrip("/") for d in units.dropins("tmp.mount"))])
    assert ",".join(ours.options) == (theirs or "")
    assert ours.source == ("fstab" if fragment == generated else "unit")
    if native is None:  # local-fs.target requires what the generator makes of an entry without noauto
        assert ours.at_boot == (out / "local-fs.target.requires/tmp.mount").exists()


# --- shadow: useradd, chgpasswd ------------------------------------------------------------------
_METHODS = {"$y$": "YESCRYPT", "$6$": "SHA512", "$5$": "SHA256", "$1$": "MD5", "$2b$": "BCRYPT"}


def _shadow_oracle(root: Path) -> dict[str, object]:
    """What shadow-utils make of the tree's login.defs: the aging fields useradd writes for a
    new user, the hash chgpasswd makes, the home mode (umask) useradd -m gives."""
    useradd, chgpasswd = _tool("useradd"), _tool("chgpasswd")
    subprocess.run(
        [useradd, "-P", str(root), "-M", "zzoracle"], check=True, capture_output=True, timeout=60
    )
    fields = next(
        ln for ln in (root / "etc/shadow").read_text().splitlines() if ln.startswith("zzoracle:")
    ).split(":")
    subprocess.run(
        [chgpasswd, "-R", str(root)],
        input="bob:Oracle-Secret-1\n",
        text=True,
        check=True,
        capture_output=True,
        timeout=60,
    )
    hashed = next(
        ln for ln in (root / "etc/gshadow").read_text().splitlines() if ln.startswith("bob:")
    ).split(":")[1]
    method = next(
        (m for p, m in _METHODS.items() if hashed.startswith(p)),
        "DES" if len(hashed) == 13 else hashed[:4],
    )
    defs = root / "etc/login.defs"
    corpus._detach(defs)
    defs.write_text(
        "\n".join(ln for ln in defs.read_text().splitlines() if not ln.startswith("HOME_MODE"))
        + "\n"
    )
    subprocess.run(
        [useradd, "-P", str(root), "-m", "zzhome"], check=True, capture_output=True, timeout=60
    )
    home_mode = (root / "home/zzhome").stat().st_mode & 0o777
    return {
        "PASS_MIN_DAYS": fields[3],
        "PASS_MAX_DAYS": fields[4],
        "PASS_WARN_AGE": fields[5],
        "method": method,
        "umask": 0o777 & ~home_mode,
    }


@ROOT_NEEDED
@pytest.mark.parametrize("variant", _variants("login.defs"), ids=_id)
def test_login_defs_and_its_defaults_are_what_shadow_uses(
    bundle, base_tree, tmp_path, variant
) -> None:
    root = _tree(tmp_path, base_tree, variant)
    d = FactContext(builtin_registry(), str(root)).fact("login_defs", ())
    ours = {
        k: ("" if d.int(k) == -1 else str(d.int(k)))
        for k in ("PASS_MIN_DAYS", "PASS_MAX_DAYS", "PASS_WARN_AGE")
    }
    method = d.option("ENCRYPT_METHOD")
    ours["method"] = (
        method if method in ("DES", "MD5", "SHA256", "SHA512", "YESCRYPT", "BCRYPT") else "DES"
    )
    ours["umask"] = d.mode("UMASK")
    verdict = _statuses(bundle, root, "cis-5.4.1.4")["cis-5.4.1.4-password-hash-algorithm"]
    oracle = _shadow_oracle(root)
    assert ours == oracle
    assert verdict == ("pass" if oracle["method"] in ("SHA512", "YESCRYPT") else "fail")


@ROOT_NEEDED
def test_login_defs_unset_everywhere_reads_as_shadows_defaults(base_tree, tmp_path) -> None:
    root = _tree(tmp_path, base_tree, None)
    defs = root / "etc/login.defs"
    corpus._detach(defs)
    defs.write_text("MAIL_DIR /var/mail\n")
    d = FactContext(builtin_registry(), str(root)).fact("login_defs", ())
    ours = {
        k: ("" if d.int(k) == -1 else str(d.int(k)))
        for k in ("PASS_MIN_DAYS", "PASS_MAX_DAYS", "PASS_WARN_AGE")
    }
    ours |= {"method": d.option("ENCRYPT_METHOD"), "umask": d.mode("UMASK")}
    assert ours == _shadow_oracle(root)


# /etc/default/useradd: pieces of lines useradd reads, skips or refuses
_UA_KEYS = ("INACTIVE", "HOME", "SHELL", "EXPIRE", "CREATE_MAIL_SPOOL", "LOG_INIT")
_UA_NUMBERS = ("30", "45", "0", "-1", "-2", "010", "08", "0x1e", "0X2D", "0x", "+7", " 7", "\t9",
               "30 ", "30\r", "", "4x", "9223372036854775807", "9223372036854775808", "-0")
_UA_TEXTS = ("/srv/home", "/bin/sh", "", "2030-01-01", "yes", "no", "a=b", " x ", "YES")


def _useradd_file(rng: random.Random) -> str:
    lines = []
    for _ in range(rng.randint(0, 6)):
        key = rng.choice(_UA_KEYS + ("inactive", "HOMEX", "# INACTIVE", "INACTIVEX"))
        value = rng.choice(_UA_NUMBERS if key.upper().startswith(("INACTIVE", "# ")) else _UA_TEXTS)
        line = rng.choice(("", "", "", " ", "\t")) + key + rng.choice(("=", "=", "=", " =", "= ")) + value
        if rng.random() < 0.1:  # a line past useradd's 1024-byte buffer: its tail is read as a line
            line = "#" + "x" * rng.choice((1021, 1022, 1023)) + line
        lines.append(line)
    return "\n".join(lines) + rng.choice(("\n", ""))


def _useradd_D(root: Path) -> dict[str, str]:
    out = subprocess.run([_tool("useradd"), "-D", "-P", str(root)], capture_output=True, text=True,
                         timeout=60, check=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines())


@pytest.mark.parametrize("seed", range(4))
def test_useradd_defaults_are_what_useradd_D_prints(tmp_path, seed) -> None:
    rng = random.Random(seed)
    root = tmp_path / "r"
    (root / "etc/default").mkdir(parents=True)
    shutil.copy("/etc/group", root / "etc/group")
    for _ in range(25):
        text = _useradd_file(rng)
        (root / "etc/default/useradd").write_text(text)
        theirs = _useradd_D(root)
        d = FactContext(builtin_registry(), str(root)).fact("useradd_defaults", ())
        assert str(d.int("INACTIVE")) == theirs["INACTIVE"], text
        for key in _UA_KEYS[1:]:
            assert d.option(key) == theirs[key], (key, text)


@pytest.mark.parametrize("variant", _variants("useradd"), ids=_id)
def test_inactive_lock_follows_what_useradd_D_prints(bundle, base_tree, tmp_path, variant) -> None:
    root = _tree(tmp_path, base_tree, variant)
    inactive = int(_useradd_D(root)["INACTIVE"])
    assert FactContext(builtin_registry(), str(root)).fact("useradd_defaults", ()).int("INACTIVE") == inactive
    verdict = _statuses(bundle, root, "cis-5.4.1.5")["cis-5.4.1.5-inactive-password-lock"]
    assert verdict == ("pass" if 0 <= inactive <= 45 else "fail")  # the base tree's users comply


def _sshd_test_mode(conf: Path, *connection: str) -> subprocess.CompletedProcess[str]:
    """`sshd -T [-C ...] -f conf`. sshd wants its privilege separation directory even then: where
    the host has no /run/sshd, run it in a private mount namespace over a fresh /run."""
    cmd = [
        _tool("sshd"),
        "-T",
        *(("-C", ",".join(connection)) if connection else ()),
        "-f",
        str(conf),
    ]
    if os.path.isdir("/run/sshd"):
        return subprocess.run(cmd, capture_output=True, text=True, check=False, errors="replace")
    if os.geteuid() != 0:
        pytest.skip("sshd -T needs /run/sshd, and making one in a namespace needs root")
    script = 'mount -t tmpfs none /run && mkdir /run/sshd && exec "$@"'
    return subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", *cmd],
        capture_output=True,
        text=True,
        check=False,
        errors="replace",
        timeout=60,
    )


@pytest.mark.parametrize(
    ("keyword", "first", "second"),
    [
        ("MaxAuthTries", "3", "5"),
        ("PermitRootLogin", "no", "yes"),
        ("LogLevel", "VERBOSE", "INFO"),
        ("Banner", "/etc/issue", "/etc/issue.net"),
        ("Ciphers", "aes128-ctr", "aes256-ctr"),
        ("MaxStartups", "10:30:60", "20:30:100"),
        ("FingerprintHash", "md5", "sha256"),
        ("IPQoS", "af21", "af22"),
        ("PerSourceMaxStartups", "5", "6"),
    ],
)
def test_which_of_two_settings_wins_is_what_sshd_T_prints(
    tmp_path, host_key, keyword, first, second
) -> None:
    (tmp_path / "etc/ssh").mkdir(parents=True)
    conf = tmp_path / "etc/ssh/sshd_config"
    conf.write_text(f"HostKey {host_key}\n{keyword} {first}\n{keyword} {second}\n")
    done = _sshd_test_mode(conf)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    printed = next(
        line.split(" ", 1)[1] for line in out.splitlines() if line.split(" ")[0] == keyword.lower()
    )
    ours = FactContext(builtin_registry(), str(tmp_path)).fact("sshd", ()).option(keyword)
    assert ours.lower() == printed.lower()


# --- rsyslogd -N1 -o ----------------------------------------------------------------------------------
_RSYSLOG_CASES = {
    "a block comment": {"rsyslog.conf": "$FileCreateMode 0640\n/* old:\n$FileCreateMode 0600\n*.* @@loghost:514\n*/\n"},
    "comments inside a line": {"rsyslog.conf": "$FileCreateMode 0640 /* was 0600 */\nmail.* action(type=\"omfile\" "
                                                "file=\"/var/log/m\" /* x */)\n"},
    "an unterminated comment": {"rsyslog.conf": "$FileCreateMode 0640\n/* to the end\n$FileCreateMode 0600\n"},
    "a comment line naming a glob": {"rsyslog.conf": "#$IncludeConfig /etc/rsyslog.d/*.conf\n$FileCreateMode 0640\n"
                                                     "*.* /var/log/x # see /var/log/*\n$FileCreateMode 0600\n"},
    "a quoted comment opener": {"rsyslog.conf": "$template t,\"/* %msg% */\\n\"\n$FileCreateMode 0640\n"},
    "the include glob": {"rsyslog.conf": "$IncludeConfig /etc/rsyslog.d/*.conf\n",
                         "rsyslog.d/50-a.conf": "$FileCreateMode 0640\n", "rsyslog.d/.99-hidden.conf": "*.* @@h:514\n",
                         "rsyslog.d/99-z.conf.bak": "$FileCreateMode 0644\n"},
    "a directory included": {"rsyslog.conf": "$IncludeConfig /etc/rsyslog.d/\n",
                             "rsyslog.d/b.conf": "$FileCreateMode 0600\n", "rsyslog.d/a.txt": "$FileCreateMode 0640\n",
                             "rsyslog.d/.c": "$FileCreateMode 0644\n"},
    "include() with its options first": {"rsyslog.conf": "include(mode=\"optional\" file=\"/etc/rsyslog.d/x.conf\")\n",
                                         "rsyslog.d/x.conf": "*.* @@loghost:514\n$FileCreateMode 0640\n"},
    "a nested include": {"rsyslog.conf": "$IncludeConfig /etc/rsyslog.d/*.conf\n",
                         "rsyslog.d/a.conf": "include(file=\"/etc/rsyslog.d/inner/*.inc\")\n",
                         "rsyslog.d/inner/1.inc": "$FileCreateMode 0600\n"},
}


def _rsyslog_full(root: Path) -> tuple[list[str], list[str]]:
    """(files read, configuration lines) as rsyslogd prints its whole configuration (-o) after
    reading ROOT/etc/rsyslog.conf, with the tree's /etc laid over the host's in a private
    mount namespace: block comments gone, includes expanded in the order it reads them."""
    out, pid = root / "full.conf", root / "rsyslogd.pid"
    done = _namespaced(f"mount -t overlay overlay -o lowerdir={root}/etc:/etc /etc && "
                       f"{_tool('rsyslogd')} -N1 -f /etc/rsyslog.conf -o {out} -i {pid}")
    assert out.exists(), done.stderr
    files, lines = [], []
    for raw in out.read_text().splitlines():
        if raw.startswith("##### BEGIN CONFIG: "):
            files.append(raw.removeprefix("##### BEGIN CONFIG: ").split(" (")[0])
        elif not raw.startswith("#"):
            lines.append(raw)
    return files, lines


def _rsyslog_text(lines: list[str]) -> list[str]:
    """Configuration lines compared: comment remnants, blanks and the include's echo aside."""
    out = []
    for line in lines:
        line = " ".join(line.replace("/**/", " ").replace("/*", " ").split())
        if line.startswith("$IncludeConfig"):
            line = "$IncludeConfig"
        if line and not line.startswith("#"):
            out.append(line)
    return out


@pytest.mark.parametrize("case", list(_RSYSLOG_CASES))
def test_rsyslog_lines_are_the_ones_rsyslogd_reads(tmp_path, case) -> None:
    for rel, text in _RSYSLOG_CASES[case].items():
        (tmp_path / "etc" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "etc" / rel).write_text(text)
    files, lines = _rsyslog_full(tmp_path)
    fact = FactContext(builtin_registry(), str(tmp_path)).fact("rsyslog", ())
    assert sorted(fact.files) == sorted(files)
    assert _rsyslog_text(list(fact.lines)) == _rsyslog_text(lines)
    modes = [line.split()[1] for line in _rsyslog_text(lines) if line.startswith("$FileCreateMode ")]
    assert fact.file_create_mode == (modes[-1] if modes else None)


# --- rsyslogd running: the mode of the files it creates ------------------------------------------------
# rsyslogd -o prints the configuration as written, not what took effect. What $FileCreateMode
# took effect is the mode of a file rsyslogd creates: each case runs rsyslogd between an input
# socket of its own and a file action, one message is logged, and the file's mode is compared
# with the fact's file_create_mode (rsyslog's default 0644 where it finds none).
_RSYSLOG_RUNS = {
    "a plain directive": "$FileCreateMode 0640\n",
    "none": "",
    "a directive inside a template string": 'template(name="t" type="string" string="%msg%\n$FileCreateMode 0600\n")\n',
    "a directive inside a property filter's string": ':msg, contains, "zz\n$FileCreateMode 0600\n" ~\n',
    "a directive after an object on its line": 'module(load="builtin:omfile") $FileCreateMode 0600\n',
    "a comment continued by a backslash": "$FileCreateMode 0640\n# was: \\\n$FileCreateMode 0644\n",
    "a directive after a 10,239-byte piece of a comment": "#" + " " * 10300 + "$FileCreateMode 0600\n",
    "a directive spelled in lower case": "$filecreatemode 0600\n",
    "a comment opener inside a string": 'template(name="u" type="string" string="/*")\n$FileCreateMode 0600\n',
}


def _rsyslogd_modes(tmp_path: Path) -> dict[str, int]:
    """The mode of the file each case's rsyslogd created (umask 022, as rsyslog.service runs)."""
    confs = {case: f"{text}*.* OUT/out.log\n" for case, text in _RSYSLOG_RUNS.items()}
    return {case: logs["out.log"] for case, logs in rsyslogd_modes(_tool("rsyslogd"), tmp_path, confs, "022").items()}


def test_file_create_mode_is_the_mode_rsyslogd_creates_files_with(tmp_path) -> None:
    real = _rsyslogd_modes(tmp_path)
    ours = {}
    for i, (case, text) in enumerate(_RSYSLOG_RUNS.items()):
        root = tmp_path / f"root{i}"
        (root / "etc").mkdir(parents=True)
        (root / "etc/rsyslog.conf").write_text(text)
        mode = FactContext(builtin_registry(), str(root)).fact("rsyslog", ()).file_create_mode
        ours[case] = int(mode or "0644", 8)
    assert ours == real
    assert real["a plain directive"] == 0o640 and real["none"] == 0o644  # not equal by being all default


# --- chronyd -p -----------------------------------------------------------------------------------
_CHRONY_CASES = {
    "Debian's layout": {"chrony/chrony.conf": "pool 2.debian.pool.ntp.org iburst\nconfdir /etc/chrony/conf.d\n"
                                              "sourcedir /etc/chrony/sources.d\n",
                        "chrony/conf.d/a.conf": "server a.example iburst\n",
                        "chrony/sources.d/s.sources": "server s.example iburst\n"},
    "conf.d not named": {"chrony/chrony.conf": "pool p.example iburst\n", "chrony/conf.d/a.conf": "server a.example\n"},
    "/etc/chrony.conf is not read": {"chrony/chrony.conf": "pool p.example\n", "chrony.conf": "server stale.example\n"},
    "include": {"chrony/chrony.conf": "include /etc/chrony/extra/*.conf\n", "chrony/extra/b.conf": "server b.example\n",
                "chrony/extra/.h.conf": "server hidden.example\n"},
    "two confdirs, the first wins a name": {"chrony/chrony.conf": "confdir /etc/chrony/one /etc/chrony/two\n",
                                            "chrony/one/x.conf": "server one.example\n",
                                            "chrony/two/x.conf": "server two.example\n",
                                            "chrony/two/y.conf": "peer y.example\n"},
    "comments and case": {"chrony/chrony.conf": "! server bang.example\n; server semi.example\n% server pct.example\n"
                                                "  # server hash.example\nSERVER upper.example\n"},
}


@pytest.mark.parametrize("case", list(_CHRONY_CASES))
def test_chrony_sources_are_the_ones_chronyd_reads(tmp_path, case) -> None:
    unpacked = _UNPACKED / "usr/sbin/chronyd"
    chronyd = shutil.which("chronyd") or (str(unpacked) if unpacked.exists() else None)
    if chronyd is None:
        pytest.skip("chronyd is neither installed nor unpacked by scripts/setup.sh")
    for rel, text in _CHRONY_CASES[case].items():
        (tmp_path / "etc" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "etc" / rel).write_text(text)
    # chronyd -p prints the configuration it read, includes and confdir expanded (sourcedir
    # files are read when it runs, not printed: those are left out of the comparison)
    done = _namespaced(f"mount -t overlay overlay -o lowerdir={tmp_path}/etc:/etc /etc && {chronyd} -p")
    assert done.returncode == 0, done.stderr
    theirs = sorted(w[1] for line in done.stdout.splitlines()
                    if len(w := line.split()) > 1 and w[0].lower() in ("server", "pool", "peer"))
    read: list[tuple[str, str]] = []
    _chrony_file(FactContext(builtin_registry(), str(tmp_path)), CHRONY_CONF, read, 0)
    assert sorted(name for name, where in read if not where.split(":")[0].endswith(".sources")) == theirs


_CHRONY_LIVE = """
import json
from secpolicy.errors import EvaluationError
from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry
t = FactContext(builtin_registry(), "/").fact("timesync", ())
try:
    print(json.dumps([t.count_active, list(t.chrony_servers)]))
except EvaluationError as e:
    print(json.dumps([t.count_active, str(e)]))
"""


@ROOT_NEEDED
@pytest.mark.parametrize(("conf", "expected"), [
    ("pool 2.debian.pool.ntp.org iburst\nmakestep 1 3\n", ["2.debian.pool.ntp.org"]),
    ("server a.example iburts\n", "Could not parse server directive at line 1 in file /etc/chrony/chrony.conf"),
    ("server a.example # the site's server\n", "Could not parse server directive at line 1"),
    ("server a.example iburst\nmakestep 1\n", "Missing arguments for makestep directive at line 2"),
    ("server a.example iburst\nrtcsyncc\n", "Invalid directive at line 2"),
])
def test_on_the_live_host_chronyd_decides_whether_it_starts(tmp_path, conf, expected) -> None:
    # the reader knows chrony's sources, not every directive's arguments: on the live host
    # chronyd -p is asked, and a configuration it refuses gives no servers but an error
    unpacked = _UNPACKED / "usr/sbin"
    if not (unpacked / "chronyd").exists() and shutil.which("chronyd") is None:
        pytest.skip("chronyd is neither installed nor unpacked by scripts/setup.sh")
    (tmp_path / "etc/chrony").mkdir(parents=True)
    (tmp_path / "etc/chrony/chrony.conf").write_text(conf)
    env = {**os.environ, "PATH": f"{unpacked}:{os.environ.get('PATH', '')}"}
    done = _namespaced('mount --bind "$1/etc" /etc && shift && exec "$@"',
                       args=[str(tmp_path), sys.executable, "-c", _CHRONY_LIVE], env=env)
    assert done.returncode == 0, done.stderr
    active, servers = json.loads(done.stdout)
    assert isinstance(active, int)  # the rest of the fact stays readable
    if isinstance(expected, list):
        assert servers == expected
    else:
        assert expected in servers and "chronyd does not start" in servers


# --- nft list ruleset ----------------------------------------------------------------------------
# On the live host the nftables rules read the ruleset in force, as the CIS audits do. The test
# loads each ruleset with the unpacked nft into a network namespace of its own and evaluates the
# rules there (their applicability left out: nftables is not installed on the host).
_NFT_LIVE = """
import dataclasses, json, pathlib, subprocess, sys
from secpolicy.engine import evaluate_rule
from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry, load_policies
reg = builtin_registry()
rules = [dataclasses.replace(r, applicable=()) for r in load_policies([pathlib.Path(sys.argv[1])], reg).rules
         if r.id.split("-")[1] in ("4.3.4", "4.3.5", "4.3.6", "4.3.8")]
out = []
for ruleset in sys.argv[2:]:
    subprocess.run(["nft", "-f", ruleset], check=True)
    ctx = FactContext(reg, "/")
    found = {r.id.split("-")[1]: evaluate_rule(r, ctx) for r in rules}
    out.append({k: [f.status.value, [e.source for e in f.evidence if e.source]] for k, f in found.items()})
print(json.dumps(out))
"""
_NFT_GOOD = """flush ruleset
table inet filter {
  chain input {
    type filter hook input priority 0
    policy drop
    iif lo accept
    ip saddr 127.0.0.0/8 counter drop
    ip6 saddr ::1 counter drop
  }
  chain forward { type filter hook forward priority 0; policy drop; }
  chain output {
    type filter hook output priority 0;
    policy drop;
  }
}
"""
_NFT_FORGED = """flush ruleset
table inet filter {
  comment "type filter hook forward priority 0; policy drop;"
  chain input {
    type filter hook input priority 0; policy accept;
    tcp dport 22 accept comment "ssh
type filter hook input priority 0; policy drop;"
    counter comment "iif lo accept ip saddr 127.0.0.0/8 drop ip6 saddr ::1 drop"
  }
  chain output { type filter hook output priority 0; policy accept; counter comment "hook output policy drop"; }
}
"""
_NFT_CASES = [
    # policy drop on the line after the hook, `iif lo` unquoted: nft prints both the CIS way
    (_NFT_GOOD, {"4.3.4": "pass", "4.3.5": "pass", "4.3.6": "pass", "4.3.8": "pass"}),
    # a commented-out chain head is no chain: the one loaded accepts
    (_NFT_GOOD.replace("policy drop\n", "# type filter hook input priority 0; policy drop;\n"),
     {"4.3.4": "pass", "4.3.5": "pass", "4.3.6": "pass", "4.3.8": "fail"}),
    # an arp table's chains filter no IP traffic
    (("flush ruleset\ntable arp a {\n chain i { type filter hook input priority 0; policy drop; }\n"
      " chain o { type filter hook output priority 0; policy drop; }\n}\n"),
     {"4.3.4": "fail", "4.3.5": "fail", "4.3.6": "fail", "4.3.8": "fail"}),
    ("flush ruleset\n", {"4.3.4": "fail", "4.3.5": "fail", "4.3.6": "fail", "4.3.8": "fail"}),
    # comments are data: nft prints them as given, line breaks and all, and they hold no chain
    # head, policy or rule, however much they read like one
    (_NFT_FORGED, {"4.3.4": "pass", "4.3.5": "fail", "4.3.6": "fail", "4.3.8": "fail"}),
]


def _nft_wrapper(tmp_path: Path) -> Path:
    """`nft` in a directory of its own: the one setup unpacked, with its libraries."""
    nft = _UNPACKED / "usr/sbin/nft"
    if not nft.exists():
        pytest.skip("nftables is not unpacked by scripts/setup.sh --with-test-tools")
    wrapper = tmp_path / "bin/nft"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nLD_LIBRARY_PATH={_UNPACKED}/usr/lib/x86_64-linux-gnu exec {nft} "$@"\n')
    wrapper.chmod(0o755)
    return wrapper


@ROOT_NEEDED
def test_on_the_live_host_the_nftables_rules_read_the_ruleset_in_force(tmp_path) -> None:
    wrapper = _nft_wrapper(tmp_path)
    files = []
    for i, (ruleset, _) in enumerate(_NFT_CASES):
        files.append(tmp_path / f"{i}.nft")
        files[-1].write_text(ruleset)
    env = {**os.environ, "PATH": f"{wrapper.parent}:{os.environ.get('PATH', '')}"}
    done = subprocess.run(["unshare", "--net", sys.executable, "-c", _NFT_LIVE, str(REPO / "policies/cis"), *map(str, files)],
                          capture_output=True, text=True, timeout=120, check=False, env=env)
    assert done.returncode == 0, done.stderr
    for (ruleset, expected), got in zip(_NFT_CASES, json.loads(done.stdout), strict=True):
        assert {k: v[0] for k, v in got.items()} == expected, ruleset
        if expected["4.3.8"] == "pass":  # the evidence names where it was read
            assert got["4.3.8"][1] and all(loc.startswith("nft list ruleset") for loc in got["4.3.8"][1])


# Under --root the saved configuration is read: /etc/nftables.conf, which nftables.service loads
# with `nft -f`, and the files its include statements name. Which files that is, nft decides: the
# test loads each tree's /etc/nftables.conf with nft in namespaces of its own (the tree's /etc laid
# over the host's) and lists the tables it made. Each file of a tree defines one table, named
# after it; the fact must see exactly those tables, or be an error where nft refuses the file.
_NFT_TREES = {
    "no include": {"nftables.conf": "table inet main { }\n", "nftables.d/extra.nft": "table inet extra { }\n"},
    "a pattern": {"nftables.conf": 'table inet main { }\ninclude "/etc/nftables.d/*.nft"\n',
                  "nftables.d/b.nft": "table inet b { }\n", "nftables.d/a.nft": "table inet a { }\n",
                  "nftables.d/.hidden.nft": "table inet hidden { }\n", "nftables.d/dir.nft/x": "table inet x { }\n"},
    "a relative name, from /etc": {"nftables.conf": 'include "fw/rules.nft"\n', "fw/rules.nft": "table inet rules { }\n"},
    "a relative pattern": {"nftables.conf": 'include "fw/*.nft"\n', "fw/one.nft": "table inet one { }\n"},
    "nested": {"nftables.conf": 'include "/etc/fw/outer.nft"\n',
               "fw/outer.nft": 'table inet outer { }\ninclude "/etc/fw/inner.nft"\n', "fw/inner.nft": "table inet inner { }\n"},
    "commented out": {"nftables.conf": 'table inet main { }\n# include "/etc/nftables.d/*.nft"\n',
                      "nftables.d/a.nft": "table inet a { }\n"},
    "a pattern matching nothing": {"nftables.conf": 'table inet main { }\ninclude "/etc/none/*.nft"\n'},
    "a missing file": {"nftables.conf": 'table inet main { }\ninclude "/etc/none.nft"\n'},
}
_NFT_TABLES = """
for tree in "$@"; do
  unshare --mount --net sh -c 'mount -t overlay overlay -o lowerdir="$1"/etc:/etc /etc && nft -f /etc/nftables.conf \
    && nft list tables' sh "$tree" 2>/dev/null || echo refused
  echo __END__
done
"""


@ROOT_NEEDED
def test_under_root_the_saved_ruleset_is_the_files_nft_loads(tmp_path) -> None:
    wrapper = _nft_wrapper(tmp_path)
    trees = []
    for i, files in enumerate(_NFT_TREES.values()):
        trees.append(tmp_path / f"tree{i}")
        for rel, text in files.items():
            (trees[-1] / "etc" / rel).parent.mkdir(parents=True, exist_ok=True)
            (trees[-1] / "etc" / rel).write_text(text)
    env = {**os.environ, "PATH": f"{wrapper.parent}:{os.environ.get('PATH', '')}"}
    done = subprocess.run(["sh", "-c", _NFT_TABLES, "sh", *map(str, trees)], capture_output=True, text=True,
                          timeout=120, check=False, env=env)
    loaded = [set(re.findall(r"^table inet (\S+)", out, re.MULTILINE)) if "refused" not in out else "refused"
              for out in done.stdout.split("__END__\n")[:-1]]
    ours: list[set[str] | str] = []
    for tree, files in zip(trees, _NFT_TREES.values(), strict=True):
        names = {m for text in files.values() for m in re.findall(r"table inet (\S+)", text)}
        try:
            nft = FactContext(builtin_registry(), str(tree)).fact("nft_ruleset", ())
            ours.append({n for n in names if nft.has_line(rf"^table\s+inet\s+{n}\b")})
        except EvaluationError:
            ours.append("refused")
    assert dict(zip(_NFT_TREES, ours, strict=True)) == dict(zip(_NFT_TREES, loaded, strict=True))
    assert loaded[0] == {"main"} and loaded[1] == {"main", "a", "b"} and loaded[-1] == "refused"


def test_a_ruleset_nft_cannot_list_is_an_error_not_the_saved_files(tmp_path, monkeypatch) -> None:
    # as the scan's user nft may not read the ruleset (it needs CAP_NET_ADMIN): the rules then
    # cannot tell, and say why, rather than fall back to files that may not be what is loaded
    fake = tmp_path / "nft"
    fake.write_text("#!/bin/sh\necho 'Error: Could not process rule: Operation not permitted' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ.get('PATH', '')}")
    with pytest.raises(EvaluationError, match=r"nft list ruleset failed \(exit 1\): .*Operation not permitted.*root"):
        FactContext(builtin_registry(), "/").fact("nft_ruleset", ())


# --- ufw-init ------------------------------------------------------------------------------------
# scripts/setup.sh --with-test-tools unpacks ufw into the virtual environment (not installed)
def _ufw_package() -> Path:
    unpacked = Path(sys.prefix) / "oracles"
    if not (unpacked / "lib/ufw/ufw-init").exists():
        pytest.skip("ufw is not unpacked by scripts/setup.sh --with-test-tools")
    return unpacked


def _ufw_init(root: Path) -> tuple[bool, dict[str, str]]:
    """Run ufw's own ufw-init (`start quiet`, as ufw.service does) on ROOT's /etc in a private
    network namespace, and read there what it did: whether it made its chains, and the policy
    of INPUT, OUTPUT and FORWARD (REJECT where it added its reject rule)."""
    pkg = _ufw_package()
    (root / "lib/ufw").mkdir(parents=True, exist_ok=True)
    shutil.copy(pkg / "lib/ufw/ufw-init-functions", root / "lib/ufw/ufw-init-functions")
    (root / "etc/ufw").mkdir(parents=True, exist_ok=True)
    for rules in (pkg / "usr/share/ufw/iptables").iterdir():
        if not (root / "etc/ufw" / rules.name).exists():
            shutil.copy(rules, root / "etc/ufw" / rules.name)
    script = (f"sh {pkg}/lib/ufw/ufw-init --rootdir {root} --datadir {root} start quiet >/dev/null 2>&1; "
              f"{_tool('iptables')} -S")
    out = subprocess.run(["unshare", "-n", "sh", "-c", script], capture_output=True, text=True, timeout=60,
                         check=True, env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}).stdout
    policies = dict(re.findall(r"^-P (INPUT|OUTPUT|FORWARD) (\S+)$", out, re.MULTILINE))
    for chain in ("INPUT", "OUTPUT", "FORWARD"):
        if f"-A ufw-reject-{chain.lower()} -j REJECT" in out:
            policies[chain] = "REJECT"
    return "-N ufw-user-input" in out, policies


def _ufw_ours(root: Path) -> tuple[bool | None, dict[str, str | None] | None]:
    """The ufw fact on ROOT: enabled (None where it cannot tell) and the three policies (None
    where it cannot tell them)."""
    try:
        ufw = FactContext(builtin_registry(), str(root)).fact("ufw", ())
        enabled = ufw.enabled
    except EvaluationError:
        return None, None
    try:
        return enabled, {"INPUT": ufw.default_input, "OUTPUT": ufw.default_output, "FORWARD": ufw.default_forward}
    except EvaluationError:
        return enabled, None


_UFW_NAMES = ("ENABLED", "ENABLED", "DEFAULT_INPUT_POLICY", "DEFAULT_OUTPUT_POLICY", "DEFAULT_FORWARD_POLICY", "X")
_UFW_WORDS = ("yes", "YES", "no", "Yes", "DROP", "ACCEPT", "REJECT", "drop", "")
_UFW_ODD = ("ENABLED = yes", "true", "ENABLED=$(echo yes)", "ENABLED=`echo yes`", "ENABLED=${X:-yes}",
            'ENABLED="yes', "; ENABLED=yes", "DEFAULT_INPUT_POLICY=$HOME", "DEFAULT_INPUT_POLICY=\"DROP DROP\"",
            "DEFAULT_OUTPUT_POLICY=~")


def _ufw_value(rng: random.Random, assigned: list[str]) -> str:
    word = rng.choice(_UFW_WORDS)
    form = rng.randrange(10)
    if form == 0:
        return f'"{word}"'
    if form == 1:
        return f"'{word}'"
    if form == 2 and len(word) > 1:  # pieces quoted differently, a backslash escape
        return f'"{word[0]}"\\{word[1]}{word[2:]}'
    if form == 3 and len(word) > 1:  # a line continuation inside the word
        return f"{word[0]}\\\n{word[1:]}"
    if form == 4 and assigned:
        name = rng.choice(assigned)
        return rng.choice((f"${name}", f"${{{name}}}", f'"${name}"'))
    if form == 5:
        return word + rng.choice(("#not-a-comment", "\r"))
    if form == 6 and len(word) > 1:
        return rng.choice((f"{word[0]}'{word[1:]}'", f'"{word}"""', f"'{word[:-1]}'\\{word[-1]}", f"#{word}"))
    if form == 7 and assigned:
        return f"${{{rng.choice(assigned)}}}{word}"
    return word


def _ufw_file(rng: random.Random, assigned: list[str], odd: bool) -> str:
    lines = []
    for _ in range(rng.randint(0, 5)):
        if odd and rng.random() < 0.2:
            lines.append(rng.choice(_UFW_ODD))
            continue
        parts = []
        for _ in range(rng.choice((1, 1, 1, 2))):
            name = rng.choice(_UFW_NAMES)
            parts.append(f"{name}={_ufw_value(rng, assigned)}")
            assigned.append(name)
        comment = rng.choice(("", "", "", " # a comment", "\t#"))
        lines.append(rng.choice(("", "", " ", "\t")) + rng.choice((" ", "; ", ";")).join(parts) + comment)
    return "\n".join(lines) + "\n"


def _ufw_tree(root: Path, conf: str, defaults: str | None) -> None:
    (root / "etc/ufw").mkdir(parents=True, exist_ok=True)
    (root / "etc/ufw/ufw.conf").write_text(conf)
    if defaults is not None:
        (root / "etc/default").mkdir(parents=True, exist_ok=True)
        (root / "etc/default/ufw").write_text(defaults)


@ROOT_NEEDED
@pytest.mark.parametrize("seed", range(3))
def test_ufw_state_is_what_ufw_init_makes_of_its_files(tmp_path, seed) -> None:
    rng = random.Random(seed)
    told = 0
    for i in range(30):
        root = tmp_path / str(i)
        odd = rng.random() < 0.3
        assigned: list[str] = []  # what a line may refer to: ufw-init sources ufw.conf first
        conf = _ufw_file(rng, assigned, odd)
        defaults = _ufw_file(rng, assigned, odd) if rng.random() < 0.95 else None
        _ufw_tree(root, conf, defaults)
        ours, policies = _ufw_ours(root)
        started, theirs = _ufw_init(root)
        case = (defaults, conf)
        if ours is None or policies is None:
            assert odd, case  # only a construct that needs running sh is left untold
        if ours is not None:
            assert ours == started, case
            told += 1
        if ours and policies is not None:
            assert policies == theirs, case
    assert told >= 15


@ROOT_NEEDED
@pytest.mark.parametrize("variant", [v for v in corpus.VARIANTS if v.oracle == "ufw-init"], ids=_id)
def test_ufw_verdicts_follow_what_ufw_init_does(bundle, base_tree, tmp_path, variant) -> None:
    root = _tree(tmp_path, base_tree, variant)
    statuses = _statuses(bundle, root, "cis-4.2.")
    started, theirs = _ufw_init(root)
    ours, policies = _ufw_ours(root)
    assert ours == started
    if started:
        assert policies == theirs
    assert statuses["cis-4.2.3-ufw-enabled"] == ("pass" if started else "fail")  # ufw.service is enabled
    if started:
        deny = all(theirs[c] in ("DROP", "REJECT") for c in ("INPUT", "OUTPUT", "FORWARD"))
        assert statuses["cis-4.2.7-ufw-default-deny"] == ("pass" if deny else "fail")


@pytest.mark.parametrize("text", [
    "A=1 B=$A C=${B}x\n",  # assignments in order, each seeing the one before
    "A='x y' B=\"$A z\" C=a\\ b\n",
    "A=\"a\\$b\\\"c\\\\d\\e\"\n",  # in double quotes \\ escapes only $ ` \" \\ and a newline
    "A=x#y # a comment\nB=1;C=2 ; D=3\n",
    "A=ab\\\ncd\nB='multi\nline'\n",
    "A=$ B=a$ C='$A' D=$'x'\n",  # a lone $ is kept; dash 0.5.12 has no $'...'
    "A=*.conf B=[x] C=a~b D=x:y\n",  # no globbing in assignments; ~ is expanded only after = or :
    "\tA=1\r\n",
])
def test_sourced_assignments_are_what_sh_makes_of_them(tmp_path, text) -> None:
    f = tmp_path / "vars"
    f.write_text(text)
    names = ("A", "B", "C", "D")
    script = 'set -e; . "$1"; printf "%s\\0" "${A-<unset>}" "${B-<unset>}" "${C-<unset>}" "${D-<unset>}"'
    out = subprocess.run(["/bin/sh", "-c", script, "sh", str(f)], capture_output=True, check=True, timeout=60,
                         env={}).stdout.decode()
    theirs = dict(zip(names, out.split("\0")[:4], strict=True))
    env: dict[str, str] = {}
    shell.source(text, "vars", env, {})
    assert {n: env.get(n, "<unset>") for n in names} == theirs


@pytest.mark.parametrize("text", [
    "A = 1\n", "true\n", "A=1 cmd\n", "A=$(id)\n", "A=`id`\n", "A=${B:-x}\n", "A=$1\n", "A=$HOME\n",
    "A='open\n", "; A=1\n", "A=1 | B=2\n", "A=~/x\n", "A=x:~/y\n", "export A=1\n", "if true; then A=1; fi\n",
])
def test_what_only_running_sh_could_tell_is_not_guessed(text) -> None:
    with pytest.raises(shell.CannotTell):
        shell.source(text, "vars", {}, {})


# --- cvtsudoers ------------------------------------------------------------------------------
# scripts/setup.sh --with-test-tools unpacks sudo and libpwquality here (not installed on the host)
_UNPACKED = Path(sys.prefix) / "oracles"


def _kmod() -> str:
    """kmod's binary (modprobe and depmod by the name they are run under): installed, else
    the one setup unpacked from the kmod package."""
    unpacked = _UNPACKED / "bin/kmod"
    path = shutil.which("kmod") or (str(unpacked) if unpacked.exists() else None)
    if path is None:
        pytest.skip("kmod is neither installed nor unpacked by scripts/setup.sh")
    return path


# The directories libkmod 30 reads modprobe.d files from, in order (what it stats with no
# -C, as test_modprobe_reads_the_directories_the_fact_reads sees through strace).
_KMOD_DIRS = ("/etc/modprobe.d", "/run/modprobe.d", "/usr/local/lib/modprobe.d", "/lib/modprobe.d")


def _modprobe(kmod: str, root: Path, *args: str) -> str:
    """modprobe over ROOT: its modules (-d), its modprobe.d directories in the order libkmod
    reads them (-C each), standard output as text."""
    cmd = ["modprobe", "-d", str(root), "-S", modprobe_trees.KERNEL]
    for d in _KMOD_DIRS:
        cmd += ["-C", str(root / d.lstrip("/"))]
    out = subprocess.run([*cmd, *args], executable=kmod, capture_output=True, timeout=60, check=False)
    return out.stdout.decode("utf-8", "surrogateescape")


def _kmod_disagreements(kmod: str, root: Path) -> list[str]:
    """Where kmod(name) differs from modprobe: the command `modprobe -n -v` would run instead
    of loading the module (its first word), and `blacklist` lines of --showconfig (exact
    names, as libkmod compares them)."""
    blacklisted = set()
    for line in _modprobe(kmod, root, "--showconfig").split("\n"):
        words = re.split(r"[ \t]+", line.lstrip(" \t"))
        if words[0] == "blacklist" and len(words) > 1:
            blacklisted.add(words[1])
    ctx = FactContext(builtin_registry(), str(root))
    out = []
    for m in modprobe_trees.MODULES:
        k = ctx.fact("kmod", (m,))
        first = (_modprobe(kmod, root, "-n", "-v", m).splitlines() or [""])[0]
        theirs = (first.split()[1] if first.startswith("install ") else None, m.replace("-", "_") in blacklisted)
        ours = (k.install.split()[0] if k.install else None, k.blacklisted)
        if ours != theirs:
            out.append(f"{m}: modprobe runs {theirs[0]}, blacklisted {theirs[1]}; we say {ours[0]}, {ours[1]}")
    return out


def test_modprobe_reads_the_directories_the_fact_reads(tmp_path) -> None:
    kmod = _kmod()
    log = tmp_path / "trace"
    (tmp_path / "modprobe").symlink_to(kmod)  # kmod acts by the name it is run under
    subprocess.run([_tool("strace"), "-o", str(log), "-e", "trace=newfstatat,stat,statx,openat",
                    str(tmp_path / "modprobe"), "--showconfig"], capture_output=True, timeout=60, check=False)
    opened = re.findall(r'"(/[^"]*/modprobe\.d)"', log.read_text())
    assert list(dict.fromkeys(opened)) == list(_KMOD_DIRS) == list(MODPROBE_DIRS)


@pytest.mark.parametrize("case", list(modprobe_trees.CASES), ids=lambda c: c.replace(" ", "-"))
def test_module_installs_and_blacklists_are_what_modprobe_reads(tmp_path, case) -> None:
    kmod = _kmod()
    modprobe_trees.modules(tmp_path, kmod)
    for rel, text in modprobe_trees.CASES[case]:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    assert _kmod_disagreements(kmod, tmp_path) == []


def test_random_modprobe_files_are_read_as_modprobe_reads_them(tmp_path) -> None:
    kmod = _kmod()
    disagreements = []
    for seed in range(40):
        root = tmp_path / f"seed{seed}"
        modprobe_trees.modules(root, kmod)
        modprobe_trees.random_files(root, seed)
        disagreements += [f"seed {seed}: {d}" for d in _kmod_disagreements(kmod, root)]
    assert disagreements == []


def _cvtsudoers() -> tuple[str, dict[str, str]]:
    """sudo's own parser: SECPOLICY_CVTSUDOERS, else the installed one, else the one setup
    unpacked from the sudo package (its libraries beside it in usr/libexec/sudo)."""
    unpacked = _UNPACKED / "usr/bin/cvtsudoers"
    path = (
        os.environ.get("SECPOLICY_CVTSUDOERS")
        or shutil.which("cvtsudoers")
        or (str(unpacked) if unpacked.exists() else None)
    )
    if path is None:
        pytest.skip("cvtsudoers (sudo) is neither installed nor unpacked by scripts/setup.sh")
    env = dict(os.environ)
    libs = Path(path).resolve().parents[1] / "libexec/sudo"
    if libs.is_dir():
        env["LD_LIBRARY_PATH"] = str(libs)
    return path, env


def _sudo_json(root: Path) -> dict:
    """`cvtsudoers -f json /etc/sudoers` with the tree's /etc laid over the host's in a private
    mount namespace, so absolute includes (`@includedir /etc/sudoers.d`) resolve in the tree."""
    import json

    tool, env = _cvtsudoers()
    script = (
        f"mount -t overlay overlay -o lowerdir={root}/etc:/etc /etc && {tool} -f json /etc/sudoers"
    )
    out = _namespaced(script, env)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


_BINDING = {"username": ":", "usergroup": ":", "hostname": "@", "command": "!"}


def _oracle_defaults(j: dict) -> list[tuple[str, str, str, tuple[str, ...]]]:
    """(name, value, binding kind, bound names) for each Defaults setting, in sudo's order.
    cvtsudoers prints `Defaults>runas` like `Defaults:user`, so both are ":" here."""
    res = []
    for d in j.get("Defaults", []):
        bind = d.get("Binding", [])
        kind = _BINDING[next(iter(bind[0]))] if bind else ""
        names = tuple(sorted(v for b in bind for v in b.values()))
        for opt in d["Options"]:
            opt = {k: v for k, v in opt.items() if k != "operation"}
            ((name, value),) = opt.items()
            if isinstance(value, bool):
                value = "true" if value else "false"
            elif isinstance(value, list):
                value = " ".join(value)
            res.append((name, str(value), kind, names))
    return res


def _our_defaults(s) -> list[tuple[str, str, str, tuple[str, ...]]]:
    res = []
    for d in s.defaults:
        kind = {">": ":"}.get(d.scope[:1], d.scope[:1])
        names = tuple(sorted(n.lstrip("%") for n in d.scope[1:].split(",") if n))
        res.append((d.name, d.value, kind, names))
    return res


def _global(defaults, name: str) -> str | None:
    """The value in force for every user, host and command: the last unbound setting."""
    return next((v for n, v, kind, _ in reversed(defaults) if n == name and kind == ""), None)


# CIS 5.2.2-5.2.6 as the benchmark states them, over what sudo's parser reads
SUDO_BENCHMARK = {
    "cis-5.2.2-sudo-use-pty": lambda d, j: (
        _global(d, "use_pty") == "true"
        and not any(n == "use_pty" and v == "false" for n, v, _, _ in d)
    ),
    "cis-5.2.3-sudo-logfile": lambda d, j: _global(d, "logfile") not in (None, "false"),
    "cis-5.2.4-sudo-requires-password": lambda d, j: (
        not any(
            o.get("authenticate") is False
            for us in j.get("User_Specs", [])
            for cs in us.get("Cmnd_Specs", [])
            for o in cs.get("Options", [])
        )
    ),
    "cis-5.2.5-sudo-reauthentication": lambda d, j: (
        not any(n == "authenticate" and v == "false" for n, v, _, _ in d)
    ),
    "cis-5.2.6-sudo-timestamp-timeout": lambda d, j: all(
        _within(v, 0, 15) for n, v, _, _ in d if n == "timestamp_timeout" and v != "false"
    ),
}


def _within(v: str, low: float, high: float) -> bool:
    try:
        return low <= float(v) <= high
    except ValueError:
        return False  # visudo refuses it (test_sudo_timeouts_are_read_as_visudo_reads_them)


def _sudo_variants() -> list[corpus.Variant | None]:
    return [None] + [
        v
        for v in corpus.VARIANTS
        if v.oracle == "sudo"
        or (
            any(e[1].startswith("etc/sudoers") for e in v.edits if e[0] != "delete")
            and not any(e[0] == "delete" and e[1] == "etc/sudoers" for e in v.edits)
        )
    ]


@ROOT_NEEDED
@pytest.mark.parametrize("variant", _sudo_variants(), ids=_id)
def test_sudoers_defaults_are_what_sudos_parser_reads(bundle, base_tree, tmp_path, variant) -> None:
    root = _tree(tmp_path, base_tree, variant)
    j = _sudo_json(root)
    theirs = _oracle_defaults(j)
    assert _our_defaults(FactContext(builtin_registry(), str(root)).fact("sudoers", ())) == theirs
    got = _statuses(bundle, root, "cis-5.2.")
    for rule, holds in SUDO_BENCHMARK.items():
        assert got[rule] == ("pass" if holds(theirs, j) else "fail"), rule


# --- libpwquality ----------------------------------------------------------------------------
# pwquality.h: the integer settings, by name as pwquality.conf and the PAM line spell them
_PWQ_SETTINGS = {
    "difok": 1,
    "minlen": 3,
    "dcredit": 4,
    "ucredit": 5,
    "lcredit": 6,
    "ocredit": 7,
    "minclass": 8,
    "maxrepeat": 9,
    "maxclassrepeat": 11,
    "gecoscheck": 12,
    "maxsequence": 14,
    "dictcheck": 15,
    "usercheck": 16,
    "enforcing": 17,
    "retry": 18,
    "enforce_for_root": 19,
    "local_users_only": 20,
    "usersubstr": 21,
}


@pytest.fixture(scope="module")
def libpwquality():
    """libpwquality itself, through ctypes: SECPOLICY_LIBPWQUALITY, else the installed one, else
    the one setup unpacked (libcrack.so.2, which it needs, beside it)."""
    import ctypes
    import ctypes.util

    unpacked = sorted(_UNPACKED.glob("usr/lib/*/libpwquality.so.1"))
    path = (
        os.environ.get("SECPOLICY_LIBPWQUALITY")
        or ctypes.util.find_library("pwquality")
        or (str(unpacked[0]) if unpacked else None)
    )
    if not path:
        pytest.skip("libpwquality is neither installed nor unpacked by scripts/setup.sh")
    crack = Path(path).parent / "libcrack.so.2"
    if crack.exists():
        ctypes.CDLL(str(crack), mode=ctypes.RTLD_GLOBAL)
    lib = ctypes.CDLL(path)
    lib.pwquality_default_settings.restype = ctypes.c_void_p
    lib.pwquality_free_settings.argtypes = [ctypes.c_void_p]
    lib.pwquality_read_config.argtypes = [ctypes.c_void_p, ctypes.c_char_p, ctypes.c_void_p]
    lib.pwquality_set_option.argtypes = [ctypes.c_void_p, ctypes.c_char_p]
    lib.pwquality_get_int_value.argtypes = [
        ctypes.c_void_p,
        ctypes.c_int,
        ctypes.POINTER(ctypes.c_int),
    ]
    return lib


def _pwquality_args(root: Path) -> list[str]:
    """The arguments of the tree's pam_pwquality line in common-password (continuations joined)."""
    text = (root / "etc/pam.d/common-password").read_text().replace("\\\n", " ")
    for line in text.splitlines():
        words = line.split("#", 1)[0].split()
        mod = next((i for i, w in enumerate(words) if w.endswith("pam_pwquality.so")), None)
        if mod is not None and words[0] in ("password", "-password"):
            return words[mod + 1 :]
    return []


def _libpwquality_reads(lib, root: Path, args: list[str]) -> dict[str, int]:
    """What pam_pwquality ends up with: pwquality_read_config of the tree's pwquality.conf (which
    reads pwquality.conf.d first), then each PAM argument through pwquality_set_option, as
    pam_pwquality's parse_args does."""
    import ctypes

    s = lib.pwquality_default_settings()
    try:
        lib.pwquality_read_config(s, str(root / "etc/security/pwquality.conf").encode(), None)
        for a in args:
            lib.pwquality_set_option(s, a.encode())
        out = {}
        for name, sid in _PWQ_SETTINGS.items():
            v = ctypes.c_int()
            assert lib.pwquality_get_int_value(s, sid, ctypes.byref(v)) == 0, name
            out[name] = v.value
        return out
    finally:
        lib.pwquality_free_settings(s)


# CIS 5.3.3.2.x as the benchmark states them, over what pam_pwquality ends up with
PWQUALITY_BENCHMARK = {
    "cis-5.3.3.2.1-pwquality-difok": lambda v: v["difok"] >= 2,
    "cis-5.3.3.2.2-pwquality-minlen": lambda v: v["minlen"] >= 14,
    "cis-5.3.3.2.4-pwquality-maxrepeat": lambda v: 0 < v["maxrepeat"] <= 3,
    "cis-5.3.3.2.5-pwquality-maxsequence": lambda v: 0 < v["maxsequence"] <= 3,
    "cis-5.3.3.2.6-pwquality-dictcheck": lambda v: v["dictcheck"] != 0,
    "cis-5.3.3.2.7-pwquality-enforcing": lambda v: v["enforcing"] != 0,
    "cis-5.3.3.2.8-pwquality-enforce-for-root": lambda v: v["enforce_for_root"] != 0,
}


def _pwquality_variants() -> list[corpus.Variant | None]:
    return [None] + [
        v
        for v in corpus.VARIANTS
        if v.oracle == "pwquality"
        or any(
            e[1].startswith(("etc/security/pwquality", "etc/pam.d/common-password"))
            for e in v.edits
        )
    ]


@pytest.mark.parametrize("variant", _pwquality_variants(), ids=_id)
def test_pwquality_is_what_libpwquality_reads(
    bundle, libpwquality, base_tree, tmp_path, variant
) -> None:
    root = _tree(tmp_path, base_tree, variant)
    files_only = _libpwquality_reads(libpwquality, root, [])
    conf = FactContext(builtin_registry(), str(root)).fact("pwquality", ())
    ours = {
        k: conf.int(k) for k in _PWQ_SETTINGS if k not in ("enforce_for_root", "local_users_only")
    }
    ours |= {k: int(conf.has(k)) for k in ("enforce_for_root", "local_users_only")}
    assert ours == files_only
    args = _pwquality_args(root)
    if not args and "pam_pwquality" not in (root / "etc/pam.d/common-password").read_text():
        return  # not in the stack: the 5.3.3.2.x rules do not apply
    effective = _libpwquality_reads(libpwquality, root, args)
    got = _statuses(bundle, root, "cis-5.3.3.2.")
    for rule, holds in PWQUALITY_BENCHMARK.items():
        assert got[rule] == ("pass" if holds(effective) else "fail"), (rule, effective)


@pytest.mark.parametrize(
    "line",
    [
        "MaxAuthTries abc",
        "MaxAuthTries 10abc",
        "MaxAuthTries -1",
        "MaxAuthTries +4",
        "MaxAuthTries 99999999999",
        "MaxSessions 10abc",
        "ClientAliveCountMax x",
        "LoginGraceTime 1x",
        "LoginGraceTime -5",
        "LoginGraceTime 1m30s",
        "LoginGraceTime 0x10",
        "ClientAliveInterval 1h30m",
        "ClientAliveInterval -5",
        "MaxStartups 10:30",
        "MaxStartups 10:30:x",
        "MaxStartups 10abc",
        "MaxStartups 10:101:60",
        "MaxStartups 70:30:60",
        "MaxStartups 10:30:60",
        "MaxStartups 0",
        "MaxStartups 10:30:60 x",
        # strtonum, base 10: leading zeros are decimal, a `#` inside a word is no comment
        "MaxAuthTries 04",
        "MaxAuthTries 010",
        "MaxAuthTries 0x4",
        "MaxAuthTries 4#x",
        "MaxAuthTries 4 #x",
        "MaxAuthTries #x",
        'MaxAuthTries ""',
        'MaxAuthTries " 4"',
        'MaxAuthTries "4 "',
        "MaxAuthTries 4 5",
        "MaxAuthTries 4\r5",
        "MaxAuthTries \u0664",
        "MaxSessions 4#x",
        "ClientAliveCountMax 08",
        "RequiredRSASize 2048x",
        "PerSourceMaxStartups 5#",
        "LoginGraceTime +30",
        "LoginGraceTime 30 40",
        "LoginGraceTime \u0663\u0660",
        "PermitRootLogin",
        'PermitRootLogin "no',
        "\x0cPermitRootLogin no",
        "MaxAuthTries 3\0 hidden\n#",
        "PermitRootLogin\x0bno",
        # words from a table: case-insensitive, one word, nothing else
        "PermitRootLogin nope",
        "PermitRootLogin no x",
        "PermitRootLogin no\x0bx",
        "PermitRootLogin NO",
        'PermitRootLogin ""',
        "UsePAM maybe",
        "UsePAM YES",
        "KeepAlive maybe",
        "DebianBanner maybe",
        "Compression delayed",
        "Compression sometimes",
        "AllowTcpForwarding All",
        "AllowStreamLocalForwarding both",
        "IgnoreRhosts shosts-only",
        "GatewayPorts ClientSpecified",
        "AddressFamily inet4",
        "PermitTunnel frob",
        "permittunnel Ethernet",
        "PermitTunnel point-to-point",
        "PermitUserEnvironment NO",
        "PermitUserEnvironment LANG,LC_*",
        # keywords sshd does not know, knows no more, or takes only outside Match blocks
        "Frobnicate yes",
        "PermitRootLogins no",
        "RSAAuthentication yes",
        "Protocol 2",
        "GSSAPIUseSessionCredCache yes",
        "Match User nobody\nPort 2222",
        "Match User nobody\nusepam yes",
        "Match Address 10.0.0.0/8\nPermitRootLogin yes",
        "Match all\nPort 2222",
    ],
)
def test_sshd_refuses_the_values_we_call_errors(tmp_path, host_key, line) -> None:
    (tmp_path / "etc/ssh").mkdir(parents=True)
    conf = tmp_path / "etc/ssh/sshd_config"
    conf.write_text(f"HostKey {host_key}\n{line}\n")
    out = _sshd_test_mode(conf)
    ours = FactContext(builtin_registry(), str(tmp_path)).fact("sshd", ()).errors
    if out.returncode == 0:
        assert ours == ()
    else:
        # sshd: "<file> line N: <message>"; ours: "/etc/ssh/sshd_config:N: <message>"
        first = next(x for x in out.stderr.strip().splitlines() if "Deprecated" not in x and "Unsupported" not in x)
        n, said = re.search(r" line (\d+): (.*)", first).groups()
        said = re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), said)  # vis(3)
        assert ours == (f"/etc/ssh/sshd_config:{n}: {said}",)


def test_sshd_keyword_tables_are_what_sshd_knows(tmp_path, host_key) -> None:
    """Every keyword in KEYWORDS is one sshd reads (and one letter more is not); inside a
    Match block sshd refuses exactly those in GLOBAL_ONLY."""
    (tmp_path / "etc/ssh").mkdir(parents=True)
    conf = tmp_path / "etc/ssh/sshd_config"
    for keyword in sorted(KEYWORDS):
        conf.write_text(f"HostKey {host_key}\nMatch User nobody\n{keyword} 1\n")
        said = _sshd_test_mode(conf).stderr
        assert "Bad configuration option" not in said, keyword
        refused_in_match = f"Directive '{keyword}' is not allowed within a Match block" in said
        assert refused_in_match == (keyword in GLOBAL_ONLY), keyword
        conf.write_text(f"HostKey {host_key}\n{keyword}x 1\n")
        assert f"Bad configuration option: {keyword}x" in _sshd_test_mode(conf).stderr, keyword


def test_sshd_table_words_read_as_sshd_T_prints_them(tmp_path, host_key) -> None:
    """Each word a table keyword accepts, as written and in capitals, is the value sshd -T
    prints for it."""
    (tmp_path / "etc/ssh").mkdir(parents=True)
    conf = tmp_path / "etc/ssh/sshd_config"
    tables = {k: sorted(words) for k, words in sshd_fact._CHOICES.items() if k in DEFAULTS}
    for i in range(max(map(len, tables.values()))):
        for case in (str.lower, str.upper):
            chosen = {k: case(words[i]) for k, words in tables.items() if i < len(words)}
            conf.write_text(f"HostKey {host_key}\n" + "".join(f"{k} {w}\n" for k, w in chosen.items()))
            out = _sshd_test_mode(conf)
            assert out.returncode == 0, out.stderr
            printed = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
            ours = FactContext(builtin_registry(), str(tmp_path)).fact("sshd", ())
            assert ours.errors == ()
            for keyword, word in chosen.items():
                assert ours.option(keyword) == printed[keyword], (keyword, word)


@pytest.mark.parametrize(
    "text",
    [
        # only \n ends a line for sshd: the setting hidden behind these is part of a comment
        "# note\x1cPermitRootLogin no\nPermitRootLogin yes\nMaxAuthTries 3\n",
        "# note\x1dPermitRootLogin no\nPermitRootLogin yes\nMaxAuthTries 3\n",
        "# note\x1ePermitRootLogin no\nPermitRootLogin yes\nMaxAuthTries 3\n",
        "# note\rPermitRootLogin no\nPermitRootLogin yes\nMaxAuthTries 3\n",
        "# note\x0bPermitRootLogin no\nPermitRootLogin yes\nMaxAuthTries 3\n",
        "# note\x0cPermitRootLogin no\nPermitRootLogin yes\nMaxAuthTries 3\n",
        "# note\x85PermitRootLogin no\nPermitRootLogin yes\nMaxAuthTries 3\n",
        "# note\u2028PermitRootLogin no\nPermitRootLogin yes\nMaxAuthTries 3\n",
        "# note\u2029PermitRootLogin no\nPermitRootLogin yes\nMaxAuthTries 3\n",
        # \r is WHITESPACE inside a line, \f only at its end
        "PermitRootLogin\rno\r\nMaxAuthTries\r3\n",
        "\rPermitRootLogin no\x0c\nMaxAuthTries=\r3\n",
        " \r# c\nPermitRootLogin\r=no\nMaxAuthTries 3\n",
        # a NUL ends the string load_server_config() keeps, newline included
        "MaxAuthTries 3\0 junk\n\nPermitRootLogin no\n",
        "PermitRootLogin no #c\nMaxAuthTries 0004\n",
    ],
)
def test_sshd_lines_are_the_lines_sshd_T_reads(tmp_path, host_key, text) -> None:
    (tmp_path / "etc/ssh").mkdir(parents=True)
    conf = tmp_path / "etc/ssh/sshd_config"
    conf.write_bytes(f"HostKey {host_key}\n{text}".encode())
    out = _sshd_test_mode(conf, "user=root", "host=x", "addr=1.2.3.4")
    assert out.returncode == 0, out.stderr
    printed = dict(line.split(" ", 1) for line in out.stdout.splitlines() if " " in line)
    sshd = FactContext(builtin_registry(), str(tmp_path)).fact("sshd", ())
    assert sshd.errors == ()
    for keyword in ("permitrootlogin", "maxauthtries"):
        assert sshd.option(keyword) == printed[keyword], keyword


@pytest.mark.parametrize(
    "value", ["15", "2.5", "2.", ".5", "+3", "-1", "-0.5", ".", "1.2.3", "5m", "0x10", "1e1", "abc"]
)
def test_sudo_timeouts_are_read_as_visudo_reads_them(tmp_path, value) -> None:
    cvtsudoers, env = _cvtsudoers()
    visudo = Path(cvtsudoers).resolve().parents[1] / "sbin/visudo"
    if not visudo.exists():
        visudo = Path(_tool("visudo"))
    (tmp_path / "etc").mkdir()
    sudoers = tmp_path / "etc/sudoers"
    sudoers.write_text(f"Defaults\ttimestamp_timeout={value}\n")
    ok = subprocess.run(
        [str(visudo), "-c", "-f", str(sudoers)], capture_output=True, env=env, check=False
    ).returncode
    (d,) = FactContext(builtin_registry(), str(tmp_path)).fact("sudoers", ()).defaults
    assert (d.minutes is not None) == (ok == 0)
    if ok == 0:
        assert d.minutes == pytest.approx(
            float(value) if value not in (".", "2.") else float(value + "0")
        )


# --- libpam: which lines it reads (pamtester, pam_echo) ------------------------------------------
_ECHO = "auth optional pam_echo.so "


def _pam_cases() -> list[str]:
    out = [
        f"{_ECHO}A\n{_ECHO}B # c\n# {_ECHO}C\n{_ECHO}D \\\n  E\nAUTH OPTIONAL pam_echo.so F\n{_ECHO}G\r\n",
        f"{_ECHO}A \\\n# c\n\n{_ECHO}B\n",
        f"{_ECHO}A#B\n{_ECHO}[a b] c\n{_ECHO}[x\\]y]\n",
        f"auth\x0boptional pam_echo.so A\n{_ECHO}B\0{_ECHO}C\n{_ECHO}D\n",
        f"-auth optional pam_nothere.so\n{_ECHO}A \\ \n{_ECHO}B\\\t\n{_ECHO}C",
        f"{_ECHO}A \\",  # a continuation cut by the end of the file
        # a physical line longer than libpam's 1024-byte buffer is read in pieces: what
        # starts at byte 1024 is a line of its own
        *(f"{_ECHO}{'x' * (pad - len(_ECHO))}{_ECHO}H\n{_ECHO}I\n" for pad in (1022, 1023, 1024)),
        *(f"{_ECHO}{'é' * ((pad - len(_ECHO)) // 2)}{'x' * (pad % 2)}{_ECHO}H\n{_ECHO}I\n" for pad in (1022, 1023)),
        f"{_ECHO}{'x' * (1023 - len(_ECHO))}# {_ECHO}H\n{_ECHO}I\n",
        # continued lines that fill the buffer: libpam stops reading the file
        *(f"{_ECHO}{'a' * (k - len(_ECHO))} \\\n{'b' * 40}{_ECHO}H\n{_ECHO}I\n" for k in (990, 999, 1020)),
        _ECHO + "a \\\n" + ("b" * 600 + " \\\n") * 2 + "c\n" + _ECHO + "I\n",
    ]
    return out


@ROOT_NEEDED
@pytest.mark.parametrize("text", _pam_cases(), ids=lambda t: f"{len(t)}:{t[-14:]!r}")
def test_pam_lines_are_the_lines_libpam_reads(tmp_path, text) -> None:
    """Each `auth optional pam_echo.so WORDS` line libpam runs prints WORDS (up to pam_echo's
    511 bytes): pamtester on the file, bound over /etc/pam.d in a private mount namespace,
    lists the lines libpam read; the pam fact must list the same."""
    pam_d = tmp_path / "etc/pam.d"
    pam_d.mkdir(parents=True)
    (pam_d / "svc").write_text(text)
    script = 'mount --bind "$1" /etc/pam.d && exec "$2" -v svc root authenticate'
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(pam_d),
                           _tool("pamtester")], capture_output=True, timeout=60, check=False)
    theirs = [line for line in done.stdout.split(b"\n") if line and not line.startswith(b"pamtester:")]
    # a file libpam cannot read to its end (a continuation cut by it): pam_start fails
    refused = b"Initialization failure" in done.stdout + done.stderr
    try:
        stack = FactContext(builtin_registry(), str(tmp_path)).fact("pam", ("svc",))
    except EvaluationError:
        assert refused and theirs == [], done
        return
    assert not refused, done
    ours = [" ".join(e.args).encode("utf-8", "surrogateescape")[:511]
            for e in stack.entries_of("auth") if e.module == "pam_echo.so"]
    assert ours == theirs


_LIMIT_DOMAINS = ("*", "*", "nobody", "root", "@nogroup", "@root", ":65534", "65534:", "0:", "0:0", "100:200", "@:0",
                  "@65534:65534", "@:65534", "%nogroup", "*:*", "65534", "@nosuchgroup")
_LIMIT_TYPES = ("hard", "hard", "-", "soft", "HARD", "both")
_LIMIT_VALUES = ("0", "0", "5", "unlimited", "INFINITY", "-1", "-", "010", "12abc", "abc", "-5", "+3", "0x10")


def _limits_line(rng: random.Random) -> str:
    words = [rng.choice(_LIMIT_DOMAINS), rng.choice(_LIMIT_TYPES), rng.choice(("core", "core", "CORE", "locks")),
             rng.choice(_LIMIT_VALUES)]
    if rng.random() < 0.1:
        words = words[: rng.randint(1, 3)]  # too few words: no limit
    elif rng.random() < 0.1:
        words.append("extra")
    line = rng.choice((" ", "\t", "  ")).join(words)
    if rng.random() < 0.15:
        line = rng.choice(("# ", "#", "x" * 1023 + " ")) + line  # commented out, or past fgets()' buffer
    return rng.choice(("", " ", "\t")) + line + rng.choice(("", " # why", "#"))


def _pam_limits_core(security: Path, pam_d: Path, user: str, etc: Path | None = None) -> tuple[str, str]:
    """(soft, hard) core limit of a session pam_limits opens for USER, from /proc/self/limits of
    a child pam_exec starts after it; the tree's /etc/security and /etc/pam.d (and with `etc`,
    its passwd and group) are bound over the host's in a private mount namespace, and the
    session starts from no core limit."""
    binds = [(pam_d, "/etc/pam.d"), (security, "/etc/security")]
    if etc is not None:
        binds += [(etc / "passwd", "/etc/passwd"), (etc / "group", "/etc/group")]
    script = "".join(f'mount --bind "${i + 1}" {dest} && ' for i, (_, dest) in enumerate(binds))
    script += f'ulimit -H -c unlimited && exec "${len(binds) + 1}" -v svc "${len(binds) + 2}" open_session'
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                           *(str(src) for src, _ in binds), _tool("pamtester"), user],
                          capture_output=True, timeout=60, check=False)
    m = re.search(rb"Max core file size\s+(\S+)\s+(\S+)", done.stdout)
    assert m is not None, done
    return m.group(1).decode(), m.group(2).decode()


def _limits_service(pam_d: Path) -> None:
    pam_d.mkdir(parents=True)
    (pam_d / "svc").write_text("session required pam_limits.so\n"
                               "session optional pam_exec.so stdout /bin/grep core /proc/self/limits\n")


@ROOT_NEEDED
@pytest.mark.parametrize("seed", range(3))
def test_core_limits_are_what_pam_limits_sets(tmp_path, seed) -> None:
    rng = random.Random(seed)
    pam_d = tmp_path / "etc/pam.d"
    _limits_service(pam_d)
    security = tmp_path / "etc/security"
    (security / "limits.d").mkdir(parents=True)
    for name in ("passwd", "group"):
        shutil.copy(f"/etc/{name}", tmp_path / "etc" / name)
    inherited = {u: _pam_limits_core(security, pam_d, u) for u in ("nobody", "root")}  # no line sets it
    for _ in range(12):
        (security / "limits.conf").write_text("".join(_limits_line(rng) + "\n" for _ in range(rng.randint(0, 4))))
        for f in (security / "limits.d").iterdir():
            f.unlink()
        for name in rng.sample(["10-a.conf", "20-b.conf", "b.conf.disabled"], rng.randint(0, 3)):
            (security / "limits.d" / name).write_text("".join(_limits_line(rng) + "\n" for _ in range(rng.randint(1, 3))))
        case = [(f.name, f.read_text()) for f in sorted(security.rglob("*")) if f.is_file()]
        for user in ("nobody", "root"):
            theirs = _pam_limits_core(security, pam_d, user)
            limits = FactContext(builtin_registry(), str(tmp_path)).fact("pam_limits", (user,))
            ours = []
            for value, default in zip((limits.soft("core"), limits.hard("core")), inherited[user], strict=True):
                ours.append(default if value is None else "unlimited" if value == -1 else str(value * 1024))
            if theirs[0] == theirs[1] != ours[0]:
                ours[0] = theirs[0]  # pam_limits lowers a soft limit above the hard one to it
            assert tuple(ours) == theirs, (user, case)


@ROOT_NEEDED
@pytest.mark.parametrize("variant", [v for v in corpus.VARIANTS if v.oracle == "pam_limits"], ids=_id)
def test_core_dump_verdict_follows_the_limits_pam_limits_sets(bundle, base_tree, tmp_path, variant) -> None:
    """Each account of the tree opens a session through pamtester, with the tree's /etc/security,
    passwd and group bound over the host's: CIS 1.5.3 passes when every one but root gets a
    hard core limit of 0 (the tree's sysctl part holds)."""
    root = _tree(tmp_path, base_tree, variant)
    pam_d = tmp_path / "pam.d"
    _limits_service(pam_d)
    names = [line.split(":")[0] for line in (root / "etc/passwd").read_text().splitlines() if line]
    hard = {}
    for name in names:
        hard[name] = _pam_limits_core(root / "etc/security", pam_d, name, root / "etc")[1]
        limit = FactContext(builtin_registry(), str(root)).fact("pam_limits", (name,)).hard("core")
        if limit is not None:
            assert ("unlimited" if limit == -1 else str(limit * 1024)) == hard[name], name
    verdict = _statuses(bundle, root, "cis-1.5.3")["cis-1.5.3-core-dumps-restricted"]
    assert verdict == ("pass" if all(v == "0" for n, v in hard.items() if n != "root") else "fail")


@ROOT_NEEDED
def test_a_pam_file_libpam_never_finishes_reading_is_an_error(tmp_path) -> None:
    """A continued line filling libpam's 1024-byte buffer to its last byte: pamtester on it
    spins and never gets to the first module; the pam fact says so instead of a stack."""
    pam_d = tmp_path / "etc/pam.d"
    pam_d.mkdir(parents=True)
    (pam_d / "svc").write_text(_ECHO + "a" * (1022 - len(_ECHO)) + "\\\n" + _ECHO + "I\n")
    script = 'mount --bind "$1" /etc/pam.d && exec "$2" -v svc root authenticate'
    with pytest.raises(subprocess.TimeoutExpired):
        subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(pam_d),
                        _tool("pamtester")], capture_output=True, timeout=5, check=False)
    with pytest.raises(EvaluationError, match="libpam never finishes reading this file"):
        FactContext(builtin_registry(), str(tmp_path)).fact("pam", ("svc",))


@ROOT_NEEDED
@pytest.mark.parametrize("pad", [1022, 1023])
def test_pam_faillock_gives_up_on_a_line_too_long_as_the_fact_says(tmp_path, pad) -> None:
    """pam_faillock reads faillock.conf with fgets() into 1024 bytes: a line of 1023 bytes or
    more before its newline makes it refuse the file and fail (pamtester: "Error in service
    module"), so the line after it never runs; the faillock fact is then an error."""
    pam_d = tmp_path / "etc/pam.d"
    pam_d.mkdir(parents=True)
    conf = tmp_path / "etc/security/faillock.conf"
    conf.parent.mkdir(parents=True)
    conf.write_text("deny = 4\n# " + "x" * (pad - 2) + "\n")
    (pam_d / "svc").write_text(f"auth requisite pam_faillock.so preauth conf={conf}\n{_ECHO}REACHED\n")
    script = 'mount --bind "$1" /etc/pam.d && exec "$2" -v svc root authenticate'
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh", str(pam_d),
                           _tool("pamtester")], capture_output=True, timeout=60, check=False)
    reached = b"REACHED" in done.stdout
    ctx = FactContext(builtin_registry(), str(tmp_path))
    if reached:
        assert ctx.fact("faillock", ()).int("deny") == 4
    else:
        with pytest.raises(EvaluationError, match="pam_faillock refuses the file"):
            ctx.fact("faillock", ())
    assert reached == (pad < 1023)


# --- glibc's nss_files (getpwent, getgrent, getspent) -------------------------------------------
_HOSTILE_PASSWD = (
    "root:x:0:0:root:/root:/bin/bash\n"
    "toor:x:0:0\n"
    "toor2:x:0:0::/root\n"
    "short:x:0\n"
    "neg:x:-1:0::/:/bin/sh\n"
    "wide:x:4294967296:0::/:/bin/sh\n"
    "max:x:4294967295:0::/:/bin/sh\n"
    "blank:x: +5:0::/:/bin/sh\n"
    "hex:x:0x10:0::/:/bin/sh\n"
    "empty:x::0::/:/bin/sh\n"
    "trail:x:5a:0::/:/bin/sh\n"
    "  lead:x:8:8::/:/bin/sh\n"
    "extra:x:10:10:g:/h:/bin/sh:more\n"
    ":x:11:11::/:/bin/sh\n"
    "cr:x:12:12::/:/bin/sh\r\n"
    "# c\x1cevil:x:0:0::/:/bin/sh\n"
    "# c\rcr0:x:0:0::/:/bin/sh\n"
    "# c\u2028ls:x:0:0::/:/bin/sh\n"
    "nul:x:14:14::/:/bin/sh\0\n"
    "hidden:x:0:0::/:/bin/sh\n"
    "minus0:x:-0:0\n"
    "wrap:x:-18446744073709551615:0\n"
    "arabic:x:\u0661:0\n"
    "\x0cff:x:15:15\n"
)
_HOSTILE_GROUP = (
    "root:x:0:\nwheel0:x:0\nw2:x:0:a, b ,,c:d\nw3:x\nw4:x: 7\nw5:x:-1:\nw6\n"
    "# x\x1cw7:x:0:\nw8:x:0:\x0ba,\tb\n"
)
_HOSTILE_SHADOW = (
    "a:\nb::\nc:::\nd::::\ne:x:1:2:3\nf:x:1:2:3:\ng:x:abc::::::\nh:x: 5::::::\ni:x::::::\n"
    "j:x:::::::\nk:x::::::::\nl:x::::::::x\n  m:x::::\nn:x:1:2:3: \no:x:1:2:3:4:5:6:7\n"
    "p:x:1:2:3:4:5:6:7:\nq:x:1:2:3:4:5:6:\n# r\x1cr::::::::\n"
)


@ROOT_NEEDED
def test_account_files_are_read_as_glibc_reads_them(tmp_path) -> None:
    etc = tmp_path / "etc"
    etc.mkdir()
    for name, text in (
        ("passwd", _HOSTILE_PASSWD),
        ("group", _HOSTILE_GROUP),
        ("shadow", _HOSTILE_SHADOW),
    ):
        (etc / name).write_bytes(text.encode())
    dump = (
        "import grp, json, pwd, warnings; warnings.simplefilter('ignore'); import spwd;"
        "print(json.dumps([[list(p) for p in pwd.getpwall()], [list(g) for g in grp.getgrall()],"
        " [s[:2] for s in spwd.getspall()]]))"
    )
    binds = " && ".join(f"mount --bind {etc}/{n} /etc/{n}" for n in ("passwd", "group", "shadow"))
    out = _namespaced(f'{binds} && exec {sys.executable} -c "{dump}"')
    assert out.returncode == 0, out.stderr
    users, groups, shadow = json.loads(out.stdout)
    # other NSS modules (systemd) may add entries after the files'; NIS compat lines stay out
    users = [u for u in users if u[0][:1] not in ("+", "-")]
    ctx = FactContext(builtin_registry(), str(tmp_path))
    ours_users = [
        [u.name, u.password, u.uid, u.gid, u.gecos, u.home, u.shell] for u in ctx.fact("users", ())
    ]
    ours_groups = [[g.name, g.password, g.gid, list(g.members)] for g in ctx.fact("groups", ())]
    ours_shadow = [[name, e.fields[1]] for name, e in ctx.fact("_shadow", ()).items()]
    assert [[*u[:2], u[2] % 2**32, u[3] % 2**32, *u[4:]] for u in users][
        : len(ours_users)
    ] == ours_users
    assert [[*g[:2], g[2] % 2**32, g[3]] for g in groups][: len(ours_groups)] == ours_groups
    assert shadow == ours_shadow
    assert [u[0] for u in ours_users if u[2] == 0] == ["root", "toor", "toor2", "hidden", "minus0"]
