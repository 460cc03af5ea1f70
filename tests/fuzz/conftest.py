from __future__ import annotations

import fuzz_helpers
import pytest


@pytest.fixture(scope="session", autouse=True)
def compile_cache(tmp_path_factory: pytest.TempPathFactory) -> None:
    """One compile cache for the fuzz cases of this process, below pytest's own temp dir."""
    fuzz_helpers.CACHE_HOME = str(tmp_path_factory.mktemp("compile-cache"))
