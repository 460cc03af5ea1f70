"""Who was scanned and by whom: the host identity block of every results file (hostname, OS
release of the scanned root, kernel, machine-id, addresses, virtualisation, scanning user)."""

from __future__ import annotations

import os
import pwd
import shlex
import shutil
import socket
import subprocess
from typing import Any

from secpolicy import __version__
from secpolicy.errors import EvaluationError
from secpolicy.facts.base import FactContext

__all__ = ["host_identity", "os_release", "parse_os_release"]

_OS_FIELDS = ("id", "version_id", "pretty_name", "version_codename")
# Documentation prefixes (RFC 5737, RFC 3849): a connected UDP socket picks the source
# address the kernel would route from, and sends nothing.
_PROBES = ((socket.AF_INET, "192.0.2.1"), (socket.AF_INET6, "2001:db8::1"))


def parse_os_release(text: str) -> dict[str, str]:
    """os-release(5): KEY=value lines, values shell-quoted."""
    out: dict[str, str] = {}
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "=" not in line:
            continue
        key, _, value = line.partition("=")
        try:
            words = shlex.split(value)
        except ValueError:
            continue
        out[key.strip().lower()] = words[0] if words else ""
    return out


def _read(ctx: FactContext, path: str) -> str | None:
    try:
        return ctx.read_text(path)
    except EvaluationError:
        return None


def os_release(ctx: FactContext) -> dict[str, str] | None:
    """The scanned system's /etc/os-release (falling back to /usr/lib/os-release, as os-release(5) says)."""
    for path in ("/etc/os-release", "/usr/lib/os-release"):
        text = _read(ctx, path)
        if text is not None:
            fields = parse_os_release(text)
            return {k: fields[k] for k in _OS_FIELDS if k in fields} | {"source": path}
    return None


def _addresses() -> list[str]:
    out = []
    for family, probe in _PROBES:
        try:
            with socket.socket(family, socket.SOCK_DGRAM) as s:
                s.connect((probe, 9))
                out.append(s.getsockname()[0])
        except OSError:
            continue  # no route of this family
    return out


def _detect_virt() -> tuple[str | None, str | None]:
    """systemd-detect-virt's answers for --vm and --container (`none` when there is none), run
    side by side; (None, None) where it is not installed."""
    exe = shutil.which("systemd-detect-virt")
    if exe is None:
        return None, None
    answers: list[str | None] = []
    try:
        procs = [subprocess.Popen([exe, flag], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
                 for flag in ("--vm", "--container")]
    except OSError:
        return None, None
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=5)
            answers.append(out.strip() or None)
        except subprocess.SubprocessError:
            proc.kill()
            proc.communicate()
            answers.append(None)
    return answers[0], answers[1]


def _container_fallback() -> str | None:
    for path, name in (("/.dockerenv", "docker"), ("/run/.containerenv", "podman")):
        if os.path.exists(path):
            return name
    try:
        with open("/run/systemd/container", encoding="utf-8") as f:
            return f.read().strip() or None
    except OSError:
        return None


def _user(uid: int) -> str | None:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return None


def host_identity(ctx: FactContext, hostname: str) -> dict[str, Any]:
    """The identity block. Under `--root` the scanned system is an image: its hostname,
    machine-id and OS release come from the image, while kernel, addresses and
    virtualisation describe nothing of it and are null; `scanner` is always this machine."""
    machine_id = (_read(ctx, "/etc/machine-id") or "").strip() or None
    uname = os.uname()
    euid = os.geteuid()
    scanner = {
        "hostname": socket.gethostname(),
        "uid": euid,
        "user": _user(euid),
        "kernel": uname.release,
        "secpolicy_version": __version__,
    }
    block: dict[str, Any] = {
        "hostname": hostname,
        "machine_id": machine_id,
        "os_release": os_release(ctx),
        "live": ctx.live,
        "kernel": None,
        "addresses": [],
        "virtualization": None,
        "container": None,
        "scanner": scanner,
    }
    if ctx.live:
        block["kernel"] = {"release": uname.release, "version": uname.version, "machine": uname.machine}
        block["addresses"] = _addresses()
        vm, container = _detect_virt()
        block["virtualization"] = vm
        block["container"] = container or _container_fallback()
    return block

