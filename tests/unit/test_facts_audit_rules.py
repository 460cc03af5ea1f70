"""audit_rules: normalisation (spelling, arch pairs, watches, keys, id aliases), auditctl's
reading of a line (one rule per line, its errors), augenrules' joining of rules.d and the load
that stops at the first refused line, checked on fixtures and on real published rules files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from facts_helpers import context, materialize, write

from secpolicy.errors import EvaluationError
from secpolicy.facts.audit_rules import Line, RuleSyntaxError, _checked, covers, load, parse_rule

SHARED = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "auditd" / "audit-userspace"
)


def rules(*lines: str) -> list:
    return [parse_rule(line) for line in lines]


def has(persisted: list, query: str) -> bool:
    return covers(persisted, parse_rule(query))


def loaded(text: str, name: str = "/etc/audit/rules.d/x.rules"):  # type: ignore[no-untyped-def]
    return load(Line(t, f"{name}:{n}") for n, t in enumerate(text.split("\n"), 1))


# --- spelling ------------------------------------------------------------------------------
def test_list_and_action_in_either_order() -> None:
    assert parse_rule("-a exit,always -F arch=b64 -S open") == parse_rule(
        "-a always,exit -F arch=b64 -S open"
    )


def test_syscall_lists_commas_repeats_and_order() -> None:
    a = parse_rule("-a always,exit -F arch=b64 -S chmod -S fchmod,fchmodat -k perm_mod")
    b = parse_rule("-a always,exit -F arch=b64 -S fchmodat,chmod,fchmod -F key=perm_mod")
    assert a == b and a.syscalls == ("chmod", "fchmod", "fchmodat") and a.keys == ("perm_mod",)


@pytest.mark.parametrize("spelling", ["-1", "unset", "4294967295"])
def test_unset_auid_spellings(spelling: str) -> None:
    r = parse_rule(f"-a always,exit -F arch=b64 -S mount -F auid>=1000 -F auid!={spelling}")
    assert r.fields == ("auid!=unset", "auid>=1000")


def test_errno_names_numbers_and_hex_args() -> None:
    assert parse_rule("-a always,exit -F arch=b64 -S open -F exit=-EACCES").fields == ("exit=-13",)
    assert parse_rule("-a always,exit -F arch=b64 -S clock_settime -F a0=0x0").fields == ("a0=0",)
    assert parse_rule("-a always,exit -F arch=b64 -S open -F success=0").fields == ("success=0",)


def test_arch_aliases_and_compare_symmetry() -> None:
    a = parse_rule("-a always,exit -F arch=x86_64 -S execve -C uid!=euid")
    b = parse_rule("-a always,exit -F arch=b64 -S execve -C euid!=uid")
    assert a == b and a.arch == "b64"


def test_watch_equals_path_rule_and_perm_letter_order() -> None:
    w = parse_rule("-w /etc/passwd -p aw -k identity")
    f = parse_rule("-a always,exit -F path=/etc/passwd -F perm=wa -F key=identity")
    assert w == f and (w.kind, w.path, w.perm, w.syscalls) == (
        "watch",
        "/etc/passwd",
        "wa",
        ("all",),
    )
    assert parse_rule("-w /etc/sudoers.d/ -p wa") == parse_rule(
        "-a always,exit -F dir=/etc/sudoers.d -F perm=wa"
    )
    assert parse_rule("-w /etc/shadow").perm == "rwxa"


def test_a_rule_split_with_a_backslash_is_refused_and_ends_the_load() -> None:
    # auditctl -R reads one rule per line: the first half has a stray word, so auditctl
    # reports it and loads nothing after it (unless -i or -c came first)
    text = "# c\n-a always,exit -F arch=b64 \\\n   -S open,openat \\\n   -F exit=-EPERM -k access\n-w /etc/passwd -p wa\n-e 2\n"
    r = loaded(text)
    assert r.errors == ("/etc/audit/rules.d/x.rules:2: parameter passed without an option given",)
    assert (r.rules, r.stopped, r.controls) == ((), "/etc/audit/rules.d/x.rules:2", {})
    r = loaded("-c\n" + text)
    assert [e.split(": ", 1)[1] for e in r.errors] == [
        "parameter passed without an option given",
        "parameter passed without an option given",
        "List must be given before field",
    ]
    assert r.stopped is None and [x.path for x in r.rules] == ["/etc/passwd"]
    assert r.controls == {"-e": ("2", "/etc/audit/rules.d/x.rules:7")}


def test_words_split_at_spaces_only_and_comments_start_a_line() -> None:
    assert loaded("  # comment\n\n   \n").rules == ()
    tab = loaded("-w\t/etc/passwd -p wa")
    assert tab.errors and tab.rules == ()  # a tab is part of a word for auditctl
    trailing = loaded("-w /etc/passwd -p wa -k identity # passwd")
    assert trailing.errors == ("/etc/audit/rules.d/x.rules:1: parameter passed without an option given",)
    escaped = loaded("-w /etc/with\\ space -p wa")
    assert escaped.rules[0].path == "/etc/with space"


def test_duplicates_deletes_and_the_lock_are_the_kernels() -> None:
    dup = loaded("-w /etc/a -p wa -k k\n-a always,exit -F path=/etc/a -F perm=wa -F key=k\n-w /etc/b")
    assert dup.errors == ("/etc/audit/rules.d/x.rules:2: Error sending add rule data request (Rule exists)",)
    assert [r.path for r in dup.rules] == ["/etc/a"]  # stopped before /etc/b
    other_order = loaded("-a always,exit -F arch=b64 -S open -F uid=0 -F gid=0\n-a always,exit -F arch=b64 -S open -F gid=0 -F uid=0")
    assert other_order.errors == () and len(other_order.rules) == 2  # field order differs
    gone = loaded("-W /etc/nothing -p wa\n-w /etc/a")
    assert gone.stopped and "No such file" in gone.errors[0]
    locked = loaded("-e 2\n-w /etc/a -p wa")
    assert locked.rules == () and "locked" in locked.errors[0]


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-a always,exit -S all -F arch=b64", "arch must be before -S"),
        ("-a always,exit -F arch=b64 -S mountx", "Syscall name unknown: mountx"),
        ("-a always,exit -F arch=b64 -S socketcall", "Syscall name unknown: socketcall"),
        ("-F arch=b64 -a always,exit -S open", "List must be given before field"),
        ("-a always,exit -F arch=b64 -F auid>=1000 -k x", "key option needs a watch or syscall"),
        ("-a always,exit -F arch=b64 -S open -F success=yes", "should be number for success"),
        ("-a always,exit -F arch=b64 -S open -F exit=-EFOO", "unknown errno"),
        ("-a always,exit -F arch=b64 -S open -F uid=nosuchuser", "Unknown user: nosuchuser"),
        ("-w etc/passwd -p wa", "must start with '/'"),
        ("-a always,exit -a always,exit -S open", "Multiple rule insert/delete"),
        ("-e 3", "Enable must be 0, 1, or 2 was 3"),
        ("-b x", "Backlog must be a numeric value"),
        ("-D -k x", "Key field needs a watch"),
        ("-S open", "no list specified"),
        ("-a always,exit -F arch=b64 -S open -k", "Option -k is invalid"),
    ],
)
def test_lines_auditctl_refuses(line: str, message: str) -> None:
    # each message as auditctl 3.0.9 prints it for that line (tests/conformance asks it)
    r = load([Line(line, "f:1")], lambda kind, name: {"root": 0}.get(name))
    assert len(r.errors) == 1 and message in r.errors[0], r.errors


def test_augenrules_moves_controls_as_debian_mawk_reads_its_patterns(tmp_path: Path) -> None:
    write(tmp_path, "etc/audit/rules.d/10-a.rules", "-e 2\n-w /etc/a -p wa\n  -e 1\n-D\n")
    write(tmp_path, "etc/audit/rules.d/20-b.rules", "-w /etc/b -p wa\n-b 320\n")
    a = context(tmp_path).fact("audit_rules", ())
    # `-e 2` moves to the end and `-D` to the top; "  -e 1" (leading blanks) stays where it
    # is and is applied before the rules after it
    assert a.immutable is True and [r.path for r in a.persisted] == ["/etc/a", "/etc/b"]
    assert a.backlog_limit == 320
    write(tmp_path, "etc/audit/rules.d/30-c.rules", "-w /etc/c -p wa")  # no final newline
    write(tmp_path, "etc/audit/rules.d/31-d.rules", "-w /etc/d -p wa\n")
    a = context(tmp_path).fact("audit_rules", ())
    # cat joins "-w /etc/c -p wa" and "-w /etc/d -p wa" into one refused line
    assert a.stopped_at == "/etc/audit/rules.d/30-c.rules:1" and not a.immutable


# --- coverage --------------------------------------------------------------------------------
def test_a_rule_with_several_syscalls_covers_each_part_and_parts_cover_the_whole() -> None:
    whole = rules(
        "-a always,exit -F arch=b64 -S adjtimex,settimeofday,clock_settime -k time-change"
    )
    assert has(whole, "-a always,exit -F arch=b64 -S settimeofday -k time-change")
    parts = rules(
        "-a always,exit -F arch=b64 -S adjtimex -k time-change",
        "-a always,exit -F arch=b64 -S settimeofday -S clock_settime -k time-change",
    )
    assert has(
        parts, "-a exit,always -F arch=b64 -S clock_settime,adjtimex,settimeofday -k time-change"
    )
    assert not has(parts, "-a always,exit -F arch=b64 -S adjtimex -S clock_adjtime -k time-change")


def test_arch_must_match_and_a_watch_needs_both_abis() -> None:
    b64_only = rules("-a always,exit -F arch=b64 -F path=/etc/localtime -F perm=wa -k time-change")
    assert not has(b64_only, "-w /etc/localtime -p wa -k time-change")
    assert has(b64_only, "-a always,exit -F arch=b64 -F path=/etc/localtime -F perm=wa")
    pair = b64_only + rules(
        "-a always,exit -F arch=b32 -F path=/etc/localtime -F perm=wa -k time-change"
    )
    assert has(pair, "-w /etc/localtime -p wa -k time-change")
    watch = rules("-w /etc/localtime -p wa")
    assert has(watch, "-a always,exit -F arch=b32 -F path=/etc/localtime -F perm=wa")
    assert not has(
        rules("-a always,exit -F arch=b32 -S mount"), "-a always,exit -F arch=b64 -S mount"
    )


def test_keys_are_ignored_unless_asked_and_filters_must_be_equal() -> None:
    persisted = rules("-a always,exit -F arch=b64 -S mount -F auid>=1000 -F auid!=unset -k mounts")
    assert has(persisted, "-a always,exit -F arch=b64 -S mount -F auid>=1000 -F auid!=-1")
    assert has(
        persisted,
        "-a always,exit -F arch=b64 -S mount -F auid>=1000 -F auid!=4294967295 -F key=mounts",
    )
    assert not has(
        persisted, "-a always,exit -F arch=b64 -S mount -F auid>=1000 -F auid!=unset -k other"
    )
    assert not has(persisted, "-a always,exit -F arch=b64 -S mount -F auid>=500 -F auid!=unset")
    assert not has(persisted, "-a always,exit -F arch=b64 -S mount")
    assert not has(persisted, "-a never,exit -F arch=b64 -S mount -F auid>=1000 -F auid!=unset")


def test_all_syscalls_cover_each_syscall_with_the_same_filters() -> None:
    persisted = rules("-a always,exit -F arch=b64 -S all -F auid=0 -k root")
    assert has(persisted, "-a always,exit -F arch=b64 -S execve -F auid=0")
    assert not has(
        rules("-a always,exit -F arch=b64 -S execve -F auid=0"),
        "-a always,exit -F arch=b64 -S all -F auid=0",
    )


def test_a_wider_perm_mask_covers_a_narrower_one_and_not_the_reverse() -> None:
    # the kernel's audit_match_perm matches when any letter's access class holds: every event
    # of -p rwa is one of -p rwxa, and a rule without a perm filter matches them all
    assert has(rules("-w /var/log/audit -p rwxa -k x"), "-w /var/log/audit -p rwa")
    assert has(rules("-w /var/log/audit -k x"), "-w /var/log/audit -p rwa -k x")
    assert has(rules("-w /var/log/audit -p arw"), "-w /var/log/audit -p wr")
    assert not has(rules("-w /var/log/audit -p wa"), "-w /var/log/audit -p rwa")
    assert not has(rules("-w /var/log/audit -p rwxa -k x"), "-w /var/log/audit -p rwa -k other")
    assert not has(rules("-w /var/log/audit -p rwxa"), "-w /var/log -p rwa")
    syscall = "-a always,exit -F arch=b64 -S all -F path=/etc/shadow"
    assert has(rules(f"{syscall} -F perm=rwa"), f"{syscall} -F perm=wa")
    assert has(rules(syscall), f"{syscall} -F perm=wa")
    assert not has(rules(f"{syscall} -F perm=wa"), f"{syscall} -F perm=rwa")
    assert not has(rules(f"{syscall} -F perm=rwxa"), syscall)  # -S all without a perm filter is wider


def test_other_lists() -> None:
    persisted = rules("-a never,exclude -F msgtype=cwd", "-a always,user -F uid=0")
    assert has(persisted, "-a exclude,never -F msgtype=CWD")
    assert not has(persisted, "-a always,exclude -F msgtype=CWD")


def test_delete_and_clear_apply_in_order() -> None:
    lines = [
        "-w /etc/a -p wa",
        "-D",
        "-w /etc/b -p wa",
        "-w /etc/c -p wa -k k",
        "-W /etc/c -p wa -k k",
        "-a always,exit -F arch=b64 -S mount",
        "-d exit,always -F arch=b64 -S mount",
    ]
    r = load(Line(t, f"x:{n}") for n, t in enumerate(lines, 1))
    assert r.errors == () and [x.path for x in r.rules] == ["/etc/b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-a always -S open", "bad keyword"),
        ("-a always,sometimes -S open", "bad keyword"),
        ("-a always,exit -F arch=b65 -S open", "unknown arch"),
        ("-a always,exit -F auid", "missing operation"),
        ("-w /etc/x -p z", "isn't supported"),
        ("-a always,user -S open", "user list"),
        ("-x foo", "invalid"),
        ("-F auid=0", "List must be given before field"),
    ],
)
def test_bad_rules_are_reported(text: str, message: str) -> None:
    with pytest.raises(RuleSyntaxError, match=message):
        parse_rule(text)


# --- the fact on fixture roots ------------------------------------------------------------------
@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("roots")
    return {n: materialize(n, base) for n in ("hardened", "weak")}


def test_hardened_rules_d(roots: dict[str, Path]) -> None:
    a = context(roots["hardened"]).fact("audit_rules", ())
    assert a.files == (
        "/etc/audit/rules.d/10-base-config.rules",
        "/etc/audit/rules.d/50-cis.rules",
        "/etc/audit/rules.d/99-finalize.rules",
    )
    assert (a.errors, a.stopped_at, a.immutable, a.backlog_limit, a.failure_mode) == (
        (),
        None,
        True,
        8192,
        1,
    )
    assert len(a.persisted) == 51
    assert a.where("immutable") == "/etc/audit/rules.d/99-finalize.rules:2"
    assert a.has(
        "-a always,exit -F arch=b32 -S openat -F exit=-EPERM -F auid>=1000 -F auid!=unset -k access"
    )
    assert (
        a.where("has", "-w /etc/sudoers.d/ -p wa -k scope") == "/etc/audit/rules.d/50-cis.rules:5"
    )
    q = "-a always,exit -F arch=b32 -S init_module -F auid>=1000 -F auid!=unset -k kernel_modules"
    assert not a.has(q) and a.where("has", q).startswith(
        "/etc/audit/rules.d/10-base-config.rules, "
    )
    assert {"identity", "scope", "time-change", "perm_mod", "access"} <= set(a.keys)
    assert (a.loaded, a.enabled) == (None, None)  # live only


def test_weak_has_no_rules(roots: dict[str, Path]) -> None:
    a = context(roots["weak"]).fact("audit_rules", ())
    assert (a.files, a.persisted, a.immutable, a.has("-w /etc/passwd -p wa")) == (
        (),
        (),
        False,
        False,
    )
    assert a.where("has", "-w /etc/passwd -p wa") == "/etc/audit/rules.d (no rules)"


def test_has_loaded_is_not_applicable_under_root_and_bad_queries_error(
    roots: dict[str, Path],
) -> None:
    from secpolicy.errors import NotApplicable

    a = context(roots["hardened"]).fact("audit_rules", ())
    with pytest.raises(NotApplicable):
        a.has_loaded("-w /etc/passwd -p wa")
    with pytest.raises(EvaluationError, match="not a rule option"):
        a.has("-q /etc/passwd")
    with pytest.raises(EvaluationError, match="Syscall name unknown: stime"):
        a.has("-a always,exit -F arch=b64 -S stime")  # i386 only
    with pytest.raises(EvaluationError, match="control option"):
        a.has("-e 2")


def test_rules_d_is_sorted_like_ls_v_and_audit_rules_is_the_fallback(tmp_path: Path) -> None:
    write(tmp_path, "etc/audit/audit.rules", "-w /etc/fallback -p wa\n")
    ctx = context(tmp_path)
    assert ctx.fact("audit_rules", ()).has("-w /etc/fallback -p wa")
    write(tmp_path, "etc/audit/rules.d/10-b.rules", "-w /etc/b -p wa\n")
    write(tmp_path, "etc/audit/rules.d/9-a.rules", "-e 2\n-w /etc/a -p wa\nbogus line\n")
    write(tmp_path, "etc/audit/rules.d/90-c.rules", "-e 1\n")
    write(tmp_path, "etc/audit/rules.d/.hidden.rules", "-w /etc/hidden -p wa\n")
    a = context(tmp_path).fact("audit_rules", ())
    assert a.files == (
        "/etc/audit/rules.d/9-a.rules",
        "/etc/audit/rules.d/10-b.rules",
        "/etc/audit/rules.d/90-c.rules",
    )
    # augenrules keeps the last -e for the end, but "bogus line" stops the load before it
    assert a.errors == ("/etc/audit/rules.d/9-a.rules:3: no option on the line",)
    assert a.stopped_at == "/etc/audit/rules.d/9-a.rules:3" and a.immutable is False
    assert a.has("-w /etc/a -p wa") and not a.has("-w /etc/b -p wa")
    assert "auditctl stops loading at /etc/audit/rules.d/9-a.rules:3" in a.where("has", "-w /etc/b -p wa")
    assert not a.has("-w /etc/fallback -p wa")  # augenrules rebuilds audit.rules from rules.d
    for n in ("9-a", "10-b", "90-c", ".hidden"):
        (tmp_path / f"etc/audit/rules.d/{n}.rules").unlink()
    assert context(tmp_path).fact("audit_rules", ()).persisted == ()  # an empty rules.d


# --- real published rules files -----------------------------------------------------------------
def _real_files() -> list[Path]:
    files = sorted(SHARED.glob("*.rules")) if SHARED.is_dir() else []
    if not files:
        if os.environ.get("CI"):
            pytest.fail(
                f"CI is set but the shared audit rules are missing ({SHARED.name} under ../shared/data/auditd)"
            )
        pytest.skip(
            "shared audit rules not present (../shared/data/auditd/audit-userspace); required when CI is set"
        )
    return files


def _respell(line: str) -> list[str]:
    """The same rule written differently: split syscalls, swap list/action, spell unset
    another way, -F key= <-> -k, and one rule per syscall."""
    line = re.sub(r"-a always,exit", "-a exit,always", line)
    line = line.replace("auid!=unset", "auid!=4294967295").replace("auid!=-1", "auid!=unset")
    line = re.sub(r"-F key=(\S+)", r"-k \1", line)
    m = re.search(r"-S (\S+)", line)
    if not m:
        return [line]
    calls = m.group(1).split(",")
    return [line[: m.start()] + f"-S {c}" + line[m.end() :] for c in calls]


def test_real_rules_files_parse_and_respelled_rules_are_equivalent() -> None:
    total = 0
    for f in _real_files():
        r = loaded("-c\n" + f.read_text(), f.name)
        # upstream's newest files name syscalls the audit 3.0.9 of Debian 12 does not know:
        # its auditctl refuses those lines (tests/conformance checks each line with it)
        assert all("Syscall name unknown: fchmodat2" in e or "file_setattr" in e for e in r.errors), r.errors
        final = list(r.rules)
        respelled: list = []
        for r in final:
            respelled += [parse_rule(x) for x in _respell(r.text)]
        for r in final:
            assert covers(respelled, r), (f.name, r.text)
            assert covers(final, r)
        for r in respelled:
            assert covers(final, r), (f.name, r.text)
        total += len(final)
    assert total >= 90


def test_real_stig_rules_answer_cis_style_queries() -> None:
    files = {f.name: f for f in _real_files()}
    persisted = loaded("-c\n" + files["30-stig.rules"].read_text(), "30-stig.rules").rules
    assert covers(persisted, parse_rule("-w /etc/passwd -p wa -k identity"))
    assert covers(
        persisted,
        parse_rule("-a exit,always -F arch=b64 -S settimeofday -S adjtimex -k time-change"),
    )
    assert covers(persisted, parse_rule("-a always,exit -F arch=b32 -S stime -k time-change"))
    assert not covers(
        persisted, parse_rule("-a always,exit -F arch=b64 -S clock_adjtime -k time-change")
    )


# The loaded rules: `auditctl -l` checked against the kernel's list (AUDIT_LIST_RULES), given
# here as (field, value) strings of each rule: 105 watch, 107 dir, 210 key.
def test_loaded_rules_agree_with_the_kernels_list_or_are_an_error() -> None:
    kernel = [((105, "/etc/passwd"), (210, "identity")), ((107, "/etc/sudoers.d"),), ((210, "b\x01a"),)]
    lines = ["-w /etc/passwd -p wa -k identity", "-w /etc/sudoers.d -p wa",
             "-a always,exit -F arch=b64 -S sethostname -F key=a -F key=b"]
    got = _checked(kernel, lines)
    assert [(r.path, r.keys) for r in got] == [("/etc/passwd", ("identity",)), ("/etc/sudoers.d", ()), (None, ("a", "b"))]
    assert _checked([((210, "k\\\\x"),)], ["-a always,exit -S all -F key=k\\\\x"])[0].keys == ("k\\\\x",)  # no escapes
    wrong = {
        "the kernel holds 2 rules, auditctl -l printed 3": (kernel[:2], lines),
        "is not the kernel's rule 1": ([((105, "/etc/shadow"), (210, "identity"))], lines[:1]),
        "is not the kernel's rule 2": (kernel[:2], [lines[0], "-w /etc/sudoers.d -p wa -k x"]),
        "the key 'x\\n-w /etc/shadow' of loaded rule 1 holds a space or line break": (
            [((105, "/tmp/p"), (210, "x\n-w /etc/shadow"))], ["-w /tmp/p -p wa -k x", "-w /etc/shadow"]),
        "the watch '/tmp/a b' of loaded rule 1 holds a space": ([((105, "/tmp/a b"),)], ["-w /tmp/a b -p wa"]),
    }
    for message, (k, shown) in wrong.items():
        with pytest.raises(EvaluationError, match=re.escape(message)):
            _checked(k, shown)


# --- the kernel's order: an earlier never rule, an exclude, task or filesystem rule -------------
# (what the kernel does is checked against a private auditd in tests/integration/test_audit_never_probe.py)
TRUNCATE = "-a always,exit -F arch=b64 -S truncate"
IDS = "-F auid>=1000 -F auid!=unset"


def fact_of(tmp_path: Path, *files: tuple[str, str]):  # type: ignore[no-untyped-def]
    for name, text in files:
        write(tmp_path, f"etc/audit/rules.d/{name}", text)
    return context(tmp_path).fact("audit_rules", ())


def test_an_earlier_never_rule_takes_the_events_and_the_evidence_names_it(tmp_path: Path) -> None:
    a = fact_of(
        tmp_path,
        ("10-quiet.rules", "# batch jobs\n-a never,exit -F arch=b64 -S truncate -F auid=4242\n"),
        ("50-cis.rules", f"-a always,exit -F arch=b64 -S truncate,ftruncate {IDS} -k access\n"),
    )
    assert not a.has(f"{TRUNCATE} {IDS}")
    assert a.where("has", f"{TRUNCATE} {IDS} -k access") == (
        "/etc/audit/rules.d/10-quiet.rules:2: -a never,exit -F arch=b64 -S truncate -F auid=4242 "
        "comes first and records nothing"
    )
    ftruncate = f"-a always,exit -F arch=b64 -S ftruncate {IDS}"
    assert a.has(ftruncate) and a.where("has", ftruncate) == "/etc/audit/rules.d/50-cis.rules:1"


def test_a_never_rule_after_the_always_rule_changes_nothing_but_dash_A_puts_it_first(tmp_path: Path) -> None:
    after = fact_of(tmp_path, ("50.rules", f"{TRUNCATE}\n-a never,exit -F arch=b64 -S truncate\n"))
    assert after.has(TRUNCATE)
    first = fact_of(tmp_path, ("60.rules", "-A never,exit -F arch=b64 -S truncate -k quiet\n"))
    assert not first.has(TRUNCATE)
    assert first.where("has", TRUNCATE).startswith("/etc/audit/rules.d/60.rules:1: -A never,exit")
    again = fact_of(tmp_path, ("70.rules", "-A always,exit -F arch=b64 -S truncate -k loud\n"))
    assert again.has(TRUNCATE) and again.has(f"{TRUNCATE} -k loud") and not again.has(f"{TRUNCATE} -k quiet")


def test_never_rules_whose_filters_exclude_the_querys_events_leave_it_covered(tmp_path: Path) -> None:
    a = fact_of(
        tmp_path,
        (
            "10.rules",
            ("-a never,exit -F arch=b64 -S truncate -F auid=500\n"
            "-a never,exit -F arch=b64 -S truncate -F exit=-2\n"
            "-a never,exit -F arch=b64 -S truncate -C euid=uid\n"
            "-a never,exit -F arch=b32 -S all\n"),
        ),
        ("50.rules", f"{TRUNCATE} -F exit=-13 -C uid!=euid {IDS}\n-a always,exit -F arch=b64 -S truncate -F exe=/usr/bin/b\n"),
    )
    assert a.has(f"{TRUNCATE} -F exit=-EACCES -C euid!=uid -F auid!=-1 -F auid>=1000")
    # the uid<1000 rule meets auid>=1000 (uid and auid differ) when exit and -C do not exclude it
    b = fact_of(tmp_path, ("05.rules", "-a never,exit -F arch=b64 -S truncate -F uid<1000 -F auid>=1000\n"))
    assert not b.has(f"{TRUNCATE} -F exit=-EACCES -C euid!=uid -F auid!=-1 -F auid>=1000")
    # two exe paths may be one inode (a hard link): not told apart
    c = fact_of(tmp_path, ("06.rules", "-a never,exit -F arch=b64 -S truncate -F exe=/usr/bin/a\n"))
    assert not c.has(f"{TRUNCATE} -F exe=/usr/bin/b")


def test_a_never_rule_without_an_arch_may_take_any_b32_syscall(tmp_path: Path) -> None:
    a = fact_of(
        tmp_path,
        ("10.rules", "-a never,exit -S truncate\n"),
        ("50.rules", "-a always,exit -F arch=b64 -S openat\n-a always,exit -F arch=b32 -S openat\n"),
    )
    assert a.has("-a always,exit -F arch=b64 -S openat")
    assert not a.has("-a always,exit -F arch=b32 -S openat")  # b64 truncate's number is another b32 call


def test_never_rules_and_watches_are_in_one_order(tmp_path: Path) -> None:
    a = fact_of(tmp_path, ("10.rules", "-w /etc/passwd -p wa -k identity\n-a never,exit -F arch=b64 -S all\n"))
    assert a.has("-w /etc/passwd -p wa")
    b = fact_of(tmp_path, ("05.rules", "-a never,exit -F dir=/var/lib/docker\n-a never,exit -F dir=/etc\n"))
    assert not b.has("-w /etc/passwd -p wa")
    assert b.where("has", "-w /etc/passwd -p wa") == (
        "/etc/audit/rules.d/05.rules:2: -a never,exit -F dir=/etc comes first and records nothing"
    )
    c = fact_of(tmp_path, ("05.rules", "-a never,exit -F dir=/var/lib/docker\n-a never,exit -F path=/etc/passwd.lock\n"))
    assert c.has("-w /etc/passwd -p wa")
    d = fact_of(tmp_path, ("07.rules", "-a never,exit -F arch=b64 -S openat\n"))
    assert not d.has("-w /etc/passwd -p wa") and d.has("-a always,exit -F arch=b32 -F path=/etc/passwd -F perm=wa")


def test_a_wider_watch_answers_a_narrower_query_unless_a_never_rule_comes_first(tmp_path: Path) -> None:
    a = fact_of(tmp_path, ("60-pci.rules", "-w /var/log/audit -p rwxa -k audit_log_access\n"))
    assert a.has("-w /var/log/audit -p rwa")
    assert a.where("has", "-w /var/log/audit -p rwa") == "/etc/audit/rules.d/60-pci.rules:1"
    assert not a.has("-w /var/log/audit -p rwa -k other")
    # a never rule takes events away: whatever its mask, it is taken to match (a false FAIL at worst)
    b = fact_of(tmp_path, ("10-quiet.rules", "-a never,exit -F dir=/var/log/audit -F perm=r\n"))
    assert not b.has("-w /var/log/audit -p rwa")
    assert b.where("has", "-w /var/log/audit -p rwa").startswith("/etc/audit/rules.d/10-quiet.rules:1: -a never")


def test_exclude_rules_drop_records_wherever_they_stand(tmp_path: Path) -> None:
    rules = f"{TRUNCATE} {IDS}\n-w /etc/passwd -p wa\n"
    watch, syscall = "-w /etc/passwd -p wa", f"{TRUNCATE} {IDS}"
    cwd = fact_of(tmp_path, ("10.rules", rules + "-a never,exclude -F msgtype=CWD\n"))
    assert cwd.has(watch) and cwd.has(syscall)
    path = fact_of(tmp_path, ("20.rules", "-a never,exclude -F msgtype=PATH\n"))
    assert not path.has(watch) and path.has(syscall)
    assert path.where("has", watch) == (
        "/etc/audit/rules.d/20.rules:1: -a never,exclude -F msgtype=PATH drops the PATH records"
    )
    other = fact_of(tmp_path, ("20.rules", "-a always,exclude -F msgtype=SYSCALL -F auid=500\n"))
    assert other.has(syscall) and not other.has(watch)  # the watch takes every auid
    everything = fact_of(tmp_path, ("30.rules", "-a always,exclude -F msgtype>=1300 -F msgtype<=1301\n"))
    assert not everything.has(syscall)


def test_never_task_and_never_filesystem_rules(tmp_path: Path) -> None:
    rules = ("50.rules", f"{TRUNCATE}\n-w /etc/passwd -p wa\n")
    task = fact_of(tmp_path, rules, ("99.rules", "-a never,task\n"))
    assert not task.has(TRUNCATE) and not task.has("-w /etc/passwd -p wa")
    (tmp_path / "etc/audit/rules.d/99.rules").unlink()
    tracefs = fact_of(tmp_path, ("01.rules", "-a never,filesystem -F fstype=tracefs\n"))
    assert tracefs.has("-w /etc/passwd -p wa") and not tracefs.has("-w /sys/kernel/tracing/trace -p wa")
    tmpfs = fact_of(tmp_path, ("01.rules", "-a never,filesystem -F fstype=0x01021994\n"))
    assert not tmpfs.has("-w /etc/passwd -p wa") and tmpfs.has(TRUNCATE)


def test_has_loaded_reads_the_kernels_order(tmp_path: Path) -> None:
    from secpolicy.facts.audit_rules import LOADED_SOURCE, AuditRules

    loaded = ["-a never,exit -F arch=b64 -S truncate -F exe=/usr/bin/rsync", f"{TRUNCATE} -F key=access"]
    a = AuditRules.twin(context(tmp_path), {"loaded": loaded, "enabled": 1})
    assert not a.has_loaded(TRUNCATE)
    assert a.where("has_loaded", TRUNCATE) == (
        f"{LOADED_SOURCE}; test stand-in loaded:1: {loaded[0]} comes first and records nothing"
    )
    b = AuditRules.twin(context(tmp_path), {"loaded": loaded[::-1], "enabled": 1})
    assert b.has_loaded(TRUNCATE) and b.where("has_loaded", TRUNCATE) == LOADED_SOURCE


# --- auditctl 3.0.9's reading of a line, as the real tool was found to load it ---------------------
# (tests/conformance/test_auditctl_lines.py asks the real auditctl about these lines)
@pytest.mark.parametrize(
    "line",
    [
        "-a never,exit -F dir=/var/lib/docker -k docker",
        "-a always,exit -F path=/usr/bin/sudo -k priv",
        "-a never,filesystem -F fstype=tracefs -k tracefs",
    ],
)
def test_a_key_may_follow_a_path_dir_or_fstype_field(line: str) -> None:
    r = loaded(line)
    assert r.errors == () and len(r.rules) == 1 and r.rules[0].keys == (line.split()[-1],)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("-a always,exit -F uid=0 -F key=k", "Key field needs a watch, syscall or exe path"),
        ("-a always,exit -F arch=b64 -S openat -F Key=a -k b", "one key field"),
        ("-a always,exit -F path=/etc/passwd/ -F perm=wa", "Invalid argument"),
        ("-a always,exit -F path=/ -F perm=wa", "Invalid argument"),
        ("-a always,exit -F path=/etc/passwd -F perm!=wa", "perm only takes = operator"),
        ("-a always,exit -F path=/etc/passwd -F inode=5", "Invalid argument"),
        ("-a always,exit -F exe=/usr/bin/ -k k", "Invalid argument"),
        ("-a always,exit -F exe=/usr/bin/a -F exe=/usr/bin/b -k k", "Invalid argument"),
        ("-a always,exit -F exe>/usr/bin/a -k k", "exe only takes = or != operators"),
        ("-a always,exit -F arch=b64 -S openat -F pid&1", "Invalid argument"),
        ("-a always,exit -F arch=b64 -S openat -F exit&13", "Invalid argument"),
        ("-a always,exit -F arch=b64 -S openat -F uid=-1", "Invalid argument"),
        ("-a always,exit -F arch=b64 -S openat -F filetype>file", "Invalid argument"),
        ("-a always,exit -F arch=b64 -S openat -F inode>5", "inode only takes = or != operators"),
        ("-a always,exit -F arch=b64 -S openat -F gid=unset", "Unknown group: unset"),
        ("-a always,exit -F arch=b64 -S connect -F saddr_fam=46", "value is too large"),
        ("-a always,exit -F arch=b64 -S openat -C uid=gid", "-C incompatible comparison"),
        ("-a always,exit -F arch=b64 -S openat -F uid=1!=2", "-F unknown field: uid=1"),
        ("-a always,exclude -F euid=0", "can be used with exclude filter"),
        ("-a always,user -F exit=1", "exit can only be used with exit filter list"),
        ("-a always,filesystem -F fstype=tracefs -F uid=0 -k t", "Invalid argument"),
        ("-a always,filesystem -F fstype=ext9", "file system type is unknown"),
        ("-w /etc/passwd -a always,exit", "Append rule - bad keyword always,exit"),
        ("-a always,exit -F arch=b64 -S openat -k k -l", "Wrong number of options for list"),
        ("-a always,exit -F path=/" + "x/" * 2100 + "f", "String value too long"),
        ("-a always,exit -S openat " + " ".join(f"-F a0!={i}" for i in range(63)) + " -k k", "Too many fields"),
    ],
)
def test_lines_auditctl_or_the_kernel_refuses(line: str, message: str) -> None:
    r = load([Line(line, "f:1"), Line("-w /etc/after", "f:2")], lambda kind, name: {"root": 0}.get(name))
    assert len(r.errors) == 1 and message in r.errors[0], r.errors
    assert r.rules == () and r.stopped == "f:1"


@pytest.mark.parametrize(
    ("line", "fields"),
    [
        ("-a always,exit -F arch=b64 -S openat -F filetype=32768", ("filetype=file",)),  # as -l prints it
        ("-a always,exit -F arch=b64 -S openat -F uid=99999999999", ("uid=1215752191",)),
        ("-a always,exit -F arch=b64 -S openat -F pid=4294967295", ("pid=-1",)),
        ("-a always,exit -F arch=b64 -S openat -F a0=-1", ("a0=4294967295",)),
        ("-a always,exit -F arch=b64 -S openat -F sessionid=unset", ("sessionid=-1",)),
        ("-a always,exit -F arch=b64 -S connect -F saddr_fam=abc", ("saddr_fam=0",)),
    ],
)
def test_values_read_as_the_kernel_holds_them(line: str, fields: tuple[str, ...]) -> None:
    assert parse_rule(line).fields == fields


def test_spellings_auditctl_takes() -> None:
    assert parse_rule("-a always,exit -F arch=b64 -S OPENAT").syscalls == ("openat",)
    assert parse_rule("-a always,exit -F arch=b64 -S 0x101").syscalls == ("257",)
    assert parse_rule("-a always,exit -F arch=0xc000003e -S openat").arch == "b64"
    assert parse_rule("-a always,exit -F arch=b64 -S openat -F key= -k k").keys == ("k",)
    assert parse_rule("-a always,user -F exe=/usr/bin/sudo -k k").fields == ("exe=/usr/bin/sudo",)
    assert parse_rule("-a always,exit -F dir=/etc// -F perm=wa").path == "/etc"
    assert parse_rule("-a always,exit -F dir=// -F perm=wa").path == "//"
    assert parse_rule("-w /etc/passwd -p wa -S openat").syscalls == ("all",)  # a watch is on every syscall
    assert parse_rule("-w /etc/passwd -a exit,always -p wa") == parse_rule("-w /etc/passwd -p wa")


def test_dash_i_and_c_end_their_line_and_the_load_goes_on() -> None:
    for first in ("-a always,exit -F arch=b64 -S openat -k k -i", "-c -w /etc/shadow -k k", "-i -k k"):
        r = loaded(f"{first}\n-w /etc/after -p wa\n-w /etc/bad -p z\n-w /etc/last")
        assert [x.path for x in r.rules] == ["/etc/after", "/etc/last"] and r.stopped is None, first


def test_a_possible_rule_is_dropped_and_the_load_goes_on() -> None:
    r = loaded("-a exit,possible -S openat\n-w /etc/after")
    assert r.errors == () and [x.path for x in r.rules] == ["/etc/after"]
    assert loaded("-a possible,exit -S openat").stopped  # the other order is a bad keyword
