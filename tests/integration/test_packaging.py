"""An installed wheel carries the policies, templates, BPF sources, schemas and grammar, and
finds them without the checkout."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(out), str(REPO)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    (whl,) = out.glob("secpolicy-*.whl")
    return whl


def test_wheel_contains_data(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    for required in (
        "secpolicy/dsl/grammar.lark",
        "secpolicy/schemas/policy.schema.json",
        "secpolicy/schemas/results.schema.json",
    ):
        assert required in names
    for folder in ("policies", "templates", "bpf"):
        assert any(n.startswith(f"secpolicy/_data/{folder}/") for n in names), folder


def test_installed_wheel_finds_its_data_outside_the_checkout(wheel, tmp_path):
    target = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--no-deps", "--quiet", "--target", str(target), str(wheel)],
        check=True,
        capture_output=True,
        timeout=300,
    )
    code = (
        "import secpolicy.resources as r, json;"
        "print(json.dumps([str(r.policies_dir()), str(r.templates_dir()), str(r.bpf_dir()), r.load_schema('policy')['title']]))"
    )
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    # The dependencies come from this interpreter's site-packages; secpolicy from the target.
    env["PYTHONPATH"] = str(target)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=60, check=False)
    assert out.returncode == 0, out.stderr
    import json

    policies, templates, bpf, title = json.loads(out.stdout)
    for p in (policies, templates, bpf):
        assert p.startswith(str(target)) and Path(p).is_dir()
    assert title == "secpolicy policy file"
