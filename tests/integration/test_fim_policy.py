"""fim("name") in policies: a baseline that exists, verifies, was checked recently and shows
no changes passes; changes, a stale check or a tampered baseline fail with evidence."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
from pathlib import Path

SECPOLICY = [sys.executable, "-m", "secpolicy"]

POLICY = """\
metadata: {id: fim-demo, title: FIM demo, version: "1"}
rules:
  - id: fim-baseline-healthy
    title: The web baseline verifies and was checked within a week
    severity: high
    references: {pci-dss: ["11.5.2"]}
    check: fim("web").verified and fim("web").last_check_age <= 7d
  - id: fim-no-changes
    title: No unexpected changes under the web root
    severity: high
    check: fim("web").verified and fim("web").changed + fim("web").added + fim("web").removed == 0
"""


def run(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*SECPOLICY, *args], capture_output=True, text=True, timeout=120, env=env, check=False)


def scan(tmp: Path, db: Path, key: Path) -> dict:
    p = run("scan", "--policy", str(tmp / "p.yaml"), "--fim", f"web={db}", "--fim-key-file", str(key), "--format", "json")
    assert p.returncode in (0, 1), p.stderr
    return {r["rule_id"]: r for r in json.loads(p.stdout)["results"]}


def test_fim_fact_follows_the_baseline(tmp_path):
    tree = tmp_path / "www"
    tree.mkdir()
    (tree / "index.html").write_text("hello\n")
    (tmp_path / "p.yaml").write_text(POLICY)
    (tmp_path / "fim.yaml").write_text(f"version: 1\nname: web\npaths:\n  - path: {tree}\n    attrs: R\n")
    key = tmp_path / "key"
    key.write_bytes(b"k" * 32)
    db = tmp_path / "web.db"
    common = ["--config", str(tmp_path / "fim.yaml"), "--db", str(db), "--key-file", str(key), "--no-progress"]
    assert run("fim", "init", *common).returncode == 0

    # a baseline never checked: no recent check
    r = scan(tmp_path, db, key)
    assert r["fim-baseline-healthy"]["status"] in ("fail", "error")

    assert run("fim", "check", *common).returncode == 0
    r = scan(tmp_path, db, key)
    assert r["fim-baseline-healthy"]["status"] == "pass"
    assert r["fim-no-changes"]["status"] == "pass"

    (tree / "index.html").write_text("defaced\n")
    assert run("fim", "check", *common).returncode == 1
    r = scan(tmp_path, db, key)
    assert r["fim-no-changes"]["status"] == "fail"
    ev = r["fim-no-changes"]["evidence"][0]
    assert ev["observed"] == "1" and str(db) in ev["source"]

    # a tampered baseline is never a healthy one: one bit of a stored hash flipped
    data = bytearray(db.read_bytes())
    at = data.find(hashlib.sha256(b"hello\n").digest())
    assert at > 0
    data[at + 3] ^= 0x01
    db.write_bytes(bytes(data))
    r = scan(tmp_path, db, key)
    assert r["fim-baseline-healthy"]["status"] == "fail"
    ev = r["fim-baseline-healthy"]["evidence"][0]
    assert ev["expression"] == 'fim("web").verified' and ev["observed"] == "false"
