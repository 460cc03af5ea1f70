"""Fixtures the conformance tests share: the bundled policies and the corpus's base tree."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

from secpolicy.vocabulary import builtin_registry, load_policies

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[1]
sys.path.insert(0, str(HERE))
import corpus


@pytest.fixture(scope="module")
def bundle():
    reg = builtin_registry()
    return load_policies([REPO / "policies"], reg), reg


@pytest.fixture(scope="module")
def base_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return corpus.build_base(tmp_path_factory.mktemp("corpus"))
