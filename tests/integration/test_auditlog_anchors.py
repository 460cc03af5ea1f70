"""Rollback and anchoring: a log cut back to any earlier seal fails `log verify` wherever the
host (or a witness) still remembers it; writers sign and copy checkpoints as `log init` set up;
`log prove` anchors proofs to checkpoints and `prove check` refuses what is not anchored."""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from secpolicy.auditlog.canonical import canonical
from secpolicy.auditlog.checkpoint import load_checkpoints
from secpolicy.auditlog.log import line_hash
from secpolicy.auditlog.merkle import Frontier, leaf_hash
from secpolicy.cli.auditlog import COMMANDS
from secpolicy.errors import SecpolicyError

REPO = Path(__file__).resolve().parents[2]
WORKLOAD = REPO / "tests" / "fixtures" / "events" / "workload-debian12.log"
PCI_EVENTS = REPO / "policies" / "pci-dss" / "events.yaml"


@click.group()
def cli() -> None:
    pass


for _command in COMMANDS:
    cli.add_command(_command)


def run(*args: str, input: str | None = None) -> tuple[int, str]:
    result = CliRunner().invoke(cli, list(args), input=input, standalone_mode=False)
    if isinstance(result.exception, SecpolicyError):
        return result.exception.exit_code, result.output + result.exception.render()
    assert result.exception is None, result.exception
    return 0, result.output


def alert(i: int) -> str:
    return json.dumps({"rule_id": "r.test", "severity": "high", "title": f"alert {i}",
                       "ts": "2026-11-21T10:00:00.000000000Z"}) + "\n"


@pytest.fixture()
def runs(tmp_path: Path) -> dict:
    """A log set up with a signing key and an off-host copy, written by five runs; each run
    ends with a seal. Returns where each seal ends (bytes, entries)."""
    d = {"dir": tmp_path / "log", "key": tmp_path / "initial.key", "priv": tmp_path / "sign.pem",
         "pub": tmp_path / "sign.pub", "copy": tmp_path / "offhost" / "cps.jsonl"}
    d["copy"].parent.mkdir()
    assert run("log", "keygen", str(d["priv"]), str(d["pub"]))[0] == 0
    code, out = run("log", "init", str(d["dir"]), "--key-out", str(d["key"]), "--sign-key", str(d["priv"]),
                    "--copy-checkpoints", str(d["copy"]))
    assert code == 0, out
    seg = d["dir"] / "segment-000000.jsonl"
    seals = [(seg.stat().st_size, len(seg.read_bytes().splitlines()))]
    for r in range(5):
        # No --sign-key or --copy-checkpoints here: the writer takes them from `log init`.
        code, out = run("log", "append", str(d["dir"]), "-", input="".join(alert(10 * r + i) for i in range(r + 1)))
        assert code == 0, out
        seals.append((seg.stat().st_size, len(seg.read_bytes().splitlines())))
    d["seals"] = seals
    return d


def cut_copy(d: dict, tmp_path: Path, size: int, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(d["dir"], copy)
    with open(copy / "segment-000000.jsonl", "r+b") as f:
        f.truncate(size)
    return copy


def cut_checkpoint_file(path: Path, entries: int) -> None:
    keep = [ln for ln in path.read_text().splitlines(keepends=True) if json.loads(ln)["tree_size"] < entries]
    path.write_text("".join(keep))


def test_untouched_log_verifies_against_everything_the_host_holds(runs: dict) -> None:
    code, out = run("log", "verify", str(runs["dir"]), "--key-file", str(runs["key"]), "--pubkey", str(runs["pub"]))
    assert code == 0, out
    assert "intact: " in out and "sealed" in out
    assert "length checked against: the writer's state" in out and " checkpoints" in out
    assert "warning" not in out
    # Every checkpoint went to the copy set up at init, signed, by every writer.
    copied = load_checkpoints(runs["copy"])
    assert len(copied) == 6 and all(cp.signature for cp in copied)


def test_rollback_to_every_earlier_seal_is_caught(runs: dict, tmp_path: Path) -> None:
    for i, (size, entries) in enumerate(runs["seals"][:-1]):
        copy = cut_copy(runs, tmp_path, size, f"cut{i}")
        # The segment on its own still looks like a sealed log: that is the attack.
        code, out = run("log", "verify", str(copy / "segment-000000.jsonl"), "--key-file", str(runs["key"]))
        assert code == 0 and "nothing held here records how long this log was" in out
        # The directory as the host holds it: state.json remembers the length.
        code, out = run("log", "verify", str(copy), "--key-file", str(runs["key"]))
        assert code == 5, out
        assert f"segment-000000.jsonl:{entries}: seq {entries - 1}: the log was cut back" in out
        assert f"the first missing entry is seq {entries} (" in out
        assert f"the first missing checkpoint is seq {entries + 1 + i + 1}" in out  # start, records, checkpoint
        assert "ends at the seal of an earlier run" in out
        # state.json deleted too: the host's list of checkpoints still remembers.
        (copy / "state.json").unlink()
        code, out = run("log", "verify", str(copy), "--key-file", str(runs["key"]))
        assert code == 5 and "cut back" in out and f"first missing entry is seq {entries}" in out
        # ... and that list cut back too: the copy set up at `log init` remembers.
        cut_checkpoint_file(copy / "checkpoints.jsonl", entries)
        code, out = run("log", "verify", str(copy), "--key-file", str(runs["key"]))
        assert code == 5 and f"in {runs['copy']}" in out and f"first missing entry is seq {entries}" in out


def forge_state(copy: Path, stolen_key: str) -> None:
    """What an attacker holding the current key writes after cutting the log back."""
    lines = (copy / "segment-000000.jsonl").read_bytes().splitlines()
    frontier = Frontier()
    for line in lines:
        frontier.append(leaf_hash(line))
    epoch = sum(json.loads(ln)["kind"] == "checkpoint" for ln in lines)
    state = json.loads((copy / "state.json").read_text())
    state.update(seq=len(lines), epoch=epoch, prev=line_hash(lines[-1]), frontier_size=frontier.size,
                 frontier=frontier.to_list(), offset=sum(len(ln) + 1 for ln in lines), key=stolen_key)
    (copy / "state.json").write_bytes(canonical(state))


def test_a_forged_state_needs_a_key_the_attacker_no_longer_has(runs: dict, tmp_path: Path) -> None:
    stolen = json.loads((runs["dir"] / "state.json").read_text())["key"]
    size, entries = runs["seals"][2]
    copy = cut_copy(runs, tmp_path, size, "forged")
    forge_state(copy, stolen)
    cut_checkpoint_file(copy / "checkpoints.jsonl", entries)
    code, out = run("log", "verify", str(copy), "--key-file", str(runs["key"]))
    assert code == 5 and f"seq {entries}: the writer's state" in out
    assert "holds a key that is not this log's key of epoch" in out
    # Without the initial key, only the copy set up at init (whole here) shows the cut ...
    code, out = run("log", "verify", str(copy), "--checkpoint", str(copy / "checkpoints.jsonl"))
    assert code == 5 and "cut back" in out and f"in {runs['copy']}" in out
    # ... also with config.json deleted: the MACed start entry names that copy.
    (copy / "config.json").unlink()
    code, out = run("log", "verify", str(copy), "--checkpoint", str(copy / "checkpoints.jsonl"))
    assert code == 5 and "cut back" in out and f"in {runs['copy']}" in out
    # Without that copy and without the initial key the forged state cannot be told apart: verify says so.
    runs["copy"].rename(runs["copy"].with_name("elsewhere.jsonl"))
    code, out = run("log", "verify", str(copy), "--checkpoint", str(copy / "checkpoints.jsonl"))
    assert code == 0 and "the writer's state is not authenticated" in out
    assert f"{runs['copy']}: the checkpoint copy set up at `log init` is missing" in out
    assert f"{copy / 'config.json'} is missing, but the log's start entry records signing" in out


def test_a_witness_kept_elsewhere_catches_a_cut_the_host_hides(runs: dict, tmp_path: Path) -> None:
    witness = tmp_path / "monitor" / "witness.json"
    witness.parent.mkdir()
    seg_only = ["--key-file", str(runs["key"])]
    code, out = run("log", "verify", str(runs["dir"] / "segment-000000.jsonl"), *seg_only, "--witness", str(witness))
    assert code == 0, out
    remembered = json.loads(witness.read_text())
    assert remembered["tree_size"] == runs["seals"][-1][1]
    copy = cut_copy(runs, tmp_path, runs["seals"][3][0], "hidden")
    code, out = run("log", "verify", str(copy / "segment-000000.jsonl"), *seg_only, "--witness", str(witness))
    assert code == 5 and f"covers {remembered['tree_size']} entries" in out and str(witness) in out
    assert json.loads(witness.read_text()) == remembered  # a failed verification moves nothing
    # A log that grew verifies and moves the witness on.
    code, _ = run("log", "append", str(runs["dir"]), "-", input=alert(99))
    assert code == 0
    code, out = run("log", "verify", str(runs["dir"]), *seg_only, "--witness", str(witness))
    assert code == 0 and json.loads(witness.read_text())["tree_size"] > remembered["tree_size"]


def test_a_witness_moves_on_through_consistency_proofs_as_a_ct_monitor_does(runs: dict, tmp_path: Path) -> None:
    witness = tmp_path / "witness.json"
    assert run("log", "verify", str(runs["dir"]), "--key-file", str(runs["key"]), "--witness", str(witness))[0] == 0
    seen = json.loads(witness.read_text())
    assert run("log", "append", str(runs["dir"]), "-", input=alert(77))[0] == 0
    code, out = run("log", "prove", "consistency", str(runs["dir"]), "--old", str(seen["tree_size"]))
    assert code == 0, out
    (tmp_path / "c.json").write_text(out)
    code, out = run("log", "prove", "check", str(tmp_path / "c.json"), "--witness", str(witness),
                    "--pubkey", str(runs["pub"]))
    assert code == 0, out
    assert f"old root matches the head remembered in {witness}" in out
    assert "new root matches the signed checkpoint the proof carries" in out
    assert json.loads(witness.read_text())["tree_size"] == json.loads((tmp_path / "c.json").read_text())["new_size"]
    # A proof from a log that does not extend the remembered head fails.
    proof = json.loads((tmp_path / "c.json").read_text())
    proof["old_root"] = "ab" * 32
    (tmp_path / "bad.json").write_text(json.dumps(proof))
    code, out = run("log", "prove", "check", str(tmp_path / "bad.json"), "--witness", str(witness))
    assert code == 5


def test_verify_warns_about_loose_modes(runs: dict) -> None:
    runs["dir"].chmod(0o755)
    (runs["dir"] / "segment-000000.jsonl").chmod(0o644)
    code, out = run("log", "verify", str(runs["dir"]), "--key-file", str(runs["key"]))
    assert code == 0
    assert f"warning: {runs['dir']} is mode 0755, not 0700" in out
    assert f"warning: {runs['dir'] / 'segment-000000.jsonl'} is mode 0644, not 0600" in out


def test_an_unsigned_checkpoint_in_a_log_set_up_to_sign_is_named(runs: dict) -> None:
    seg = runs["dir"] / "segment-000000.jsonl"
    lines = seg.read_bytes().splitlines(keepends=True)
    n = max(i for i, ln in enumerate(lines) if b'"kind":"checkpoint"' in ln)
    entry = json.loads(lines[n])
    for k in ("signature", "public_key"):
        entry["body"].pop(k)
    lines[n] = canonical(entry) + b"\n"
    seg.write_bytes(b"".join(lines))
    # Without the key nothing else flags the edit (the hash links are re-made by nobody here, so
    # the next entry's link breaks; the signature check names the checkpoint itself first).
    code, out = run("log", "verify", str(seg), "--checkpoint", str(runs["copy"]))
    assert code == 5 and f":{n + 1}: seq {n}: checkpoint is not signed, but the key the log was set up" in out


# -- proofs --------------------------------------------------------------------------------


def test_default_proofs_are_made_against_the_latest_checkpoint(runs: dict, tmp_path: Path) -> None:
    code, out = run("log", "prove", "inclusion", str(runs["dir"]), "--seq", "4")
    assert code == 0, out
    proof = json.loads(out)
    cps = load_checkpoints(runs["copy"])
    assert proof["tree_size"] == cps[-1].tree_size and proof["checkpoint"]["root"] == proof["root"] == cps[-1].root
    (tmp_path / "p.json").write_text(out)
    code, out = run("log", "prove", "check", str(tmp_path / "p.json"), "--pubkey", str(runs["pub"]))
    assert code == 0 and "tree root matches the signed checkpoint the proof carries" in out
    code, out = run("log", "prove", "check", str(tmp_path / "p.json"))
    assert code == 5 and "not anchored" in out
    code, out = run("log", "prove", "check", str(tmp_path / "p.json"), "--unanchored")
    assert code == 0 and "not anchored (--unanchored)" in out
    # Entries after the latest checkpoint have no anchored proof until one is written.
    code, out = run("log", "prove", "inclusion", str(runs["dir"]), "--seq", str(proof["tree_size"] + 1))
    assert code == 2 and "after the latest checkpoint" in out
    code, out = run("log", "prove", "consistency", str(runs["dir"]), "--old", str(cps[2].tree_size))
    assert code == 0
    (tmp_path / "c.json").write_text(out)
    code, out = run("log", "prove", "check", str(tmp_path / "c.json"), "--checkpoint", str(runs["copy"]))
    assert code == 0 and "old root matches" in out and "new root matches" in out


def test_a_proof_from_an_edited_log_fails(runs: dict, tmp_path: Path) -> None:
    seg = runs["dir"] / "segment-000000.jsonl"
    data = seg.read_bytes()
    edited = data.replace(b'"title":"alert 0"', b'"title":"alert 7"', 1)
    assert edited != data
    seg.write_bytes(edited)
    # The log's own checkpoint no longer matches: no proof is made from it.
    code, out = run("log", "prove", "inclusion", str(runs["dir"]), "--seq", "4")
    assert code == 5 and "do not match the log's checkpoint" in out
    # Made anyway (a hand-made tool, or the checkpoint's root rewritten): check refuses it.
    lines = edited.splitlines(keepends=True)
    fixed = []
    frontier = Frontier()
    for ln in lines:
        e = json.loads(ln)
        if e["kind"] == "checkpoint":
            e["body"]["root"] = frontier.root().hex()
            ln = canonical(e) + b"\n"
        fixed.append(ln)
        frontier.append(leaf_hash(ln.rstrip(b"\n")))
    seg.write_bytes(b"".join(fixed))
    code, out = run("log", "prove", "inclusion", str(runs["dir"]), "--seq", "4")
    assert code == 0
    (tmp_path / "forged.json").write_text(out)
    code, out = run("log", "prove", "check", str(tmp_path / "forged.json"), "--pubkey", str(runs["pub"]))
    assert code == 5 and "invalid signature" in out
    code, out = run("log", "prove", "check", str(tmp_path / "forged.json"), "--checkpoint", str(runs["copy"]))
    assert code == 5 and "root differs from the off-host checkpoint" in out
    proof = json.loads((tmp_path / "forged.json").read_text())
    proof["checkpoint"] = None
    (tmp_path / "bare.json").write_text(json.dumps(proof))
    code, out = run("log", "prove", "check", str(tmp_path / "bare.json"))
    assert code == 5 and "not anchored" in out


# -- every writer honours `log init` ---------------------------------------------------------


def secpolicy(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "secpolicy", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False)


@pytest.fixture()
def signed_log(tmp_path: Path) -> dict:
    d = {"dir": tmp_path / "log", "key": tmp_path / "initial.key", "priv": tmp_path / "sign.pem",
         "pub": tmp_path / "sign.pub", "copy": tmp_path / "offhost.jsonl"}
    assert secpolicy("log", "keygen", str(d["priv"]), str(d["pub"])).returncode == 0
    p = secpolicy("log", "init", str(d["dir"]), "--key-out", str(d["key"]), "--sign-key", str(d["priv"]),
                  "--copy-checkpoints", str(d["copy"]))
    assert p.returncode == 0, p.stderr
    return d


def assert_signed_and_copied(d: dict, before: int) -> None:
    copied = load_checkpoints(d["copy"])
    assert len(copied) > before and all(cp.signature for cp in copied)
    v = secpolicy("log", "verify", str(d["dir"]), "--key-file", str(d["key"]), "--pubkey", str(d["pub"]),
                  "--checkpoint", str(d["copy"]))
    assert v.returncode == 0, v.stdout + v.stderr
    assert f"{len(copied)} off-host checkpoints" in v.stdout
    # AU-3: every record of this host that names a uid names its user too (a replayed event of
    # another host carries the name its source gave it); configuration paths are absolute.
    recs = [json.loads(x)["body"] for x in (d["dir"] / "segment-000000.jsonl").read_text().splitlines()
            if json.loads(x)["kind"] == "record"]
    assert recs and [r for r in recs if "uid" in r["source"] and not r["source"].get("user")
                    and r["hostname"] == socket.gethostname()] == []
    assert all(Path(r["details"]["path"]).is_absolute() for r in recs if r["event_type"] == "config_loaded")


def test_scan_replay_and_fim_sign_and_copy_as_init_set(signed_log: dict, tmp_path: Path) -> None:
    d = signed_log
    n = len(load_checkpoints(d["copy"]))
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    p = secpolicy("scan", "--policy", str(REPO / "tests" / "fixtures" / "policies" / "core.yaml"), "--root",
                  str(root), "--audit-log", str(d["dir"]), "--format", "json")
    assert p.returncode in (0, 1), p.stderr
    assert_signed_and_copied(d, n)
    n = len(load_checkpoints(d["copy"]))
    p = secpolicy("replay", str(WORKLOAD), "--policy", str(PCI_EVENTS), "--output", str(tmp_path / "a.jsonl"),
                  "--audit-log", str(d["dir"]))
    assert p.returncode == 0, p.stderr
    assert_signed_and_copied(d, n)
    n = len(load_checkpoints(d["copy"]))
    spec = importlib.util.spec_from_file_location("fimtree", REPO / "tests" / "fixtures" / "fim" / "fimtree.py")
    assert spec and spec.loader
    fimtree = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(fimtree)
    fimtree.build(tmp_path / "fimroot")
    (tmp_path / "fim.yaml").write_text(fimtree.CONFIG)
    (tmp_path / "fim.key").write_bytes(bytes(range(32)))
    common = ["--config", str(tmp_path / "fim.yaml"), "--db", str(tmp_path / "base.db"), "--root",
              str(tmp_path / "fimroot"), "--key-file", str(tmp_path / "fim.key"), "--audit-log", str(d["dir"])]
    assert secpolicy("fim", "init", *common).returncode == 0
    assert secpolicy("fim", "check", *common).returncode == 0
    assert_signed_and_copied(d, n)


def test_a_writer_that_cannot_use_the_configured_key_stops_before_writing(signed_log: dict) -> None:
    d = signed_log
    before = (d["dir"] / "segment-000000.jsonl").read_bytes()
    d["priv"].unlink()
    p = secpolicy("replay", str(WORKLOAD), "--policy", str(PCI_EVENTS), "--output", "/dev/null",
                  "--audit-log", str(d["dir"]))
    assert p.returncode == 2 and "set up (log init --sign-key) to sign checkpoints" in p.stderr
    assert (d["dir"] / "segment-000000.jsonl").read_bytes() == before


@pytest.mark.live
@pytest.mark.timeout(90)
def test_monitor_signs_and_copies_as_init_set(signed_log: dict, tmp_path: Path) -> None:
    d = signed_log
    n = len(load_checkpoints(d["copy"]))
    p = secpolicy("monitor", "--policy", str(PCI_EVENTS), "--duration", "1", "--output", str(tmp_path / "a.jsonl"),
                  "--audit-log", str(d["dir"]), timeout=80)
    assert p.returncode == 0, p.stderr
    assert_signed_and_copied(d, n)
