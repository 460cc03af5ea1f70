"""The command line as a user meets it: unknown names are exit 2 with the known ones and a
"did you mean"; paths are checked before the work; a closed pipe keeps the exit code; new
failures against a baseline are listed; Ctrl-C, pipes, NO_COLOR, progress on a terminal only,
and the non-privileged scan banner."""

from __future__ import annotations

import json
import os
import pty
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

from secpolicy.ruletests import materialize_files

TESTS = Path(__file__).resolve().parents[1]
REPO = TESTS.parent
POLICY = str(TESTS / "fixtures" / "policies" / "core.yaml")
EVENTS = TESTS / "fixtures" / "auditlog" / "events.jsonl"
SECPOLICY = [sys.executable, "-m", "secpolicy"]
# Ctrl-C reaches a foreground job with SIGINT at its default; a suite run as a background job of a
# script inherits it ignored (POSIX), and so would secpolicy. Start the child as a terminal would.
FOREGROUND = ["env", "--default-signal=INT"]
sys.path.insert(0, str(TESTS / "fixtures" / "reports"))

from gen_results import generate

WEAK = {
    "/etc/passwd": {"content": "root:x:0:0:root:/root:/bin/bash\ntoor:x:0:0::/root:/bin/sh\n", "mode": 0o664},
    "/etc/shadow": {"content": "root:$y$j9T$abc$def:19000:0:99999:7:::\ntoor::19000:0:99999:7:::\n", "mode": 0o644},
    "/etc/group": "root:x:0:\nshadow:x:42:\n",
    "/etc/ssh/sshd_config": "PermitRootLogin yes\n",
    "/etc/sysctl.d/60-net.conf": "net.ipv4.ip_forward = 1\n",
    "/etc/login.defs": "PASS_MAX_DAYS 99999\n",
}
# The same host a week earlier: sshd and forwarding were still right.
EARLIER = WEAK | {"/etc/ssh/sshd_config": "PermitRootLogin no\n", "/etc/sysctl.d/60-net.conf": "net.ipv4.ip_forward = 0\n"}
BOX = re.compile("[\u2500-\u257f]")  # box drawing


def secpolicy(*args: str, env: dict[str, str] | None = None, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([*SECPOLICY, *args], capture_output=True, text=True, timeout=300, check=False,
                          env={**os.environ, **(env or {})}, **kw)


@pytest.fixture(scope="module")
def roots(tmp_path_factory) -> dict[str, str]:
    out = {}
    for name, files in (("weak", WEAK), ("earlier", EARLIER)):
        root = tmp_path_factory.mktemp(name)
        materialize_files(str(root), files)
        out[name] = str(root)
    return out


# unknown names ---------------------------------------------------------------------------
# The lists of known names grow with the packs and commands: the message is checked for its
# start, the names that must be there, and the suggestion.
@pytest.mark.parametrize(("args", "start", "names", "end"), [
    (["scan", "--standard", "pci"], "secpolicy: unknown standard 'pci' (known: ",
     ["cis", "hipaa", "pci-dss", "soc2"], "); did you mean 'pci-dss'?"),
    (["scan", "--profile", "level1_server"], "secpolicy: unknown profile 'level1_server' (known: ",
     ["level1-server", "level2-server"], "); did you mean 'level1-server'?"),
    (["scan", "--format", "jsn"], "Error: Invalid value for '--format': 'jsn' is not one of ",
     ["'table'", "'json'", "'html'", "'pdf'", "'sarif'", "'junit'", "'csv'", "'ocsf'"], ". Did you mean 'json'?"),
    (["scan", "--fail-on", "hgh"], "Error: Invalid value for '--fail-on': 'hgh' is not one of ",
     ["'info'", "'low'", "'medium'", "'high'", "'critical'", "'new'"], ". Did you mean 'high'?"),
    (["report", "x.json", "-f", "pfd"], "Error: Invalid value for '--format' / '-f': 'pfd' is not one of ",
     ["'json'", "'html'", "'pdf'"], ". Did you mean 'pdf'?"),
    (["diff", "a.json", "b.json", "-f", "md"], "Error: Invalid value for '--format' / '-f': 'md' is not one of ",
     ["'table'", "'json'", "'markdown'"], ". Did you mean 'markdown'?"),
    (["scna"], "Error: No such command 'scna' (commands: ",
     ["report", "scan", "schema", "verify-report"], "). Did you mean 'scan'?"),
])
def test_an_unknown_name_is_exit_2_listing_the_known_ones(args, start, names, end):
    p = secpolicy(*args)
    assert p.returncode == 2
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith(start) and last.endswith(end), last
    listed = last[len(start):-len(end)]
    assert all(n in listed.split(", ") for n in names), listed
    assert p.stdout == ""


def test_an_unknown_rule_id_lists_the_nearest_ids():
    p = secpolicy("scan", "--rule", "cis-5.1.20-sshd-permit-root-logn")
    assert p.returncode == 2
    assert p.stderr.startswith("secpolicy: unknown rule id 'cis-5.1.20-sshd-permit-root-logn' (")
    assert p.stderr.rstrip().endswith("did you mean 'cis-5.1.20-sshd-permit-root-login'?")


def test_explain_takes_the_leading_part_of_a_rule_id():
    p = secpolicy("explain", "cis-5.1.20")
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("cis-5.1.20-sshd-permit-root-login: Ensure sshd PermitRootLogin is disabled\n")
    # `cis-5.1.2` is a rule of its own (not the start of 5.1.20 or 5.1.21)
    assert secpolicy("explain", "cis-5.1.2").stdout.startswith("cis-5.1.2-ssh-private-host-keys:")


# paths before the work -------------------------------------------------------------------
@pytest.fixture
def log(tmp_path) -> Path:
    d = tmp_path / "log"
    assert secpolicy("log", "init", str(d), "--key-out", str(tmp_path / "k")).returncode == 0
    return d


def _scans_recorded(log: Path) -> int:
    return (log / "segment-000000.jsonl").read_text().count('"scan_start"')


@pytest.mark.parametrize(("extra", "message"), [
    (["--report-dir", "{tmp}/afile/reports"], "secpolicy: cannot write {tmp}/afile/reports ("),
    (["--report-dir", "/proc/secpolicy-reports"], "secpolicy: cannot write /proc/secpolicy-reports ("),
    (["--output", "{tmp}/no/such/dir/r.json", "--format", "json"], "secpolicy: cannot write {tmp}/no/such/dir/r.json (no such directory)"),
    (["--baseline", "{tmp}/missing.json"], "secpolicy: cannot read results file {tmp}/missing.json (no such file or directory)"),
    (["--baseline", "{tmp}/afile"], "{tmp}/afile:1:1: not JSON"),
    (["--monitor-summary", "{tmp}/missing.json"], "secpolicy: cannot read monitor summary {tmp}/missing.json (no such file or directory)"),
    (["--fail-on", "new"], "secpolicy: --fail-on new needs --baseline OLD.json"),
])
def test_bad_paths_are_exit_2_before_the_scan_runs(extra, message, roots, log, tmp_path):
    (tmp_path / "afile").write_text("not a directory, not JSON")
    args = [a.replace("{tmp}", str(tmp_path)) for a in extra]
    p = secpolicy("scan", "-p", POLICY, "--root", roots["weak"], "--audit-log", str(log), *args)
    assert p.returncode == 2, p.stderr
    assert p.stderr.startswith(message.replace("{tmp}", str(tmp_path))), p.stderr
    assert "internal error" not in p.stderr
    assert _scans_recorded(log) == 0  # refused before the work: no scan was recorded


# exit codes through pipes ----------------------------------------------------------------
def test_a_closed_pipe_keeps_the_exit_code():
    # The bundled packs on this host: far more JSON than a pipe buffer holds, so the writer
    # meets the closed pipe; the host is not compliant, so the exit must stay 1.
    cmd = " ".join([*SECPOLICY, "scan", "--format", "json"]) + " | head -c100 >/dev/null"
    p = subprocess.run(["bash", "-o", "pipefail", "-c", cmd], capture_output=True, text=True, timeout=300, check=False)
    assert p.returncode == 1, p.stderr
    assert p.stderr == ""
    table = subprocess.run(["bash", "-o", "pipefail", "-c", " ".join([*SECPOLICY, "scan"]) + " | head -n1 >/dev/null"],
                           capture_output=True, text=True, timeout=300, check=False)
    assert table.returncode == 1 and table.stderr == ""


BROKEN_ELSEWHERE = """
import sys
import secpolicy.cli.core as core
def broken(*args, **kwargs):
    raise BrokenPipeError(32, "Broken pipe")  # as writing to a program that exited would
core.run_scan = broken
from secpolicy.cli.main import main
sys.argv = ["secpolicy", "scan"]
main()
"""


def test_a_pipe_broken_elsewhere_is_not_a_reader_gone():
    """Only standard output's reader going away (`| head`) ends a command quietly; a pipe to
    another program breaking is a failure of the run, said and exit 3, even with stdout open."""
    p = subprocess.run([sys.executable, "-c", BROKEN_ELSEWHERE], capture_output=True, text=True, timeout=120, check=False)
    assert p.returncode == 3, (p.returncode, p.stderr)
    assert "Broken pipe" in p.stderr and "Traceback" not in p.stderr


def test_new_failures_against_a_baseline_are_listed_in_table_and_json(roots, tmp_path):
    base = tmp_path / "earlier.json"
    assert secpolicy("scan", "-p", POLICY, "--root", roots["earlier"], "--format", "json", "-o", str(base)).returncode == 1
    table = secpolicy("scan", "-p", POLICY, "--root", roots["weak"], "--baseline", str(base), "--fail-on", "new")
    assert table.returncode == 1
    lines = table.stdout.splitlines()
    at = next(i for i, line in enumerate(lines) if line.startswith("New failures relative to the baseline"))
    assert lines[at].endswith(": 2")
    assert [line.split()[3] for line in lines[at + 1:at + 3]] == ["core-ssh-root-login", "core-ip-forward"]
    assert all(line.startswith("  NEW fail ") for line in lines[at + 1:at + 3])
    js = secpolicy("scan", "-p", POLICY, "--root", roots["weak"], "--baseline", str(base), "--fail-on", "new",
                   "--format", "json")
    reg = json.loads(js.stdout)["regressions"]
    assert sorted(c["rule_id"] for c in reg["new_failures"]) == ["core-ip-forward", "core-ssh-root-login"]
    assert {(c["old_status"], c["new_status"]) for c in reg["new_failures"]} == {("pass", "fail")}
    assert reg["baseline"]["id"] == json.loads(base.read_text())["scan"]["id"]
    same = secpolicy("scan", "-p", POLICY, "--root", roots["earlier"], "--baseline", str(base), "--fail-on", "new")
    assert same.returncode == 0 and "New failures relative to the baseline" in same.stdout


# Ctrl-C ----------------------------------------------------------------------------------
def test_ctrl_c_prints_no_traceback_and_leaves_no_file(tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps(generate(5000)))
    out = tmp_path / "report.pdf"
    proc = subprocess.Popen([*FOREGROUND, *SECPOLICY, "report", str(big), "-f", "pdf", "-o", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    time.sleep(3)  # well inside the rendering of a 5,000-control PDF
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    assert err.strip().endswith("secpolicy: interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.json"]


# terminals, pipes, NO_COLOR, progress ----------------------------------------------------
def _on_tty(args: list[str], *, env: dict[str, str] | None = None, stdout_tty: bool = False,
            input_files: tuple[Path, ...] = ()) -> tuple[int, str, str]:
    """Run with stderr (and stdout if asked) on a pseudo-terminal; what each showed."""
    master, slave = pty.openpty()
    with tempfile.TemporaryFile() as out:
        proc = subprocess.Popen([*SECPOLICY, *args], stdin=subprocess.DEVNULL, stdout=slave if stdout_tty else out,
                                stderr=slave, env={**os.environ, "TERM": "xterm", "COLUMNS": "200", **(env or {})})
        os.close(slave)
        chunks = []
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: every writer of the terminal is gone
                break
            if not data:
                break
            chunks.append(data)
        os.close(master)
        code = proc.wait(timeout=300)
        out.seek(0)
        stdout = out.read().decode()
    return code, stdout, b"".join(chunks).decode(errors="replace")


def test_piped_and_no_color_output_is_plain_text(roots):
    piped = secpolicy("scan", "-p", POLICY, "--root", roots["weak"])
    assert piped.returncode == 1
    assert not BOX.search(piped.stdout) and "\x1b[" not in piped.stdout
    assert "fail   high     core-ssh-root-login  " in piped.stdout
    _, _, tty = _on_tty(["scan", "-p", POLICY, "--root", roots["weak"]], stdout_tty=True)
    assert BOX.search(tty), "a terminal gets the table"
    _, _, no_color = _on_tty(["scan", "-p", POLICY, "--root", roots["weak"]], stdout_tty=True, env={"NO_COLOR": "1"})
    assert not BOX.search(no_color) and "\x1b[1m" not in no_color
    assert "core-ssh-root-login" in no_color


def test_scan_progress_shows_on_a_terminal_only():
    code, stdout, tty = _on_tty(["scan", "--format", "json"])
    assert code == 1 and json.loads(stdout)["summary"]["total"] > 100
    counts = re.findall(r"scan: (\d+)/(\d+) rules", tty)
    assert counts, tty
    total = {int(t) for _, t in counts}
    assert total == {json.loads(stdout)["summary"]["total"]}
    assert tty.rstrip().endswith("\x1b[2K")  # the line is erased at the end
    piped = secpolicy("scan", "--format", "json")
    assert piped.stderr == ""
    _, _, quiet = _on_tty(["scan", "--format", "json", "--quiet"])
    assert "rules" not in quiet


def test_pdf_and_replay_progress_on_a_terminal(tmp_path):
    big = tmp_path / "big.json"
    big.write_text(json.dumps(generate(300)))
    code, _, tty = _on_tty(["report", str(big), "-f", "pdf", "-o", str(tmp_path / "r.pdf")])
    assert code == 0
    pages = [int(n) for n in re.findall(r"PDF report: laying out page (\d+)", tty)]
    assert pages and max(pages) > 5
    events = tmp_path / "events.jsonl"
    lines = EVENTS.read_text().splitlines()[:10]
    events.write_text("\n".join(lines * 3000) + "\n")
    code, _, tty = _on_tty(["replay", str(events), "-o", str(tmp_path / "alerts.jsonl")])
    assert code == 0
    done = re.findall(r"replay: ([\d.]+ [kMG]?B) of ([\d.]+ [kMG]?B) read", tty)
    assert done, tty
    assert secpolicy("replay", str(events), "-o", str(tmp_path / "a2.jsonl")).stderr.count("read") == 0


# non-root --------------------------------------------------------------------------------
def _system_python() -> str | None:
    exe = shutil.which("python3", path="/usr/bin:/bin")
    if exe is None:
        return None
    ver = subprocess.run([exe, "-c", "import sys; print(sys.version_info[:2])"], capture_output=True, text=True, check=False)
    return exe if ver.stdout.strip() == str(sys.version_info[:2]) else None


def test_a_non_root_scan_says_so_and_counts_what_it_could_not_read(request):
    """As uid 65534: the virtual environment's interpreter lives under /root, so the system
    Python of the same version runs the checkout with the environment's packages."""
    if os.geteuid() != 0:
        pytest.skip("needs root to drop to an unprivileged user")
    exe = _system_python()
    if exe is None:
        pytest.skip(f"no system python3 of version {sys.version_info[:2]} to run as an unprivileged user")
    site = next(p for p in sys.path if p.endswith("site-packages") and p.startswith(sys.prefix))
    # tmp_path's parents are private to root: the unprivileged user writes in a directory of its own.
    work = Path(tempfile.mkdtemp(prefix="secpolicy-nonroot-"))
    os.chmod(work, 0o777)
    request.addfinalizer(lambda: shutil.rmtree(work, ignore_errors=True))
    out = work / "r.json"
    env = {"PYTHONPATH": f"{REPO}:{site}", "SECPOLICY_NO_CACHE": "1", "HOME": str(work), "PATH": os.environ["PATH"]}
    p = subprocess.run(["setpriv", "--reuid", "65534", "--regid", "65534", "--clear-groups", exe, "-m", "secpolicy",
                        "scan", "--format", "json", "-o", str(out)], capture_output=True, text=True, env=env,
                       timeout=300, cwd=str(REPO), check=False)
    assert p.returncode == 1, p.stderr
    results = json.loads(out.read_text())
    privileged = ("permission denied", "operation not permitted", "needs root")
    denied = [r for r in results["results"]
              if r["status"] == "error" and any(w in (r["reason"] or "").lower() for w in privileged)]
    assert denied, "reading /etc/shadow as nobody must fail"
    assert results["scan"]["host_identity"]["scanner"]["uid"] == 65534
    assert p.stderr.strip() == (
        f"secpolicy: NON-PRIVILEGED SCAN MODE (uid 65534): {len(denied)} rule(s) could not be evaluated for lack of "
        "privileges (they are errors, never passes); run as root for a complete scan."
    )
