"""The setup contract where root or eBPF is missing: `doctor` states this machine's real
privileges and tracefs, and `scripts/setup.sh` recovers from a failed run and leaves nothing
behind when apt-get fails."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SETUP = REPO / "scripts" / "setup.sh"
NOBODY = 65534
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="dropping capabilities, namespaces and setpriv need root")


def _secpolicy(*args: str, prefix: tuple[str, ...] = (), cwd: Path, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*prefix, sys.executable, "-m", "secpolicy", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env={**os.environ, "XDG_CACHE_HOME": str(cwd)}, check=False)


def _checks(proc: subprocess.CompletedProcess[str]) -> dict[str, dict]:
    return {c["name"]: c for c in json.loads(proc.stdout)["checks"]}


# -- doctor: privileges -------------------------------------------------------------------------

@needs_root
def test_root_with_cap_bpf_and_cap_perfmon_but_not_cap_sys_admin_is_enough_for_doctor(tmp_path: Path) -> None:
    """Since Linux 5.8, CAP_BPF loads the monitor's programs and CAP_PERFMON attaches them: a
    container or unit that drops CAP_SYS_ADMIN still runs `secpolicy monitor` (checked by hand:
    every probe attaches and events arrive), so doctor must not call it impossible."""
    proc = _secpolicy("doctor", "--json", "--no-load-test", prefix=("setpriv", "--bounding-set", "-sys_admin"),
                      cwd=tmp_path)
    priv = _checks(proc)["privileges"]
    assert priv["ok"] is True, priv
    assert "CAP_BPF and CAP_PERFMON" in priv["detail"]


@needs_root
def test_root_without_cap_perfmon_nor_cap_sys_admin_is_named_with_the_fix(tmp_path: Path) -> None:
    proc = _secpolicy("doctor", "--json", "--no-load-test",
                      prefix=("setpriv", "--bounding-set", "-sys_admin,-perfmon"), cwd=tmp_path)
    assert proc.returncode == 3, proc.stdout + proc.stderr
    priv = _checks(proc)["privileges"]
    assert priv["ok"] is False
    assert "without CAP_PERFMON" in priv["detail"] and "CAP_BPF and CAP_PERFMON" in priv["fix"]


@pytest.mark.live
def test_the_monitor_runs_where_doctor_says_cap_bpf_and_cap_perfmon_suffice(tmp_path: Path) -> None:
    # One exec rule: the monitor compiles, loads and attaches only the exec programs.
    policy = tmp_path / "exec.yaml"
    policy.write_text("metadata: {id: caps, title: caps, version: '1'}\n"
                      "rules:\n  - {id: caps-exec, title: exec, severity: low, when: 'type == \"exec\"'}\n")
    proc = _secpolicy("monitor", "--policy", str(policy), "--duration", "0.5", "--output", str(tmp_path / "alerts.jsonl"),
                      prefix=("setpriv", "--bounding-set", "-sys_admin"), cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "probes attached" in proc.stderr


# -- doctor and monitor without tracefs ------------------------------------------------------------

@needs_root
def test_without_tracefs_doctor_and_monitor_say_it_is_not_mounted_and_how_to_mount_it(tmp_path: Path) -> None:
    """tracefs unmounted in a private mount namespace (the machine's own mount is untouched)."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    py = sys.executable
    script = (
        "for d in /sys/kernel/tracing /sys/kernel/debug/tracing /sys/kernel/debug; do "
        "  while mountpoint -q $d; do umount $d || exit 90; done; done; "
        f"{py} -m secpolicy doctor --json --no-load-test > doctor.json; echo $? > doctor.rc; "
        f"{py} -m secpolicy monitor --duration 1 -o alerts.jsonl 2> monitor.err; echo $? > monitor.rc"
    )
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], cwd=tmp_path,
                          env={**os.environ, "XDG_CACHE_HOME": str(tmp_path)}, capture_output=True, text=True,
                          timeout=120, check=False)
    if proc.returncode == 90:
        pytest.skip(f"tracefs could not be unmounted in a private namespace: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    checks = {c["name"]: c for c in json.loads((tmp_path / "doctor.json").read_text())["checks"]}
    assert (tmp_path / "doctor.rc").read_text().strip() == "3"
    assert checks["tracefs"]["ok"] is False
    assert checks["tracefs"]["detail"].startswith("tracefs is not mounted")
    assert checks["tracefs"]["fix"].startswith("mount -t tracefs tracefs /sys/kernel/tracing")
    # Every statement true: nothing claims tracefs is there but unreadable.
    assert "tracefs is not mounted" in checks["kprobes"]["detail"], checks["kprobes"]
    assert not any("not readable" in c["detail"] for c in checks.values()), checks
    err = (tmp_path / "monitor.err").read_text()
    assert (tmp_path / "monitor.rc").read_text().strip() == "3", err
    assert "tracefs is not mounted: mount -t tracefs tracefs /sys/kernel/tracing" in err
    assert "Traceback" not in err and "internal error" not in err


# -- scripts/setup.sh --------------------------------------------------------------------------------

FAKE_PYTHON = """#!/bin/sh
# python3 for setup.sh: `-m venv [--clear] DIR` makes a real venv without pip, as Debian's
# python3 without python3-venv does, plus a stand-in pip that records its arguments.
set -e
[ "$1" = -m ] && [ "$2" = venv ] || exit 64
shift 2
{real} -m venv --without-pip "$@"
for dir; do :; done
site=$("$dir/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
mkdir -p "$site/pip"
: > "$site/pip/__init__.py"
printf 'import sys\\nwith open("{log}", "a") as f:\\n    f.write(" ".join(sys.argv[1:]) + "\\\\n")\\n' \\
  > "$site/pip/__main__.py"
"""


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A directory the unprivileged user owns (as root: nobody; otherwise this user)."""
    d = Path(tempfile.mkdtemp(prefix="sp-setup-probe-"))
    d.chmod(0o755)
    if os.geteuid() == 0:
        os.chown(d, NOBODY, NOBODY)
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def _as_unprivileged(cmd: list[str], env: dict[str, str], cwd: Path) -> subprocess.CompletedProcess[str]:
    prefix = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"] if os.geteuid() == 0 else []
    return subprocess.run([*prefix, *cmd], env=env, cwd=cwd, capture_output=True, text=True, timeout=60,
                          check=False)


def test_setup_rebuilds_a_virtual_environment_that_a_failed_run_left_without_pip(private_dir: Path) -> None:
    """`python3 -m venv` without python3-venv (or interrupted) leaves .venv/bin/python and no
    pip. Once the cause is fixed, running setup.sh again must finish the job, not fail at every
    run with "No module named pip"; and a further run installs nothing again."""
    if os.geteuid() == 0 and shutil.which("setpriv") is None:
        pytest.skip("no setpriv(1)")
    # Debian's python3, as on a fresh machine (this venv's may live where nobody cannot reach).
    real = shutil.which("python3", path="/usr/bin:/bin") or sys.executable
    log = private_dir / "pip.log"
    fake = private_dir / "python3"
    fake.write_text(FAKE_PYTHON.format(real=real, log=log))
    fake.chmod(0o755)
    venv = private_dir / "venv"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(private_dir),
           "SECPOLICY_VENV": str(venv), "PYTHON": str(fake)}
    leftover = _as_unprivileged([real, "-m", "venv", "--without-pip", str(venv)], env, private_dir)
    assert leftover.returncode == 0, leftover.stderr

    first = _as_unprivileged([str(SETUP)], env, private_dir)
    assert first.returncode == 0, first.stderr
    assert "No module named pip" not in first.stderr
    assert "recreating the incomplete virtual environment" in first.stderr
    installs = log.read_text().splitlines()
    assert any(line.startswith("install -q -e ") and line.endswith("[test]") for line in installs), installs
    assert (venv / ".secpolicy-installed").is_file()

    second = _as_unprivileged([str(SETUP)], env, private_dir)
    assert second.returncode == 0, second.stderr
    assert log.read_text().splitlines() == installs, "a second run installed again"
    assert "virtual environment" not in second.stderr


FAKE_APT = """#!/bin/sh
# dpkg-query: nothing is installed; apt-get: every install fails (a mirror down, a typo).
case "$(basename "$0")" in
  dpkg-query) exit 1 ;;
  apt-get) [ "$1" = update ] && exit 100; echo "E: Unable to locate package $*" >&2; exit 100 ;;
esac
"""


@needs_root
def test_a_failed_apt_get_does_not_leave_the_service_blocker_behind(tmp_path: Path) -> None:
    """setup.sh writes /usr/sbin/policy-rc.d ("exit 101") so that installing auditd does not start
    it. When apt-get fails, set -e ends the script: the blocker must go with it, or every later
    package on the machine silently never starts its service. Run in a private mount namespace
    whose /usr/sbin is an empty tmpfs, so the machine's own /usr/sbin is never touched."""
    if shutil.which("unshare") is None:
        pytest.skip("no unshare(1)")
    fakebin = tmp_path / "bin"
    fakebin.mkdir()
    for name in ("dpkg-query", "apt-get"):
        (fakebin / name).write_text(FAKE_APT)
        (fakebin / name).chmod(0o755)
    script = (
        "mount -t tmpfs tmpfs /usr/sbin || exit 90; "
        f"PATH={fakebin}:$PATH SECPOLICY_VENV={tmp_path / 'venv'} {SETUP}; echo $? > setup.rc; "
        "if [ -e /usr/sbin/policy-rc.d ]; then echo left > left; fi"
    )
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60, check=False)
    if proc.returncode == 90:
        pytest.skip(f"no private tmpfs over /usr/sbin here: {proc.stderr.strip()}")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "setup.rc").read_text().strip() != "0", "setup.sh hid a failed apt-get"
    assert "Unable to locate package" in proc.stderr
    assert not (tmp_path / "left").exists(), "setup.sh left /usr/sbin/policy-rc.d behind after a failed apt-get"
    assert not (tmp_path / "venv").exists()


# -- a monitor that cannot start ---------------------------------------------------------------

@needs_root
def test_a_monitor_that_cannot_start_leaves_its_alerts_file_as_it_was() -> None:
    """A live alerts file is written in place, from the start: opened before the monitor knew
    it could not run (here: not root), it was emptied. A run that never starts writes nothing."""
    d = Path(tempfile.mkdtemp(prefix="sp-monitor-out-", dir="/tmp"))
    try:
        os.chmod(d, 0o777)  # the user may write there: only the monitor's order protects the file
        alerts = d / "alerts.jsonl"
        alerts.write_text('{"rule_id": "from-yesterday"}\n')
        os.chown(alerts, NOBODY, NOBODY)
        proc = _secpolicy("monitor", "--duration", "1", "-o", str(alerts), cwd=d,
                          prefix=("setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"))
        assert proc.returncode == 3, proc.stderr
        assert "needs root" in proc.stderr
        assert alerts.read_text() == '{"rule_id": "from-yesterday"}\n'
    finally:
        shutil.rmtree(d)


# -- kernel headers for bcc -----------------------------------------------------------------------

def _headers_deb(kver: str, modules: Path) -> str:
    """What setup.sh's headers_deb() picks for a kernel `kver` whose /lib/modules is `modules`."""
    body = SETUP.read_text()
    fn = body[body.index("headers_deb() {"):]
    fn = fn[: fn.index("\n}\n") + 3].replace('"/lib/modules/$kver/build"', f'"{modules}/$kver/build"')
    script = f"uname() {{ echo {kver}; }}\n{fn}headers_deb\n"
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout.strip()


@pytest.mark.skipif(shutil.which("apt-cache") is None, reason="no apt-cache (not a Debian system)")
def test_setup_picks_the_running_kernels_own_headers_where_debian_has_them(tmp_path: Path) -> None:
    """A Debian kernel gets its own headers (what bcc needs for every probe type); a kernel
    Debian has none for gets the cloud headers setup links; a kernel with headers gets none.
    apt-cache is asked which Debian kernels have headers, not a list written here."""
    found = subprocess.run(["apt-cache", "search", "--names-only", r"^linux-headers-[0-9.]+-[0-9]+-(cloud-)?amd64$"],
                           capture_output=True, text=True, check=False).stdout.split()
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True, check=True).stdout.strip()
    debian = next((w for w in found if w.startswith("linux-headers-") and w.endswith("-amd64")), None)
    if debian is not None:
        kver = debian.removeprefix("linux-headers-")
        assert _headers_deb(kver, tmp_path) == debian
    assert _headers_deb("99.1.0-no-such-kernel", tmp_path) == f"linux-headers-cloud-{arch}"
    (tmp_path / "99.1.0-no-such-kernel" / "build").mkdir(parents=True)
    assert _headers_deb("99.1.0-no-such-kernel", tmp_path) == ""
