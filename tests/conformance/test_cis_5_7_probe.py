"""CIS Debian 12 sections 5 and 7 on corpus trees, asked of what decides on a real host: the
benchmark's own audit commands (`find`, `passwd -S`, `awk` over the account files) and the
modules and tools that act on the files (pam_wheel, pam_unix and pam_pwhistory through
pamtester, glibc's `id`), each run on the tree in a private mount namespace. The verdicts must
be the ones they give."""

from __future__ import annotations

import os
import shlex
import socket
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from secpolicy.engine import scan
from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import corpus
from corpus import append, mkdir, replace, write

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (mount namespaces, setpriv, device nodes)"
)


def _tool(name: str) -> str:
    for d in os.environ.get("PATH", "").split(os.pathsep) + ["/usr/sbin", "/sbin"]:
        path = os.path.join(d, name)
        if d and os.access(path, os.X_OK):
            return path
    pytest.skip(f"{name} is not installed")


def _verdict(bundle, root: Path, rule_id: str) -> str:
    ps, reg = bundle
    (finding,) = scan(ps, reg, root=str(root), rule_ids=[rule_id]).findings
    return finding.status.value


def _sh(script: str, *args: str, stdin: str = "", namespace: bool = True) -> subprocess.CompletedProcess[str]:
    """bash running `script` with `args` as $1...; with `namespace`, in a private mount
    namespace, so that what it binds over /etc vanishes with it."""
    cmd = ["bash", "-c", script, "bash", *args]
    if namespace:
        cmd = ["unshare", "--mount", "--propagation", "private", *cmd]
    return subprocess.run(cmd, input=stdin, capture_output=True, text=True, errors="replace",
                          timeout=120, check=False)


_BIND_ACCOUNTS = 'mount --bind "$1/etc/passwd" /etc/passwd && mount --bind "$1/etc/group" /etc/group'


# --- 5.2.7: pam_wheel, asked through pamtester for every account ---------------------------------
_SU = "etc/pam.d/su"
_WHEEL = "auth       required   pam_wheel.so use_uid group=sugroup"
_SU_CASES = {
    "base": [],
    "optional": [replace(_SU, _WHEEL, _WHEEL.replace("required  ", "optional  "))],
    "sufficient-trust": [replace(_SU, _WHEEL, "auth       sufficient pam_wheel.so trust use_uid group=sugroup")],
    "deny": [replace(_SU, _WHEEL, _WHEEL.replace("pam_wheel.so", "pam_wheel.so deny"))],
    "primary-group": [replace("etc/passwd", "bob:x:1001:1001:", "bob:x:1001:1002:")],
    "listed-member": [replace("etc/group", "sugroup:x:1002:", "sugroup:x:1002:bob")],
    "optional-then-required": [replace(_SU, _WHEEL, _WHEEL.replace("required  ", "optional  ") + "\n" + _WHEEL)],
}
# Every account but root asks pam_wheel (and the su file's other auth lines) to su to root; the
# common-* files are reduced to pam_permit, so that only su's own lines decide. Prints the
# accounts that get through.
_SU_ORACLE = r"""
set -e
stack=$3
mkdir -p "$stack"
cp -a "$1/etc/pam.d/su" "$stack/su"
for f in common-auth common-account common-session common-password; do
  printf 'auth required pam_permit.so\naccount required pam_permit.so\nsession required pam_permit.so\npassword required pam_permit.so\n' > "$stack/$f"
done
chmod 755 "$stack"
mount --bind "$1/etc/passwd" /etc/passwd
mount --bind "$1/etc/group" /etc/group
mount --bind "$stack" /etc/pam.d
set +e
getent passwd | while IFS=: read -r name _pw uid gid _rest; do
  [ "$uid" = 0 ] && continue
  setpriv --reuid="$uid" --regid="$gid" --clear-groups "$2" su root authenticate </dev/null >/dev/null 2>&1 && echo "$name"
done
exit 0
"""


@pytest.mark.parametrize("case", sorted(_SU_CASES))
def test_su_is_restricted_exactly_when_pam_wheel_stops_every_account(bundle, base_tree, tmp_path, case) -> None:
    _tool("setpriv")
    root = corpus.edited_copy(tmp_path, base_tree, _SU_CASES[case])
    done = _sh(_SU_ORACLE, str(root), _tool("pamtester"), str(tmp_path / "pam.d"))
    assert done.returncode == 0, done.stderr
    through = done.stdout.split()
    assert _verdict(bundle, root, "cis-5.2.7-su-restricted") == ("fail" if through else "pass"), through


# --- 7.2.4: who is in the shadow group, as `id` (initgroups) says --------------------------------
_SHADOW_CASES = {
    "base": [],
    "listed": [replace("etc/group", "shadow:x:42:", "shadow:x:42:bob")],
    "second-shadow-line": [append("etc/group", "shadow:x:42:bob\n")],
    "other-name-same-gid": [append("etc/group", "shadowread:x:42:alice\n")],
    "primary-group": [replace("etc/passwd", "bob:x:1001:1001:", "bob:x:1001:42:")],
}
_ID_ORACLE = _BIND_ACCOUNTS + r""" || exit 2
shadow=$(getent group shadow | cut -d: -f3)
getent passwd | cut -d: -f1 | while read -r name; do
  for g in $(id -G "$name"); do [ "$g" = "$shadow" ] && echo "$name"; done
done
exit 0
"""


@pytest.mark.parametrize("case", sorted(_SHADOW_CASES))
def test_shadow_group_members_are_the_accounts_id_puts_in_it(bundle, base_tree, tmp_path, case) -> None:
    root = corpus.edited_copy(tmp_path, base_tree, _SHADOW_CASES[case])
    done = _sh(_ID_ORACLE, str(root))
    assert done.returncode == 0, done.stderr
    members = done.stdout.split()
    assert _verdict(bundle, root, "cis-7.2.4-shadow-group-empty") == ("fail" if members else "pass"), members


# --- 5.4.2.8: the benchmark's audit script, passwd -S on the tree ---------------------------------
_NOLOGIN = "svc:x:990:65534::/nonexistent:/usr/sbin/nologin\n"
_LOCK_CASES = {
    "base": [],
    "no-shadow-entry": [append("etc/passwd", _NOLOGIN)],
    "shadow-locked": [append("etc/passwd", _NOLOGIN), append("etc/shadow", "svc:!:19000:0:99999:7:::\n")],
    "star-in-passwd-no-shadow-entry": [append("etc/passwd", _NOLOGIN.replace(":x:", ":*:"))],
    "shadow-password-set": [append("etc/passwd", _NOLOGIN),
                            append("etc/shadow", "svc:$6$abc$def:19000:0:99999:7:::\n")],
}
# CIS Debian 12 5.4.2.8's audit, its paths rewritten to the tree ($1)
_LOCK_AUDIT = r"""
l_valid_shells="^($(awk -F\/ '$NF != "nologin" {print}' "$1/etc/shells" | sed -rn '/^\//{s,/,\\\\/,g;p}' | paste -s -d '|' - ))$"
awk -v pat="$l_valid_shells" -F: '($1 != "root" && $(NF) !~ pat) {print $1}' "$1/etc/passwd" | while read -r l_user; do
  passwd -S -R "$1" "$l_user" | awk '$2 !~ /^L/ {print "Account: \"" $1 "\" does not have a valid login shell and is not locked"}'
done
"""


@pytest.mark.parametrize("case", sorted(_LOCK_CASES))
def test_accounts_without_a_login_shell_are_locked_as_passwd_S_reports(bundle, base_tree, tmp_path, case) -> None:
    _tool("passwd")
    root = corpus.edited_copy(tmp_path, base_tree, _LOCK_CASES[case])
    done = _sh(_LOCK_AUDIT, str(root), namespace=False)
    assert done.stderr == ""
    expect = "fail" if done.stdout.strip() else "pass"
    assert _verdict(bundle, root, "cis-5.4.2.8-accounts-without-shell-locked") == expect, done.stdout


# --- 7.1.11: the benchmark's find -----------------------------------------------------------------
def _scan_paths() -> list[str]:
    data = yaml.safe_load((REPO / "policies/cis/7-system-maintenance.yaml").read_text())
    return list(data["vars"]["filesystem_scan_paths"]["default"])


def _special_nodes(root: Path) -> None:
    """What a mail server keeps under /var/spool: postfix's public FIFO and socket, both
    world-writable so that anyone may submit mail; and a character device."""
    public = root / "var/spool/postfix/public"
    public.mkdir(parents=True)
    os.mkfifo(public / "pickup", 0o622)
    os.chmod(public / "pickup", 0o622)
    here = os.getcwd()
    os.chdir(public)  # a socket's path must fit in sun_path
    try:
        with socket.socket(socket.AF_UNIX) as s:
            s.bind("cleanup")
    finally:
        os.chdir(here)
    os.chmod(public / "cleanup", 0o666)
    os.mknod(root / "etc/null", stat.S_IFCHR | 0o666, os.makedev(1, 3))
    os.chmod(root / "etc/null", 0o666)


_WW_CASES = {
    "base": [],
    "fifo-socket-device": [],
    "file-0666": [write("etc/app.conf", "x\n", 0o666)],
    "dir-0777": [mkdir("srv/share", 0o777)],
    "dir-1777": [mkdir("srv/drop", 0o1777)],
}
_FIND = r"""
for top in "${@:2}"; do
  [ -d "$1$top" ] || continue
  find "$1$top" -xdev \( -type f -o -type d \) -perm -0002 -print0 | while IFS= read -r -d '' f; do
    if [ -d "$f" ]; then [ $(( $(stat -Lc '%#a' "$f") & 01000 )) -gt 0 ] && continue; fi
    printf '%s\n' "${f#"$1"}"
  done
done
"""


@pytest.mark.parametrize("case", sorted(_WW_CASES))
def test_world_writable_entries_are_the_ones_the_benchmarks_find_lists(bundle, base_tree, tmp_path, case) -> None:
    root = corpus.edited_copy(tmp_path, base_tree, _WW_CASES[case])
    if case == "fifo-socket-device":
        _special_nodes(root)
    paths = _scan_paths()
    done = _sh(_FIND, str(root), *paths, namespace=False)
    assert done.returncode == 0 and done.stderr == "", done.stderr
    found = sorted(done.stdout.splitlines())
    ours = FactContext(builtin_registry(), str(root)).fact("fs_scan", (tuple(paths),))
    assert sorted(ours.world_writable) == found
    assert _verdict(bundle, root, "cis-7.1.11-world-writable-secured") == ("fail" if found else "pass")


# --- 5.3.3.4.1: the tree's common-auth, run by libpam for an account with no password ------------
_CA = "etc/pam.d/common-auth"
_UNIX_AUTH = "auth\t[success=2 default=ignore]\tpam_unix.so"
_EMPTY = [append("etc/passwd", "empty:x:1500:1500::/nonexistent:/bin/bash\n"),
          append("etc/group", "empty:x:1500:\n"), append("etc/shadow", "empty::19000:0:99999:7:::\n")]
_NULLOK_CASES = {
    "none": [],
    "nullok": [replace(_CA, _UNIX_AUTH, _UNIX_AUTH + " nullok")],
    "nullok_secure": [replace(_CA, _UNIX_AUTH, _UNIX_AUTH + " nullok_secure")],
    "nullokay": [replace(_CA, _UNIX_AUTH, _UNIX_AUTH + " try_first_pass nullokay")],
    "nullresetok": [replace(_CA, _UNIX_AUTH, _UNIX_AUTH + " nullresetok")],
}
# pam_unix with the arguments of the tree's common-auth line (found as the benchmark's grep finds
# it) authenticates an account whose password is empty, the tree's accounts bound over the host's
_NULLOK = r"""
args=$(grep -P '^\h*auth\h+[^#\n\r]+\h+pam_unix\.so\b' "$1/etc/pam.d/common-auth" | head -1 \
  | sed -E 's/.*pam_unix\.so[[:space:]]*//')
mkdir -p "$3" && printf 'auth required pam_unix.so %s\n' "$args" > "$3/probe" && chmod 755 "$3" || exit 2
mount --bind "$3" /etc/pam.d && mount --bind "$1/etc/passwd" /etc/passwd \
  && mount --bind "$1/etc/shadow" /etc/shadow && mount --bind "$1/etc/group" /etc/group || exit 2
"$2" probe empty authenticate </dev/null
"""


@pytest.mark.parametrize("case", sorted(_NULLOK_CASES))
def test_nullok_is_what_pam_unix_lets_an_empty_password_through_with(bundle, base_tree, tmp_path, case) -> None:
    root = corpus.edited_copy(tmp_path, base_tree, [*_EMPTY, *_NULLOK_CASES[case]])
    done = _sh(_NULLOK, str(root), _tool("pamtester"), str(tmp_path / "pam.d"))
    assert done.returncode in (0, 1), done.stderr
    expect = "fail" if done.returncode == 0 else "pass"
    assert _verdict(bundle, root, "cis-5.3.3.4.1-pam-unix-no-nullok") == expect, done.stderr


# --- 5.3.3.4.3 and 5.3.3.3.x: the hash pam_unix writes, the history pam_pwhistory keeps -----------
_ETC = r"""
etc=$3/etc tester=$4
mkdir -p "$3/etc/pam.d" "$3/etc/security" && cp "$1/etc/passwd" "$1/etc/group" "$3/etc/" \
  && printf 'root:*:19000:0:99999:7:::\nbob:*:19000:0:99999:7:::\n' > "$3/etc/shadow" \
  && chmod 640 "$3/etc/shadow" && : > "$3/etc/security/opasswd" && chmod 600 "$3/etc/security/opasswd" \
  && printf 'passwd: files\ngroup: files\nshadow: files\n' > "$3/etc/nsswitch.conf" || exit 2
"""
# the arguments of the tree's line for the module, as the benchmark's grep finds the line
_ARGS = r"""args=$(grep -P "^\h*password\h+[^#\n\r]+\h+$2\.so\b" "$1/etc/pam.d/common-password" | head -1 \
  | sed -E "s/.*$2\.so[[:space:]]*//; s/\buse_authtok\b//g")
"""
_CHAUTHTOK = r"""
change() { printf '%s\n%s\n' "$1" "$1" | unshare --mount --propagation private sh -c \
  'mount --bind "$1" /etc && exec "$2" probe bob chauthtok' sh "$etc" "$tester" >/dev/null 2>&1; }
"""
_HASH = _ETC + _ARGS + _CHAUTHTOK + r"""
printf 'password required pam_unix.so %s\n' "$args" > "$3/etc/pam.d/probe"
change 'Corpus-pass-0' || exit 3
grep '^bob:' "$3/etc/shadow" | cut -d: -f2 | cut -d'$' -f2
"""
_PU = "pam_unix.so obscure use_authtok try_first_pass yescrypt"
_HASH_CASES = {
    "yescrypt": [],
    "yescrypt-then-md5": [replace("etc/pam.d/common-password", _PU, _PU + " md5")],
    "md5-then-sha512": [replace("etc/pam.d/common-password", _PU, _PU.replace("yescrypt", "md5 sha512"))],
    "sha512-prefix": [replace("etc/pam.d/common-password", _PU, _PU.replace("yescrypt", "sha512_rounds"))],
    "sha256": [replace("etc/pam.d/common-password", _PU, _PU.replace("yescrypt", "sha256"))],
}


@pytest.mark.parametrize("case", sorted(_HASH_CASES))
def test_hashing_is_the_hash_pam_unix_writes(bundle, base_tree, tmp_path, case) -> None:
    root = corpus.edited_copy(tmp_path, base_tree, _HASH_CASES[case])
    done = _sh(_HASH, str(root), "pam_unix", str(tmp_path / "etc-copy"), _tool("pamtester"), namespace=False)
    assert done.returncode == 0, done.stderr
    written = done.stdout.strip()  # the hash id pam_unix wrote: y, 6, 5, 1 ...
    expect = "pass" if written in ("y", "6") else "fail"
    assert _verdict(bundle, root, "cis-5.3.3.4.3-pam-unix-hashing") == expect, written


_HIST = "pam_pwhistory.so remember=24 enforce_for_root \\\n\tuse_authtok"
_HISTORY_CASES = {
    "base": [],
    "upper-case": [replace("etc/pam.d/common-password", _HIST, "pam_pwhistory.so REMEMBER=24 ENFORCE_FOR_ROOT use_authtok")],
    "later-upper-case-zero": [replace("etc/pam.d/common-password", _HIST, _HIST.replace("enforce_for_root", "enforce_for_root REMEMBER=0"))],
    "wraps-to-zero": [replace("etc/pam.d/common-password", _HIST, _HIST.replace("remember=24", "remember=4294967296"))],
    "wraps-to-24": [replace("etc/pam.d/common-password", _HIST, _HIST.replace("remember=24", "remember=4294967320"))],
    "remember-23": [replace("etc/pam.d/common-password", _HIST, _HIST.replace("remember=24", "remember=23"))],
}
# As root (so only with enforce_for_root), change bob's password from P0 to P1 ... P23 and then
# back to P0: pam_pwhistory refuses that exactly when it remembers the last 24 passwords (the
# current one among them). The line's arguments are the tree's (its continuation joined), but
# for use_authtok: nothing before pam_pwhistory asks for the password here. pam_unix hashes
# with md5 so that checking each new password against the history takes milliseconds.
_HISTORY = _ETC + r"""
args=$(sed -e ':a' -e '/\\$/N; s/\\\n//; ta' "$1/etc/pam.d/common-password" \
  | grep -P "^\h*password\h+[^#\n\r]+\h+pam_pwhistory\.so\b" | head -1 | sed -E "s/.*pam_pwhistory\.so//; s/\buse_authtok\b//g")
""" + _CHAUTHTOK + r"""
printf 'password required pam_unix.so md5\n' > "$3/etc/pam.d/probe"
change 'Corpus-pass-0' || exit 3
printf 'password required pam_pwhistory.so %s\npassword required pam_unix.so use_authtok md5\n' "$args" \
  > "$3/etc/pam.d/probe"
for i in $(seq 1 23); do change "Corpus-pass-$i" || exit 4; done
change 'Corpus-pass-0' && echo reused || echo refused
"""


@pytest.mark.parametrize("case", sorted(_HISTORY_CASES))
def test_password_history_is_what_pam_pwhistory_enforces_on_root(bundle, base_tree, tmp_path, case) -> None:
    root = corpus.edited_copy(tmp_path, base_tree, _HISTORY_CASES[case])
    done = _sh(_HISTORY, str(root), "pam_pwhistory", str(tmp_path / "etc-copy"), _tool("pamtester"),
               namespace=False)
    outcome = done.stdout.strip()
    if done.returncode == 4:
        outcome = "disabled"  # remember=0: pam_pwhistory asks nothing, pam_unix has no password
    assert outcome in ("reused", "refused", "disabled"), (done.returncode, done.stderr)
    ours = {_verdict(bundle, root, r) for r in ("cis-5.3.3.3.1-pwhistory-remember",
                                                "cis-5.3.3.3.2-pwhistory-enforce-root")}
    assert (ours == {"pass"}) == (outcome == "refused"), (outcome, ours)


# --- libpam: @include, include and substack in any case --------------------------------------------
@pytest.mark.parametrize("words", [("@include", "include", "substack"), ("@INCLUDE", "Include", "SubStack")])
def test_includes_are_followed_as_libpam_follows_them(tmp_path, words) -> None:
    pam_d = tmp_path / "etc/pam.d"
    pam_d.mkdir(parents=True)
    at, inc, sub = words
    (pam_d / "svc").write_text(f"auth optional pam_echo.so A\nauth {inc} i2\nAuth {sub} i3\n{at} i4\n")
    for name, word in (("i2", "B"), ("i3", "C"), ("i4", "D")):
        (pam_d / name).write_text(f"auth optional pam_echo.so {word}\naccount optional pam_echo.so X{word}\n")
    script = 'mount --bind "$1" /etc/pam.d && exec "$2" -v svc root authenticate'
    done = _sh(script, str(pam_d), _tool("pamtester"))
    theirs = [line for line in done.stdout.split("\n") if line and not line.startswith("pamtester:")]
    stack = FactContext(builtin_registry(), str(tmp_path)).fact("pam", ("svc",))
    assert [" ".join(e.args) for e in stack.entries_of("auth") if e.module == "pam_echo.so"] == theirs
    assert shlex.join(theirs) == "A B C D"


# --- 5.4.2.6: the benchmark's grep over root's shell start-up files ---------------------------------
_ROOT_UMASK_GREP = (
    r"^\h*umask\h+(([0-7][0-7][01][0-7]\b|[0-7][0-7][0-7][0-6]\b)|([0-7][01][0-7]\b|[0-7][0-7][0-6]\b)|"
    r"(u=[rwx]{1,3},)?(((g=[rx]?[rx]?w[rx]?[rx]?\b)(,o=[rwx]{1,3})?)|((g=[wrx]{1,3},)?o=[wrx]{1,3}\b)))"
)


@pytest.mark.parametrize("line", ["umask 027", "umask 0077", "umask 022", "  umask 0002", "# umask 000",
                                  "umask u=rwx,g=rwx,o=", "umask u=rwx,g=rx,o=rx", "umask g=rx,o=",
                                  "umask o=rwx", "umask u=rwx,g=,o="])
def test_root_umask_is_weak_where_the_benchmarks_grep_finds_it(bundle, base_tree, tmp_path, line) -> None:
    root = corpus.edited_copy(tmp_path, base_tree, [write("root/.bashrc", f"# ~/.bashrc\n{line}\n", 0o600)])
    done = subprocess.run(["grep", "-Psi", "--", _ROOT_UMASK_GREP, str(root / "root/.bashrc")],
                          capture_output=True, text=True, check=False)
    assert done.returncode in (0, 1), done.stderr
    expect = "fail" if done.stdout else "pass"
    assert _verdict(bundle, root, "cis-5.4.2.6-root-umask") == expect, done.stdout


# --- 7.2.2: the benchmark's awk over /etc/shadow --------------------------------------------------
_EMPTY_CASES = {
    "base": [],
    "empty-for-an-account": [],  # alice's hash emptied below
    "second-entry-empty": [append("etc/shadow", "bob::19812:1:90:7:30::\n")],
    "entry-without-passwd-line": [append("etc/shadow", "ghost::19812:1:90:7:30::\n")],
    "locked": [append("etc/shadow", "ghost:!:19812:1:90:7:30::\n")],
}


@pytest.mark.parametrize("case", sorted(_EMPTY_CASES))
def test_empty_password_fields_are_the_ones_the_benchmarks_awk_prints(bundle, base_tree, tmp_path, case) -> None:
    root = corpus.edited_copy(tmp_path, base_tree, _EMPTY_CASES[case])
    if case == "empty-for-an-account":
        shadow = root / "etc/shadow"
        corpus._detach(shadow)  # a hard link to the base tree's file until then
        shadow.write_text("".join(
            (ln.split(":", 1)[0] + "::" + ln.split(":", 2)[2]) if ln.startswith("alice:") else ln
            for ln in shadow.read_text().splitlines(keepends=True)
        ))
    done = _sh(r"""awk -F: '($2 == "") { print $1 " does not have a password "}' "$1/etc/shadow" """, str(root),
               namespace=False)
    assert done.returncode == 0, done.stderr
    expect = "fail" if done.stdout else "pass"
    assert _verdict(bundle, root, "cis-7.2.2-no-empty-passwords") == expect, done.stdout
