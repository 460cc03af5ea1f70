"""The live decoder's process view without exit records (no kernel needed): a pid reused by
another process is told apart by its start time, and gone processes are swept out."""

from __future__ import annotations

from secpolicy.events.live.procs import Proc, ProcessView

PID = 4_194_303  # above the default pid_max: no such process in /proc


def test_a_reused_pid_is_another_process() -> None:
    view = ProcessView()
    view.set(PID, Proc("/usr/bin/old", ["old"], "/srv", "old", 1, start=5_000))
    assert view.known(PID, 5_000).exe == "/usr/bin/old"
    assert view.known(PID, 0).exe == "/usr/bin/old"  # a start time unknown: taken as the same
    assert view.known(PID, 6_000) is None
    fresh = view.get(PID, "new", 1, 6_000)
    assert fresh.exe is None and fresh.comm == "new" and fresh.start == 6_000
    assert view.known(PID, 6_000) is fresh


def test_the_view_forgets_gone_processes_when_it_is_full() -> None:
    view = ProcessView(max_size=3)
    for i in range(3):
        view.set(PID - i, Proc(f"/bin/p{i}", None, None, f"p{i}", 1, start=i + 1))
    generation = view.generation
    view.set(PID - 3, Proc("/bin/p3", None, None, "p3", 1, start=9))
    assert list(view.procs) == [PID - 3] and view.sweeps == 1 and view.generation > generation
