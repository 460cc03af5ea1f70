"""audit_rules: normalisation (spelling, splitting, arch pairs, watches, keys, id aliases),
rules.d order and control rules, checked on fixtures and on real published rules files."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from facts_helpers import context, materialize, write

from secpolicy.errors import EvaluationError
from secpolicy.facts.audit_rules import RuleSyntaxError, apply, covers, parse_rule, parse_rules

SHARED = (
    Path(__file__).resolve().parents[2].parent / "shared" / "data" / "auditd" / "audit-userspace"
)


def rules(*lines: str) -> list:
    return [parse_rule(line) for line in lines]


def has(persisted: list, query: str) -> bool:
    return covers(persisted, parse_rule(query))


# --- spelling ------------------------------------------------------------------------------
def test_list_and_action_in_either_order() -> None:
    assert parse_rule("-a exit,always -S open -F arch=b64") == parse_rule(
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
    assert parse_rule("-a always,exit -F arch=b64 -S open -F success=no").fields == ("success=0",)


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


def test_split_across_lines_in_a_file() -> None:
    text = "# c\n-a always,exit -F arch=b64 \\\n   -S open,openat \\\n   -F exit=-EPERM -k access\n-e 2\n"
    parsed, errors = parse_rules(text, "/etc/audit/rules.d/x.rules")
    assert errors == []
    assert parsed[0] == parse_rule(
        "-a always,exit -F arch=b64 -S open -S openat -F exit=-1 -k access"
    )
    assert parsed[0].source == "/etc/audit/rules.d/x.rules:2"
    assert parsed[1].control == ("-e", "2") and parsed[1].source == "/etc/audit/rules.d/x.rules:5"


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
    assert not has(parts, "-a always,exit -F arch=b64 -S adjtimex -S stime -k time-change")


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


def test_other_lists() -> None:
    persisted = rules("-a never,exclude -F msgtype=cwd", "-a always,user -F uid=0")
    assert has(persisted, "-a exclude,never -F msgtype=CWD")
    assert not has(persisted, "-a always,exclude -F msgtype=CWD")


def test_delete_and_clear_apply_in_order() -> None:
    seq = rules(
        "-w /etc/a -p wa",
        "-D",
        "-w /etc/b -p wa",
        "-w /etc/c -p wa -k k",
        "-W /etc/c -p wa",
        "-a always,exit -F arch=b64 -S mount",
        "-d exit,always -F arch=b64 -S mount",
    )
    final = [r for r in apply(seq) if r.kind != "control"]
    assert [r.path for r in final] == ["/etc/b"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("-a always -S open", "list,action"),
        ("-a always,sometimes -S open", "unknown list/action"),
        ("-a always,exit -F arch=b65 -S open", "bad arch"),
        ("-a always,exit -F auid", "bad field"),
        ("-w /etc/x -p z", "bad permission"),
        ("-a always,user -S open", "only valid on the exit list"),
        ("-x foo", "unknown option"),
        ("-F auid=0", "needs -a"),
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
    assert (a.errors, a.immutable, a.backlog_limit, a.failure_mode, len(a.persisted)) == (
        (),
        True,
        8192,
        1,
        51,
    )
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
    with pytest.raises(EvaluationError, match="unknown option"):
        a.has("-q /etc/passwd")
    with pytest.raises(EvaluationError, match="control option"):
        a.has("-e 2")


def test_rules_d_is_sorted_like_ls_v_and_audit_rules_is_the_fallback(tmp_path: Path) -> None:
    write(tmp_path, "etc/audit/audit.rules", "-w /etc/fallback -p wa\n")
    ctx = context(tmp_path)
    assert ctx.fact("audit_rules", ()).has("-w /etc/fallback -p wa")
    write(tmp_path, "etc/audit/rules.d/10-b.rules", "-w /etc/b -p wa\n")
    write(tmp_path, "etc/audit/rules.d/9-a.rules", "-e 2\n-w /etc/a -p wa\nbogus line\n")
    write(tmp_path, "etc/audit/rules.d/90-c.rules", "-e 1\n")
    a = context(tmp_path).fact("audit_rules", ())
    assert a.files == (
        "/etc/audit/rules.d/9-a.rules",
        "/etc/audit/rules.d/10-b.rules",
        "/etc/audit/rules.d/90-c.rules",
    )
    assert a.immutable is False  # the last -e wins
    assert a.errors == ("/etc/audit/rules.d/9-a.rules:3: unknown option 'bogus'",)
    assert not a.has("-w /etc/fallback -p wa")


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
        text = f.read_text()
        parsed, errors = parse_rules(text, f.name)
        assert errors == [], errors
        final = [r for r in apply(parsed) if r.kind != "control"]
        respelled: list = []
        for r in final:
            respelled += [parse_rule(x) for x in _respell(r.text)]
        for r in final:
            assert covers(respelled, r), (f.name, r.text)
            assert covers(final, r)
        for r in respelled:
            assert covers(final, r), (f.name, r.text)
        total += len(final)
    assert total >= 100


def test_real_stig_rules_answer_cis_style_queries() -> None:
    files = {f.name: f for f in _real_files()}
    persisted, _ = parse_rules(files["30-stig.rules"].read_text(), "30-stig.rules")
    assert covers(persisted, parse_rule("-w /etc/passwd -p wa -k identity"))
    assert covers(
        persisted,
        parse_rule("-a exit,always -F arch=b64 -S settimeofday -S adjtimex -k time-change"),
    )
    assert not covers(
        persisted, parse_rule("-a always,exit -F arch=b64 -S stime -k time-change")
    )  # b32 only
