"""`LoadedObject.preload`: the programs of a start are verified side by side, each loaded
once, the first refusal (in the order asked) raised, and nothing still loading once it returns
(a failed build's programs are closed right after). bpf(2) is replaced by a stub here; the
live start-up tests load the real programs."""

from __future__ import annotations

import threading
import time

import pytest

from secpolicy.errors import RuntimeFailure
from secpolicy.events.live import bpfsys, objcache
from secpolicy.events.live.objcache import CompiledObject, LoadedObject, ProgSpec


def _object(names: list[str]) -> LoadedObject:
    progs = tuple(ProgSpec(n, b"\x95" + b"\x00" * 7, ()) for n in names)  # one `exit` each, no maps
    return LoadedObject(CompiledObject("k", (), progs, "GPL"))


def test_programs_load_side_by_side_once_each_and_the_first_refusal_in_order_is_raised(monkeypatch):
    loading: set[str] = set()
    overlap: list[int] = []
    calls: list[str] = []
    ended: list[str] = []
    lock = threading.Lock()
    other = threading.Event()
    fds = iter(range(1000, 2000))

    def load(prog_type: int, name: str, insns: bytes, license: str = "GPL") -> int:
        with lock:
            calls.append(name)
            loading.add(name)
            overlap.append(len(loading))
        # "slow" waits until another load has begun beside it, and is refused last in time
        # but asked first: its refusal is the one raised.
        if name == "slow":
            other.wait(timeout=30)
            time.sleep(0.1)
        else:
            other.set()
        with lock:
            loading.discard(name)
            ended.append(name)
        if name in ("slow", "c"):
            raise RuntimeFailure(f"the kernel refused BPF program {name}")
        return next(fds)

    monkeypatch.setattr(bpfsys, "load_program", load)
    monkeypatch.setattr(objcache.os, "cpu_count", lambda: 2)
    obj = _object(["slow", "b", "c", "d", "e"])
    with pytest.raises(RuntimeFailure, match="program slow"):
        obj.preload(["slow", "b", "b", "c", "d", "e"], bpfsys.PROG_TYPE_TRACEPOINT)
    assert sorted(calls) == ["b", "c", "d", "e", "slow"]  # "b" asked twice, loaded once
    assert max(overlap) == 2  # two at a time, as many as the cores
    assert sorted(ended) == sorted(calls) and not loading  # none still loading after the return
    assert set(obj.prog_fds) == {"b", "d", "e"}
    obj.prog_fds.clear()  # the stub's descriptors are not real ones


def test_a_program_loaded_before_is_not_loaded_again(monkeypatch):
    calls: list[str] = []
    monkeypatch.setattr(bpfsys, "load_program", lambda t, n, i, lic="GPL": calls.append(n) or 7)
    obj = _object(["a", "b"])
    obj.prog_fds["a"] = 5
    obj.preload(["a", "b"], bpfsys.PROG_TYPE_TRACEPOINT)
    assert calls == ["b"] and obj.prog_fds == {"a": 5, "b": 7}
    obj.prog_fds.clear()
