"""secpolicy.outfile on its own: what is replaced, what is written through, what is refused,
and with which modes."""

from __future__ import annotations

import os
import stat

import pytest

from secpolicy import outfile
from secpolicy.outfile import OutputError


@pytest.fixture(autouse=True)
def _links_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts from the default (a link refused), whatever ran in this process before."""
    monkeypatch.setitem(outfile._settings, "follow_symlinks", False)


def test_a_replacement_appears_only_when_complete_and_keeps_mode(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    os.chmod(target, 0o644)
    with outfile.open_output(str(target)) as out:
        out.write("new")
        assert target.read_text() == "old"  # not yet
        (tmp,) = [p for p in tmp_path.iterdir() if p.name != "r.json"]
        assert tmp.name.startswith(".r.json.") and stat.S_IMODE(tmp.stat().st_mode) == 0o600
    assert target.read_text() == "new" and stat.S_IMODE(target.stat().st_mode) == 0o644
    assert [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_an_exception_discards_and_keeps_the_previous_file(tmp_path):
    target = tmp_path / "r.json"
    target.write_text("old")
    with pytest.raises(RuntimeError), outfile.open_output(str(target)) as out:
        out.write("half")
        raise RuntimeError("renderer failed")
    assert target.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["r.json"]


def test_a_stream_is_written_in_place_private_and_refuses_links(tmp_path):
    old = os.umask(0o022)
    try:
        target = tmp_path / "alerts.jsonl"
        out = outfile.open_output(str(target), stream=True)
        out.write("one\n")
        out.flush()
        assert target.read_text() == "one\n"  # visible while it grows
        out.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE(target.stat().st_mode) == 0o600
    link = tmp_path / "link"
    link.symlink_to(target)
    with pytest.raises(OutputError, match="symbolic link"):
        outfile.open_output(str(link), stream=True)
    assert target.read_text() == "one\n"


@pytest.mark.parametrize(("make", "reason"), [
    (lambda p: p.mkdir(), "it is a directory"),
    (lambda p: os.mknod(p, stat.S_IFBLK | 0o600, os.makedev(7, 200)), "it is a block device"),
    (lambda p: p.symlink_to("/etc/passwd"), "it is a symbolic link"),
])
def test_what_is_never_written(make, reason, tmp_path):
    p = tmp_path / "out"
    make(p)
    with pytest.raises(OutputError) as e:
        outfile.check_writable(str(p))
    assert e.value.render() == f"cannot write {p} ({reason}" + (
        "; give the file it points to, or secpolicy --follow-symlinks)" if "link" in reason else ")")
    with pytest.raises(OutputError):
        outfile.open_output(str(p))


def test_devices_and_std_aliases_are_written_through(tmp_path, capfd):
    dev = tmp_path / "null"
    os.mknod(dev, stat.S_IFCHR | 0o666, os.makedev(1, 3))
    outfile.write_text(str(dev), "x")
    assert stat.S_ISCHR(dev.lstat().st_mode)
    outfile.write_text("/dev/stderr", "to stderr\n")
    outfile.write_text("/dev/stdout", "to stdout\n")
    got = capfd.readouterr()
    assert got.err == "to stderr\n" and got.out == "to stdout\n"


def test_private_directories_whatever_the_umask(tmp_path):
    old = os.umask(0)
    try:
        outfile.make_private_dir(str(tmp_path / "a" / "b"))
        outfile.create_private(str(tmp_path / "a" / "store.db"))
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "b").stat().st_mode) == 0o700
    assert stat.S_IMODE((tmp_path / "a" / "store.db").stat().st_mode) == 0o600
