"""report_changes: a bounded, redacted unified diff of changed text files; nodiff paths are
never copied; credentials never reach the baseline or the output. Also the recorded-generation
comparison (rollback) and the hand-written schema check that spares jsonschema's start-up."""

from __future__ import annotations

import copy
import json
import os
import random
import sqlite3
import zlib
from pathlib import Path

import jsonschema
import pytest

from secpolicy import fim
from secpolicy.errors import IntegrityError
from secpolicy.fim import config as fim_config
from secpolicy.fim.diff import Redactor
from secpolicy.resources import load_schema

KEY = fim.Key(b"d" * 32, "test key")

APP_CONF = """\
# application settings
listen = 80
db_host = db.internal
db_password = hunter2-old
api_url = https://svc:s3cret-token@api.example.com/v1
log_level = info
"""


@pytest.fixture()
def tree(tmp_path: Path) -> tuple[fim.FimConfig, Path, Path]:
    root = tmp_path / "root"
    etc = root / "etc"
    etc.mkdir(parents=True)
    (etc / "app.conf").write_text(APP_CONF)
    (etc / "server.key").write_text("-----BEGIN PRIVATE KEY-----\nMIIsecretkeymaterial\n-----END PRIVATE KEY-----\n")
    (etc / "blob.bin").write_bytes(b"\x00\x01binary\x00")
    (etc / "big.txt").write_text("line\n" * 1000)
    (etc / "long.txt").write_text("".join(f"line {i}\n" for i in range(300)))
    config = fim.config_from_dict({
        "diff_size_limit": 4000,
        "diff_max_lines": 20,
        "paths": [{"path": "/etc", "attrs": "R", "report_changes": True, "nodiff": ["*.key"]}],
    })
    db = tmp_path / "base.db"
    fim.init_baseline(config, db, root, KEY)
    return config, root, db


def _copies(db: Path) -> dict[str, str]:
    con = sqlite3.connect(db)
    try:
        return {k.replace(b"\0", b"/").decode(): zlib.decompress(z).decode() for k, z in con.execute("SELECT k, z FROM contents")}
    finally:
        con.close()


def test_a_changed_text_file_shows_a_redacted_unified_diff(tree) -> None:
    config, root, db = tree
    (root / "etc" / "app.conf").write_text(
        APP_CONF.replace("listen = 80", "listen = 8080").replace("hunter2-old", "hunter2-new")
        .replace("s3cret-token", "other-token"))
    result = fim.check(config, db, root, KEY)
    (entry,) = [e for e in result.changed if e.path == "/etc/app.conf"]
    assert entry.diff_note is None
    lines = entry.diff.splitlines()
    assert lines[:3] == ["--- /etc/app.conf (baseline)", "+++ /etc/app.conf (now)", "@@ -1,6 +1,6 @@"]
    assert "-listen = 80" in lines and "+listen = 8080" in lines
    # Secrets changed: the diff says so through keyed fingerprints, never with the values.
    old_pw = [x for x in lines if x.startswith("-db_password")]
    new_pw = [x for x in lines if x.startswith("+db_password")]
    assert len(old_pw) == len(new_pw) == 1 and old_pw[0][1:] != new_pw[0][1:]
    assert old_pw[0].startswith("-db_password = [REDACTED:") and new_pw[0].startswith("+db_password = [REDACTED:")
    text = json.dumps(result.to_dict())
    for secret in ("hunter2", "s3cret-token", "other-token"):
        assert secret not in text and secret not in "\n".join(_copies(db).values())
    assert "https://svc:[REDACTED:" in entry.diff
    # The findings (reports) carry the diff as evidence.
    (finding,) = [f for f in fim.findings_from_check(result) if f.title.endswith("/etc/app.conf")]
    assert any(e.expression == 'fim("default") content' and e.message == entry.diff for e in finding.evidence)


def test_nodiff_binary_large_and_long_diffs(tree) -> None:
    config, root, db = tree
    assert set(_copies(db)) == {"/etc/app.conf", "/etc/long.txt"}  # not the key, the binary or the big file
    (root / "etc" / "server.key").write_text("-----BEGIN PRIVATE KEY-----\nMIInewsecret\n-----END PRIVATE KEY-----\n")
    (root / "etc" / "blob.bin").write_bytes(b"\x00\x02binary\x00")
    (root / "etc" / "big.txt").write_text("line\n" * 1001)
    (root / "etc" / "long.txt").write_text("".join(f"LINE {i}\n" for i in range(300)))
    by_path = {e.path: e for e in fim.check(config, db, root, KEY).changed}
    assert by_path["/etc/server.key"].diff is None
    assert by_path["/etc/server.key"].diff_note == "nodiff: content not shown"
    assert by_path["/etc/blob.bin"].diff_note == "no diff: the content is not text"
    assert by_path["/etc/big.txt"].diff_note == "no diff: larger than diff_size_limit (4000 bytes)"
    long = by_path["/etc/long.txt"]
    assert len(long.diff.splitlines()) == 20
    assert long.diff_note == "583 more diff lines not shown (diff_max_lines 20)"  # 3 headers + 600 lines - 20
    # update keeps the new copies; a later change diffs against them.
    fim.update(config, db, root, KEY)
    (root / "etc" / "long.txt").write_text("".join(f"LINE {i}\n" for i in range(299)))
    (entry,) = [e for e in fim.check(config, db, root, KEY).changed if e.path == "/etc/long.txt"]
    assert entry.diff.splitlines()[-1] == "-LINE 299"


def test_stored_copies_are_verified_like_rows(tree) -> None:
    config, root, db = tree
    con = sqlite3.connect(db)
    con.execute("UPDATE contents SET z = ? WHERE k = ?", (zlib.compress(b"forged"), b"\0etc\0app.conf"))
    con.commit()
    con.close()
    (root / "etc" / "app.conf").write_text("changed\n")
    with pytest.raises(IntegrityError, match="content copy does not match"):
        fim.check(config, db, root, KEY)


def test_redaction_keeps_settings_and_masks_credentials() -> None:
    r = Redactor(None)
    kept = ["PasswordAuthentication no", "PermitEmptyPasswords no", "log_level = info",
            "ssl_protocols TLSv1.2", "token: on", "secret_key="]
    for line in kept:
        assert r.line(line) == line
    masked = {
        "password = hunter2": "password = [REDACTED]",
        "export DB_PASSWORD='s3cr3t!'": "export DB_PASSWORD='[REDACTED]'",
        '"api_key": "abcd1234"': '"api_key": "[REDACTED]"',
        "requirepass foobared": "requirepass [REDACTED]",
        "Authorization: Bearer abc.def": "Authorization: Bearer [REDACTED]",
        "key AKIAIOSFODNN7EXAMPLE": "key [REDACTED]",
        "root:$6$saltsalt$abcdefghijkl:19000:0:99999:7:::": "root:[REDACTED]:19000:0:99999:7:::",
        "url=postgres://app:pw@db/x": "url=postgres://app:[REDACTED]@db/x",
    }
    for line, want in masked.items():
        assert r.line(line) == want, line
    keyed = Redactor(b"k" * 32)
    assert keyed.line("password = a") != keyed.line("password = b")
    assert keyed.line("password = a") == keyed.line("password = a")
    assert r.text(b"x\n-----BEGIN RSA PRIVATE KEY-----\nAAAA\nBBBB\n-----END RSA PRIVATE KEY-----\n") == \
        "x\n-----BEGIN RSA PRIVATE KEY-----\n[REDACTED]\n[REDACTED]\n-----END RSA PRIVATE KEY-----\n"


def test_report_changes_needs_a_hash() -> None:
    with pytest.raises(fim_config.InputError, match="report_changes needs a content hash"):
        fim.config_from_dict({"paths": [{"path": "/etc", "attrs": "p+u", "report_changes": True}]})


def test_recorded_generations_refuse_older_baselines(tmp_path: Path) -> None:
    root = tmp_path / "r"
    (root / "etc").mkdir(parents=True)
    (root / "etc" / "f").write_text("x")
    config = fim.config_from_dict({"paths": [{"path": "/etc", "attrs": "R"}]})
    db = tmp_path / "db"
    gen1 = fim.init_baseline(config, db, root, KEY).baseline
    (root / "etc" / "f").write_text("y")
    gen2 = fim.update(config, db, root, KEY).baseline

    def recorded(info: fim.BaselineInfo, earlier: tuple[str, ...] = (), **kw) -> fim.Generations:
        """The audit log's records: `earlier` baseline ids of this database, then `info` with `kw`."""
        fields = {"baseline_id": info.baseline_id, "lineage_id": info.lineage_id, "generation": info.generation,
                  "created_at": info.created_at, "root_hash": info.root_hash, "where": "audit log seq 7"}
        fields.update(kw)
        old = [fim.Recorded(i, "y", 0, 0.0, "", "seq 1") for i in earlier]
        return fim.Generations(tuple((os.path.realpath(db), r) for r in (*old, fim.Recorded(**fields))))

    assert fim.check(config, db, root, KEY, recorded=recorded(gen2)).notes == ()
    with pytest.raises(IntegrityError, match="does not match the root hash recorded"):
        fim.check(config, db, root, KEY, recorded=recorded(gen2, root_hash="0" * 64))
    # Recorded newer than what is on disk: refused, whether the older one is known by id,
    # by generation in the same lineage, or only by its creation time.
    newer = recorded(gen2, baseline_id="f" * 32, generation=3, created_at=gen2.created_at + 1)
    with pytest.raises(IntegrityError, match=r"generation 2 .* older than generation 3 .*audit log seq 7.*rollback"):
        fim.check(config, db, root, KEY, recorded=newer)
    other_lineage = recorded(gen2, baseline_id="f" * 32, lineage_id="x", generation=1, created_at=gen2.created_at + 1)
    with pytest.raises(IntegrityError, match="older than generation 1"):
        fim.check(config, db, root, KEY, recorded=other_lineage)
    by_id = recorded(gen2, earlier=(gen2.baseline_id,), baseline_id="f" * 32, lineage_id="x", generation=1,
                     created_at=0.0)
    with pytest.raises(IntegrityError, match="older than generation 1"):
        fim.check(config, db, root, KEY, recorded=by_id)
    # A newer generation of this lineage written to another database: refused, naming it;
    # another database's records of another lineage are not this one's.
    [(_, newest)] = newer.records
    moved = fim.Generations((("/srv/other.db", newest),))
    with pytest.raises(IntegrityError, match=r"older than generation 3 .*seq 7, written to /srv/other.db"):
        fim.check(config, db, root, KEY, recorded=moved)
    unrelated = fim.Generations((("/srv/other.db", other_lineage.records[0][1]),))
    assert fim.check(config, db, root, KEY, recorded=unrelated).notes == ()
    # On disk newer than recorded: a note, not a refusal.
    notes = fim.check(config, db, root, KEY, recorded=recorded(gen1)).notes
    assert len(notes) == 1 and "newer than generation 1" in notes[0].message


def _mutations(base: dict, rng: random.Random) -> dict:
    d = copy.deepcopy(base)
    choices = [
        lambda: d.update(version=rng.choice([1, 2, "1", 1.0, True])),
        lambda: d.update(name=rng.choice(["ok", "", "x" * 65, "a b", 3])),
        lambda: d.update(workers=rng.choice([0, 1, 64, 65, "2", 2.0, False])),
        lambda: d.update(hash=rng.choice(["sha256", "md5", None])),
        lambda: d.update(diff_size_limit=rng.choice([0, 1, 1 << 26, (1 << 26) + 1])),
        lambda: d.update(groups=rng.choice([{"G": "p+u"}, {"1G": "p"}, {"G": []}, {"G": [""]}, {"G": 3}])),
        lambda: d.update(extra=1),
        lambda: d["paths"][0].update(path=rng.choice(["/etc", "etc", "", 5])),
        lambda: d["paths"][0].update(attrs=rng.choice(["R", "", ["p", ""], ["p"], 7])),
        lambda: d["paths"][0].update(nodiff=rng.choice([["*.key"], [""], "x", [1]])),
        lambda: d["paths"][0].update(report_changes=rng.choice([True, "yes", 1])),
        lambda: d["paths"][0].update(colour="red"),
        lambda: d.update(paths=rng.choice([[], {}, [{"attrs": "R"}], [1]])),
        lambda: d.update(cross_filesystems=rng.choice([True, 0])),
    ]
    for _ in range(rng.randint(1, 3)):
        try:
            rng.choice(choices)()
        except (IndexError, KeyError, TypeError, AttributeError):
            pass  # `paths` was already mutated into something without a first rule
    return d


def test_the_fast_schema_check_never_passes_what_jsonschema_refuses() -> None:
    validator = jsonschema.Draft202012Validator(load_schema("fim"))
    base = {"version": 1, "name": "n", "hash": "sha256", "workers": 2, "groups": {"G": ["p", "u"]},
            "paths": [{"path": "/etc", "attrs": "G+sha256", "exclude": ["*.tmp"], "report_changes": True}]}
    assert fim_config._plainly_valid(base) and validator.is_valid(base)
    rng = random.Random(19)
    agreed = 0
    for _ in range(3000):
        d = _mutations(base, rng)
        if fim_config._plainly_valid(d):
            assert validator.is_valid(d), d
            agreed += 1
    assert agreed > 100  # the fast path is taken, not just always declined
    assert os.path.basename(fim_config.__file__) == "config.py"


def _cli_tree(tmp_path: Path) -> tuple[Path, list[str]]:
    root = tmp_path / "root"
    (root / "watched").mkdir(parents=True)
    (root / "watched" / "app.conf").write_text("A\ndb_password = hunter2\n")
    (tmp_path / "fim.yaml").write_text("name: app\npaths:\n  - path: /watched\n    attrs: R\n    report_changes: true\n")
    (tmp_path / "key").write_bytes(b"k" * 32)
    common = ["--config", str(tmp_path / "fim.yaml"), "--db", str(tmp_path / "fim.db"), "--root", str(root),
              "--key-file", str(tmp_path / "key"), "--no-progress", "--quiet"]
    from secpolicy.cli.fim import main

    assert main(["init", *common]) == 0
    return root, common


def test_control_sequences_in_a_diff_are_printed_inert(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """OSC 52 (clipboard), DCS, C1 CSI, bidi overrides and DEL from a watched file are shown as
    \\xNN in the table; JSON keeps them as JSON escapes."""
    from secpolicy.cli.fim import main

    root, common = _cli_tree(tmp_path)
    capsys.readouterr()
    (root / "watched" / "app.conf").write_bytes(
        b"B\x1b]52;c;ZWNobyBwd25lZA==\x07\nE\x1bP1$r\x1b\\\nF\xc2\x9b31m\nG\x1b[31mred\nH\xe2\x80\xaeI\x7f\tJ\n")
    (root / "watched" / "[bold]x").write_text("")  # rich markup in a name is shown, not applied
    assert main(["check", *common, "--no-record"]) == 1
    out = capsys.readouterr().out
    assert "/watched/[bold]x" in out
    diff = out[out.index("--- /watched/app.conf"):].splitlines()
    assert diff[3] == "-A" and diff[4].startswith("-db_password = [REDACTED:")
    assert diff[5:10] == ["+B\\x1b]52;c;ZWNobyBwd25lZA==\\x07", "+E\\x1bP1$r\\x1b\\", "+F\\xc2\\x9b31m",
                          "+G\\x1b[31mred", "+H\\xe2\\x80\\xaeI\\x7f\tJ"]
    assert not any(ch in out for ch in "\x1b\x07\x9b\x7f\u202e")
    assert main(["check", *common, "--no-record", "--format", "json"]) == 1
    (entry,) = [e for e in json.loads(capsys.readouterr().out)["changed"] if e["path"] == "/watched/app.conf"]
    assert "+B\x1b]52;c;ZWNobyBwd25lZA==\x07\n" in entry["diff"]


def test_a_stored_redacted_line_is_shown_redacted_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The baseline's copy is already masked: a removed `db_password = [REDACTED:..]` line is
    not masked again (as if `-db_password` were an option), in the table, JSON and audit log."""
    from secpolicy.auditlog.log import AuditLog
    from secpolicy.cli.fim import main

    root, common = _cli_tree(tmp_path)
    AuditLog.create(tmp_path / "log")[0].close()
    capsys.readouterr()
    (root / "watched" / "app.conf").write_text("A\ndb_password = hunter3\n")
    assert main(["check", *common, "--no-record", "--audit-log", str(tmp_path / "log")]) == 1
    lines = capsys.readouterr().out.splitlines()
    removed = [ln for ln in lines if ln.startswith("-db_password")]
    added = [ln for ln in lines if ln.startswith("+db_password")]
    assert len(removed) == 1 and len(added) == 1
    assert removed[0].startswith("-db_password = [REDACTED:") and removed[0].count("REDACTED") == 1
    assert added[0].startswith("+db_password = [REDACTED:") and "hunter" not in "".join(lines)
    assert main(["check", *common, "--no-record", "--format", "json"]) == 1
    diff = json.loads(capsys.readouterr().out)["changed"][0]["diff"]
    assert "\n-db_password = [REDACTED:" in diff and diff.count("REDACTED") == 2
    seg = (tmp_path / "log" / "segment-000000.jsonl").read_text()
    (body,) = [json.loads(ln)["body"] for ln in seg.splitlines() if '"fim_change"' in ln]
    assert "\n-db_password = [REDACTED:" in body["details"]["diff"]
    assert body["details"]["diff"].count("REDACTED") == 2
