"""The live-only rules of the packs on this host: a process given CAP_SYS_ADMIN under a non-root
UID, and BPF objects loaded by this test (an unknown program calling a helper off the allow-list,
an unbounded map, an unfrozen read-only map), must each make their rule fail, naming them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest
from bpf_objects import (
    BPF_F_NO_PREALLOC,
    BPF_MAP_CREATE,
    BPF_MAP_FREEZE,
    MapCreate,
    MapFd,
    bpf_syscall,
    insn,
    load_socket_filter,
    object_id,
)

REPO = Path(__file__).resolve().parents[2]
SECPOLICY = [sys.executable, "-m", "secpolicy"]

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(os.geteuid() != 0, reason="capabilities and BPF objects need root"),
]

def _load_rogue() -> int:
    """A socket filter named secpol_rogue calling bpf_get_socket_uid (47), which is not on
    the packs' helper allow-list."""
    return load_socket_filter(insn(0x85, imm=47) + insn(0xB7, dst=0, imm=0) + insn(0x95), b"secpol_rogue")


def _scan(*rules: str) -> dict[str, dict]:
    args = [a for r in rules for a in ("--rule", r)]
    p = subprocess.run([*SECPOLICY, "scan", *args, "--format", "json"], capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert p.returncode in (0, 1), p.stderr
    return {r["rule_id"]: r for r in json.loads(p.stdout)["results"]}


def _sources(finding: dict) -> str:
    return " ".join(f"{e.get('source')} {e.get('observed')}" for e in finding["evidence"])


@pytest.fixture
def sys_admin_process():
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("setpriv (util-linux) is not installed")
    proc = subprocess.Popen(
        [setpriv, "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=+sys_admin",
         "--ambient-caps=+sys_admin", "--", "sleep", "30"]
    )
    try:
        for _ in range(100):  # until the exec has happened and the caps are in place
            status = Path(f"/proc/{proc.pid}/status").read_text()
            if "CapEff:\t0000000000200000" in status and "sleep" in Path(f"/proc/{proc.pid}/comm").read_text():
                break
            time.sleep(0.02)
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_capability_rules_name_a_non_root_process_holding_cap_sys_admin(sys_admin_process):
    pid = sys_admin_process
    r = _scan("soc2-cc6.3-no-cap-sys-admin-for-bpf", "soc2-cc6.3-process-capabilities-allowlist")
    for rule in ("soc2-cc6.3-no-cap-sys-admin-for-bpf", "soc2-cc6.3-process-capabilities-allowlist"):
        assert r[rule]["status"] == "fail", rule
        assert f"/proc/{pid}/status" in _sources(r[rule]), (rule, r[rule]["evidence"])
        assert "CAP_SYS_ADMIN" in _sources(r[rule])


def test_capability_rules_pass_once_the_process_is_gone(sys_admin_process):
    pid = sys_admin_process
    os.kill(pid, 9)
    os.waitpid(pid, 0)
    r = _scan("soc2-cc6.3-no-cap-sys-admin-for-bpf")
    # Other processes of this host may hold capabilities; ours must no longer be named.
    assert f"/proc/{pid}/status" not in _sources(r["soc2-cc6.3-no-cap-sys-admin-for-bpf"])


def test_a_proc_that_hides_other_users_processes_makes_the_rules_error_not_pass(sys_admin_process):
    """procfs mounted hidepid=invisible (a private mount of its own) hides the nobody process
    from a scan without CAP_SYS_PTRACE: the rules cannot see every process, so they are ERROR,
    not a PASS over the processes that happen to be visible."""
    args = [a for r in ("soc2-cc6.3-no-cap-sys-admin-for-bpf", "soc2-cc6.3-process-capabilities-allowlist")
            for a in ("--rule", r)]
    script = ('mount -t proc -o hidepid=invisible proc /proc && exec setpriv --bounding-set=-sys_ptrace '
              '--inh-caps=-sys_ptrace -- "$@"')
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script, "sh",
                        *SECPOLICY, "scan", *args, "--format", "json"],
                       capture_output=True, text=True, cwd=REPO, timeout=120, check=False)
    assert p.returncode == 1, p.stderr  # results with errors: not compliant
    for r in json.loads(p.stdout)["results"]:
        assert r["status"] == "error", r
        assert "hidepid=invisible" in json.dumps(r["evidence"]) + str(r.get("reason")), r


@pytest.fixture
def rogue_bpf():
    fds: list[int] = []
    try:
        fds.append(_load_rogue())
        fds.append(bpf_syscall(BPF_MAP_CREATE, MapCreate(map_type=1, key_size=4, value_size=8, max_entries=2_000_000,
                                                          map_flags=BPF_F_NO_PREALLOC, map_name=b"secpol_huge")))
        fds.append(bpf_syscall(BPF_MAP_CREATE, MapCreate(map_type=2, key_size=4, value_size=4, max_entries=1,
                                                          map_name=b"secpol.rodata")))
        yield fds
    finally:
        for fd in fds:
            os.close(fd)


def _bpftool_ids(kind: str, name: str) -> set[int]:
    tool = shutil.which("bpftool") or "/usr/sbin/bpftool"
    if not os.path.exists(tool):
        pytest.skip("bpftool is not installed: no cross-check possible")
    out = subprocess.run([tool, "-j", kind, "show"], capture_output=True, text=True, check=True).stdout
    return {o["id"] for o in json.loads(out) if o.get("name") == name}


def test_bpf_rules_name_the_rogue_objects_bpftool_sees(rogue_bpf):
    # Our own objects, by the ids of our descriptors: an earlier test's objects of the same
    # names may still be being freed.
    mine = [object_id(fd) for fd in rogue_bpf]
    prog_ids, huge_ids, ro_ids = ({i} for i in mine)
    for (kind, name), i in zip((("prog", "secpol_rogue"), ("map", "secpol_huge"), ("map", "secpol.rodata")), mine,
                               strict=True):
        assert i in _bpftool_ids(kind, name)
    r = _scan("soc2-cc6.8-bpf-root-programs-known", "soc2-cc6.8-bpf-helper-allowlist",
              "soc2-cc6.8-bpf-maps-bounded", "soc2-cc6.8-bpf-config-maps-frozen", "soc2-cc6.8-bpf-loader-uid")
    assert r["soc2-cc6.8-bpf-loader-uid"]["status"] == "pass"  # loaded by root
    known = r["soc2-cc6.8-bpf-root-programs-known"]
    assert known["status"] == "fail" and "secpol_rogue" in _sources(known)
    helpers = r["soc2-cc6.8-bpf-helper-allowlist"]
    assert helpers["status"] == "fail" and "bpf_get_socket_uid" in _sources(helpers)
    bounded = r["soc2-cc6.8-bpf-maps-bounded"]
    assert bounded["status"] == "fail" and "2000000" in _sources(bounded)
    frozen = r["soc2-cc6.8-bpf-config-maps-frozen"]
    assert frozen["status"] == "fail" and "secpol.rodata" in _sources(frozen)
    # The evidence names the objects by the same ids bpftool lists.
    for ids, kind, finding in ((prog_ids, "prog", known), (huge_ids, "map", bounded), (ro_ids, "map", frozen)):
        (i,) = ids
        assert f"{kind} id {i} " in _sources(finding) + " ", finding["evidence"]


def test_freezing_the_read_only_map_satisfies_the_rule(rogue_bpf):
    # Our map, by its id: an earlier test's map of the same name may still be being freed,
    # and fail the rule on its own.
    unfrozen = f"fdinfo of map id {object_id(rogue_bpf[2])} false"
    rule = "soc2-cc6.8-bpf-config-maps-frozen"
    assert unfrozen in _sources(_scan(rule)[rule])  # named while it is writable
    bpf_syscall(BPF_MAP_FREEZE, MapFd(map_fd=rogue_bpf[2]))
    assert unfrozen not in _sources(_scan(rule)[rule])
