"""The PCI, HIPAA and SOC 2 pack rules against the component they describe: helpers named as
linux/bpf.h names the ids a program calls (bpftool shows the kernel function behind each),
capabilities as getpcaps shows a process holds them, and the audit flag as auditctl -s reports
it. Each test asserts only on its own BPF program, its own process or its own mount namespace."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from bpf_objects import insn, object_id

from secpolicy.facts import FactContext
from secpolicy.facts.bpf_inventory import bpf_syscall, helper_names
from secpolicy.vocabulary import builtin_registry

REPO = Path(__file__).resolve().parents[2]
SOC2 = REPO / "policies" / "soc2" / "bpf-and-capabilities.yaml"
SECPOLICY = [sys.executable, "-m", "secpolicy"]
BPFTOOL = shutil.which("bpftool")

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root")


def _scan(*rules: str) -> dict[str, dict]:
    args = [a for r in rules for a in ("--rule", r)]
    p = subprocess.run([*SECPOLICY, "scan", "-p", str(SOC2), *args, "--format", "json"],
                       capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    assert p.returncode in (0, 1), p.stderr
    return {r["rule_id"]: r for r in json.loads(p.stdout)["results"]}


# --- helpers -----------------------------------------------------------------------------------
def _load_kprobe(prog: bytes, name: bytes) -> int:
    import ctypes

    from bpf_objects import _ProgLoad

    buf = ctypes.create_string_buffer(prog, len(prog))
    lic = ctypes.create_string_buffer(b"GPL")
    log = ctypes.create_string_buffer(65536)
    attr = _ProgLoad(prog_type=2, insn_cnt=len(prog) // 8, insns=ctypes.addressof(buf),  # kprobe
                     license=ctypes.addressof(lic), log_level=1, log_size=len(log),
                     log_buf=ctypes.addressof(log), prog_name=name)
    try:
        return bpf_syscall(5, attr)  # BPF_PROG_LOAD
    except OSError as e:
        # The live marker has already found that BPF programs load here: a refusal of this
        # one is a failure to look at, never a skip (SECPOLICY_REQUIRE_BPF).
        pytest.fail(f"this kernel will not load the kprobe program: {e}; "
                    f"{log.value.decode(errors='replace')[-300:]}")


@pytest.mark.live
@needs_root
def test_legacy_probe_read_helpers_are_named_by_their_helper_ids() -> None:
    """bpf_probe_read (4) and bpf_probe_read_str (45) run as the kernel functions
    bpf_probe_read_compat(_str), which bpftool prints; the fact names the helper called,
    as linux/bpf.h names its id, so the allow-list (which has both) accepts them."""
    called = (4, 45)
    setup = (insn(0x7A, dst=10, off=-8, imm=0)  # *(u64 *)(r10 - 8) = 0
             + insn(0xBF, dst=1, src=10) + insn(0x07, dst=1, imm=-8)  # r1 = r10 - 8
             + insn(0xB7, dst=2, imm=8) + insn(0xB7, dst=3, imm=0))  # r2 = 8, r3 = 0
    prog = b"".join(setup + insn(0x85, imm=h) for h in called) + insn(0xB7, dst=0, imm=0) + insn(0x95)
    _assert_named_by_id(prog, b"secpol_compat", called)
    allowed = yaml.safe_load(SOC2.read_text())["lists"]["bpf_allowed_helpers"]
    names = helper_names()
    assert {f"bpf_{names[h]}" for h in called} <= set(allowed)


@pytest.mark.live
@needs_root
def test_program_type_variants_of_helpers_are_named_by_their_helper_ids() -> None:
    """bpf_get_func_ip (173) and bpf_get_attach_cookie (174) from a kprobe run as
    bpf_get_func_ip_kprobe and bpf_get_attach_cookie_trace."""
    if BPFTOOL is None:
        pytest.skip("bpftool is not installed (Debian package bpftool)")
    called = (173, 174)
    prog = (insn(0xBF, dst=6, src=1)  # r6 = ctx
            + b"".join(insn(0xBF, dst=1, src=6) + insn(0x85, imm=h) for h in called)
            + insn(0xB7, dst=0, imm=0) + insn(0x95))
    _assert_named_by_id(prog, b"secpol_variant", called)


def _assert_named_by_id(prog: bytes, name: bytes, called: tuple[int, ...]) -> None:
    if BPFTOOL is None:
        pytest.skip("bpftool is not installed (Debian package bpftool)")
    fd = _load_kprobe(prog, name)
    try:
        pid = object_id(fd)
        mine = next(p for p in FactContext(builtin_registry(), "/").fact("bpf_programs", ()) if p.id == pid)
        xlated = subprocess.run([BPFTOOL, "prog", "dump", "xlated", "id", str(pid)],
                                capture_output=True, text=True, check=True, timeout=30).stdout
    finally:
        os.close(fd)
    theirs = re.findall(r"\(85\) call (\w+)#", xlated)
    assert len(theirs) == len(called), xlated  # no call was inlined away
    names = helper_names()
    assert mine.helpers == tuple(f"bpf_{names[h]}" for h in called), theirs


# --- capabilities ------------------------------------------------------------------------------
_PERMITTED_ONLY = """
import ctypes, os, sys, time
libc = ctypes.CDLL(None, use_errno=True)
class Hdr(ctypes.Structure): _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]
class Data(ctypes.Structure): _fields_ = [("eff", ctypes.c_uint32), ("prm", ctypes.c_uint32), ("inh", ctypes.c_uint32)]
libc.prctl(8, 1, 0, 0, 0)  # PR_SET_KEEPCAPS: keep the permitted set across setresuid
os.setgroups([]); os.setresgid(65534, 65534, 65534); os.setresuid(65534, 65534, 65534)
d = (Data * 2)(); d[0].prm = 1 << 21  # CAP_SYS_ADMIN permitted, nothing effective
if libc.capset(ctypes.byref(Hdr(0x20080522, 0)), d) != 0:
    sys.exit("capset failed: %d" % ctypes.get_errno())
print("ready", flush=True)
time.sleep(30)
"""


@pytest.fixture
def permitted_only_process():
    proc = subprocess.Popen([sys.executable, "-c", _PERMITTED_ONLY], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "ready"
        yield proc.pid
    finally:
        proc.kill()
        proc.wait(timeout=10)


@needs_root
@pytest.mark.skipif(shutil.which("getpcaps") is None, reason="getpcaps (libcap2-bin) is not installed")
def test_a_capability_held_only_as_permitted_is_held(permitted_only_process: int) -> None:
    """A non-root process with CAP_SYS_ADMIN permitted but not effective raises it with
    capset(2) whenever it likes: getpcaps shows it held (`=p`), so both rules fail on it."""
    pid = permitted_only_process
    got = subprocess.run(["getpcaps", str(pid)], capture_output=True, text=True, check=True, timeout=10)
    shown = got.stdout + got.stderr  # older libcap prints to stderr
    assert re.search(r"cap_sys_admin[^ ]*=p\b|=p cap_sys_admin", shown), shown
    me = next(p for p in FactContext(builtin_registry(), "/").fact("processes", ()) if p.pid == pid)
    assert me.euid == 65534 and "CAP_SYS_ADMIN" in me.caps_prm and "CAP_SYS_ADMIN" not in me.caps_eff
    rules = ("soc2-cc6.3-no-cap-sys-admin-for-bpf", "soc2-cc6.3-process-capabilities-allowlist")
    found = _scan(*rules)
    for rule in rules:
        assert found[rule]["status"] == "fail", rule
        named = {e["source"] for e in found[rule]["evidence"] if e["decisive"]}
        assert f"/proc/{pid}/status" in named, (rule, named)


# --- audit flag --------------------------------------------------------------------------------
# The flag is the kernel's, one for the machine: the live side-by-side test's private auditd turns
# it on while it runs, so this test runs on the live tests' worker, never beside it.
@needs_root
@pytest.mark.xdist_group("live")
@pytest.mark.skipif(shutil.which("auditctl") is None, reason="auditctl is not installed (Debian package auditd)")
@pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare (util-linux) is not installed")
def test_audit_enabled_is_the_flag_auditctl_reports_even_after_booting_with_audit_1(tmp_path: Path) -> None:
    """A boot with audit=1 says nothing of `auditctl -e 0` since: the verdict follows the flag
    auditctl -s reports. The command line is replaced in a private mount namespace only."""
    cmdline = tmp_path / "cmdline"
    cmdline.write_text("BOOT_IMAGE=/boot/vmlinuz ro audit=1\n")
    script = (f"mount --bind {cmdline} /proc/cmdline && auditctl -s && echo --- && "
              f"{sys.executable} -m secpolicy scan -p {SOC2} --rule soc2-cc7.2-audit-enabled --format json")
    p = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                       capture_output=True, text=True, cwd=REPO, timeout=60, check=False)
    if "---" not in p.stdout:
        pytest.skip(f"cannot bind a command line in a private mount namespace here: {p.stderr.strip()}")
    status, _, report = p.stdout.partition("---")
    m = re.search(r"^enabled (\d+)", status, re.MULTILINE)
    assert m, status
    finding = {r["rule_id"]: r for r in json.loads(report)["results"]}["soc2-cc7.2-audit-enabled"]
    assert finding["status"] == ("pass" if int(m.group(1)) != 0 else "fail"), finding["evidence"]
