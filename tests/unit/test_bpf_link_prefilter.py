"""The first path components the kernel's pre-filter of write-opens kept for the file they opened
looks up (bpf_plan.link_heads, sp_link_head_ok in bpf/secpolicy.bpf.c): only a file whose
top-level directory is one of them, or starts with one of the stems, gets the full prefix test,
so they must never leave out a file the full test keeps; where they would, link_heads is None
(every such file tested in full)."""

from __future__ import annotations

import pytest

from secpolicy.events.bpf_plan import (
    HEAD_MAX_LEN,
    HEAD_STEMS,
    PREFIX_MAX_LEN,
    Clause,
    KernelPlan,
    LinkHeads,
    TypeFilter,
    link_heads,
    watched_files,
    with_watched_paths,
)
from secpolicy.events.live.record import C


def heads(*clauses: Clause) -> LinkHeads | None:
    return link_heads(TypeFilter(clauses=clauses))


def names(*n: bytes) -> LinkHeads:
    return LinkHeads(frozenset(n), frozenset())


def test_the_first_component_of_each_success_accepting_prefix() -> None:
    # the bundled rules' write clauses, in short
    got = heads(Clause(("/var/log/audit",)),
                Clause(("/etc/passwd", "/etc/shadow")),
                Clause(("/bin/", "/usr/local/", "/etc/"), "success"))
    assert got == names(b"var", b"etc", b"bin", b"usr")


def test_clauses_that_need_a_failure_are_left_out() -> None:
    # a refused write-open is never tested on the file it opened: its prefixes do not matter,
    # even one that would otherwise turn the pre-filter off
    assert heads(Clause(("/etc/",), "success"), Clause(("/",), "failure"),
                 Clause(("/",), "failure", frozenset({13}))) == names(b"etc")
    assert heads(Clause(None, "failure", frozenset({1, 13}))) == names()


def test_a_prefix_that_ends_inside_its_first_component_is_a_stem() -> None:
    # `/etc` also matches `/etcetera/x`, `/e` any top-level name starting with `e`
    assert heads(Clause(("/etc", "/usr/")), Clause(("/boot",), "success")) == \
        LinkHeads(frozenset({b"usr"}), frozenset({b"etc", b"boot"}))
    # a stem covers the longer ones; only the first 8 bytes are kept (the kernel compares those)
    assert heads(Clause(("/e", "/etc", "/etcetera-and-more"))) == LinkHeads(frozenset(), frozenset({b"e"}))
    assert heads(Clause(("/abcdefghijk",))) == LinkHeads(frozenset(), frozenset({b"abcdefgh"}))


def test_a_first_component_too_long_for_the_key_is_a_stem() -> None:
    name = "c" * HEAD_MAX_LEN
    assert heads(Clause((f"/{name}/x",))) == names(name.encode())
    assert HEAD_MAX_LEN == C["SP_HEAD_MAX"] - 1 and HEAD_STEMS == C["SP_HEAD_STEMS"]
    assert heads(Clause((f"/{name}d/x",))) == LinkHeads(frozenset(), frozenset({b"cccccccc"}))
    # cut where the kernel cuts prefixes: the component's slash is not kept
    assert heads(Clause(("/" + "b" * PREFIX_MAX_LEN + "/x",))) == LinkHeads(frozenset(), frozenset({b"bbbbbbbb"}))
    # bytes, as the kernel compares them
    assert heads(Clause(("/été/",))) == names("été".encode())


@pytest.mark.parametrize("prefix", ["/", "//etc/", "etc/"])
def test_a_prefix_the_lookup_cannot_tell_turns_the_pre_filter_off(prefix: str) -> None:
    assert heads(Clause(("/etc/",)), Clause((prefix,), "success")) is None


def test_more_stems_than_room_turn_it_off() -> None:
    many = tuple(f"/s{i}x" for i in range(HEAD_STEMS))
    assert heads(Clause(many)) is not None
    assert heads(Clause((*many, "/t"))) is None


def test_no_clauses_or_a_clause_without_prefixes_turns_it_off() -> None:
    assert link_heads(TypeFilter()) is None
    assert heads(Clause(("/etc/",)), Clause(None, "success")) is None
    assert heads(Clause(("/etc/",)), Clause(None)) is None


def test_watched_trees_of_file_integrity_are_counted() -> None:
    plan = KernelPlan(frozenset({"write"}), {"write": TypeFilter(clauses=(Clause(("/etc/",), "success"),))})
    # a watched directory is named without its slash: `/srv/www` is under `srv`, `/opt` a stem
    got = link_heads(with_watched_paths(plan, ["/srv/www", "/opt"]).filter_for("write"))
    assert got == LinkHeads(frozenset({b"etc", b"srv"}), frozenset({b"opt"}))
    assert link_heads(with_watched_paths(plan, ["/"]).filter_for("write")) is None


def test_the_files_watched_by_inode_are_the_prefixes_that_may_name_one_file() -> None:
    # the bundled credential clause, a directory prefix, a failure-only clause, a prefix
    # longer than the kernel holds and a relative one: only the first kind may name one file
    long = "/" + "d" * PREFIX_MAX_LEN
    flt = TypeFilter(clauses=(Clause(("/var/log/audit", "/etc/audit/")),
                              Clause(("/etc/passwd", "/etc/shadow")),
                              Clause(("/etc/failing",), "failure"),
                              Clause(("/etc/refused",), errnos=frozenset({1, 13})),
                              Clause((long, "relative", "/etc/shadow"), "success")))
    assert watched_files(flt) == ("/var/log/audit", "/etc/passwd", "/etc/shadow")
    assert watched_files(TypeFilter()) == ()
