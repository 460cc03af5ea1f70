"""Start-up of the live monitor: the programs compiled by bcc are kept (private to this user)
and reused by the next run with the same source, flags, bcc and kernel; a cache another user
could write is ignored."""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

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


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, bool, list[str]]]:
    """One run on an empty cache (the module's only compilation that just fills a cache):
    its cache directory, whether it came from a cache, and what it attached."""
    home = tmp_path_factory.mktemp("bpf-cache")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("XDG_CACHE_HOME", str(home))
        cached, attached = _load()
    yield home / "secpolicy" / "bpf", cached, attached


def test_the_second_run_reuses_the_compiled_programs(first_run: tuple[Path, bool, list[str]],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    cache, first, attached = first_run
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache.parents[1]))
    assert first is False
    (entry,) = cache.iterdir()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700 and stat.S_IMODE(entry.stat().st_mode) == 0o600
    second, attached_again = _load()
    assert second is True and attached_again == attached
    assert "tracepoint:syscalls:sys_enter_sendto" in attached and "tracepoint:syscalls:sys_exit_fchmod" in attached


def test_a_cache_others_may_write_is_not_used(cache: Path, first_run: tuple[Path, bool, list[str]]) -> None:
    # this test's cache holds what a first run writes (a copy of that run's entry, mode kept)
    cache.mkdir(parents=True, mode=0o700)
    (compiled,) = first_run[0].iterdir()
    shutil.copy2(compiled, cache / compiled.name)
    (entry,) = cache.iterdir()
    assert stat.S_IMODE(cache.stat().st_mode) == 0o700 and stat.S_IMODE(entry.stat().st_mode) == 0o600
    from secpolicy.events.live.objcache import read_cached

    assert read_cached(entry.name.removesuffix(".json")) is not None  # as it is, a load would use it
    os.chmod(entry, 0o660)
    cached, _ = _load()
    assert cached is False
    os.chmod(entry, 0o600)
    os.chmod(cache, 0o770)
    cached, _ = _load()
    assert cached is False


def test_the_typed_build_loads_where_the_kernel_allows_it(cache: Path) -> None:
    """Task storage and reads through the typed task pointer (files, fs, mm) are the cheaper
    build; a verifier that refused it would fall back silently to helper reads."""
    from secpolicy.events.live.kernel import KernelProbes

    release = tuple(int(x) for x in os.uname().release.split(".")[:2] if x.isdigit())
    k = KernelProbes(KernelPlan(TYPES), ringbuf_pages=16)
    try:
        k.load()
        typed, why = k.task_storage, k.typed_failure
    finally:
        k.close()
    if not Path("/sys/kernel/btf/vmlinux").exists() or release < (6, 1):
        pytest.skip("the kernel has no BTF or is older than 6.1: the build with helper reads is the one to use")
    assert typed, why


def test_the_build_with_helper_reads_loads_when_the_typed_one_is_refused(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The fallback for kernels that refuse the typed build: it must compile, load and attach
    the same programs, and say why the typed one was not used."""
    from secpolicy.events.live import kernel

    if not Path("/sys/kernel/btf/vmlinux").exists():
        pytest.skip("the kernel has no BTF: the build with helper reads is the only one tried")
    real = kernel.LoadedObject
    tried: list[bool] = []

    def refuse_typed(compiled: Any, sizes: dict[str, int]) -> Any:
        typed = not tried
        tried.append(typed)
        if typed:
            raise kernel.RuntimeFailure("refused here to test the fallback")
        return real(compiled, sizes)

    monkeypatch.setattr(kernel, "LoadedObject", refuse_typed)
    k = kernel.KernelProbes(KernelPlan(TYPES), ringbuf_pages=16)
    try:
        k.load()
        assert k.task_storage is False and k.typed_failure == "refused here to test the fallback"
        assert "tracepoint:syscalls:sys_enter_openat" in k.attached and "tracepoint:syscalls:sys_exit_fchmod" in k.attached
    finally:
        k.close()
    assert tried == [True, False]
