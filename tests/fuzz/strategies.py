"""Hypothesis strategies for hostile input: expressions, policy and waiver YAML, inline-test
files, events, audit records and results documents, each mixing valid shapes with the attacks
the project has seen (alias bombs, deep nesting, NUL bytes, catastrophic regexes, huge numbers,
escaping paths, links through which to write)."""

from __future__ import annotations

import json
from typing import Any

import yaml
from hypothesis import strategies as st

HEADER = "metadata: {id: fuzz, title: Fuzz, version: '1'}\n"

# --- expressions ------------------------------------------------------------------------------
REGEXES = ["(a+)+$", "^(a|aa)+$", "(x+x+)+y", "a{99999999999}", "a{1001}", "(?!x)y", r"(a)\1", "[a-", "^\\s*root\\s+", ""]
STRINGS = st.one_of(
    st.sampled_from(["/etc/passwd", "/etc/ssh/sshd_config", "/etc", "root", "PermitRootLogin", "../../etc/shadow", "/proc/self/mem", "/dev/zero"]),
    st.sampled_from(REGEXES),
    st.text(max_size=12),
)


def _quote(s: str) -> str:
    return '"' + s.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


LITERALS = st.one_of(
    STRINGS.map(_quote),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.sampled_from(["0o777", "0o7777", "1.5", "30s", "10MB", "10.0.0.1", "10.0.0.0/8", "999.1.1.1", "true", "false", "null", "9" * 5000]),
)
ATOMS = st.one_of(
    LITERALS,
    st.sampled_from([
        'file("/etc/passwd")', 'file("/etc/ssh/sshd_config")', "users", "groups", "sshd", "packages",
        'tree("/etc")', 'files("/etc/*")', 'sysctl("net.ipv4.ip_forward")', "login_defs", "m0", "m1", "nosuch",
    ]),
)
POSTFIX = [".mode", ".content", ".exists", ".uid", ".lines", ".owner", ".type", '.option("PermitRootLogin")',
           ".has_line({r})", ".grep({r})", ".first({r})", "[0]", ".nosuch"]


def _postfix(draw: Any, base: str) -> str:
    for _ in range(draw(st.integers(0, 2))):
        p = draw(st.sampled_from(POSTFIX))
        base += p.format(r=_quote(draw(st.sampled_from(REGEXES))))
    return base


GOOD_REGEXES = ["(a+)+$", "^(a|aa)+$", "(x+x+)+y", "^\\s*root\\s+", "^root:", "b$", "", "[[:alpha:]]+", "\\d{2,5}"]
PATHS = ["/etc/passwd", "/etc/ssh/sshd_config", "/etc", "/etc/ssh/../passwd", "/../../etc/passwd", "/proc/self/mem",
         "/dev/zero", "/etc/fifo", "/etc/loop", "/nonexistent", "/etc/" + "x" * 300]


@st.composite
def conditions(draw: Any, depth: int = 0) -> str:
    """A well-typed condition over files, users, sshd and trees: these reach the evaluator."""
    kind = draw(st.integers(0, 9 if depth < 3 else 5))
    r = _quote(draw(st.sampled_from(GOOD_REGEXES)))
    f = f"file({_quote(draw(st.sampled_from(PATHS)))})"
    if kind == 0:
        return f"{f}.has_line({r})"
    if kind == 1:
        return f"{f}.content matches {r}"
    if kind == 2:
        return draw(st.sampled_from([f"{f}.mode & 0o077 == 0", f"{f}.exists", f"{f}.owner == \"root\"", f"{f}.grep({r}) == []",
                                     f"{f}.first({r}) != null", f"len({f}.lines) > 2", f'{f}.type in ["fifo", "char", "symlink"]']))
    if kind == 3:
        return draw(st.sampled_from(['sshd.option("PermitRootLogin") == "no"', 'login_defs.option("UMASK") == "027"',
                                     'sysctl("net.ipv4.ip_forward").running == 0', 'package("openssh-server").installed']))
    if kind == 4:
        return draw(st.sampled_from(['all(u in users: u.uid != 0 or u.name == "root")', 'count(x in tree("/etc"): x.type == "fifo") == 0',
                                     'any(x in files("/etc/*"): x.path glob "*sh*")', f'none(x in tree("/"): x.path matches {r})']))
    if kind == 5:
        return draw(st.sampled_from(["true", "false", "m0", "m1"]))
    op = draw(st.sampled_from(["and", "or"]))
    left, right = draw(conditions(depth + 1)), draw(conditions(depth + 1))
    if kind == 6:
        return f"({left} {op} {right})"
    if kind == 7:
        return f"not ({left})"
    return f"{left} {op} {right}"


@st.composite
def hostile_expressions(draw: Any, depth: int = 0) -> str:
    """Anything: ill-typed, unknown names, bad regexes, huge or deep expressions."""
    kind = draw(st.integers(0, 12 if depth < 3 else 3))
    if kind <= 3:
        return _postfix(draw, draw(ATOMS))
    if kind <= 6:
        op = draw(st.sampled_from(["==", "!=", "<", ">=", "in", "contains", "startswith", "glob", "matches", "&", "+", "not in"]))
        left = draw(hostile_expressions(depth + 1))
        right = _quote(draw(st.sampled_from(REGEXES))) if op == "matches" else draw(hostile_expressions(depth + 1))
        return f"{left} {op} {right}"
    if kind <= 8:
        op = draw(st.sampled_from(["and", "or"]))
        return f"{draw(hostile_expressions(depth + 1))} {op} {draw(hostile_expressions(depth + 1))}"
    if kind == 9:
        q = draw(st.sampled_from(["all", "any", "none", "count"]))
        coll = draw(st.sampled_from(["users", 'tree("/etc")', "[1, 2]", "nosuch"]))
        return f"{q}(x in {coll}: {draw(hostile_expressions(depth + 1))})"
    if kind == 10:
        n = draw(st.sampled_from([2, 70, 500]))
        return draw(st.sampled_from(["(" * n + "true" + ")" * n, "not " * n + "true", "users" + ".x" * n]))
    if kind == 11:
        return draw(st.sampled_from(['"' + "x" * 70_000 + '"', "a" * 5000, "(" * 3, '"unterminated', "1 +", "\x00", "é ∀ ☃"]))
    return f"not ({draw(hostile_expressions(depth + 1))})"


def expressions() -> st.SearchStrategy[str]:
    # Mostly conditions that evaluate; a share of anything at all.
    return st.one_of(conditions(), conditions(), hostile_expressions())


def macro_blocks() -> st.SearchStrategy[str]:
    """Two macros, or hostile families of them: cycles, long chains, exponential growth."""
    plain = st.tuples(conditions(), conditions()).map(lambda t: f"macros:\n  m0: {json.dumps(t[0])}\n  m1: {json.dumps(t[1])}\n")
    families = st.sampled_from([
        "macros:\n" + "".join(f"  m{i}: m{(i + 1) % 300}\n" for i in range(300)),
        "macros:\n" + "".join(f"  m{i}: m{i + 1}\n" for i in range(299)) + "  m299: 'true'\n",
        "macros:\n" + "".join(f"  m{i}: m{i + 1} or m{i + 1}\n" for i in range(60)) + "  m60: 'true'\n",
        "macros:\n  m0: m1\n  m1: m0\n",
        "macros:\n  m0: 'true or false and true'\n  m1: 'm0'\n",
    ])
    return st.one_of(st.just(""), plain, families)


@st.composite
def policy_texts(draw: Any) -> str:
    """Policy YAML: a rule around a random expression, plus hostile YAML of several kinds."""
    expr = draw(expressions())
    rules = f"rules:\n  - id: r\n    title: r\n    severity: low\n    check: {json.dumps(expr)}\n"
    text = HEADER + draw(macro_blocks()) + rules
    attack = draw(st.integers(0, 9))
    if attack == 1:
        text += "l0: &l0 [a, a, a, a, a, a, a, a, a]\n" + "".join(
            f"l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 9)}]\n" for i in range(1, 10)
        )
    elif attack == 2:
        text += "deep: " + "[" * draw(st.sampled_from([70, 999, 5000])) + "\n"
    elif attack == 3:
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(["\x00", "\t", "\ufeff", "\x1b[31m", "&a [*a]", "*nope", "!!python/object:os.system ''", ": :", "\n  - ", "{"])) + text[i:]
    elif attack == 4:
        text = text[: draw(st.integers(0, len(text)))]
    elif attack == 5:
        text = HEADER + "rules:\n" + "".join(f"  - {{id: r{i}, title: t, severity: low, check: 'true'}}\n" for i in range(3)) + "  - {id: r0, title: t, severity: low, check: 'true'}\n"
    elif attack == 6:
        text = draw(st.text(max_size=200))
    elif attack == 7:
        text = text.replace("severity: low", "severity: " + draw(st.sampled_from(["5", "[low]", "{a: b}", "''", "~"])))
    return text


# --- waivers ----------------------------------------------------------------------------------
WAIVER_VALUES = st.one_of(
    st.text(max_size=10), st.integers(min_value=-(10**30), max_value=10**30), st.booleans(), st.none(),
    st.lists(st.text(max_size=5), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.sampled_from(["2024-02-30", "2027-13-45", "20270101", "2999-12-31", "yesterday", "core-ssh-root-login", "*"]),
    st.dates().map(str),
)


@st.composite
def waiver_texts(draw: Any) -> str:
    entries = draw(st.lists(
        st.dictionaries(
            st.sampled_from(["rule_id", "justification", "approver", "expires", "hosts", "approved_by"]),
            WAIVER_VALUES, max_size=6,
        ),
        max_size=4,
    ))
    data: Any = {"waivers": entries} if draw(st.booleans()) else entries
    if draw(st.integers(0, 5)) == 0:
        data = draw(st.sampled_from([5, "text", {"waivers": 5}, {"a": 1}, None]))
    text = yaml.safe_dump(data, default_flow_style=draw(st.booleans()))
    if draw(st.integers(0, 6)) == 0:
        i = draw(st.integers(0, len(text)))
        text = text[:i] + draw(st.sampled_from(["\x00", "&a [*a, *a]", "- &x [*x]", "\n- ", "{"])) + text[i:]
    return text


# --- inline tests ----------------------------------------------------------------------------
_GOOD_PARTS = st.sampled_from(["etc", "v", "x", "ssh", "a b", "é", "-"])
PARTS = st.one_of(_GOOD_PARTS, _GOOD_PARTS, _GOOD_PARTS, st.sampled_from(["..", ".", "", "n" * 300, "\x00"]))


def inline_file_names(victim_dir: str) -> st.SearchStrategy[str]:
    relative = st.lists(PARTS, min_size=1, max_size=5).map(lambda ps: "/" + "/".join(ps))
    escapes = st.sampled_from(["/" + "../" * 12 + victim_dir.lstrip("/") + "/pwned", victim_dir + "/pwned", "etc/rel", "/etc/./v", "/etc//v", "/etc/v/"])
    return st.one_of(relative, relative, relative, escapes)


def inline_file_specs(victim: str, victim_dir: str) -> st.SearchStrategy[Any]:
    mode = st.one_of(st.sampled_from(["0o777", "0o4755", "0o600"]), st.integers(0, 0o7777),
                     st.sampled_from(["abc", "0o99", 0o17777, 99999999, -1, True]))
    ident = st.one_of(st.sampled_from([0, 65534]), st.integers(0, 70000), st.sampled_from([-5, 2**40, 4294967295, "root", None]))
    return st.one_of(
        st.text(max_size=20),
        st.fixed_dictionaries({}, optional={"content": st.text(max_size=20), "mode": mode, "uid": ident, "gid": ident}),
        st.fixed_dictionaries({"symlink": st.sampled_from([victim, victim_dir, "../../../../" + victim.lstrip("/"), "v", "/etc/v", "loop", ""])},
                              optional={"mode": mode, "uid": ident}),
        st.fixed_dictionaries({"dir": st.booleans()}, optional={"mode": mode, "uid": ident}),
    )


# --- events -----------------------------------------------------------------------------------
# The exact cases that once broke a reader stay in test_hostile_cases.py.
IMPOSSIBLE_TIMES = ["2024-02-30T00:00:00.000000000Z", "2024-01-01T25:61:61.000000000Z"]
HOSTILE_SCALARS = st.one_of(
    st.sampled_from(["2024-01-01T00:00:00.000000000Z", "9" * 5000, "", "\udcff", "\x00", "☃"]),
    st.integers(min_value=-(2**80), max_value=2**80),
    st.floats(allow_nan=False, allow_infinity=False),
    st.booleans(), st.none(),
)
HOSTILE_VALUES = st.recursive(HOSTILE_SCALARS, lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=5), kids, max_size=3)), max_leaves=6)


@st.composite
def event_lines(draw: Any) -> bytes:
    """One JSON line: an event or alert of roughly the right shape with hostile values, or junk."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.text(max_size=40)).encode("utf-8")
    if kind == 1:
        return draw(st.sampled_from([b"{", b"[]", b"null", b'"x"', b"[" * 5000 + b"]" * 5000, b'{"type": "exec"}']))
    ev: dict[str, Any] = {
        "type": draw(st.sampled_from(["exec", "open", "connect", "auth", "setxattr", "nosuch", 5])),
        "ts": draw(st.one_of(st.just("2024-01-01T00:00:00.000000000Z"), st.sampled_from(IMPOSSIBLE_TIMES),
                             HOSTILE_SCALARS.filter(lambda v: not isinstance(v, float)))),
    }
    for obj, fields in (("proc", ["pid", "exe", "uid", "session"]), ("user", ["uid", "name"]), ("auth", ["result", "rhost", "user"]), ("file", ["path", "flags"])):
        if draw(st.booleans()):
            ev[obj] = draw(st.one_of(HOSTILE_VALUES, st.fixed_dictionaries({}, optional={f: HOSTILE_VALUES for f in fields})))
    if kind == 2:
        ev = {"kind": "match", "rule_id": draw(st.text(max_size=8)), "ts": ev["ts"], "count": draw(HOSTILE_SCALARS), "message": draw(HOSTILE_VALUES)}
    return json.dumps(ev, default=str).encode("utf-8", "surrogateescape")


@st.composite
def audit_logs(draw: Any, real: list[bytes]) -> bytes:
    """Lines of a real audit log, some mutated: truncated, with bytes flipped, huge numbers,
    broken msg=audit(...) headers, fields duplicated."""
    start = draw(st.integers(0, max(0, len(real) - 30)))
    lines = list(real[start : start + draw(st.integers(1, 30))])
    for _ in range(draw(st.integers(0, 6))):
        i = draw(st.integers(0, len(lines) - 1))
        line = lines[i]
        how = draw(st.integers(0, 6))
        if how == 0:
            line = line[: draw(st.integers(0, len(line)))]
        elif how == 1 and line:
            j = draw(st.integers(0, len(line) - 1))
            line = line[:j] + bytes([draw(st.integers(0, 255))]) + line[j + 1 :]
        elif how == 2:
            line = line.replace(b"pid=", b"pid=" + b"9" * 5000, 1)
        elif how == 3:
            line = line.replace(b"msg=audit(", draw(st.sampled_from([b"msg=audit(x", b"msg=audit(99999999999999999999.1:", b"msg=audit(", b"msg=("])), 1)
        elif how == 4:
            line = line + b" " + line
        elif how == 5:
            line = draw(st.sampled_from([b"", b"type=", b"node= type=SYSCALL msg=audit(1.1:1): " + b"a=" * 2000, b"\x00" * 10]))
        else:
            line = line.replace(b"=", b"==", 1)
        lines[i] = line
    return b"\n".join(lines) + b"\n"


# --- results documents -----------------------------------------------------------------------
def mutate_json(draw: Any, doc: Any, budget: int = 4) -> Any:
    """The same document with a few values replaced by hostile ones, anywhere in the tree."""
    for _ in range(draw(st.integers(1, budget))):
        path: list[Any] = []
        node = doc
        while isinstance(node, (dict, list)) and node and draw(st.integers(0, 3)):
            key = draw(st.sampled_from(sorted(node) if isinstance(node, dict) else list(range(len(node)))))
            path.append(key)
            node = node[key]
        new = draw(st.one_of(HOSTILE_VALUES, st.just(int("9" * 4000)), st.just([[[[[[[[]]]]]]]]), st.just("<script>x</script>"),
                             st.sampled_from(IMPOSSIBLE_TIMES)))
        if not path:
            doc = new
            continue
        parent = doc
        for k in path[:-1]:
            parent = parent[k]
        if draw(st.integers(0, 4)) == 0 and isinstance(parent, dict):
            del parent[path[-1]]
        else:
            parent[path[-1]] = new
    return doc
