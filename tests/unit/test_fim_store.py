"""A baseline that was modified, truncated, swapped or opened with the wrong key is refused
(IntegrityError, exit 5) every time, by the library and by the CLI."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import shutil
import sqlite3
import struct
from pathlib import Path

import pytest

from secpolicy import fim
from secpolicy.cli.fim import main as fim_main
from secpolicy.errors import EXIT_INTEGRITY, IntegrityError

KEY = fim.Key(b"s" * 32, "test key")


@pytest.fixture()
def setup(tmp_path: Path):
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    for i in range(20):
        (root / "etc" / f"f{i}").write_text(f"content {i}\n")
    cfg = tmp_path / "fim.yaml"
    cfg.write_text("name: t\npaths:\n  - path: /etc\n    attrs: R\n")
    config = fim.load_config(cfg)
    db = tmp_path / "base.db"
    fim.init_baseline(config, db, root, KEY)
    fim.check(config, db, root, KEY)
    return config, root, db, cfg, tmp_path


def refused(config, db, root, key=KEY, match: str | None = None) -> None:
    with pytest.raises(IntegrityError, match=match):
        fim.check(config, db, root, key)
    status = fim.fim_status(db, key, deep=True, config=config, root=root)
    assert status.verified is False and status.reason


def sql(db: Path, statement: str, *args) -> None:
    con = sqlite3.connect(db)
    con.execute(statement, args)
    con.commit()
    con.close()


def test_intact_baseline_verifies(setup):
    config, root, db, _, _ = setup
    assert fim.check(config, db, root, KEY).status == "clean"
    st = fim.fim_status(db, KEY, deep=True)
    assert st.verified and st.checks == 2 and st.last_result == "clean" and st.entries == 21


def test_flipped_byte_in_a_stored_hash_is_refused(setup):
    config, root, db, _, _ = setup
    digest = hashlib.sha256(b"content 7\n").digest()
    raw = bytearray(db.read_bytes())
    at = raw.find(digest)
    assert at > 0
    raw[at + 5] ^= 0x01
    db.write_bytes(bytes(raw))
    refused(config, db, root, match="do not match their MAC")


def test_modified_row_is_refused(setup):
    config, root, db, _, _ = setup
    k = b"\0etc\0f3"
    con = sqlite3.connect(db)
    (r,) = con.execute("SELECT r FROM entries WHERE k = ?", (k,)).fetchone()
    con.close()
    sql(db, "UPDATE entries SET r = ? WHERE k = ?", r[:-1] + bytes([r[-1] ^ 1]), k)
    refused(config, db, root)


def test_deleted_row_is_refused_even_if_the_file_is_deleted_too(setup):
    config, root, db, _, _ = setup
    sql(db, "DELETE FROM entries WHERE k = ?", b"\0etc\0f4")
    os.unlink(root / "etc" / "f4")
    refused(config, db, root, match="rows added or deleted")


def test_inserted_row_is_refused(setup):
    config, root, db, _, _ = setup
    con = sqlite3.connect(db)
    (r, t) = con.execute("SELECT r, t FROM entries WHERE k = ?", (b"\0etc\0f1",)).fetchone()
    con.close()
    sql(db, "INSERT INTO entries (k, r, t) VALUES (?, ?, ?)", b"\0etc\0evil", r, t)
    refused(config, db, root)


def test_truncated_file_is_refused(setup):
    config, root, db, _, _ = setup
    size = db.stat().st_size
    for cut in (size // 2, 4096, 100, 0):
        shutil.copy(db, db.with_suffix(".bak"))
        with open(db, "r+b") as f:
            f.truncate(cut)
        refused(config, db, root)
        shutil.copy(db.with_suffix(".bak"), db)


def test_not_a_database_is_refused(setup):
    config, root, db, _, _ = setup
    db.write_bytes(b"this is not sqlite at all" * 100)
    refused(config, db, root)
    db.unlink()
    sqlite3.connect(db).execute("CREATE TABLE x (y)").connection.close()
    refused(config, db, root, match="not a secpolicy FIM baseline")


def test_header_edit_is_refused(setup):
    config, root, db, _, _ = setup
    con = sqlite3.connect(db)
    (body,) = con.execute("SELECT body FROM header").fetchone()
    con.close()
    sql(db, "UPDATE header SET body = ?", body.replace('"generation":1', '"generation":7'))
    refused(config, db, root, match="header MAC")


def test_check_history_tampering_is_refused(setup):
    config, root, db, _, _ = setup
    sql(db, "DELETE FROM checks WHERE seq = (SELECT max(seq) FROM checks)")
    refused(config, db, root, match="check history")


def test_swap_with_a_baseline_of_another_tree_or_config_is_refused(setup):
    config, root, db, _cfg, tmp_path = setup
    other_root = tmp_path / "other"
    shutil.copytree(root, other_root)
    other_db = tmp_path / "other.db"
    fim.init_baseline(config, other_db, other_root, KEY)
    shutil.copy(other_db, db)
    refused(config, db, root, match="made for root")
    other_cfg = fim.config_from_dict({"name": "t", "paths": [{"path": "/etc", "attrs": "R-m"}]})
    fim.init_baseline(other_cfg, other_db, root, KEY, force=True)
    shutil.copy(other_db, db)
    with pytest.raises(IntegrityError, match="different configuration"):
        fim.check(config, db, root, KEY)


def test_wrong_key_missing_key_and_unkeyed_swap_are_refused(setup, tmp_path):
    config, root, db, _, _ = setup
    refused(config, db, root, key=fim.Key(b"x" * 32, "other"), match="wrong key")
    with pytest.raises(IntegrityError, match="none was given"):
        fim.check(config, db, root, fim.Key.none())
    # An attacker rewrites the baseline without a key: a keyed check refuses it.
    unkeyed = tmp_path / "unkeyed.db"
    fim.init_baseline(config, unkeyed, root, fim.Key.none())
    shutil.copy(unkeyed, db)
    refused(config, db, root, match="not sealed with a key")


def test_recheck_verifies_the_rows_it_uses(setup):
    config, root, db, _, _ = setup
    assert fim.recheck_paths(config, db, root, KEY, ["/etc/f2"]).status == "clean"
    con = sqlite3.connect(db)
    (r,) = con.execute("SELECT r FROM entries WHERE k = ?", (b"\0etc\0f2",)).fetchone()
    con.close()
    sql(db, "UPDATE entries SET r = ? WHERE k = ?", r[:-1] + bytes([r[-1] ^ 1]), b"\0etc\0f2")
    with pytest.raises(IntegrityError, match="tag"):
        fim.recheck_paths(config, db, root, KEY, ["/etc/f2"])


def test_stored_tags_and_entries_mac_follow_the_documented_format(setup):
    """Recomputed here from docs/fim.md's definitions, not from the store's code: baselines
    written by earlier versions must keep verifying."""
    _, _, db, _, _ = setup
    con = sqlite3.connect(db)
    header = json.loads(con.execute("SELECT body FROM header").fetchone()[0])
    rows = con.execute("SELECT k, r, t FROM entries ORDER BY k").fetchall()
    con.close()
    baseline_id = bytes.fromhex(header["baseline_id"])

    def sub(purpose: str) -> bytes:
        return hmac.new(KEY.material, b"secpolicy-fim/1/" + purpose.encode(), "sha256").digest()

    mac = hmac.new(sub("entries"), baseline_id, "sha256")
    for k, r, t in rows:
        assert t == hashlib.blake2b(
            struct.pack("<I", len(k)) + k + r, digest_size=16, key=sub("row"), salt=baseline_id[:16]
        ).digest()
        mac.update(struct.pack("<II", len(k), len(r)) + k + r)
    assert len(rows) == header["entry_count"] == 21  # /etc and its 20 files
    assert mac.hexdigest() == header["entries_mac"]


@pytest.mark.parametrize("tamper", ["flip", "truncate", "wrong-key", "delete-row"])
def test_cli_exits_5_on_tampering(setup, tamper, monkeypatch, capsys):
    _config, root, db, cfg, tmp_path = setup
    keyfile = tmp_path / "key"
    keyfile.write_bytes(b"s" * 32)
    args = ["check", "--config", str(cfg), "--db", str(db), "--root", str(root), "--key-file", str(keyfile)]
    assert fim_main(args) == 0
    if tamper == "flip":
        raw = bytearray(db.read_bytes())
        at = raw.find(hashlib.sha256(b"content 3\n").digest())
        raw[at] ^= 0x80
        db.write_bytes(bytes(raw))
    elif tamper == "truncate":
        with open(db, "r+b") as f:
            f.truncate(db.stat().st_size - 4096)
    elif tamper == "wrong-key":
        keyfile.write_bytes(b"t" * 32)
    else:
        sql(db, "DELETE FROM entries WHERE k = ?", b"\0etc\0f9")
    for _ in range(3):  # every time, not just once
        assert fim_main(args) == EXIT_INTEGRITY
    assert "baseline" in capsys.readouterr().err


@pytest.mark.parametrize("kind", ["fifo", "/dev/zero", "directory", "too long"])
def test_a_key_file_that_is_no_key_file_is_refused_without_waiting(tmp_path: Path, kind: str) -> None:
    """A FIFO or /dev/zero given as the key file used to hang (read to the end); now it is
    refused as invalid input, and so are a directory and a file longer than a key file."""
    from secpolicy.errors import InputError
    from secpolicy.fim.store import Key

    path = tmp_path / "key"
    if kind == "fifo":
        os.mkfifo(path)
        why = "key file is not a regular file"
    elif kind == "/dev/zero":
        path = Path("/dev/zero")
        why = "key file is not a regular file"
    elif kind == "directory":
        path.mkdir()
        why = "key file is not a regular file"
    else:
        path.write_bytes(b"k" * 4097)
        why = "key file is 4097 bytes; a key file holds at most 4096"
    with pytest.raises(InputError) as err:
        Key.from_file(str(path))
    assert err.value.render() == f"{path}: {why}"
    path = tmp_path / "good.key"
    path.write_bytes(b"k" * 4096)
    assert Key.from_file(str(path)).material == b"k" * 4096


@pytest.mark.parametrize("option", ["--db", "--root", "--config", "--key-file", "--audit-log"])
def test_an_empty_path_option_is_invalid_input(tmp_path: Path, option: str,
                                               capsys: pytest.CaptureFixture[str]) -> None:
    """`--db ""` used to fail late (exit 3, "cannot put the new baseline in place at :") and
    `--root ""` silently meant the current directory: both are exit 2 before anything runs."""
    (tmp_path / "fim.yaml").write_text("paths:\n  - path: /etc\n")
    (tmp_path / "key").write_bytes(b"k" * 32)
    args = {"--config": str(tmp_path / "fim.yaml"), "--db": str(tmp_path / "fim.db"), "--root": str(tmp_path),
            "--key-file": str(tmp_path / "key"), "--audit-log": str(tmp_path / "log")}
    args[option] = ""
    for command in ("init", "check"):
        assert fim_main([command, "--no-progress", *(x for kv in args.items() for x in kv)]) == 2
        assert f"Invalid value for '{option}': must not be empty" in capsys.readouterr().err
    assert not (tmp_path / "fim.db").exists()


@pytest.mark.parametrize("kind", ["directory", "fifo", "symlink"])
def test_a_journal_name_taken_beside_the_baseline_is_named_not_called_damage(
        setup, kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    """SQLite opens `<db>-journal`; a directory there made every check fail with exit 5,
    "baseline database is damaged ... (disk I/O error)". It is now invalid input naming it,
    and once it is gone the baseline verifies as before."""
    _config, root, db, cfg, tmp_path = setup
    keyfile = tmp_path / "key"
    keyfile.write_bytes(b"s" * 32)
    journal = Path(f"{db}-journal")
    if kind == "directory":
        journal.mkdir()
    elif kind == "fifo":
        os.mkfifo(journal)
    else:
        journal.symlink_to(tmp_path / "elsewhere")
    args = ["check", "--config", str(cfg), "--db", str(db), "--root", str(root), "--key-file", str(keyfile)]
    assert fim_main(args) == 2
    assert f"{db}-journal beside the database is not a regular file" in capsys.readouterr().err
    if kind == "directory":
        journal.rmdir()
    else:
        journal.unlink()
    assert fim_main(args) == 0


def test_a_check_recorded_by_another_process_meanwhile_is_no_tamper_alarm(setup):
    """A baseline opened (header read) before another process records a check, and its
    history read after: the history was verified against the header read at open, so the new
    record looked added behind its back (exit 5 in `fim check` and `fim update` running beside
    another check). History and header are now read together."""
    from secpolicy.fim.store import Baseline

    _config, _root, db, _, _ = setup
    with Baseline(str(db), KEY) as first:
        before = first.header["checks_count"]
        with Baseline(str(db), KEY) as other:
            assert other.record_check({"kind": "check", "result": "clean"}) is None
        history = first.checks()
    assert len(history) == before + 1 and history[-1]["kind"] == "check"
