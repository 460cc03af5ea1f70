"""Live FIM: file events under watched paths re-check just those entries against a real baseline
and raise alerts naming the process and user; the monitor refuses a baseline that does not verify."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from secpolicy.errors import IntegrityError
from secpolicy.events.bpf_plan import (
    MAX_PREFIXES,
    Clause,
    KernelPlan,
    TypeFilter,
    plan_for_rules,
    with_watched_paths,
)
from secpolicy.fim import Key, init_baseline, load_config
from secpolicy.fim.live import FIM_FAILURE_RULE_ID, FIM_RULE_ID, LiveFim
from secpolicy.resources import load_schema

REPO = Path(__file__).resolve().parents[2]
SECPOLICY = [sys.executable, "-m", "secpolicy"]
KEY = b"live-fim-test-key-0123456789abcdef"

# One exec rule that never fires: the monitor runs with rules, the alerts are FIM's.
POLICY = """\
metadata: {id: live-fim-test, title: live FIM test, version: "1"}
rules:
  - id: never
    title: A program that does not exist ran
    severity: low
    when: type == "exec" and proc.exe == "/nonexistent/never"
"""


def cli(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*SECPOLICY, *args], capture_output=True, text=True, timeout=timeout, cwd=REPO,
                          check=False)


def make_tree(tmp: Path) -> tuple[Path, Path, Path]:
    """A watched tree with four baseline files and an excluded one; config, key, db beside it."""
    tree = tmp / "w"
    (tree / "sub").mkdir(parents=True)
    for name in ("mod.txt", "perm.txt", "swap.txt", "gone.txt", "sub/deep.txt"):
        (tree / name).write_text(f"{name} original\n")
    (tree / "keep.swp").write_text("editor swap\n")
    config = tmp / "fim.yaml"
    config.write_text(f"version: 1\nname: livetest\ndatabase: fim.db\npaths:\n"
                      f"  - path: {tree}\n    attrs: R\n    exclude: ['*.swp']\n")
    key = tmp / "fim.key"
    key.write_bytes(KEY)
    return tree, config, key


def init(config: Path, key: Path) -> None:
    init_baseline(load_config(config), None, "/", Key.from_file(str(key)))


def event(etype: str, path: str, *, pid: int = 4242, target: str | None = None, failed: bool = False) -> dict[str, Any]:
    ts = time.time()
    f: dict[str, Any] = {"path": path}
    if target is not None:
        f["target"] = target
    return {"type": etype, "ts": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(ts)) + f".{int(ts % 1 * 1e9):09d}Z",
            "host": "h", "proc": {"pid": pid, "exe": "/usr/bin/editor", "comm": "editor", "auid": 1000,
                                  "session": 7},
            "user": {"uid": 1000, "name": "alice"}, "file": f,
            "outcome": {"result": "failure", "errno": 13} if failed else {"result": "success"}}


class Collected:
    def __init__(self) -> None:
        self.alerts: list[dict[str, Any]] = []
        self.cond = threading.Condition()

    def __call__(self, alert: dict[str, Any]) -> None:
        with self.cond:
            self.alerts.append(alert)
            self.cond.notify_all()

    def wait_for(self, n: int, timeout: float = 8.0) -> list[dict[str, Any]]:
        with self.cond:
            self.cond.wait_for(lambda: len(self.alerts) >= n, timeout)
            return list(self.alerts)


def by_path(alerts: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    out = {a["context"]["key"]["file.path"]: a for a in alerts}
    assert len(out) == len(alerts), [a["message"] for a in alerts]
    return out


def attrs(alert: dict[str, Any]) -> set[str]:
    return {t.split(":", 1)[1] for t in alert["tags"] if t.startswith("fim-attr:")}


def kind(alert: dict[str, Any]) -> str:
    return next(t.split(":", 1)[1] for t in alert["tags"] if t.startswith("fim:"))


ALERT_SCHEMA = load_schema("alert")


# -- the watcher on its own: real baseline, real files, events as the monitor delivers them ----


def test_events_on_one_path_settle_into_one_recheck_and_one_alert(tmp_path: Path) -> None:
    tree, config, key = make_tree(tmp_path)
    init(config, key)
    fim = LiveFim(load_config(config), None, Key.from_file(str(key)), settle=0.2)
    fim.verify()
    got = Collected()
    fim.start(got)
    try:
        mod = tree / "mod.txt"
        for i in range(300):  # a burst of opens for writing, as `echo >> f` in a loop gives
            with open(mod, "a") as fh:
                fh.write(f"{i}\n")
            fim.observe(event("write", str(mod)))
        os.chmod(tree / "perm.txt", 0o600)
        fim.observe(event("chmod", str(tree / "perm.txt"), pid=7))
        (tree / "keep.swp").write_text("excluded\n")
        fim.observe(event("write", str(tree / "keep.swp")))
        fim.observe(event("write", str(tmp_path / "fim.db-journal")))  # the baseline's own files
        fim.observe(event("unlink", str(tree / "gone.txt"), failed=True))  # refused: nothing changed
        fim.observe(event("write", str(tmp_path / "outside.txt")))
        alerts = got.wait_for(2)
        time.sleep(0.5)  # anything else would have come by now
    finally:
        fim.close()
    st = fim.stats()
    found = by_path(got.alerts)
    assert set(found) == {str(tree / "mod.txt"), str(tree / "perm.txt")}
    mod_alert = found[str(tree / "mod.txt")]
    assert mod_alert["rule_id"] == FIM_RULE_ID and mod_alert["severity"] == "high"
    assert kind(mod_alert) == "changed" and attrs(mod_alert) == {"s", "m", "c", "sha256"}
    assert mod_alert["context"]["count"] == 300 and mod_alert["context"]["events_dropped"] == 200
    assert len(mod_alert["events"]) == 100 and mod_alert["event"] is mod_alert["events"][-1]
    assert mod_alert["title"] == "Watched file changed"
    assert mod_alert["message"].startswith(
        f"{tree}/mod.txt changed by /usr/bin/editor (pid 4242, user alice uid 1000, auid 1000, session 7): ")
    size = (tree / "mod.txt").stat().st_size
    assert f"s {len('mod.txt original')+1} -> {size}" in mod_alert["message"]
    perm = found[str(tree / "perm.txt")]
    assert attrs(perm) == {"p", "c"} and "p 0644 -> 0600" in perm["message"]
    assert perm["event"]["proc"]["pid"] == 7
    for a in alerts:
        jsonschema.validate(a, ALERT_SCHEMA)
    assert st["events"] == 301 and st["paths_rechecked"] == 2 and st["alerts"] == 2
    assert st["alerts_by_kind"] == {"changed": 2} and st["errors"] == 0 and st["failure"] is None
    # The baseline is untouched: a full check still sees both changes.
    from secpolicy.fim import check

    res = check(load_config(config), None, "/", Key.from_file(str(key)), record=False)
    assert sorted(c.path for c in res.changed) == [str(tree / "mod.txt"), str(tree / "perm.txt")]


def test_rename_removal_creation_and_a_state_already_reported(tmp_path: Path) -> None:
    tree, config, key = make_tree(tmp_path)
    init(config, key)
    fim = LiveFim(load_config(config), None, Key.from_file(str(key)), settle=0.1, severity="critical")
    fim.verify()
    got = Collected()
    fim.start(got)
    try:
        tmp = tree / ".swap.txt.tmp"
        tmp.write_text("replacement\n")
        fim.observe(event("write", str(tmp)))
        os.replace(tmp, tree / "swap.txt")
        fim.observe(event("rename", str(tmp), target=str(tree / "swap.txt"), pid=11))
        (tree / "gone.txt").unlink()
        fim.observe(event("unlink", str(tree / "gone.txt"), pid=12))
        (tree / "sub" / "new.txt").write_text("new\n")
        fim.observe(event("write", str(tree / "sub" / "new.txt"), pid=13))
        # Moved out of the watched tree: removed under its old name.
        os.replace(tree / "sub" / "deep.txt", tmp_path / "deep.txt")
        fim.observe(event("rename", str(tree / "sub" / "deep.txt"), target=str(tmp_path / "deep.txt"), pid=14))
        first = got.wait_for(4)
        time.sleep(0.3)
        # Touching swap.txt again without changing it any further: nothing new to say.
        fim.observe(event("write", str(tree / "swap.txt"), pid=15))
        time.sleep(0.6)
    finally:
        fim.close()
    found = by_path(got.alerts)
    assert len(first) == 4
    assert {p: kind(a) for p, a in found.items()} == {
        str(tree / "swap.txt"): "changed", str(tree / "gone.txt"): "removed",
        str(tree / "sub" / "new.txt"): "added", str(tree / "sub" / "deep.txt"): "removed"}
    swap = found[str(tree / "swap.txt")]
    assert {"i", "sha256"} <= attrs(swap) and swap["event"]["type"] == "rename"
    assert swap["event"]["proc"]["pid"] == 11 and swap["severity"] == "critical"
    assert found[str(tree / "gone.txt")]["message"].startswith(f"{tree}/gone.txt removed by /usr/bin/editor (pid 12")
    assert found[str(tree / "sub" / "new.txt")]["title"] == "Watched file added"
    st = fim.stats()
    # swap.txt, its temporary, gone.txt, new.txt, deep.txt; then swap.txt once more.
    assert st["paths_rechecked"] == 6 and st["repeats"] == 1 and st["alerts"] == 4


def test_a_file_held_open_by_its_writer_is_rechecked_once_it_is_closed(tmp_path: Path) -> None:
    tree, config, key = make_tree(tmp_path)
    init(config, key)
    fim = LiveFim(load_config(config), None, Key.from_file(str(key)), settle=0.1)
    fim.verify()
    got = Collected()
    target = tree / "mod.txt"
    # A writer that opens once and writes in small pieces until told to stop.
    writer = subprocess.Popen(
        [sys.executable, "-c",
         ("import sys\nf = open(sys.argv[1], 'a')\nprint('open', flush=True)\n"
          "for line in sys.stdin:\n    f.write(line); f.flush()\nf.close()\n"), str(target)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    fim.start(got)
    try:
        assert writer.stdout is not None and writer.stdin is not None
        assert writer.stdout.readline() == "open\n"
        fim.observe(event("write", str(target), pid=writer.pid))
        for i in range(5):
            writer.stdin.write(f"piece {i}\n")
            writer.stdin.flush()
            time.sleep(0.15)
        assert got.alerts == []  # still open for writing: not re-checked yet
        writer.stdin.close()
        writer.wait(10)
        alerts = got.wait_for(1)
    finally:
        if writer.poll() is None:
            writer.kill()
        fim.close()
    assert len(alerts) == 1 and fim.stats()["deferred"] >= 1 and fim.stats()["paths_rechecked"] == 1
    assert f"-> {target.stat().st_size}" in alerts[0]["message"]


def test_a_baseline_swapped_mid_run_stops_live_fim_with_an_integrity_failure(tmp_path: Path) -> None:
    tree, config, key = make_tree(tmp_path)
    init(config, key)
    fim = LiveFim(load_config(config), None, Key.from_file(str(key)), settle=0.1)
    fim.verify()
    got = Collected()
    fim.start(got)
    try:
        db = tmp_path / "fim.db"
        with sqlite3.connect(db) as conn:  # rewrite the header without the key
            (h,) = conn.execute("SELECT body FROM header").fetchone()
            assert '"generation":1' in h
            conn.execute("UPDATE header SET body = ?", (h.replace('"generation":1', '"generation":9'),))
        (tree / "mod.txt").write_text("x\n")
        fim.observe(event("write", str(tree / "mod.txt")))
        alerts = got.wait_for(1)
        fim.observe(event("write", str(tree / "perm.txt")))  # ignored from now on
        time.sleep(0.3)
    finally:
        fim.close()
    assert [a["rule_id"] for a in alerts] == [FIM_FAILURE_RULE_ID] and alerts[0]["severity"] == "critical"
    assert isinstance(fim.failure, IntegrityError)
    assert fim.stats()["failure"] == fim.failure.render() and fim.stats()["paths_rechecked"] == 0
    assert "header MAC does not verify" in fim.failure.render()


def test_a_baseline_deleted_mid_run_is_an_integrity_failure_too(tmp_path: Path) -> None:
    tree, config, key = make_tree(tmp_path)
    init(config, key)
    fim = LiveFim(load_config(config), None, Key.from_file(str(key)), settle=0.1)
    fim.verify()
    got = Collected()
    fim.start(got)
    try:
        (tmp_path / "fim.db").unlink()
        fim.observe(event("chmod", str(tree / "perm.txt")))
        alerts = got.wait_for(1)
    finally:
        fim.close()
    assert [a["rule_id"] for a in alerts] == [FIM_FAILURE_RULE_ID]
    assert isinstance(fim.failure, IntegrityError) and "gone or unreadable" in fim.failure.render()


# -- the kernel plan -------------------------------------------------------------------------


def test_watched_paths_join_the_kernel_plan_for_every_user_and_program() -> None:
    rule_clause = Clause(("/etc/",), None, None)
    plan = KernelPlan(frozenset({"exec", "write", "connect"}),
                      {"write": TypeFilter(uids=frozenset({0}), comm=frozenset({"vi"}), path_prefixes=("/etc/",),
                                           exe=frozenset({"/usr/bin/vi"}), clauses=(rule_clause,))})
    out = with_watched_paths(plan, ["/srv/www", "/srv/www/static", "/opt/app"], ["exec", "write", "rename",
                                                                                "chmod", "chown", "connect"])
    assert out.types == {"exec", "write", "connect", "rename", "chmod", "chown"}
    fim_clause = Clause(("/opt/app", "/srv/www"), "success", None)
    assert out.filters["write"] == TypeFilter(path_prefixes=("/etc/", "/opt/app", "/srv/www"),
                                              clauses=(rule_clause, fim_clause))
    assert out.filters["rename"] == TypeFilter(path_prefixes=("/opt/app", "/srv/www"), clauses=(fim_clause,))
    assert "unlink: needed by file integrity monitoring but not available on this kernel" in out.notes
    # Traced without a filter (every event of the type): stays so.
    assert with_watched_paths(plan, ["/srv"]).filter_for("connect") == TypeFilter()
    bare = KernelPlan(frozenset({"exec", "unlink"}))
    assert with_watched_paths(bare, ["/srv"]).filter_for("unlink") == TypeFilter()
    # A type some rule already takes whole stays whole, now for every user.
    whole = KernelPlan(frozenset({"exec", "chmod"}), {"chmod": TypeFilter(uids=frozenset({0}))})
    assert with_watched_paths(whole, ["/srv"]).filters["chmod"] == TypeFilter()
    # `secpolicy explain` plans from the rules alone.
    assert plan_for_rules([]) == KernelPlan(frozenset({"exec"}), {}, ())


def test_too_many_watched_paths_are_merged_into_their_parents_in_the_kernel() -> None:
    many = [f"/srv/site-{i:02d}/htdocs" for i in range(40)] + ["/etc/ssh", "/etc/pam.d"]
    out = with_watched_paths(KernelPlan(frozenset({"exec"})), many)
    prefixes = out.filters["write"].clauses[0].path_prefixes
    assert len(prefixes) <= MAX_PREFIXES
    assert all(any(p.startswith(q) for q in prefixes) for p in many)
    assert prefixes == ("/etc/pam.d", "/etc/ssh", "/srv")
    assert any(n.startswith("file integrity: watched paths merged") for n in out.notes)


# -- the command ------------------------------------------------------------------------------


def test_monitor_refuses_a_tampered_baseline_before_attaching_anything(tmp_path: Path) -> None:
    _, config, key = make_tree(tmp_path)
    init(config, key)
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    with sqlite3.connect(tmp_path / "fim.db") as conn:
        k, r = conn.execute("SELECT k, r FROM entries LIMIT 1").fetchone()
        conn.execute("UPDATE entries SET r = ? WHERE k = ?", (bytes(r[:-1]) + bytes([r[-1] ^ 1]), k))
    p = cli("monitor", "--policy", str(policy), "--fim", str(config), "--fim-key-file", str(key),
            "--duration", "1", "--output", str(tmp_path / "alerts.jsonl"))
    assert p.returncode == 5, p.stderr
    assert "fim.db" in p.stderr and "probes attached" not in p.stderr
    wrong = tmp_path / "wrong.key"
    wrong.write_bytes(b"another key, also long enough")
    p = cli("monitor", "--policy", str(policy), "--fim", str(config), "--fim-key-file", str(wrong), "--duration", "1")
    assert p.returncode == 5, p.stderr


def test_monitor_fim_options_are_checked(tmp_path: Path) -> None:
    _, config, key = make_tree(tmp_path)
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    p = cli("monitor", "--policy", str(policy), "--fim-db", "x.db", "--duration", "1")
    assert p.returncode == 2 and "need --fim CONFIG" in p.stderr
    p = cli("monitor", "--policy", str(policy), "--fim", str(config), "--duration", "1")
    assert p.returncode == 2 and "--fim-key-file" in p.stderr
    p = cli("monitor", "--policy", str(policy), "--fim", str(config), "--fim-key-file", str(key), "--duration", "1")
    assert p.returncode == 2 and "no FIM baseline here" in p.stderr  # never initialised


# -- live: the real monitor, real probes ----------------------------------------------------------


@pytest.mark.live
@pytest.mark.timeout(30)
def test_monitor_fim_alerts_name_the_process_and_user_and_reach_every_output(tmp_path: Path) -> None:
    tree, config, key = make_tree(tmp_path)
    init(config, key)
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    logdir, logkey = tmp_path / "log", tmp_path / "log.key"
    assert cli("log", "init", str(logdir), "--key-out", str(logkey)).returncode == 0
    ready, out, summary = tmp_path / "ready", tmp_path / "alerts.jsonl", tmp_path / "summary.json"
    store = tmp_path / "events.db"
    mon = subprocess.Popen([*SECPOLICY, "monitor", "--policy", str(policy), "--fim", str(config),
                            "--fim-key-file", str(key), "--duration", "20", "--output", str(out),
                            "--ready-file", str(ready), "--summary-json", str(summary),
                            "--audit-log", str(logdir), "--store", str(store)],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while not ready.exists():
            assert mon.poll() is None, mon.communicate()[1]
            assert time.monotonic() < deadline, "the monitor never got ready"
            time.sleep(0.05)
        # The changes, made by this very process.
        with open(tree / "mod.txt", "a") as f:
            f.write("tampered\n")
        os.chmod(tree / "perm.txt", 0o600)
        (tree / ".swap.tmp").write_text("replaced\n")
        os.replace(tree / ".swap.tmp", tree / "swap.txt")
        os.unlink(tree / "gone.txt")
        (tree / "new.txt").write_text("new\n")
        with open(tree / "keep.swp", "a") as f:  # excluded by the configuration
            f.write("x\n")
        (tmp_path / "outside.txt").write_text("not watched\n")
        while time.monotonic() < deadline and len(out.read_text().splitlines()) < 5:
            time.sleep(0.05)
        mon.send_signal(signal.SIGTERM)  # what is pending is still re-checked
        _, err = mon.communicate(timeout=15)
    finally:
        if mon.poll() is None:
            mon.kill()
            mon.communicate()
    assert mon.returncode == 0, err
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    found = by_path(alerts)
    assert {p: kind(a) for p, a in found.items()} == {
        str(tree / "mod.txt"): "changed", str(tree / "perm.txt"): "changed", str(tree / "swap.txt"): "changed",
        str(tree / "gone.txt"): "removed", str(tree / "new.txt"): "added"}
    assert attrs(found[str(tree / "mod.txt")]) == {"s", "m", "c", "sha256"}
    # the structured change travels with the alert (sinks and the store see it too)
    size = {c["attribute"]: c for c in found[str(tree / "mod.txt")]["fim"]["attributes"]}["s"]
    assert size["old"] != size["new"] and found[str(tree / "gone.txt")]["fim"]["change"] == "removed"
    assert attrs(found[str(tree / "perm.txt")]) == {"p", "c"}
    assert {"i", "sha256"} <= attrs(found[str(tree / "swap.txt")])
    assert found[str(tree / "swap.txt")]["event"]["type"] == "rename"
    assert found[str(tree / "swap.txt")]["event"]["file"]["target"] == str(tree / "swap.txt")
    me = os.path.realpath(sys.executable)
    for a in alerts:
        jsonschema.validate(a, ALERT_SCHEMA)
        assert a["rule_id"] == FIM_RULE_ID
        ev = a["event"]
        assert ev["proc"]["pid"] == os.getpid() and ev["proc"]["exe"] == me
        assert ev["user"]["uid"] == os.geteuid()
        assert f"by {me} (pid {os.getpid()}" in a["message"]
    s = json.loads(summary.read_text())
    assert s["alerts_by_rule"] == {FIM_RULE_ID: 5}
    fim = s["fim"]
    # mod, perm, swap and its temporary, gone, new: not keep.swp, not outside.txt
    assert fim["paths_rechecked"] == 6 and fim["alerts"] == 5 and fim["failure"] is None
    assert fim["alerts_by_kind"] == {"added": 1, "changed": 3, "removed": 1}
    assert "fim: " in err and "5 FIM alerts" in err
    # The same alerts in the store, and as fim_change records in the audit log.
    from secpolicy.auditlog.store import EventStore

    st = EventStore(store, create=False)
    try:
        assert sorted(a["context"]["key"]["file.path"] for a in st.alerts(rule_id=FIM_RULE_ID)) == sorted(found)
    finally:
        st.close()
    v = cli("log", "verify", str(logdir), "--key-file", str(logkey), "--json")
    assert v.returncode == 0, v.stdout + v.stderr
    recs = [json.loads(line)["body"] for seg in sorted(logdir.glob("segment-*.jsonl"))
            for line in seg.read_text().splitlines() if json.loads(line)["kind"] == "record"]
    changes = {r["details"]["path"]: r for r in recs if r["event_type"] == "fim_change"}
    assert {p: r["details"]["change"] for p, r in changes.items()} == {p: kind(a) for p, a in found.items()}
    mod = changes[str(tree / "mod.txt")]
    assert {c["attribute"] for c in mod["details"]["attributes"]} == {"s", "m", "c", "sha256"}
    assert mod["source"]["pid"] == os.getpid() and mod["details"]["actor"]["exe"] == me
    assert not [r for r in recs if r["event_type"] == "alert"]
    assert any(r["event_type"] == "config_loaded" and r["details"]["path"] == str(config) for r in recs)


@pytest.mark.live
@pytest.mark.timeout(30)
def test_a_thousand_small_writes_give_one_recheck_after_the_writer_settles(tmp_path: Path) -> None:
    from secpolicy.events.bpf_monitor import Monitor
    from secpolicy.events.engine import EventEngine

    tree, config, key = make_tree(tmp_path)
    init(config, key)
    fim = LiveFim(load_config(config), None, Key.from_file(str(key)))
    fim.verify()
    mon = Monitor([], EventEngine([]), fim=fim)
    got = Collected()
    appends, piecewise = tree / "mod.txt", tree / "perm.txt"
    pids: dict[str, int] = {}

    def workload() -> None:
        # 1,000 opens for appending (one event each) and 1,000 writes through one descriptor.
        loop = f"i=0; while [ $i -lt 1000 ]; do echo $i >> {appends}; i=$((i+1)); done"
        a = subprocess.Popen(["/bin/sh", "-c", loop])
        pieces = ("import sys, time\nf = open(sys.argv[1], 'a')\nfor i in range(1000):\n"
                  "    f.write(f'{i}\\n'); f.flush(); time.sleep(0.0008)\nf.close()\n")
        b = subprocess.Popen([sys.executable, "-c", pieces, str(piecewise)])
        pids["sh"], pids["py"] = a.pid, b.pid
        a.wait(20)
        b.wait(20)
        got.wait_for(2)
        mon.stop()

    mon.start()
    t = threading.Thread(target=workload)
    t.start()
    summary = mon.run(None, on_alert=got)
    t.join()
    fim_stats = summary.fim
    assert fim_stats is not None
    found = by_path(got.alerts)
    assert set(found) == {str(appends), str(piecewise)}
    assert fim_stats["paths_rechecked"] == 2 and fim_stats["rechecks"] <= 2
    sh, py = found[str(appends)], found[str(piecewise)]
    assert sh["context"]["count"] == 1000 and sh["event"]["proc"]["pid"] == pids["sh"]
    assert py["context"]["count"] == 1 and py["event"]["proc"]["pid"] == pids["py"]
    # Each re-check saw the file as its writer left it.
    assert f"-> {appends.stat().st_size}" in sh["message"]
    assert f"-> {piecewise.stat().st_size}" in py["message"]
    print(f"live FIM: last change to alert {fim_stats['latency_s']}, deferred {fim_stats['deferred']}")


@pytest.mark.live
@pytest.mark.timeout(30)
def test_monitor_exits_5_when_the_baseline_is_rewritten_while_it_runs(tmp_path: Path) -> None:
    tree, config, key = make_tree(tmp_path)
    init(config, key)
    policy = tmp_path / "p.yaml"
    policy.write_text(POLICY)
    ready, out, summary = tmp_path / "ready", tmp_path / "alerts.jsonl", tmp_path / "summary.json"
    mon = subprocess.Popen([*SECPOLICY, "monitor", "--policy", str(policy), "--fim", str(config),
                            "--fim-key-file", str(key), "--duration", "20", "--output", str(out),
                            "--ready-file", str(ready), "--summary-json", str(summary)],
                           cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 15
        while not ready.exists():
            assert mon.poll() is None, mon.communicate()[1]
            assert time.monotonic() < deadline, "the monitor never got ready"
            time.sleep(0.05)
        with sqlite3.connect(tmp_path / "fim.db") as conn:
            (h,) = conn.execute("SELECT body FROM header").fetchone()
            conn.execute("UPDATE header SET body = ?", (h.replace('"generation":1', '"generation":2'),))
        os.chmod(tree / "perm.txt", 0o600)
        while time.monotonic() < deadline and not out.read_text():
            time.sleep(0.05)
        mon.send_signal(signal.SIGTERM)
        _, err = mon.communicate(timeout=15)
    finally:
        if mon.poll() is None:
            mon.kill()
            mon.communicate()
    assert mon.returncode == 5, err
    alerts = [json.loads(line) for line in out.read_text().splitlines()]
    assert [a["rule_id"] for a in alerts] == [FIM_FAILURE_RULE_ID]
    assert alerts[0]["event"]["proc"]["pid"] == os.getpid()
    assert "header MAC does not verify" in json.loads(summary.read_text())["fim"]["failure"]
    assert "fim: STOPPED" in err and err.rstrip().endswith("header MAC does not verify (modified)")
