"""Configurations rsyslogd 8.2302 cannot interpret, against rsyslogd itself. A syntax error (in
rsyslog.conf or a file it includes) stops its parser: it says "could not interpret master config
file", keeps running with the statements before the error and reads none after it; a
$IncludeConfig of a file it cannot read ends its input the same way (and it exits where no
action came before). There the rsyslog fact is an ERROR naming the line rsyslogd names. Errors
inside one statement (an unknown legacy line, an unknown module, an action of a module not
loaded, a refused file mode) only skip that statement: the fact skips it the same way."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from secpolicy.errors import EvaluationError
from secpolicy.facts import FactContext
from secpolicy.vocabulary import builtin_registry

sys.path.insert(0, str(Path(__file__).resolve().parent))
from rsyslogd_run import rsyslogd_run

RSYSLOGD = shutil.which("rsyslogd") or shutil.which("rsyslogd", path="/usr/sbin:/sbin")

pytestmark = [
    pytest.mark.skipif(RSYSLOGD is None, reason="rsyslogd is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="needs root (private mount and network namespaces)"),
    pytest.mark.skipif(shutil.which("unshare") is None, reason="unshare is not installed"),
]

# (files under etc/, whether rsyslogd refuses the rest of the configuration)
_CASES: dict[str, tuple[dict[str, str], bool]] = {
    "a block never closed": ({"rsyslog.conf": '*.* /var/log/a.log\nif $msg contains "x" then {\n*.* @@h:514\n'}, True),
    "if without an expression": ({"rsyslog.conf": "if then\n*.* /var/log/a.log\n"}, True),
    "a ruleset() without its block": ({"rsyslog.conf": 'ruleset(name="r")\n*.* @@h:514\n'}, True),
    "a brace too many": ({"rsyslog.conf": "*.* /var/log/a.log\n}\n*.* @@h:514\n"}, True),
    "a filter with no action": ({"rsyslog.conf": "*.* /var/log/a.log\nmail.*\n"}, True),
    "an empty block": ({"rsyslog.conf": "*.* {\n}\n*.* @@h:514\n"}, True),
    "an object inside a block": ({"rsyslog.conf": '*.* {\nmodule(load="imtcp")\n}\n'}, True),
    "an unterminated array": ({"rsyslog.conf": 'action(type="omfwd" target=["a" "b"])\n*.* /var/log/a.log\n'}, True),
    "a function without parentheses": ({"rsyslog.conf": "if re_match then stop\n*.* /var/log/a.log\n"}, True),
    "set without its semicolon": ({"rsyslog.conf": "set $!x = 1\n*.* /var/log/a.log\n"}, True),
    "a syntax error in an included file": ({"rsyslog.conf": "$IncludeConfig /etc/rsyslog.d/*.conf\n*.* /var/log/z.log\n",
                                            "rsyslog.d/10-a.conf": "*.* /var/log/a.log\n",
                                            "rsyslog.d/20-b.conf": "*.* /var/log/b.log\nelse\n"}, True),
    "a block opened in one file, closed in the next": ({"rsyslog.conf": "$IncludeConfig /etc/rsyslog.d/*.conf\n",
                                                        "rsyslog.d/1.conf": "*.* {\n/var/log/a.log\n",
                                                        "rsyslog.d/2.conf": "}\n"}, False),
    "a $IncludeConfig of a missing file": ({"rsyslog.conf": "*.* /var/log/a.log\n$IncludeConfig /etc/nosuch.conf\n"
                                                            "*.* @@h:514\n"}, True),
    "well-formed statements": ({"rsyslog.conf": 'if $msg contains "x" and not ($pri == 3) then {\n*.* /var/log/a & stop\n'
                                                '}\nelse { action(type="omfwd" target=["a", "b"]) }\n'
                                                'set $!x = exists($!y) + 1;\nforeach ($.i in $!l) do { call rr }\n'
                                                'ruleset(name="rr") {\n*.* /var/log/r.log\n}\n'
                                                'template(name="t" type="list") { property(name="msg") }\n'}, False),
    "a glob matching nothing": ({"rsyslog.conf": "$IncludeConfig /etc/none.d/*.conf\n*.* /var/log/a.log\n"}, False),
    "an unknown statement word": ({"rsyslog.conf": "frobnicate\n*.* /var/log/a.log\n"}, False),
    "an unknown legacy directive": ({"rsyslog.conf": "$FooBar on\n*.* /var/log/a.log\n"}, False),
    "an unknown module": ({"rsyslog.conf": 'module(load="imnosuch")\n*.* /var/log/a.log\n'}, False),
    "an unknown action() parameter": ({"rsyslog.conf": 'action(type="omfile" file="/var/log/x" nosuch="1")\n'}, False),
    "a call of a one-letter name": ({"rsyslog.conf": '*.* { call r }\n*.* /var/log/a.log\n'}, True),
    "a brace after a file action on its line": ({"rsyslog.conf": '*.* { /var/log/a.log }\n*.* @@h:514\n'}, True),
    "an include() of a missing file": ({"rsyslog.conf": 'include(file="/etc/nosuch.conf")\n*.* /var/log/a.log\n'},
                                       False),
}


def _validate(root: Path) -> str:
    """What `rsyslogd -N1` says of ROOT/etc, laid over /etc in a private mount namespace."""
    done = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c",
         f'mount -t overlay overlay -o lowerdir="$1/etc":/etc /etc && exec {RSYSLOGD} -N1 -f /etc/rsyslog.conf -i "$1/pid"',
         "sh", str(root)],
        capture_output=True, text=True, errors="replace", timeout=60, check=False)
    return done.stderr


def _refused_at(root: Path, stderr: str) -> str | None:
    """FILE:LINE where rsyslogd stops reading: the syntax error of "could not interpret", or a
    $IncludeConfig it cannot read; None where it reads the whole configuration."""
    if "could not interpret master config file" in stderr:
        m = re.search(r"error during parsing file (\S+), on or before line (\d+): syntax error", stderr)
        assert m, stderr
        return f"{m.group(1)}:{m.group(2)}"
    for m in re.finditer(r"error during parsing file (\S+), on or before line (\d+): error accessing config", stderr):
        line = (root / m.group(1).lstrip("/")).read_text().split("\n")[int(m.group(2)) - 1]
        if line.startswith("$IncludeConfig"):  # include() goes on reading
            return f"{m.group(1)}:{m.group(2)}"
    return None


@pytest.mark.parametrize("case", list(_CASES))
def test_the_fact_is_an_error_where_rsyslogd_stops_reading(tmp_path, case) -> None:
    files, refused = _CASES[case]
    for rel, text in files.items():
        (tmp_path / "etc" / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "etc" / rel).write_text(text)
    theirs = _refused_at(tmp_path, _validate(tmp_path))
    try:
        FactContext(builtin_registry(), str(tmp_path)).fact("rsyslog", ()).file_modes  # noqa: B018
        ours = None
    except EvaluationError as e:
        ours = str(e).split(": ")[0]
    assert (theirs is not None) == refused  # the case is what it says
    assert ours == theirs


# --- a running rsyslogd ------------------------------------------------------------------------------
# What it really does: after a syntax error it runs the statements before it (no emergency
# configuration), and a statement it skips writes nothing. OUT is the run's own directory, @OUT
# a UDP listener on loopback in the run's own network namespace.
_RUNS = {
    "a block never closed": (('$FileCreateMode 0600\n*.* OUT/a.log\n*.* @OUT\n'
                              'if $msg contains "probe" then {\n*.* OUT/c.log\n'), True),
    "a syntax error, the forwarding after it": ("*.* OUT/a.log\n}\n$FileCreateMode 0600\n*.* OUT/b.log\n*.* @OUT\n", True),
    "an action of a module not loaded": ('action(type="omrelp" target="127.0.0.1" port="5514")\n*.* OUT/a.log\n', False),
    "a refused fileCreateMode": ('action(type="omfile" file="OUT/x.log" fileCreateMode="0999")\n*.* OUT/a.log\n', False),
    "an unknown statement word": ("frobnicate\n$FooBar on\n*.* OUT/a.log\n*.* @OUT\n", False),
}


@pytest.mark.parametrize("case", list(_RUNS))
def test_a_running_rsyslogd_does_what_the_fact_says(tmp_path, case) -> None:
    text, refused = _RUNS[case]
    run = tmp_path / "run"
    run.mkdir()
    real = rsyslogd_run(str(RSYSLOGD), run, text)
    assert real["ran"], real["stderr"]  # it keeps running, with part of the configuration
    assert ("could not interpret master config file" in str(real["stderr"])) == refused
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "etc/rsyslog.conf").write_text((run / "rsyslog.conf").read_text())
    if refused:
        with pytest.raises(EvaluationError, match=r"^/etc/rsyslog.conf:\d+: rsyslogd cannot interpret"):
            FactContext(builtin_registry(), str(root)).fact("rsyslog", ())
        written = {n for n in ("a.log", "b.log", "c.log") if n in text}
        assert set(real["files"]) - {"sentinel.log"} < written  # the text's later files are not written
        return
    fact = FactContext(builtin_registry(), str(root)).fact("rsyslog", ())
    files: dict[str, int] = real["files"]  # type: ignore[assignment]
    assert sorted(int(m, 8) for m in fact.file_modes) == sorted(files.values())
    assert bool(fact.forward_targets) == bool(real["forwarded"])
