"""Every command example of README.md and docs/*.md runs: the lines of ```sh blocks (and the
`run:` steps of CI examples), in order, in a scratch directory prepared with the files the
examples name. Synopses (`[--option]`, `a | b`, `...`) are not commands and are not run."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
TESTS = REPO / "tests"
DOCS = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BIN = Path(sys.executable).parent

# Placeholders in the examples that name this machine's system paths, and what the suite
# uses instead (it must not write /etc or /var/lib, nor wait a minute for a monitor).
SUBSTITUTE = {
    "/mnt/image": str(TESTS / "fixtures" / "roots" / "hardened"),  # "a mounted image"
    "/var/log/audit/audit.log": str(TESTS / "fixtures" / "events" / "workload-debian12.log"),  # a real auditd log
    "/etc/secpolicy/": "{sandbox}/etc-secpolicy/",
    "/var/lib/secpolicy/": "{sandbox}/var-lib-secpolicy/",
    "--duration 60": "--duration 3",
    "./scripts/": f"{REPO}/scripts/",
    # a remote host: this machine through a private sshd on loopback (its own keys)
    "ssh://root@web1.example.com": "{ssh_target}",
    "~/.ssh/secpolicy_scan": "{ssh_key}",
}
# Examples that cannot run inside the suite, and why.
NOT_HERE = {
    "./scripts/test": "runs the whole test suite, of which this test is a part",
    "pip wheel --no-deps -w dist .": "builds a wheel of the checkout (test_packaging.py and test_deploy.py do)",
    "ansible-playbook -i inventory.ini deploy/ansible/site.yml -e secpolicy_wheel=dist/secpolicy-0.1.0-py3-none-any.whl":
        "needs an inventory of hosts reachable over SSH (test_deploy.py runs the playbook against a private sshd)",
    "secpolicy fleet report --store postgresql://secpolicy@db.example/fleet --format pdf -o fleet.pdf --framework pci-dss":
        "needs a PostgreSQL server (test_fleet.py runs the same against a private one)",
}
LIVE = ("secpolicy monitor", "secpolicy doctor")
REMOTE = "--target ssh://"
OK_CODES = {0, 1, 4}  # compliant, non-compliant, compliant through waivers: the command ran


@dataclass(frozen=True)
class Example:
    doc: str
    line: int
    command: str

    @property
    def live(self) -> bool:
        return self.command.startswith(LIVE)

    @property
    def remote(self) -> bool:
        return REMOTE in self.command


def _is_synopsis(cmd: str) -> bool:
    return bool(re.search(r"\[-|\[[A-Z]|\(--|\.\.\.", cmd))


def examples(doc: Path) -> list[Example]:
    out: list[Example] = []
    text = doc.read_text()
    for m in re.finditer(r"^```(\w*)\n(.*?)^```", text, re.DOTALL | re.MULTILINE):
        lang, body = m.group(1), m.group(2)
        first = text[: m.start(2)].count("\n") + 1
        lines = body.split("\n")
        if lang in ("sh", "bash", "console"):
            i = 0
            while i < len(lines):
                start, cmd = i, lines[i]
                while cmd.endswith("\\") and i + 1 < len(lines):
                    i += 1
                    cmd = cmd[:-1] + " " + lines[i].strip()
                i += 1
                cmd = re.sub(r"\s+#.*$", "", cmd).strip()
                if cmd and not cmd.startswith("#") and not _is_synopsis(cmd):
                    out.append(Example(doc.name, first + start, cmd))
        elif lang == "yaml":
            for k, line in enumerate(lines):
                run = re.match(r"\s*-?\s*run:\s*(.+)$", line)
                if run:
                    out.append(Example(doc.name, first + k, run.group(1).strip()))
    return out


def _tailoring_example() -> str:
    """The tailoring file docs/policy-format.md shows (its examples lint and scan with it)."""
    text = (REPO / "docs" / "policy-format.md").read_text()
    m = re.search(r"```yaml\n(metadata:\n  id: acme-bastions.*?)```", text, re.DOTALL)
    assert m, "docs/policy-format.md lost its tailoring example"
    return m.group(1)


def _readme_rule() -> str:
    text = (REPO / "README.md").read_text()
    m = re.search(r"A rule:\n\n```yaml\n(.*?)```", text, re.DOTALL)
    assert m, "README.md lost its example rule"
    return m.group(1)


@pytest.fixture(scope="module")
def sandbox(tmp_path_factory) -> Path:
    """The files the examples name: this host's earlier results (same host, as `diff` and
    `--history` require), a policy directory holding the README's example rule, the tailoring
    file of docs/policy-format.md, a FIM configuration and key."""
    d = tmp_path_factory.mktemp("docs")
    (d / "policies").symlink_to(REPO / "policies")
    (d / "my-policies").mkdir()
    (d / "my-policies" / "ssh.yaml").write_text(
        'metadata: {id: my-ssh, title: My SSH rules, version: "1.0"}\nrules:\n' + _readme_rule())
    (d / "acme.yaml").write_text(_tailoring_example())
    watched = d / "watched"
    watched.mkdir()
    (watched / "app.conf").write_text("listen 127.0.0.1\n")
    (d / "fim.yaml").write_text(f"version: 1\nname: docs\ndatabase: fim.db\npaths:\n  - path: {watched}\n    attrs: R\n")
    (d / "fim.key").write_bytes(os.urandom(32))
    for sub in ("etc-secpolicy", "var-lib-secpolicy"):
        (d / sub).mkdir()
    earlier = subprocess.run([str(BIN / "secpolicy"), "scan", "--format", "json", "-o", str(d / "yesterday.json")],
                             capture_output=True, text=True, check=False, cwd=d)
    assert earlier.returncode in OK_CODES, earlier.stderr
    for name in ("june.json", "july.json", "baseline.json"):
        shutil.copy(d / "yesterday.json", d / name)
    for where in ("results/web1", "deploy/ansible/results/web1"):
        (d / where).mkdir(parents=True)
        shutil.copy(d / "yesterday.json", d / where / "results.json")
    sys.path.insert(0, str(TESTS / "integration"))
    from oci_images import Entry, build_oci

    layout = build_oci(d / "app-oci", [[Entry("etc", "dir", mode=0o755),
                                        Entry("etc/os-release", data=b'ID=debian\nVERSION_ID="12"\n')]])
    subprocess.run(["tar", "-C", str(layout), "-cf", str(d / "app.tar"), "."], check=True)
    return d


def _run(ex: Example, sandbox: Path, ssh: dict[str, str] | None = None) -> None:
    cmd = ex.command
    for old, new in SUBSTITUTE.items():
        if old in cmd:
            cmd = cmd.replace(old, new.format(sandbox=sandbox, **(ssh or {})))
    env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", "GITHUB_OUTPUT": str(sandbox / "github_output")}
    p = subprocess.run(["bash", "-c", cmd], capture_output=True, text=True, cwd=sandbox, env=env, timeout=600,
                       check=False)
    assert p.returncode in OK_CODES, f"{ex.doc}:{ex.line}: `{ex.command}` exited {p.returncode}\n{p.stderr[-2000:]}"
    assert "Traceback" not in p.stderr, f"{ex.doc}:{ex.line}: {p.stderr[-2000:]}"


ALL = [ex for doc in DOCS for ex in examples(doc)]


def test_the_docs_have_examples_and_every_one_is_run_or_explained():
    assert {ex.doc for ex in ALL} >= {"README.md", "reports.md", "fim.md"}
    assert len(ALL) >= 20
    skipped = [ex.command for ex in ALL if ex.command in NOT_HERE]
    assert skipped == list(NOT_HERE), "NOT_HERE lists an example the docs no longer have"


@pytest.mark.parametrize("doc", sorted({ex.doc for ex in ALL if not ex.live}))
def test_doc_examples_run(doc, sandbox):
    for ex in ALL:
        if ex.doc == doc and not ex.live and not ex.remote and ex.command not in NOT_HERE:
            _run(ex, sandbox)


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("sshd") is None and not os.path.exists("/usr/sbin/sshd"),
                    reason="remote examples scan this machine through a private sshd: needs root and openssh-server")
def test_remote_doc_examples_run(sandbox, tmp_path):
    sys.path.insert(0, str(TESTS / "integration"))
    from sshd_server import start_sshd, stop_sshd

    remote = [ex for ex in ALL if ex.remote]
    assert {ex.doc for ex in remote} >= {"README.md", "fleet.md"}
    server = start_sshd(tmp_path / "sshd")
    try:
        ssh = {"ssh_target": f"ssh://root@127.0.0.1:{server.port} --ssh-option UserKnownHostsFile={server.known_hosts}"
                             f" --ssh-option IdentityFile={server.client_key}",
               "ssh_key": str(server.client_key)}
        for ex in remote:
            _run(ex, sandbox, ssh)
    finally:
        stop_sshd(server)


@pytest.mark.live
def test_live_doc_examples_run(sandbox):
    live = [ex for ex in ALL if ex.live]
    assert live
    for ex in live:
        _run(ex, sandbox)


def test_the_waiver_example_is_a_valid_waiver_file(sandbox):
    text = (REPO / "docs" / "policy-format.md").read_text()
    m = re.search(r"## Waivers\n```yaml\n(.*?)```", text, re.DOTALL)
    assert m
    (sandbox / "waivers.yaml").write_text(m.group(1))
    _run(Example("policy-format.md", 0, "secpolicy lint --waivers waivers.yaml"), sandbox)
    _run(Example("policy-format.md", 0, "secpolicy scan --waivers waivers.yaml --quiet > /dev/null"), sandbox)
