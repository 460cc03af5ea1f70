"""A LiveSource drained by a thread into a list that live tests wait on: the events of their
own processes, files and markers; a whole monitor run on a policy, until a marker's alert; and
the Python child processes whose calls the tests look for."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

__all__ = ["Collector", "collecting", "monitor_until_marker", "only_alert", "python_child"]


def python_child(code: str, binds: tuple[tuple[Path, Path], ...] = ()) -> int:
    """Run `code` in a new Python process; its pid. With `binds` (source, mount point), in a
    private mount namespace where each source is bound on its mount point (the host's mounts
    are left alone)."""
    argv = [sys.executable, "-I", "-c", "import os\nprint(os.getpid(), flush=True)\n" + code]
    if binds:
        script = "mount --make-rprivate / && " + "".join(
            f'mount --bind "${2 * i + 1}" "${2 * i + 2}" && ' for i in range(len(binds))) + f"shift {2 * len(binds)} && exec \"$@\""
        argv = ["unshare", "--mount", "sh", "-c", script, "sh", *(str(x) for b in binds for x in b), *argv]
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    return int(proc.stdout.split()[0])


def monitor_until_marker(policy: Path, work: Callable[[], None], marker: str, write_marker: Callable[[], None],
                         started: Callable[[Any], None] | None = None) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Run a Monitor on the event rules of `policy` (started(monitor) once its probes are
    attached), call `work` and then `write_marker` in a thread, and stop once the alert naming the
    file `marker` is out: every earlier event has been decoded by then. The alerts and the
    events delivered."""
    from secpolicy.cli.core import load
    from secpolicy.events.bpf_monitor import Monitor
    from secpolicy.events.engine import EventEngine

    rules = list(load([str(policy)]).event_rules)
    mon = Monitor(rules, EventEngine(rules))
    mon.start()
    if started is not None:
        started(mon)
    out = io.StringIO()
    events: list[dict[str, Any]] = []
    error: list[BaseException] = []
    seen_marker = threading.Event()

    def body() -> None:
        try:
            work()
            write_marker()
            seen_marker.wait(60)
        except BaseException as exc:  # noqa: BLE001 - re-raised below
            error.append(exc)
        finally:
            mon.stop()

    def on_alert(a: dict[str, Any]) -> None:
        if a["event"].get("file", {}).get("path") == marker:
            seen_marker.set()

    t = threading.Thread(target=body)
    t.start()
    mon.run(out, on_alert=on_alert, on_event=events.append)
    t.join()
    if error:
        raise error[0]
    alerts = [json.loads(line) for line in out.getvalue().splitlines()]
    assert seen_marker.is_set(), alerts
    return alerts, events


class Collector:
    def __init__(self, source: Any) -> None:
        self.source = source
        self.events: list[dict[str, Any]] = []
        self.cond = threading.Condition()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            for ev in self.source.events():
                with self.cond:
                    self.events.append(ev)
                    self.cond.notify_all()
        except BaseException as exc:  # noqa: BLE001 - reported by wait
            self.error = exc

    def wait(self, pred: Callable[[dict[str, Any]], bool], count: int = 1, timeout: float = 20.0) -> list[dict[str, Any]]:
        """At least `count` events matching `pred` (all of them) within `timeout` seconds."""
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                found = [e for e in self.events if pred(e)]
                if len(found) >= count or self.error is not None:
                    break
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self.cond.wait(left)
        assert self.error is None, self.error
        assert len(found) >= count, f"{len(found)} matching events within {timeout} s, wanted {count}"
        return found

    def wait_for(self, pred: Callable[[dict[str, Any]], bool], timeout: float = 20.0) -> dict[str, Any]:
        """The first event matching `pred`."""
        return self.wait(pred, 1, timeout)[0]

    def matching(self, pred: Callable[[dict[str, Any]], bool]) -> list[dict[str, Any]]:
        with self.cond:
            return [e for e in self.events if pred(e)]

    def of(self, pid: int) -> list[dict[str, Any]]:
        return self.matching(lambda e: e["proc"]["pid"] == pid)


def collecting(plan: Any, join_timeout: float = 20.0) -> Iterator[Collector]:
    """The body of a live fixture: a LiveSource of `plan` started and drained into a
    Collector for the fixture's scope, then stopped and closed."""
    from secpolicy.events.live import LiveSource

    source = LiveSource(plan)
    source.start()
    col = Collector(source)
    col.thread.start()
    try:
        yield col
    finally:
        source.stop()
        col.thread.join(timeout=join_timeout)
        source.close()


def only_alert(alerts: list[dict[str, Any]], events: list[dict[str, Any]], pid: int, case: str) -> dict[str, Any]:
    """The one alert of process `pid` (a test case's child); the assertion shows that process's
    alerts and events otherwise."""
    mine = [a for a in alerts if a["event"]["proc"]["pid"] == pid]
    assert len(mine) == 1, (case, mine, [e for e in events if e["proc"]["pid"] == pid])
    return mine[0]
