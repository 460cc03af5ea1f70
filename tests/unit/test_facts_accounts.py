"""users, user(name), groups, group(name): passwd + shadow + group, with evidence lines."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from facts_helpers import as_nobody, context, materialize, public_tmpdir, write

from secpolicy.errors import EvaluationError
from secpolicy.facts.accounts import hash_algorithm, password_status


@pytest.fixture(scope="module")
def roots(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    base = tmp_path_factory.mktemp("roots")
    return {n: materialize(n, base) for n in ("hardened", "weak")}


def test_weak_accounts_exact(roots: dict[str, Path]) -> None:
    users = context(roots["weak"]).fact("users", ())
    interactive = {
        u.name: (u.uid, u.password_status, u.hash_algorithm, u.groups, u.max_days)
        for u in users
        if u.shell in ("/bin/bash", "/bin/sh")
    }
    assert interactive == {
        "root": (0, "set", "sha512", ("root",), 99999),
        "alice": (1000, "set", "yescrypt", ("alice", "adm", "sudo", "sshusers"), 99999),
        "bob": (1001, "set", "yescrypt", ("bob", "sshusers"), 99999),
        "toor": (0, "set", "md5", ("root",), 99999),
        "carol": (1002, "set", "md5", ("carol", "sudo", "sshusers"), 99999),
        "guest": (1003, "empty", None, ("guest", "sudo"), 99999),
        "dave": (1004, "set", "des", ("dave",), None),  # hash in passwd itself: no shadow
        "eve": (1005, "none", None, ("users",), None),  # `x` but no shadow entry
    }
    assert [u.name for u in users if u.uid == 0] == ["root", "toor"]


def test_evidence_names_the_file_and_line(roots: dict[str, Path]) -> None:
    ctx = context(roots["weak"])
    guest = ctx.fact("user", ("guest",))
    assert guest.where("password_status") == "/etc/shadow:27"
    assert guest.where("shell") == "/etc/passwd:27"
    assert guest.where("groups") == "/etc/group"
    dave = ctx.fact("user", ("dave",))
    assert dave.where("password_status") == "/etc/passwd:28"
    assert ctx.fact("user", ("eve",)).where("max_days") == "/etc/shadow (no entry for eve)"


def test_hardened_aging_fields(roots: dict[str, Path]) -> None:
    alice = context(roots["hardened"]).fact("user", ("alice",))
    assert (
        alice.last_change,
        alice.min_days,
        alice.max_days,
        alice.warn_days,
        alice.inactive,
        alice.expire,
    ) == (
        19810,
        1,
        365,
        7,
        30,
        None,
    )
    assert (alice.gid, alice.primary_group, alice.home, alice.gecos) == (
        1000,
        "alice",
        "/home/alice",
        "Alice Admin,,,",
    )


def test_groups_and_duplicate_gids(roots: dict[str, Path]) -> None:
    ctx = context(roots["weak"])
    sudo = ctx.fact("group", ("sudo",))
    assert (sudo.gid, sudo.members) == (27, ("alice", "carol", "guest"))
    assert sudo.where("members") == "/etc/group:19"
    gids = [g.gid for g in ctx.fact("groups", ())]
    assert sorted({g for g in gids if gids.count(g) > 1}) == [1014]
    assert ctx.fact("group", ("nosuch",)) is None and ctx.fact("user", ("nosuch",)) is None


def test_absent_account_files_are_errors_not_empty_lists(tmp_path: Path) -> None:
    # no /etc/passwd: nothing says there is no second uid 0, so nothing can pass
    ctx = context(tmp_path)
    with pytest.raises(EvaluationError, match="^/etc/passwd does not exist: no account can be"):
        ctx.fact("users", ())
    with pytest.raises(EvaluationError, match="^/etc/group does not exist: no account can be"):
        ctx.fact("groups", ())
    conflicts = ctx.fact("account_conflicts", ())
    with pytest.raises(EvaluationError, match="^/etc/passwd does not exist"):
        _ = conflicts.duplicate_uids
    with pytest.raises(EvaluationError, match="^/etc/group does not exist"):
        _ = conflicts.duplicate_gids
    # passwd without group: the users are there, in no group (as glibc finds none)
    write(tmp_path, "etc/passwd", "root:x:0:0:root:/root:/bin/bash\n")
    ctx = context(tmp_path)
    (root,) = ctx.fact("users", ())
    assert (root.name, root.groups, root.primary_group) == ("root", (), None)
    assert ctx.fact("account_conflicts", ()).users_without_group == ("root (gid 0)",)
    with pytest.raises(EvaluationError, match="^/etc/group does not exist"):
        ctx.fact("group", ("root",))
    with pytest.raises(EvaluationError, match="user 'root': /etc/shadow does not exist"):
        _ = root.password_status


def test_empty_account_files_mean_no_accounts(tmp_path: Path) -> None:
    for name in ("passwd", "group", "shadow"):
        write(tmp_path, f"etc/{name}", "")
    ctx = context(tmp_path)
    assert ctx.fact("users", ()) == [] and ctx.fact("groups", ()) == []


def test_short_lines_are_accounts_as_glibc_reads_them(tmp_path: Path) -> None:
    # nss_files: fields missing at the end are empty, but uid and gid must be numbers
    write(
        tmp_path,
        "etc/passwd",
        "root:x:0:0:root:/root:/bin/bash\n"
        "toor:x:0:0\n"
        "toor2:x:0:0::/root\n"
        "short:x:0\n"
        "nogid:x:0:\n"
        "word:x:zero:0::/:/bin/sh\n"
        "hex:x:0x0:0::/:/bin/sh\n"
        "neg:x:-1:0::/:/bin/sh\n"
        "wide:x:4294967296:0::/:/bin/sh\n"
        "padded:x: +0:0::/:/bin/sh\n"
        "+nis:x:0:0::/:/bin/sh\n",
    )
    write(tmp_path, "etc/group", "root:x:0:\nwheel0:x:0\nshort:x\nmembers:x:5:a, b,,c:d\n")
    write(tmp_path, "etc/shadow", "")
    ctx = context(tmp_path)
    users = {u.name: (u.uid, u.gid, u.gecos, u.home, u.shell) for u in ctx.fact("users", ())}
    assert users == {
        "root": (0, 0, "root", "/root", "/bin/bash"),
        "toor": (0, 0, "", "", ""),
        "toor2": (0, 0, "", "/root", ""),
        "padded": (0, 0, "", "/", "/bin/sh"),
    }
    assert ctx.fact("user", ("toor",)).where("uid") == "/etc/passwd:2"
    groups = {g.name: (g.gid, g.members) for g in ctx.fact("groups", ())}
    assert groups == {"root": (0, ()), "wheel0": (0, ()), "members": (5, ("a", "b", "c:d"))}
    conflicts = ctx.fact("account_conflicts", ())
    assert conflicts.duplicate_uids == ("0: root, toor, toor2, padded",)
    assert conflicts.duplicate_gids == ("0: root, wheel0",)


@pytest.mark.parametrize("sep", ["\r", "\x0b", "\x0c", "\x1c", "\x1d", "\x1e", "\x85", "\u2028"])
def test_only_newline_ends_an_account_line(tmp_path: Path, sep: str) -> None:
    write(
        tmp_path,
        "etc/passwd",
        f"root:x:0:0:root:/root:/bin/bash\n# old{sep}toor:x:0:0::/:/bin/sh\n",
    )
    write(tmp_path, "etc/group", f"root:x:0:\n# old{sep}wheel0:x:0:\n")
    write(
        tmp_path, "etc/shadow", f"root:!:19000:0:99999:7:::\n# old{sep}toor::19000:0:99999:7:::\n"
    )
    ctx = context(tmp_path)
    assert [u.name for u in ctx.fact("users", ())] == ["root"]
    assert [g.name for g in ctx.fact("groups", ())] == ["root"]
    assert list(ctx.fact("_shadow", ())) == ["root"]


def test_shadow_lines_glibc_refuses_are_no_entry(tmp_path: Path) -> None:
    write(
        tmp_path,
        "etc/passwd",
        "".join(f"{n}:x:{i}:{i}::/:/bin/sh\n" for i, n in enumerate("abcdef", 1)),
    )
    write(tmp_path, "etc/group", "")
    # sgetspent_r: last change, min and max must be there (empty or a number), the flag ends the line
    write(
        tmp_path,
        "etc/shadow",
        "a:\nb::::\nc::1:2:3\nd::x:::::::\ne::::::::\nf::::::::1:\n",
    )
    ctx = context(tmp_path)
    status = {u.name: u.password_status for u in ctx.fact("users", ())}
    assert status == {
        "a": "none",
        "b": "none",
        "c": "empty",
        "d": "none",
        "e": "empty",
        "f": "none",
    }


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root to drop to uid 65534 for a real EACCES")
def test_unreadable_shadow_errors_only_when_shadow_fields_are_asked() -> None:
    base = public_tmpdir()
    try:
        root = materialize("hardened", base)  # shadow is 0640 root:shadow

        def probe() -> tuple:
            ctx = context(root)
            alice = ctx.fact("user", ("alice",))
            first = (alice.uid, alice.shell)
            try:
                _ = alice.max_days
            except Exception as e:  # noqa: BLE001
                return first, type(e).__name__, str(e)
            return first, None, None

        status, value = as_nobody(probe)
        assert status == "ok"
        assert value == (
            (1000, "/bin/bash"),
            "EvaluationError",
            "user 'alice': /etc/shadow: permission denied",
        )
    finally:
        shutil.rmtree(base)


@pytest.mark.parametrize(
    ("hashed", "status", "algorithm"),
    [
        ("", "empty", None),
        ("!", "locked", None),
        ("*", "locked", None),
        ("!$6$salt$abc", "locked", "sha512"),
        ("$y$j9T$salt$hash", "set", "yescrypt"),
        ("$2b$12$abcdefghijklmnopqrstuv", "set", "bcrypt"),
        ("$5$x$y", "set", "sha256"),
        ("abN3fkQ2k8xWg", "set", "des"),
        (None, "none", None),
    ],
)
def test_password_classification(hashed: str | None, status: str, algorithm: str | None) -> None:
    assert (password_status(hashed), hash_algorithm(hashed)) == (status, algorithm)
