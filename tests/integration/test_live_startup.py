"""Start-up of the live monitor: the programs compiled by bcc are kept (private to this user)
and reused by the next run with the same source, flags, bcc and kernel; a cache another user
could write is ignored."""

from __future__ import annotations

import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from secpolicy.events.bpf_plan import KernelPlan

pytestmark = [pytest.mark.live, pytest.mark.timeout(180)]

TYPES = frozenset({"exec", "open", "write", "chmod", "setxattr", "account_change"})


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    yield tmp_path / "secpolicy" / "bpf"


def _load() -> tuple[bool, list[str]]:
    from secpolicy.events.live.kernel import KernelProbes

    k = KernelProbes(KernelPlan(TYPES), ringbuf_pages=16)
    try:
        k.load()
        return k.cached, list(k.attached)
    finally:
        k.close()


def test_the_second_run_reuses_the_compiled_programs(cache: Path) -> None:
    first, attached = _load()
    assert first is False
    (entry,) = cache.iterdir()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700 and stat.S_IMODE(entry.stat().st_mode) == 0o600
    second, attached_again = _load()
    assert second is True and attached_again == attached
    assert "tracepoint:syscalls:sys_enter_sendto" in attached and "tracepoint:syscalls:sys_exit_fchmod" in attached


def test_a_cache_others_may_write_is_not_used(cache: Path) -> None:
    _load()
    (entry,) = cache.iterdir()
    os.chmod(entry, 0o660)
    cached, _ = _load()
    assert cached is False
    os.chmod(entry, 0o600)
    os.chmod(cache, 0o770)
    cached, _ = _load()
    assert cached is False
