"""`secpolicy doctor`: what the live monitor needs from this machine (kernel, BTF, tracefs,
headers for bcc, bcc, privileges, lockdown, event types), each with the fix when missing; and
how `scan --root` opens an image's paths here."""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

__all__ = ["REQUIRED", "Check", "live_blocker", "run_checks"]

# Checks without which the live monitor cannot run at all.
REQUIRED = ("privileges", "tracefs", "kernel headers", "bcc", "bpf load")


@dataclass(frozen=True)
class Check:
    """One fact: `ok` True (fine), False (missing: see `fix`) or None (works, with a caveat)."""

    name: str
    ok: bool | None
    detail: str
    fix: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "ok": self.ok, "detail": self.detail, "fix": self.fix}


_CAP_BPF, _CAP_PERFMON, _CAP_SYS_ADMIN = 39, 38, 21


def _cap_eff() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("CapEff:"):
                return int(line.split()[1], 16)
    except OSError:
        pass
    return 0


def check_kernel() -> Check:
    return Check("kernel", True, f"{platform.system()} {platform.release()} ({platform.machine()})")


def check_btf() -> Check:
    from secpolicy.events.bpf_btf import VMLINUX_BTF

    if VMLINUX_BTF.is_file():
        return Check("btf", True, f"{VMLINUX_BTF} present: struct offsets are read from the running kernel")
    return Check("btf", None, "no kernel BTF: parent pid, effective ids and login uid are read from /proc "
                 "(racy for short-lived processes)",
                 "use a kernel built with CONFIG_DEBUG_INFO_BTF=y")


def check_tracefs() -> Check:
    from secpolicy.events.live.kernel import tracefs_dir, tracefs_problem

    d = tracefs_dir()
    if d is not None:
        return Check("tracefs", True, f"mounted at {d}")
    why = tracefs_problem()
    if "not readable" in why:
        return Check("tracefs", False, f"{why}: tracepoints cannot be attached by this user", "run as root")
    return Check("tracefs", False, f"{why}: tracepoints cannot be attached",
                 "mount -t tracefs tracefs /sys/kernel/tracing (scripts/setup.sh does this)")


def check_headers() -> Check:
    rel = platform.release()
    build = Path("/lib/modules") / rel / "build"
    if not build.exists():
        return Check("kernel headers", False, f"no headers for {rel} at {build}: bcc cannot compile",
                     f"apt-get install linux-headers-{rel}; where none exist for this kernel, "
                     "scripts/setup.sh links Debian's cloud headers (tracepoint programs only)")
    target = os.path.realpath(build)
    if rel not in target:
        return Check("kernel headers", None,
                     f"{build} -> {target}: headers of another kernel version, enough for "
                     "tracepoint programs (secpolicy reads struct offsets from BTF, not headers)",
                     f"install headers for {rel} when they exist")
    return Check("kernel headers", True, f"{build} -> {target}")


def check_bcc() -> Check:
    try:
        import bcc  # type: ignore[import-not-found]
    except ImportError as exc:
        return Check("bcc", False, f"bcc is not importable from this Python: {exc}",
                     "apt-get install python3-bpfcc, then scripts/setup.sh links it into the venv "
                     "(the PyPI package named bcc is unrelated)")
    except Exception as exc:  # noqa: BLE001 - libbcc missing or broken
        return Check("bcc", False, f"bcc import failed: {type(exc).__name__}: {exc}",
                     "apt-get install --reinstall libbpfcc python3-bpfcc")
    return Check("bcc", True, f"bcc {getattr(bcc, '__version__', '?')} from {Path(bcc.__file__).parent}")


def check_privileges() -> Check:
    caps = _cap_eff()
    bpf_perfmon = bool(caps & (1 << _CAP_BPF) and caps & (1 << _CAP_PERFMON))
    if os.geteuid() == 0 and caps & (1 << _CAP_SYS_ADMIN):
        return Check("privileges", True, "root with CAP_SYS_ADMIN")
    if os.geteuid() == 0 and bpf_perfmon:
        # Linux 5.8 split loading tracing programs (CAP_BPF) and attaching them (CAP_PERFMON)
        # out of CAP_SYS_ADMIN: the monitor needs nothing else.
        return Check("privileges", True, "root with CAP_BPF and CAP_PERFMON (without CAP_SYS_ADMIN, "
                     "which the monitor does not need)")
    if os.geteuid() == 0:
        lacking = " and ".join(n for n, bit in (("CAP_BPF", _CAP_BPF), ("CAP_PERFMON", _CAP_PERFMON))
                               if not caps & (1 << bit))
        return Check("privileges", False, f"root without CAP_SYS_ADMIN and without {lacking} (a capability "
                     "bounding set or container drops them): eBPF programs cannot be loaded and attached",
                     "run with CAP_SYS_ADMIN, or with CAP_BPF and CAP_PERFMON")
    have = "with CAP_BPF and CAP_PERFMON, " if bpf_perfmon else ""
    return Check("privileges", False, f"euid {os.geteuid()} is not root ({have}the monitor loads eBPF programs and "
                 "attaches them to tracepoints, which needs root)", "run as root (sudo secpolicy monitor ...)")


def check_lockdown() -> Check:
    p = Path("/sys/kernel/security/lockdown")
    try:
        text = p.read_text().strip()
    except OSError:
        return Check("lockdown", None, "unknown (securityfs not mounted); if LSM or fentry programs "
                     "are refused, lockdown is the likely reason",
                     "mount -t securityfs securityfs /sys/kernel/security to see the mode")
    mode = text[text.find("[") + 1 : text.find("]")] if "[" in text else text
    if mode == "confidentiality":
        return Check("lockdown", False, "lockdown=confidentiality: BPF may not read kernel memory",
                     "boot with lockdown=integrity or none")
    return Check("lockdown", True if mode == "none" else None, f"lockdown={mode}")


def check_kprobes() -> Check:
    from secpolicy.events.live.kernel import tracefs_dir, tracefs_problem

    d = tracefs_dir()
    if d is None:
        return Check("kprobes", None, f"unknown ({tracefs_problem()}): not needed, secpolicy uses tracepoints "
                     "and uprobes")
    if (d / "kprobe_events").exists():
        return Check("kprobes", True, "kprobes available (not needed: secpolicy uses tracepoints and uprobes)")
    return Check("kprobes", None, "no kprobes in this kernel: not needed, secpolicy uses tracepoints and uprobes")


def check_root_scans() -> Check:
    """Not needed by the monitor: how `scan --root` resolves an image's paths inside it."""
    from secpolicy.facts import inroot

    if inroot.available():
        return Check("root scans", True, "openat2 (RESOLVE_IN_ROOT): `scan --root` has the kernel resolve an "
                     "image's paths inside the image")
    return Check("root scans", True, "no openat2 (Linux before 5.6, or a seccomp filter refusing it): `scan --root` "
                 "resolves an image's paths inside the image itself, one component at a time from directory "
                 "descriptors (slower, as safe)")


@lru_cache(maxsize=1)
def _bpf_load_result() -> tuple[bool, str]:
    try:
        from bcc import BPF  # type: ignore[import-not-found]
    except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception
        return False, f"bcc not importable: {exc}"
    from secpolicy.events.live.kernel import capture_fd2, last_lines

    cap = capture_fd2()
    try:
        with cap:
            b = BPF(text=b"int sp_probe(void *ctx) { return 0; }")
            b.load_func(b"sp_probe", BPF.TRACEPOINT)
            b.cleanup()
    except Exception as exc:  # noqa: BLE001 - bcc raises bare Exception
        return False, last_lines(cap.text() or str(exc))
    return True, "a tracepoint program compiled and loaded"


def check_bpf_load() -> Check:
    ok, detail = _bpf_load_result()
    if ok:
        return Check("bpf load", True, detail)
    return Check("bpf load", False, f"the kernel refused a trivial BPF program: {detail}",
                 "check privileges, kernel.unprivileged_bpf_disabled, lockdown and the headers above")


def check_event_types() -> list[Check]:
    from secpolicy.events.live import available_types

    out = []
    for etype, why in available_types().items():
        if why is None:
            out.append(Check(f"event {etype}", True, "available"))
        else:
            out.append(Check(f"event {etype}", None, f"unavailable: {why}",
                             "rules on this type never fire live here (replay of recorded events still works)"))
    return out


def run_checks(load_test: bool = True) -> list[Check]:
    """All checks in order; `load_test` compiles and loads a trivial program (about 1 s)."""
    checks = [check_kernel(), check_btf(), check_tracefs(), check_headers(), check_bcc(),
              check_privileges(), check_lockdown(), check_kprobes()]
    if not load_test:
        checks.append(Check("bpf load", None, "not attempted (--no-load-test)"))
    else:
        prereq = {c.name: c.ok for c in checks}
        if prereq.get("bcc") and prereq.get("privileges") and prereq.get("kernel headers") is not False:
            checks.append(check_bpf_load())
        else:
            checks.append(Check("bpf load", False, "not attempted: bcc, privileges or headers missing",
                                "fix the checks above"))
    checks.extend(check_event_types())
    checks.append(check_root_scans())
    return checks


def live_blocker() -> str | None:
    """Why the live monitor cannot run on this machine (the first missing requirement), or
    None when it can. Used by the test suite to skip (or fail) live tests precisely."""
    for check in (check_privileges, check_bcc, check_tracefs, check_headers, check_bpf_load):
        c = check()
        if c.ok is False:
            return f"{c.name}: {c.detail}"
    return None
