"""The rsyslog rules (CIS 6.1.3.4, 6.1.3.7, PCI 10.3.3) against rsyslogd itself, on crafted
trees: what `rsyslogd -N1` loads (the tree's rsyslog.conf and rsyslog.d bound over the host's in
a private mount namespace; -o for the text it read, -d for the modules it loads) and what a
running rsyslogd does (the mode of the files it creates, the messages it forwards)."""

from __future__ import annotations

import contextlib
import functools
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from secpolicy.app.policies import load_policy_set
from secpolicy.engine import scan
from secpolicy.facts import FactContext
from secpolicy.facts.base import FactRegistry
from secpolicy.rules import PolicySet
from secpolicy.vocabulary import builtin_registry

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "conformance"))
import corpus
from rsyslogd_run import rsyslogd_modes

RSYSLOGD = shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin:/sbin")

pytestmark = [
    pytest.mark.skipif(RSYSLOGD is None, reason="rsyslogd is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (a private mount namespace)"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare is not installed"),
]

MODE_RULE = "cis-6.1.3.4-rsyslog-file-create-mode"
RECEIVE_RULE = "cis-6.1.3.7-rsyslog-not-receiving"
FORWARD_RULE = "pci-10.3.3-logs-sent-off-host"


@pytest.fixture(scope="module")
def base_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return corpus.build_base(tmp_path_factory.mktemp("corpus"))


def _copy(base: Path, dest: Path, files: dict[str, str]) -> Path:
    """The base tree with files of etc/ written over it."""
    shutil.copytree(base, dest, symlinks=True)
    for rel, text in files.items():
        p = dest / "etc" / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text)
    return dest


@functools.cache
def _packs() -> tuple[PolicySet, FactRegistry]:
    """The bundled packs, loaded once per worker: each verdict is a scan of one rule, in process."""
    reg = builtin_registry()
    return load_policy_set([str(REPO / "policies")], reg), reg


def _verdict(root: Path, rule_id: str) -> str:
    ps, reg = _packs()
    (result,) = scan(ps, reg, root=str(root), rule_ids=[rule_id]).to_results()["results"]
    return str(result["status"])


def _fact(root: Path) -> Any:
    return FactContext(builtin_registry(), str(root)).fact("rsyslog", ())


def _loaded(root: Path) -> tuple[str, str]:
    """(the configuration rsyslogd -N1 -o writes, its debug output) for ROOT/etc/rsyslog.conf
    and ROOT/etc/rsyslog.d, bound over the host's in a private mount namespace."""
    (root / "etc/rsyslog.d").mkdir(parents=True, exist_ok=True)
    out = root / "full.conf"
    script = (f"mount --bind {root}/etc/rsyslog.conf /etc/rsyslog.conf && "
              f"mount --bind {root}/etc/rsyslog.d /etc/rsyslog.d && "
              f"{RSYSLOGD} -N1 -d -f /etc/rsyslog.conf -o {out} -i {root}/rsyslogd.pid")
    done = subprocess.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
                          capture_output=True, text=True, timeout=120, check=False)
    assert out.exists(), done.stderr
    return out.read_text(), done.stdout + done.stderr


def _input_modules(debug: str) -> set[str]:
    """The input modules (type 0) rsyslogd loads, as its debug output names them (a path
    where the configuration gives one)."""
    found = re.findall(r"modules\.c: module (\S+) of type 0 being loaded", debug)
    return {m.removeprefix("builtin:").rsplit("/", 1)[-1].removesuffix(".so") for m in found}


_NETWORK_INPUTS = {"imtcp", "imptcp", "imudp", "imrelp", "imgssapi"}


# --- 6.1.3.7: a network input, as rsyslogd loads it ------------------------------------------------
@pytest.mark.parametrize("conf", [
    # RainerScript lets an object run over lines, with comments inside
    'module(load=\n  "imtcp" # listener\n)\ninput(type=\n  "imtcp" port="514")\n',
    # a module named by its path
    'module(load="/usr/lib/x86_64-linux-gnu/rsyslog/imtcp.so")\ninput(type="imtcp" port="514")\n',
    # UDP receives remote logs as TCP does
    'module(load="imudp")\ninput(type="imudp" port="514")\n',
    "$ModLoad imudp\n$UDPServerRun 514\n",
], ids=["object-over-lines", "module-path", "imudp", "legacy-imudp"])
def test_a_network_input_rsyslogd_loads_fails_6_1_3_7(base_tree, tmp_path, conf) -> None:
    root = _copy(base_tree, tmp_path / "t", {"rsyslog.d/10-recv.conf": conf})
    _, debug = _loaded(root)
    loaded = _input_modules(debug) & _NETWORK_INPUTS
    assert loaded, debug[-2000:]
    assert _verdict(root, RECEIVE_RULE) == "fail"
    assert loaded <= set(_fact(root).modules)


def test_no_network_input_passes_6_1_3_7(base_tree, tmp_path) -> None:
    root = _copy(base_tree, tmp_path / "t", {"rsyslog.d/10-recv.conf": '  #module(load="imtcp")\n'})
    _, debug = _loaded(root)
    assert not _input_modules(debug) & _NETWORK_INPUTS
    assert not set(_fact(root).modules) & _NETWORK_INPUTS
    assert _verdict(root, RECEIVE_RULE) == "pass"


# --- 6.1.3.4: the mode of the files rsyslogd creates ----------------------------------------------
def _rsyslogd_modes(tmp_path: Path, confs: dict[str, str]) -> dict[str, dict[str, int]]:
    return rsyslogd_modes(str(RSYSLOGD), tmp_path, confs)


# (rsyslog.conf with OUT for a directory, what the tree's rsyslog.d/50-local.conf gets with
# /var/log for OUT): each created file's mode is compared with the fact's file_modes, and a
# mode beyond 0640 must fail 6.1.3.4.
_MODE_CASES = {
    # RainerScript's omfile ignores $FileCreateMode: its default is 0644
    "an action() after $FileCreateMode 0640": '$FileCreateMode 0640\n*.* action(type="omfile" file="OUT/a.log")\n',
    "an action()'s own fileCreateMode": '$FileCreateMode 0640\n*.* action(type="omfile" file="OUT/a.log" '
                                        'fileCreateMode="0644")\n',
    # a legacy action takes the $FileCreateMode read before it, not a later one
    "$FileCreateMode after the rule": "$FileCreateMode 0644\n*.* OUT/a.log\n$FileCreateMode 0640\n",
    # rsyslogd refuses a mode without its leading 0 and keeps the one before
    "a mode without its leading 0": "$FileCreateMode 0644\n$FileCreateMode 640\n*.* OUT/a.log\n",
    # group-writable: the benchmark's mask 0137 forbids it
    "0620": "$FileCreateMode 0620\n*.* OUT/a.log\n",
}


def test_file_modes_are_the_modes_rsyslogd_creates_files_with(tmp_path) -> None:
    real = _rsyslogd_modes(tmp_path, _MODE_CASES)
    for i, (case, text) in enumerate(_MODE_CASES.items()):
        root = tmp_path / f"root{i}"
        (root / "etc").mkdir(parents=True)
        (root / "etc/rsyslog.conf").write_text(text.replace("OUT", "/var/log"))
        assert [int(m, 8) for m in _fact(root).file_modes] == list(real[case].values()), case
        assert any(m & 0o137 for m in real[case].values()), case  # each case creates a file beyond 0640


@pytest.mark.parametrize("case", list(_MODE_CASES))
def test_a_file_rsyslogd_creates_beyond_0640_fails_6_1_3_4(base_tree, tmp_path, case) -> None:
    root = _copy(base_tree, tmp_path / "t", {})
    conf = root / "etc/rsyslog.conf"
    text = conf.read_text()
    assert "$FileCreateMode 0640\n" in text
    # the case's settings and rule where the base has its $FileCreateMode, before all its rules
    conf.write_text(text.replace("$FileCreateMode 0640\n", _MODE_CASES[case].replace("OUT", "/var/log")))
    full, _ = _loaded(root)
    assert _MODE_CASES[case].replace("OUT", "/var/log") in full  # rsyslogd read the case as written
    assert _verdict(root, MODE_RULE) == "fail"


def test_the_base_tree_passes_6_1_3_4(base_tree, tmp_path) -> None:
    root = _copy(base_tree, tmp_path / "t", {})
    real = _rsyslogd_modes(tmp_path, {"base": "$FileCreateMode 0640\n*.* OUT/a.log\n"})
    assert real["base"] == {"a.log": 0o640}
    assert set(_fact(root).file_modes) == {"0640"}
    assert _verdict(root, MODE_RULE) == "pass"


# --- PCI 10.3.3: what rsyslogd forwards, and where ----------------------------------------------
def _forwarded(tmp_path: Path, rules: str) -> bool:
    """Whether a running rsyslogd whose rules are RULES (PORT for a UDP port listening here)
    forwards a message that comes in on its own input socket."""
    d = tmp_path / "fwd"
    d.mkdir(parents=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as listener:
        listener.bind(("127.0.0.1", 0))
        listener.settimeout(0.2)
        port = listener.getsockname()[1]
        (d / "rsyslog.conf").write_text(
            f'module(load="imuxsock" SysSock.Use="off")\ninput(type="imuxsock" Socket="{d}/log.sock")\n'
            + f"*.* {d}/seen.log\n" + rules.replace("PORT", str(port)))
        proc = subprocess.Popen([str(RSYSLOGD), "-n", "-f", str(d / "rsyslog.conf"), "-i", str(d / "pid")],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 30
            seen = None  # when the first message reached the rules (the file action before them)
            while time.monotonic() < deadline and (seen is None or time.monotonic() < seen + 3):
                if (d / "log.sock").exists():
                    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s, contextlib.suppress(OSError):
                        s.sendto(b"<13>secpolicy: probe", str(d / "log.sock"))
                with contextlib.suppress(TimeoutError):
                    if b"secpolicy: probe" in listener.recv(65536):
                        return True
                if seen is None and (d / "seen.log").exists():
                    seen = time.monotonic()
            assert seen is not None, "no message reached rsyslogd's rules"
            return False
        finally:
            proc.kill()
            proc.wait()


def test_a_forward_after_a_stop_of_every_message_sends_nothing(base_tree, tmp_path) -> None:
    assert _forwarded(tmp_path, "*.* @127.0.0.1:PORT\n")  # the control: this rsyslogd forwards
    assert not _forwarded(tmp_path / "s", "*.* stop\n*.* @127.0.0.1:PORT\n")
    root = _copy(base_tree, tmp_path / "t", {"rsyslog.d/10-drop.conf": "*.* stop\n"})
    full, _ = _loaded(root)
    assert full.index("*.* stop") < full.index('type="omfwd"')  # read before the base's forward
    assert _verdict(root, FORWARD_RULE) == "fail"
    assert _fact(root).forward_targets == ()


@pytest.mark.parametrize("conf", [
    "*.* @@127.0.0.1:514\n",
    '*.* action(type="omfwd" target="localhost" port="514" protocol="tcp")\n',
    "*.* @[::1]:514\n",
])
def test_a_forward_to_the_loopback_is_not_off_host(base_tree, tmp_path, conf) -> None:
    root = _copy(base_tree, tmp_path / "t", {"rsyslog.d/60-remote.conf": conf})
    full, _ = _loaded(root)
    assert conf in full and "loghost" not in full  # the only forward rsyslogd reads is this one
    assert _verdict(root, FORWARD_RULE) == "fail"
    assert _fact(root).forward_targets[0] in ("127.0.0.1", "localhost", "::1")


@pytest.mark.parametrize("conf", [
    # an action over lines, a comment holding a quote inside it
    '*.* action(type="omfwd" # "old" target\n  target="loghost.example.internal"\n  port="514" protocol="tcp")\n',
    ':msg, contains, "sshd" @@(o)loghost.example.internal:514\n',
])
def test_a_forward_off_host_passes(base_tree, tmp_path, conf) -> None:
    root = _copy(base_tree, tmp_path / "t", {"rsyslog.d/60-remote.conf": conf})
    full, _ = _loaded(root)
    assert "loghost.example.internal" in full
    assert _fact(root).forward_targets == ("loghost.example.internal",)
    assert _verdict(root, FORWARD_RULE) == "pass"
