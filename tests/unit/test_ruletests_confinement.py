"""Inline tests come from pull requests: building a test's root must never create, modify,
chmod or chown anything outside that root, whatever names, links and modes the test uses."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from secpolicy.errors import InputError
from secpolicy.ruletests import copy_fixture_root, materialize_files

IS_ROOT = os.geteuid() == 0


def snapshot(top: Path) -> dict[str, tuple]:
    """Every entry below `top` with its type, mode, owner, size, mtime and content."""
    out: dict[str, tuple] = {}
    for dirpath, dirnames, filenames in os.walk(top):
        for name in dirnames + filenames:
            p = os.path.join(dirpath, name)
            st = os.lstat(p)
            data = b""
            if stat.S_ISREG(st.st_mode):
                with open(p, "rb") as f:
                    data = f.read()
            elif stat.S_ISLNK(st.st_mode):
                data = os.readlink(p).encode()
            out[os.path.relpath(p, top)] = (st.st_mode, st.st_uid, st.st_gid, st.st_size, st.st_mtime_ns, st.st_nlink, data)
    return out


@pytest.fixture
def sandbox(tmp_path):
    """outside/ holds the victims (a file, a directory); root/ is where the test builds."""
    outside = tmp_path / "outside"
    (outside / "dir").mkdir(parents=True)
    victim = outside / "victim"
    victim.write_text("precious\n")
    os.chmod(victim, 0o600)
    root = tmp_path / "root"
    root.mkdir()
    before = snapshot(outside)
    yield root, outside, victim
    assert snapshot(outside) == before, "something outside the test root changed"
    # Nothing appeared beside the sandbox either (the `..` escapes aim there).
    assert sorted(os.listdir(tmp_path)) == ["outside", "root"]


def refused(root: Path, files: dict, match: str) -> None:
    with pytest.raises(InputError, match=match):
        materialize_files(str(root), files, where="p.yaml:7")


def ups(root: Path) -> str:
    return "/.." * (len(root.parts) + 2)


def test_dot_dot_paths_are_refused_and_create_nothing(sandbox):
    root, outside, _victim = sandbox
    refused(root, {ups(root) + str(outside) + "/pwned": "x"}, r"'\.\.' part")
    refused(root, {"/etc/../../outside/pwned": "x"}, r"'\.\.' part")
    refused(root, {"/../outside/victim": {"content": "x", "mode": 0o777}}, r"'\.\.' part")


def test_relative_dot_and_empty_parts_are_refused(sandbox):
    root, _, _ = sandbox
    refused(root, {"etc/x": "x"}, "absolute")
    refused(root, {"/etc/./x": "x"}, r"'\.' part")
    refused(root, {"/etc//x": "x"}, "empty part")
    refused(root, {"/etc/x/": "x"}, "empty part")
    refused(root, {"/etc/x\0y": "x"}, "NUL")


def test_symlink_then_write_through_an_alias_is_refused(sandbox):
    root, _outside, victim = sandbox
    # The reported attack: make a link, then write, chmod and chown through another spelling.
    refused(root, {"/etc/v": {"symlink": str(victim)}, "/etc/./v": {"content": "x", "mode": 0o777, "uid": 65534}}, r"'\.' part")
    # The same spelling cannot appear twice in YAML; through Python it is refused as a link.
    for spec in ({"content": "x"}, {"content": "x", "mode": 0o777}, {"dir": True, "mode": 0o777}):
        r = root / f"case{len(os.listdir(root))}"
        r.mkdir()
        materialize_files(str(r), {"/etc/v": {"symlink": str(victim)}})
        with pytest.raises(InputError, match="symlink"):
            materialize_files(str(r), {"/etc/v": spec})


def test_writing_below_a_symlinked_directory_is_refused(sandbox):
    root, outside, _ = sandbox
    refused(root, {"/etc": {"symlink": str(outside / "dir")}, "/etc/pwned": "x"}, "never written through links")
    refused(root, {"/up": {"symlink": "../../outside"}, "/up/dir/pwned": "x"}, "never written through links")


def test_mode_on_a_symlink_is_refused_and_owner_changes_only_the_link(sandbox):
    root, _outside, victim = sandbox
    refused(root, {"/etc/v": {"symlink": str(victim), "mode": 0o777}}, "no mode of its own")
    materialize_files(str(root), {"/etc/v": {"symlink": str(victim), "uid": 65534, "gid": 65534}})
    st = os.lstat(root / "etc" / "v")
    assert stat.S_ISLNK(st.st_mode)
    if IS_ROOT:
        assert (st.st_uid, st.st_gid) == (65534, 65534)  # the link itself; the victim is checked by the fixture


def test_a_fixture_root_with_links_out_cannot_be_written_through(sandbox):
    root, outside, victim = sandbox
    fx = root / "fixture"  # inside root/, so the sandbox check sees only outside/ and root/
    (fx / "etc").mkdir(parents=True)
    os.symlink(str(victim), fx / "etc" / "abs")
    os.symlink("../../../outside/victim", fx / "etc" / "rel")
    os.symlink(str(outside / "dir"), fx / "linkdir")
    os.symlink("loop", fx / "loop")
    dest = root / "dest"
    dest.mkdir()
    copy_fixture_root(str(fx), str(dest))
    assert os.readlink(dest / "etc" / "abs") == str(victim)
    for name in ("/etc/abs", "/etc/rel"):
        with pytest.raises(InputError, match="symlink"):
            materialize_files(str(dest), {name: {"content": "x", "mode": 0o777, "uid": 65534}})
    with pytest.raises(InputError, match="never written through links"):
        materialize_files(str(dest), {"/linkdir/pwned": "x"})
    with pytest.raises(InputError, match="symlink"):
        materialize_files(str(dest), {"/loop/x": "x"})


def test_hard_links_in_a_fixture_are_copied_not_shared(sandbox):
    root, _outside, victim = sandbox
    fx = root / "fixture"
    (fx / "etc").mkdir(parents=True)
    try:
        os.link(victim, fx / "etc" / "hard")
    except OSError as e:  # pragma: no cover - tmp_path on a file system without hard links
        pytest.fail(f"cannot make a hard link in tmp_path: {e}")
    dest = root / "dest"
    dest.mkdir()
    copy_fixture_root(str(fx), str(dest))
    materialize_files(str(dest), {"/etc/hard": {"content": "overwritten", "mode": 0o777, "uid": 65534}})
    assert (dest / "etc" / "hard").read_text() == "overwritten"
    os.unlink(fx / "etc" / "hard")  # restore the victim's link count for the sandbox check


def test_a_regular_file_hard_linked_from_outside_is_refused(sandbox):
    root, _outside, victim = sandbox
    (root / "etc").mkdir()
    os.link(victim, root / "etc" / "hard")  # as if planted in the root by some other means
    try:
        refused(root, {"/etc/hard": {"content": "x", "mode": 0o777}}, "plain file of the test's own")
    finally:
        os.unlink(root / "etc" / "hard")


def test_fifos_and_devices_never_block_or_get_written(sandbox):
    root, _, _ = sandbox
    os.mkfifo(root / "fifo")
    refused(root, {"/fifo": "x"}, "not a regular file")
    fx = root / "fx"
    fx.mkdir()
    os.mkfifo(fx / "pipe")
    dest = root / "dest"
    dest.mkdir()
    copy_fixture_root(str(fx), str(dest))
    assert stat.S_ISFIFO(os.lstat(dest / "pipe").st_mode)
    if IS_ROOT:
        os.mknod(fx / "null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
        (root / "dest2").mkdir()
        with pytest.raises(InputError, match="device node"):
            copy_fixture_root(str(fx), str(root / "dest2"))


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"content": "x", "mode": "abc"}, "octal permission bits"),
        ({"content": "x", "mode": 99999999}, "outside 0..0o7777"),
        ({"content": "x", "mode": -1}, "outside"),
        ({"content": "x", "mode": True}, "octal permission bits"),
        ({"content": "x", "uid": -5}, "uid must be a number"),
        ({"content": "x", "uid": 2**40}, "uid must be a number"),
        ({"content": "x", "gid": "root"}, "gid must be a number"),
        ({"content": "x", "uid": 4294967295}, "uid must be a number"),
        ({"content": "x", "dir": True}, "not content and dir"),
        ({"content": 5}, "content must be a string"),
        ({"symlink": ""}, "non-empty target"),
        ({"colour": "x"}, "unknown field"),
        ({"base64": "AAB=", "content": "x"}, "not content and base64"),
        ({"base64": "AA=", "symlink": "/x"}, "not base64 and symlink"),
        ({"base64": "not base64!"}, r"test file '/etc/f': '/etc/f': base64 is not valid base64"),
        ({"base64": "QUJDé"}, r"test file '/etc/f': '/etc/f': base64 is not valid base64"),
        ({"base64": "QUJDR"}, r"test file '/etc/f': '/etc/f': base64 is not valid base64"),
        ({"base64": 5}, "base64 must be a string"),
    ],
)
def test_bad_modes_ids_and_specs_are_input_errors(sandbox, spec, match):
    root, _, _ = sandbox
    refused(root, {"/etc/f": spec}, match)
    assert not (root / "etc" / "f").exists()


def test_modes_and_owners_land_on_the_files_made(sandbox):
    root, _, _ = sandbox
    materialize_files(
        str(root),
        {
            "/usr/bin/su": {"content": "elf", "mode": "0o4755", "uid": 0, "gid": 0},
            "/tmp": {"dir": True, "mode": 0o1777},
            "/etc/shadow": {"content": "root:*:1::::::\n", "mode": "0o640", "uid": 0, "gid": 42},
        },
    )
    assert stat.S_IMODE(os.stat(root / "usr/bin/su").st_mode) == 0o4755
    assert stat.S_IMODE(os.stat(root / "tmp").st_mode) == 0o1777
    st = os.stat(root / "etc/shadow")
    assert stat.S_IMODE(st.st_mode) == 0o640
    if IS_ROOT:
        assert st.st_gid == 42


def test_base64_files_are_written_byte_for_byte(sandbox):
    root, _, _ = sandbox
    materialize_files(
        str(root),
        {
            "/etc/dconf/db/local": {"base64": "R1ZhcmlhbnQA\n  /wCA\n", "mode": "0o600"},
            "/etc/empty": {"base64": ""},
        },
    )
    assert (root / "etc/dconf/db/local").read_bytes() == b"GVariant\x00\xff\x00\x80"
    assert stat.S_IMODE(os.stat(root / "etc/dconf/db/local").st_mode) == 0o600
    assert (root / "etc/empty").read_bytes() == b""


POLICY = """\
metadata: {id: t, title: T, version: '1'}
rules:
  - id: r
    title: r
    severity: low
    check: file("/etc/x").exists
    tests:
      - name: escape
        files:
          %s
        expect: pass
"""


@pytest.mark.parametrize(
    ("entry", "message", "caret"),
    [
        ('"/../../../../../../../../tmp/%s": x', "'..' part", '"/..'),
        ('"/etc/./v": {content: x, mode: 0o777, uid: 65534}', "'.' part", '"/etc'),
        ('"/etc/v": {symlink: /etc/passwd, mode: 0o777}', "no mode of its own", "0o777"),
        ('"/etc/v": {content: x, mode: "0o99"}', "octal permission bits", '"0o99"'),
        ('"/etc/v": {content: x, uid: 99999999999}', "uid must be a number", "999"),
        ('"/etc/v": {base64: "R1Z*"}', "'/etc/v': base64 is not valid base64", '"R1Z'),
    ],
)
def test_cli_test_and_lint_refuse_escapes_with_a_location(tmp_path, entry, message, caret):
    column = 11 + entry.index(caret)  # the entry is indented by 10 in POLICY
    marker = f"pwned-{os.getpid()}-{tmp_path.name}"
    p = tmp_path / "p.yaml"
    p.write_text(POLICY % (entry % marker if "%s" in entry else entry))
    env = dict(os.environ, SECPOLICY_NO_CACHE="1")
    for cmd in ("test", "lint"):
        out = subprocess.run(
            [sys.executable, "-m", "secpolicy", cmd, str(p)], check=False, capture_output=True, text=True, env=env, timeout=120
        )
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith(f"{p}:10:{column}: "), out.stderr
        assert message in out.stderr and "Traceback" not in out.stderr
    assert not os.path.exists(os.path.join(tempfile.gettempdir(), marker))
    assert not os.path.exists(os.path.join("/tmp", marker))
