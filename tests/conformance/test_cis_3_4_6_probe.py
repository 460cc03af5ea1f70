"""CIS Debian 12 section 6's file-permission controls on corpus trees, asked of the benchmark's
own audit scripts (6.1.4.1's walk of /var/log, 6.2.4.1/6.2.4.2/6.2.4.4's reading of auditd.conf's
log_file), run on the tree with its paths rewritten (and, where the script names owners, the
tree's passwd and group bound over the host's in a private mount namespace). The verdicts must
be the ones they give."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from secpolicy.engine import scan

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import corpus
from corpus import append, delete, mkdir, replace, symlink, write

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root (mount namespaces, files of other owners)"
)


def _verdict(bundle, root: Path, rule_id: str) -> str:
    ps, reg = bundle
    (finding,) = scan(ps, reg, root=str(root), rule_ids=[rule_id]).findings
    return finding.status.value


def _audit(script: str, root: Path, *, namespace: bool) -> str:
    """The benchmark's verdict: `script` (its paths under $1) prints PASS or FAIL first."""
    cmd = ["bash", "-c", script, "bash", str(root)]
    if namespace:
        cmd = ["unshare", "--mount", "--propagation", "private", *cmd]
    done = subprocess.run(cmd, capture_output=True, text=True, errors="replace", timeout=60, check=False)
    first = done.stdout.split("\n", 1)[0]
    assert first in ("PASS", "FAIL"), (done.stdout, done.stderr)
    return first.lower()


# --- 6.1.4.1: the benchmark's loop over `find -L /var/log`, owners by name ------------------------
# CIS Debian Linux 12 v1.1.0, 6.1.4.1's audit, paths rewritten to the tree ($1); `stat %U/%G`
# name owners from the tree's accounts, bound over the host's. Its `=~` tests are unanchored
# regexes (a user "rootkit" would pass as root): no case here turns on that.
_LOGFILE_AUDIT = r"""
mount --bind "$1/etc/passwd" /etc/passwd && mount --bind "$1/etc/group" /etc/group || exit 2
R="$1"
l_output2=""
l_uidmin="$(awk '/^\s*UID_MIN/{print $2}' "$R/etc/login.defs")"
file_test_chk()
{
   l_op2=""
   if [ $(( $l_mode & $perm_mask )) -gt 0 ]; then l_op2="$l_op2 mode:$l_mode"; fi
   if [[ ! "$l_user" =~ $l_auser ]]; then l_op2="$l_op2 owner:$l_user"; fi
   if [[ ! "$l_group" =~ $l_agroup ]]; then l_op2="$l_op2 group:$l_group"; fi
   [ -n "$l_op2" ] && l_output2="$l_output2\n$l_fname$l_op2"
}
a_file=()
while IFS= read -r -d $'\0' l_file; do
   [ -e "$l_file" ] && a_file+=("$(stat -Lc '%n^%#a^%U^%u^%G^%g' "$l_file")")
done < <(find -L "$R/var/log" -type f \( -perm /0137 -o ! -user root -o ! -group root \) -print0)
while IFS="^" read -r l_fname l_mode l_user l_uid l_group l_gid; do
   [ -z "$l_fname" ] && continue
   l_bname="$(basename "$l_fname")"
   case "$l_bname" in
      lastlog | lastlog.* | wtmp | wtmp.* | wtmp-* | btmp | btmp.* | btmp-* | README)
         perm_mask='0113'; l_auser="root"; l_agroup="(root|utmp)"; file_test_chk ;;
      secure | auth.log | syslog | messages)
         perm_mask='0137'; l_auser="(root|syslog)"; l_agroup="(root|adm)"; file_test_chk ;;
      SSSD | sssd)
         perm_mask='0117'; l_auser="(root|SSSD)"; l_agroup="(root|SSSD)"; file_test_chk ;;
      gdm | gdm3)
         perm_mask='0117'; l_auser="root"; l_agroup="(root|gdm|gdm3)"; file_test_chk ;;
      *.journal | *.journal~)
         perm_mask='0137'; l_auser="root"; l_agroup="(root|systemd-journal)"; file_test_chk ;;
      *)
         perm_mask='0137'; l_auser="(root|syslog)"; l_agroup="(root|adm)"
         if [ "$l_uid" -lt "$l_uidmin" ] && [ -z "$(awk -v grp="$l_group" -F: '$1==grp {print $4}' "$R/etc/group")" ]; then
            if [[ ! "$l_user" =~ $l_auser ]]; then l_auser="(root|syslog|$l_user)"; fi
            if [[ ! "$l_group" =~ $l_agroup ]]; then
               l_tst=""
               while read -r l_duid; do
                  [ -n "$l_duid" ] && [ "$l_duid" -ge "$l_uidmin" ] && l_tst=failed
               done <<< "$(awk -F: '$4=='"$l_gid"' {print $3}' "$R/etc/passwd")"
               [ "$l_tst" != "failed" ] && l_agroup="(root|adm|$l_group)"
            fi
         fi
         file_test_chk ;;
   esac
done <<< "$(printf '%s\n' "${a_file[@]}")"
if [ -z "$l_output2" ]; then echo PASS; else echo FAIL; echo -e "$l_output2"; fi
"""

_ACCOUNTS = [
    append("etc/passwd", "syslog:x:104:111::/home/syslog:/usr/sbin/nologin\n"
                         "postgres:x:110:115:PostgreSQL administrator,,,:/var/lib/postgresql:/bin/bash\n"),
    append("etc/group", "syslog:x:111:\npostgres:x:115:\nssl-cert:x:112:postgres\n"),
]
_PG = [*_ACCOUNTS, mkdir("var/log/postgresql", 0o1775)]
_PG_LOG = "var/log/postgresql/postgresql-15-main.log"
_JOURNAL = [mkdir("var/log/journal", 0o2755), mkdir("var/log/journal/0123abcd", 0o2755)]
_LOGFILE_CASES = {
    "base": [],
    "system-account-in-its-own-group": [*_PG, write(_PG_LOG, "x\n", 0o640, (110, 115))],
    "system-account-group-adm-has-members": [*_PG, write(_PG_LOG, "x\n", 0o640, (110, 4))],
    "syslog-in-group-users": [write("var/log/syslog", "x\n", 0o640, (0, 100))],
    "auth-log-of-syslog-adm": [*_ACCOUNTS, write("var/log/auth.log", "x\n", 0o640, (104, 4))],
    "lastlog-owned-by-syslog": [*_ACCOUNTS, write("var/log/lastlog", "", 0o664, (104, 43))],
    "wtmp-rotations-0664": [write("var/log/wtmp.1", "", 0o664, (0, 43)),
                            write("var/log/wtmp-20240101", "", 0o664, (0, 43)),
                            write("var/log/btmp.1", "", 0o660, (0, 43))],
    "lastlog-dash-0664": [write("var/log/lastlog-2024", "", 0o664, (0, 43))],
    "readme-txt-0664": [write("var/log/README.txt", "x", 0o664, (0, 0))],
    "journal-of-root": [*_JOURNAL, write("var/log/journal/0123abcd/system.journal", "", 0o640, (0, 999)),
                        write("var/log/journal/0123abcd/user-1000@0.journal~", "", 0o640, (0, 999))],
    "journal-owned-by-syslog": [*_ACCOUNTS, *_JOURNAL,
                                write("var/log/journal/0123abcd/system.journal", "", 0o640, (104, 999))],
    "link-to-a-world-readable-file": [mkdir("srv"), write("srv/app.log", "x\n", 0o644, (0, 0)),
                                      symlink("var/log/app.log", "../../srv/app.log")],
    "rotated-and-compressed": [write("var/log/syslog.2.gz", "x", 0o640, (0, 4)),
                               write("var/log/auth.log.1", "x", 0o600, (0, 4))],
    "name-with-a-space-0644": [write("var/log/my app.log", "x\n", 0o644, (0, 4))],
    "user-account-owner": [write("var/log/alice.log", "x", 0o640, (1000, 4))],
    "unnamed-system-uid-and-gid": [write("var/log/x.log", "x", 0o640, (120, 130))],
    "group-primary-of-a-user": [write("var/log/x.log", "x", 0o640, (1, 1000))],
    "sssd-0660": [write("var/log/sssd", "x", 0o660, (0, 0))],
}


@pytest.mark.parametrize("case", sorted(_LOGFILE_CASES))
def test_logfile_access_is_what_the_benchmarks_audit_says(bundle, base_tree, tmp_path, case) -> None:
    root = corpus.edited_copy(tmp_path, base_tree, _LOGFILE_CASES[case])
    expect = _audit(_LOGFILE_AUDIT, root, namespace=True)
    assert _verdict(bundle, root, "cis-6.1.4.1-logfile-access") == expect


# --- 6.2.4.1, 6.2.4.2, 6.2.4.4: the directory of auditd.conf's log_file -----------------------
# The benchmark's audits, paths rewritten to the tree ($1): log_file as its awk reads it, then
# `find DIR -maxdepth 1 -type f` (hidden files included) and `stat -Lc %#a DIR`; a directory
# that is not there fails (auditd also refuses a log_file whose directory it cannot open).
_LOG_DIR = r"""
R="$1"
[ -e "$R/etc/audit/auditd.conf" ] || { echo FAIL; exit 0; }
d="$(dirname "$(awk -F= '/^\s*log_file\s*/{print $2}' "$R/etc/audit/auditd.conf" | xargs)")"
[ -d "$R$d" ] || { echo FAIL; exit 0; }
"""
_LOG_AUDITS = {
    "cis-6.2.4.1-audit-log-mode": _LOG_DIR + r"""
[ -z "$(find "$R$d" -maxdepth 1 -type f -perm /0137 -print)" ] && echo PASS || echo FAIL
""",
    "cis-6.2.4.2-audit-log-owner": _LOG_DIR + r"""
[ -z "$(find "$R$d" -maxdepth 1 -type f ! -user root -print)" ] && echo PASS || echo FAIL
""",
    "cis-6.2.4.4-audit-log-directory-mode": _LOG_DIR + r"""
[ $(( $(stat -Lc '%#a' "$R$d") & 0027 )) -eq 0 ] && echo PASS || echo FAIL
""",
}
_CONF = "etc/audit/auditd.conf"
_LOG_FILE = "log_file = /var/log/audit/audit.log"
_ELSEWHERE = [replace(_CONF, _LOG_FILE, "log_file = /srv/audit/audit.log"), mkdir("srv")]
_LOG_CASES = {
    "base": [],
    "hidden-file-0644": [write("var/log/audit/.audit.log.swp", "x", 0o644, (0, 0))],
    "hidden-file-of-alice": [write("var/log/audit/.audit.log.swp", "x", 0o600, (1000, 0))],
    "rotation-0644": [write("var/log/audit/audit.log.1", "x", 0o644, (0, 0))],
    "directory-absent": [delete("var/log/audit")],
    "log-file-elsewhere-open": [*_ELSEWHERE, mkdir("srv/audit", 0o755),
                                write("srv/audit/audit.log", "x", 0o644, (0, 0)),
                                write("srv/audit/audit.log.1", "x", 0o600, (1000, 0))],
    "log-file-elsewhere-closed": [*_ELSEWHERE, mkdir("srv/audit", 0o750),
                                  write("srv/audit/audit.log", "x", 0o600, (0, 0))],
    "log-file-elsewhere-commented": [replace(_CONF, _LOG_FILE, "# log_file = /srv/audit/audit.log\n" + _LOG_FILE)],
    "link-in-the-directory": [symlink("var/log/audit/latest", "audit.log")],
}


@pytest.mark.parametrize("rule_id", sorted(_LOG_AUDITS))
@pytest.mark.parametrize("case", sorted(_LOG_CASES))
def test_audit_log_files_are_what_the_benchmarks_audit_says(bundle, base_tree, tmp_path, case, rule_id) -> None:
    root = corpus.edited_copy(tmp_path, base_tree, _LOG_CASES[case])
    expect = _audit(_LOG_AUDITS[rule_id], root, namespace=False)
    assert _verdict(bundle, root, rule_id) == expect
