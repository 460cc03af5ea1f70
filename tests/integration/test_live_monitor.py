"""The live monitor end to end: real rules, real programs, alerts, a recording that replays
to the same alerts, and lost events counted exactly when the ring buffer is made too small."""

from __future__ import annotations

import io
import shutil
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

from secpolicy.events.bpf_plan import plan_from_keys
from secpolicy.events.matcher import IndexKeys

pytestmark = [pytest.mark.live, pytest.mark.timeout(60)]

POLICY = """\
metadata:
  id: live-test
  title: live monitor test rules
  version: "1.0.0"
rules:
  - id: live-write-watched
    title: Write under the watched directory
    severity: medium
    when: type == "write" and file.path startswith "{watched}/"
    message: "{{proc.exe}} wrote {{file.path}}"
  - id: live-exec-marker
    title: The marker program ran
    severity: low
    when: type == "exec" and proc.exe == "{marker}"
    message: "{{proc.cmdline}}"
  - id: live-three-writes
    title: Three writes in the watched directory by one process
    severity: high
    when: type == "write" and file.path startswith "{watched}/"
    threshold: {{count: 3, within: 10s, by: [proc.pid]}}
"""


def test_monitor_alerts_and_recording_replays_to_the_same_alerts(tmp_path: Path) -> None:
    from secpolicy.cli.core import load
    from secpolicy.events.bpf_monitor import Monitor
    from secpolicy.events.engine import EventEngine
    from secpolicy.events.replay import open_sources, replay

    watched = Path(tempfile.mkdtemp(prefix="secpolicy-mon-"))
    marker = watched / "marker"  # a program of its own (a script's exe is its interpreter, as for auditd)
    shutil.copy("/bin/true", marker)
    policy = tmp_path / "live.yaml"
    policy.write_text(POLICY.format(watched=watched, marker=marker))
    try:
        rules = list(load([str(policy)]).event_rules)
        mon = Monitor(rules, EventEngine(rules))
        mon.start()
        alerts_out, events_out = io.StringIO(), io.StringIO()

        def workload() -> None:
            subprocess.run(["/bin/sh", "-c", (f"{marker} one; for i in 1 2 3; do echo $i > {watched}/f$i; done; "
                            f"echo x > {tmp_path}/not-watched")], check=True, timeout=20)
            time.sleep(0.6)
            mon.stop()

        t = threading.Thread(target=workload)
        t.start()
        summary = mon.run(alerts_out, events_out)
        t.join()
    finally:
        shutil.rmtree(watched, ignore_errors=True)
    live_alerts = alerts_out.getvalue().splitlines()
    by_rule = dict(summary.alerts_by_rule)
    assert by_rule == {"live-exec-marker": 1, "live-write-watched": 3, "live-three-writes": 1}
    assert summary.lost == 0 and summary.loss_windows == []
    assert summary.events_by_type["exec"] >= 2  # sh and the marker (and whatever else ran)
    assert "tracepoint:syscalls:sys_enter_openat" in summary.probes
    assert "tracepoint:syscalls:sys_enter_connect" not in summary.probes  # no rule needs it
    recording = tmp_path / "events.jsonl"
    recording.write_text(events_out.getvalue())
    replayed = io.StringIO()
    rules2 = list(load([str(policy)]).event_rules)
    replay(open_sources([recording]), EventEngine(rules2), replayed)
    assert replayed.getvalue().splitlines() == live_alerts


def test_losses_are_counted_exactly_in_kernel_and_queue() -> None:
    from secpolicy.events.live import LiveSource

    # Four pages of ring buffer (about eighty exec records) drained every 0.5 s, and a
    # user-space queue of 20 records:
    # an exec storm must overflow both, and every record must be delivered or counted.
    src = LiveSource(plan_from_keys([IndexKeys(types=frozenset({"exec"}))]), ringbuf_pages=4,
                     queue_max=20, poll_interval=0.5)
    src.start()
    delivered = 0
    try:
        subprocess.run(["/bin/sh", "-c", "i=0; while [ $i -lt 300 ]; do /bin/true; i=$((i+1)); done"],
                       check=True, timeout=30)
        time.sleep(0.6)
        src.stop()
        for ev in src.events():
            delivered += 1
        stats = src.stats()
    finally:
        src.close()
    assert stats.kernel_lost.get("exec", 0) > 0
    assert stats.queue_dropped.get("exec", 0) > 0
    sent = stats.kernel_sent["exec"]
    assert sent + stats.kernel_lost["exec"] >= 301  # the loop's 300 execs and sh itself
    assert delivered == stats.delivered["exec"]
    # Every exec record the kernel sent was delivered or dropped from the queue, counted.
    assert stats.delivered["exec"] + stats.queue_dropped.get("exec", 0) == sent
    kernel_windows = [w for w in stats.windows if w.where == "kernel"]
    queue_windows = [w for w in stats.windows if w.where == "queue"]
    assert sum(w.count for w in queue_windows) == sum(stats.queue_dropped.values())
    assert kernel_windows and all(w.start <= w.end for w in kernel_windows)
    assert stats.lost()["exec"] == stats.kernel_lost["exec"] + stats.queue_dropped.get("exec", 0)


def test_the_summary_names_the_rules_that_cannot_fire_here(tmp_path: Path) -> None:
    """With the bundled PCI DSS rules: the kernel-module rule can fire only where the kernel has
    module syscalls (not on a kernel built without modules); the summary says which."""
    import json
    import sys

    from secpolicy.events.live import available_types

    summary = tmp_path / "summary.json"
    proc = subprocess.run([sys.executable, "-m", "secpolicy", "monitor", "--policy", "policies/pci-dss/events.yaml",
                           "--duration", "1", "--output", str(tmp_path / "alerts.jsonl"),
                           "--summary-json", str(summary)],
                          capture_output=True, text=True, timeout=120, cwd=Path(__file__).resolve().parents[2],
                          check=False)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(summary.read_text())
    blind = ["pci-10.2.1.7-kernel-module-load"] if available_types()["module_load"] is not None else []
    assert s["rules_cannot_fire"] == blind
    if blind:
        assert "rules that CANNOT FIRE live here" in proc.stderr and "needs module_load" in proc.stderr
        assert "module_load: needed by a rule but not available on this kernel" in s["notes"]
    assert "pci-10.2.1.5-account-change" not in s["rules_cannot_fire"]
    assert s["storm"]["control"]["window_s"] == 5.0 and s["storm"]["control"]["burst"] == 3
