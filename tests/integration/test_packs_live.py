"""The live-only rules of the packs on this host: a process given CAP_SYS_ADMIN under a non-root
UID, and BPF objects loaded by this test (an unknown program calling a helper off the allow-list,
an unbounded map, an unfrozen read-only map), must each make their rule fail, naming them."""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from secpolicy.facts.bpf_inventory import bpf_syscall

REPO = Path(__file__).resolve().parents[2]
SECPOLICY = [sys.executable, "-m", "secpolicy"]

pytestmark = [
    pytest.mark.live,
    pytest.mark.skipif(os.geteuid() != 0, reason="capabilities and BPF objects need root"),
]

BPF_MAP_CREATE, BPF_PROG_LOAD, BPF_MAP_FREEZE = 0, 5, 22
BPF_F_NO_PREALLOC = 1


class _MapCreate(ctypes.Structure):
    _fields_ = [
        ("map_type", ctypes.c_uint32),
        ("key_size", ctypes.c_uint32),
        ("value_size", ctypes.c_uint32),
        ("max_entries", ctypes.c_uint32),
        ("map_flags", ctypes.c_uint32),
        ("inner_map_fd", ctypes.c_uint32),
        ("numa_node", ctypes.c_uint32),
        ("map_name", ctypes.c_char * 16),
    ]


class _ProgLoad(ctypes.Structure):
    _fields_ = [
        ("prog_type", ctypes.c_uint32),
        ("insn_cnt", ctypes.c_uint32),
        ("insns", ctypes.c_uint64),
        ("license", ctypes.c_uint64),
        ("log_level", ctypes.c_uint32),
        ("log_size", ctypes.c_uint32),
        ("log_buf", ctypes.c_uint64),
        ("kern_version", ctypes.c_uint32),
        ("prog_flags", ctypes.c_uint32),
        ("prog_name", ctypes.c_char * 16),
    ]


class _MapFd(ctypes.Structure):
    _fields_ = [("map_fd", ctypes.c_uint32)]


def _insn(code: int, dst: int = 0, src: int = 0, off: int = 0, imm: int = 0) -> bytes:
    return bytes([code, (src << 4) | dst]) + off.to_bytes(2, "little", signed=True) + imm.to_bytes(4, "little", signed=True)


def _load_rogue() -> int:
    """A socket filter named secpol_rogue calling bpf_get_socket_uid (47), which is not on
    the packs' helper allow-list."""
    prog = _insn(0x85, imm=47) + _insn(0xB7, dst=0, imm=0) + _insn(0x95)
    buf = ctypes.create_string_buffer(prog, len(prog))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(65536)
    attr = _ProgLoad(
        prog_type=1,
        insn_cnt=len(prog) // 8,
        insns=ctypes.addressof(buf),
        license=ctypes.addressof(lic),
        log_level=1,
        log_size=len(log),
        log_buf=ctypes.addressof(log),
        prog_name=b"secpol_rogue",
    )
    try:
        return bpf_syscall(BPF_PROG_LOAD, attr)
    except OSError as e:
        pytest.fail(f"BPF_PROG_LOAD refused: {e}; verifier log: {log.value.decode(errors='replace')[-400:]}")


def _scan(*rules: str) -> dict[str, dict]:
    args = [a for r in rules for a in ("--rule", r)]
    p = subprocess.run([*SECPOLICY, "scan", *args, "--format", "json"], capture_output=True, text=True, cwd=REPO, timeout=120)
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


@pytest.fixture
def rogue_bpf():
    fds: list[int] = []
    try:
        fds.append(_load_rogue())
        fds.append(bpf_syscall(BPF_MAP_CREATE, _MapCreate(map_type=1, key_size=4, value_size=8, max_entries=2_000_000,
                                                          map_flags=BPF_F_NO_PREALLOC, map_name=b"secpol_huge")))
        fds.append(bpf_syscall(BPF_MAP_CREATE, _MapCreate(map_type=2, key_size=4, value_size=4, max_entries=1,
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
    prog_ids = _bpftool_ids("prog", "secpol_rogue")
    huge_ids = _bpftool_ids("map", "secpol_huge")
    ro_ids = _bpftool_ids("map", "secpol.rodata")
    assert len(prog_ids) == len(huge_ids) == len(ro_ids) == 1
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
    bpf_syscall(BPF_MAP_FREEZE, _MapFd(map_fd=rogue_bpf[2]))
    r = _scan("soc2-cc6.8-bpf-config-maps-frozen")
    assert "secpol.rodata" not in _sources(r["soc2-cc6.8-bpf-config-maps-frozen"])
