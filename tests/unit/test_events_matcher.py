"""The matcher index: keys read from real compiled rules, candidates, explain, kernel filter."""

from __future__ import annotations

from pathlib import Path

from events_helpers import ev, load_rules

from secpolicy.events.matcher import (
    ANY_KEYS,
    IndexKeys,
    Matcher,
    describe_rule,
    kernel_filter,
    keys_of,
    rule_keys,
)

RULES = """
- id: sudo
  title: sudo
  severity: low
  when: type == "exec" and proc.exe in ["/usr/bin/sudo", "/usr/bin/su"] and proc.uid != 0
- id: etc
  title: etc
  severity: low
  when: type in ["write", "unlink"] and file.path startswith "/etc/"
- id: shadow
  title: shadow
  severity: low
  when: type == "open" and (file.path == "/etc/shadow" or file.path glob "/etc/gshadow*")
- id: root
  title: root
  severity: low
  when: type == "connect" and user.uid == 0
- id: anytype
  title: anytype
  severity: low
  when: proc.comm == "nc" or proc.comm == "ncat"
- id: negated
  title: negated
  severity: low
  when: not (type == "exec")
- id: chain
  title: chain
  severity: high
  sequence:
    by: proc.session
    within: 5m
    steps:
      - type == "exec" and proc.exe == "/usr/bin/sudo"
      - type == "write" and file.path startswith ["/etc/", "/usr/"]
"""


def _rules(tmp_path: Path) -> dict:
    return {r.id: r for r in load_rules(tmp_path, RULES).event_rules}


def test_keys_are_read_from_the_checked_ast(tmp_path: Path) -> None:
    r = _rules(tmp_path)
    assert rule_keys(r["sudo"]) == IndexKeys(types=frozenset({"exec"}), exe=frozenset({"/usr/bin/sudo", "/usr/bin/su"}))
    assert rule_keys(r["etc"]) == IndexKeys(types=frozenset({"write", "unlink"}), path_prefixes=("/etc/",))
    assert rule_keys(r["shadow"]) == IndexKeys(types=frozenset({"open"}), path_prefixes=("/etc/gshadow", "/etc/shadow"))
    assert rule_keys(r["root"]) == IndexKeys(types=frozenset({"connect"}), uids=frozenset({0}))
    assert rule_keys(r["anytype"]) == IndexKeys(comm=frozenset({"nc", "ncat"}))
    assert rule_keys(r["negated"]) == ANY_KEYS
    assert rule_keys(r["chain"]) == IndexKeys(types=frozenset({"exec", "write"}))
    assert keys_of(r["chain"].sequence.steps[1].node).path_prefixes == ("/etc/", "/usr/")


def test_candidates_are_a_superset_of_matches_in_rule_order(tmp_path: Path) -> None:
    r = _rules(tmp_path)
    m = Matcher([(rule_keys(x), x.id) for x in r.values()])
    # `negated` constrains nothing the index can use, so it is a candidate everywhere.
    assert m.candidates(ev("exec", proc={"exe": "/usr/bin/sudo", "comm": "sudo"})) == ["sudo", "negated", "chain"]
    assert m.candidates(ev("exec", proc={"exe": "/usr/bin/ls"})) == ["negated", "chain"]
    assert m.candidates(ev("exec", proc={"exe": "/usr/bin/ls", "comm": "nc"})) == ["anytype", "negated", "chain"]
    assert m.candidates(ev("write", file={"path": "/etc/passwd"})) == ["etc", "negated", "chain"]
    assert m.candidates(ev("write", file={"path": "/etcetera"})) == ["negated", "chain"]
    assert m.candidates(ev("open", file={"path": "/etc/gshadow-"})) == ["shadow", "negated"]
    assert m.candidates(ev("open", file={"path": "/etc/passwd"})) == ["negated"]
    assert m.candidates(ev("connect", user={"uid": 0})) == ["root", "negated"]
    assert m.candidates(ev("connect", user={"uid": 1000})) == ["negated"]
    assert m.candidates(ev("auth")) == ["negated"]


def test_index_never_changes_what_matches(tmp_path: Path) -> None:
    """Exhaustive over a grid of events: indexed evaluation == evaluating every rule."""
    r = [x for x in _rules(tmp_path).values() if x.when is not None]
    m = Matcher([(rule_keys(x), x) for x in r])
    grid = []
    for t in ("exec", "write", "unlink", "open", "connect", "auth"):
        for exe in (None, "/usr/bin/sudo", "/usr/bin/su", "/bin/ls"):
            for path in (None, "/etc/shadow", "/etc/gshadow-", "/etc/x", "/usr/bin/x", "/tmp/x"):
                for uid in (None, 0, 1000):
                    e = ev(t)
                    if exe or uid is not None:
                        e["proc"] = {k: v for k, v in (("exe", exe), ("uid", uid), ("comm", "nc" if uid == 1000 else "bash")) if v is not None}
                    if path:
                        e["file"] = {"path": path}
                    if uid is not None:
                        e["user"] = {"uid": uid}
                    grid.append(e)
    for e in grid:
        brute = [x.id for x in r if x.when.fn(e)]
        indexed = [x.id for x in m.candidates(e) if x.when.fn(e)]
        assert indexed == brute, e


def test_describe_rule_shows_keys_and_residual(tmp_path: Path) -> None:
    r = _rules(tmp_path)
    d = describe_rule(r["sudo"])
    assert d["kind"] == "match"
    assert d["discriminator"] == "exe"
    assert d["index"]["exe"] == ["/usr/bin/su", "/usr/bin/sudo"]
    assert d["residual"] == "proc.uid != 0"
    d = describe_rule(r["etc"])
    assert (d["discriminator"], d["residual"]) == ("path_prefixes", "true")
    d = describe_rule(r["negated"])
    assert d["discriminator"] is None and d["residual"] == 'not (type == "exec")'
    d = describe_rule(r["chain"])
    assert d["kind"] == "sequence" and d["sequence"] == {"by": ["proc.session"], "within": 300.0}
    assert [s["residual"] for s in d["steps"]] == ["true", "true"]


def test_kernel_filter_is_a_union_that_filters_only_shared_dimensions(tmp_path: Path) -> None:
    r = _rules(tmp_path)
    kf = kernel_filter([r["sudo"], r["etc"]])
    assert kf.types == frozenset({"exec", "write", "unlink"})
    assert kf.exe is None and kf.path_prefixes is None
    kf = kernel_filter([r["etc"], r["shadow"]])
    assert kf.path_prefixes == ("/etc/", "/etc/gshadow", "/etc/shadow")
    kf = kernel_filter([r["negated"]])
    assert len(kf.types) == 19
