"""Container images as scan roots: layers applied in order with whiteouts and opaque
directories, the same tree from an OCI layout and from the docker archive skopeo makes of it,
and a hostile layer that touches nothing outside the scratch directory."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest
from oci_images import Entry, build_oci

from secpolicy.errors import IntegrityError
from secpolicy.image import apply_layers, open_image

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="image extraction keeps owners and needs root")
SKOPEO = shutil.which("skopeo")

BASE = [
    Entry("etc", "dir", mode=0o755),
    Entry("etc/ssh", "dir", mode=0o755),
    Entry("etc/ssh/sshd_config", data=b"PermitRootLogin yes\n", mode=0o600),
    Entry("etc/shadow", data=b"root:*:19000:0:99999:7:::\n", mode=0o640, gid=42),
    Entry("usr", "dir", mode=0o755),
    Entry("usr/bin", "dir", mode=0o755),
    Entry("usr/bin/su", data=b"\x7fELF", mode=0o4755),
    Entry("bin", "symlink", link="usr/bin"),
    Entry("var", "dir", mode=0o755),
    Entry("var/cache", "dir", mode=0o755),
    Entry("var/cache/old1", data=b"x"),
    Entry("var/cache/old2", data=b"y"),
    Entry("tmp", "dir", mode=0o1777),
]
TOP = [
    Entry("etc/ssh/sshd_config", data=b"PermitRootLogin no\n", mode=0o600),
    Entry("etc/.wh.shadow"),
    Entry("var/cache/.wh..wh..opq"),
    Entry("var/cache/new", data=b"z"),
    Entry("bin/added-through-link", data=b"#!/bin/sh\n", mode=0o755),
    Entry("usr/bin/sudo", "hardlink", link="usr/bin/su"),
]


def tree(root: Path) -> dict[str, tuple[str, int, int, int, str]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            kind = "link" if stat.S_ISLNK(st.st_mode) else "dir" if stat.S_ISDIR(st.st_mode) else "file"
            extra = os.readlink(p) if kind == "link" else (p.read_bytes().decode() if kind == "file" else "")
            out[str(p.relative_to(root))] = (kind, stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, extra)
    return out


def extract(image_path: Path, dest: Path) -> dict[str, tuple[str, int, int, int, str]]:
    dest.mkdir(mode=0o700)
    with open_image(image_path) as img:
        apply_layers(img, str(dest))
    return tree(dest)


def test_layers_apply_in_order_with_whiteouts_opaque_dirs_and_links(tmp_path: Path) -> None:
    got = extract(build_oci(tmp_path / "oci", [BASE, TOP]), tmp_path / "root")
    assert got["etc/ssh/sshd_config"] == ("file", 0o600, 0, 0, "PermitRootLogin no\n")
    assert "etc/shadow" not in got
    assert sorted(k for k in got if k.startswith("var/cache/")) == ["var/cache/new"]
    assert got["usr/bin/su"][:2] == ("file", 0o4755)  # set-uid kept: the scan must see it
    assert got["usr/bin/added-through-link"][:2] == ("file", 0o755)  # written through bin -> usr/bin
    assert os.stat(tmp_path / "root/usr/bin/sudo").st_ino == os.stat(tmp_path / "root/usr/bin/su").st_ino
    assert got["tmp"][:2] == ("dir", 0o1777)


@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed (Debian package skopeo)")
def test_docker_archive_written_by_skopeo_gives_the_same_tree(tmp_path: Path) -> None:
    layout = build_oci(tmp_path / "oci", [BASE, TOP], tag="demo")
    archive = tmp_path / "image.tar"
    subprocess.run([SKOPEO, "copy", "--quiet", f"oci:{layout}:demo", f"docker-archive:{archive}:demo:latest"],
                   check=True, capture_output=True, timeout=120)
    with open_image(archive) as img:
        assert img.info.format == "docker-archive" and img.info.tags == ("docker.io/library/demo:latest",)
    oci_archive = tmp_path / "oci.tar"
    subprocess.run(["tar", "-C", str(layout), "-cf", str(oci_archive), "."], check=True)
    want = extract(layout, tmp_path / "a")
    assert extract(archive, tmp_path / "b") == want
    assert extract(oci_archive, tmp_path / "c") == want


def test_hostile_layer_touches_nothing_outside_the_scratch_directory(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "victim").write_text("keep")
    before = tree(tmp_path / "outside")
    hostile = [
        Entry("../escape", data=b"x"),
        Entry("a/../../escape2", data=b"x"),
        Entry("/abs-escape", data=b"x"),  # absolute names are read relative to the image root
        Entry("evil", "symlink", link=str(outside)),
        Entry("evil/victim", data=b"overwritten", mode=0o777),
        Entry("up", "symlink", link="../../../../.."),
        Entry("up/escape3", data=b"x"),
        Entry("hl", "hardlink", link=str(outside / "victim")),
        Entry("dev-null", "chardev"),
        Entry("fifo", "fifo"),
        Entry(".wh.."),
        Entry("x/.wh..wh..opq"),
    ]
    root = tmp_path / "root"
    got = extract(build_oci(tmp_path / "oci", [BASE, hostile, [Entry(".wh..wh..opq"), Entry("last", data=b"l")]]),
                  root)
    assert tree(outside) == before and (outside / "victim").read_text() == "keep"
    assert not (tmp_path / "escape").exists() and not (tmp_path / "escape2").exists()
    assert not Path("/abs-escape").exists() and not (tmp_path.parent / "escape3").exists()
    # The opaque whiteout of / in the last layer removed every lower entry, inside the root only.
    assert sorted(got) == ["last"]


def test_hostile_layer_written_through_an_absolute_link_lands_inside(tmp_path: Path) -> None:
    outside = tmp_path / "outside"
    outside.mkdir()
    layers = [[Entry("evil", "symlink", link=str(outside)), Entry("evil/x", data=b"inside")]]
    got = extract(build_oci(tmp_path / "oci", layers), tmp_path / "root")
    assert list(outside.iterdir()) == []
    inside = str(outside).lstrip("/") + "/x"
    assert got[inside] == ("file", 0o644, 0, 0, "inside")


def test_a_layer_that_does_not_match_its_digest_is_an_integrity_error(tmp_path: Path) -> None:
    layout = build_oci(tmp_path / "oci", [BASE])
    with open_image(layout) as img:
        layer = layout / img.info.layers[0].name
    data = bytearray(layer.read_bytes())
    data[-5] ^= 1
    layer.write_bytes(bytes(data))
    (tmp_path / "root").mkdir(mode=0o700)
    with open_image(layout) as img, pytest.raises(IntegrityError, match="does not match its digest"):
        apply_layers(img, str(tmp_path / "root"))


def _scan_json(*args: str, env: dict[str, str] | None = None) -> tuple[int, dict]:
    import json
    import sys

    r = subprocess.run([sys.executable, "-m", "secpolicy", "scan", "--format", "json", *args],
                       capture_output=True, text=True, check=False, env=env)
    assert r.returncode in (0, 1), r.stderr
    return r.returncode, json.loads(r.stdout)


def test_scan_image_gives_the_verdicts_of_the_same_tree_as_a_root(tmp_path: Path) -> None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures" / "roots"))
    from build import materialize
    from oci_images import entries_from_tree

    tree_root = materialize("hardened", tmp_path / "trees")
    layout = build_oci(tmp_path / "oci", [entries_from_tree(tree_root)], tag="hardened")
    _, as_root = _scan_json("--root", str(tree_root))
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    _, as_image = _scan_json("--image", str(layout), env={**os.environ, "TMPDIR": str(scratch)})
    scan = as_image["scan"]
    assert scan["kind"] == "image" and scan["root"] == f"image:{layout}"
    assert scan["image"]["format"] == "oci-layout" and scan["image"]["tags"] == ["hardened"]
    assert scan["image"]["not_extracted"] == []
    by_root = {f["rule_id"]: f for f in as_root["results"]}
    differ = {}
    for f in as_image["results"]:
        if f["status"] != by_root[f["rule_id"]]["status"]:
            differ[f["rule_id"]] = (by_root[f["rule_id"]]["status"], f["status"], f.get("reason") or "")
    # Only what cannot hold inside an image differs, and it says so.
    assert all(new == "not_applicable" and "image" in why for _, new, why in differ.values()), differ
    reasons = {f["rule_id"]: f.get("reason") or "" for f in as_image["results"] if f["status"] == "not_applicable"}
    for rule, words in (("cis-1.1.1.1-cramfs-module-disabled", "no kernel of its own"),
                        ("cis-1.1.2.1.2-tmp-nodev-mounted", "no partitions or mounts"),
                        ("cis-3.3.1-ipv4-ip-forward", "no kernel of its own"),
                        ("cis-6.2.1.2-auditd-enabled", "runs no audit daemon")):
        assert words in reasons.get(rule, ""), (rule, reasons.get(rule))
    assert list(scratch.iterdir()) == []  # the extracted copy is gone


def test_scan_image_refuses_root_and_bad_images_with_exit_2(tmp_path: Path) -> None:
    import sys

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "secpolicy", "scan", *args], capture_output=True, text=True,
                              check=False)

    layout = build_oci(tmp_path / "oci", [BASE])
    r = run("--image", str(layout), "--root", str(tmp_path))
    assert r.returncode == 2 and "--image and --root" in r.stderr
    (tmp_path / "junk.tar").write_bytes(b"not a tar at all" * 100)
    r = run("--image", str(tmp_path / "junk.tar"))
    assert r.returncode == 2 and "junk.tar" in r.stderr and "Traceback" not in r.stderr
    r = run("--image", str(tmp_path / "missing"))
    assert r.returncode == 2 and "missing" in r.stderr
