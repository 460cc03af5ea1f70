"""Hostile and unusual images against what a runtime (containerd, skopeo, docker load) does:
every blob checked against its digest, every layer against the config's diff ids, tar headers
that would loop, exhaust memory or crash refused with a located error, and the merged tree as
a runtime unpacks it (hard links to symbolic links, devices replacing files, whiteout counts)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import stat
import subprocess
import sys
import tarfile
import zlib
from pathlib import Path

import pytest
from oci_images import Entry, build_oci

from secpolicy.errors import InputError, IntegrityError
from secpolicy.image import ExtractLimits, apply_layers, open_image

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="image extraction keeps owners and needs root")

SSHD_NO = [Entry("etc", "dir", mode=0o755), Entry("etc/ssh", "dir", mode=0o755),
           Entry("etc/ssh/sshd_config", data=b"PermitRootLogin no\n", mode=0o600)]


def _tar(members: list[tuple[tarfile.TarInfo, bytes | None]]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return buf.getvalue()


def _info(name: str, kind: bytes = tarfile.REGTYPE, link: str = "", **pax: str) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode, info.mtime = kind, link, 0o755 if kind == tarfile.DIRTYPE else 0o644, 1
    info.pax_headers = dict(pax)
    return info


def _blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return f"sha256:{digest}"


def _oci_raw(layout: Path, layers: list[bytes], diff_ids: list[str] | None = None) -> Path:
    """An OCI layout of gzip'd raw layer tars; diff_ids default to the true ones."""
    layout.mkdir(parents=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    descs = []
    for raw in layers:
        gz = gzip.compress(raw, mtime=0)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _blob(layout, gz),
                      "size": len(gz)})
    if diff_ids is None:
        diff_ids = ["sha256:" + hashlib.sha256(raw).hexdigest() for raw in layers]
    config = json.dumps({"architecture": "amd64", "os": "linux",
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": _blob(layout, config), "size": len(config)},
                           "layers": descs}).encode()
    (layout / "index.json").write_text(json.dumps({"schemaVersion": 2, "manifests": [
        {"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": _blob(layout, manifest),
         "size": len(manifest)}]}))
    return layout


def _docker_archive(path: Path, files: dict[str, bytes], layers: list[str], diff_ids: list[str] | None,
                    links: dict[str, str] | None = None) -> Path:
    """A `docker save` archive: `files` by name, `links` as symbolic link members (old docker
    save stores a layer repeated in one image as a link to its first copy)."""
    names = dict(files)
    manifest: dict[str, object] = {"RepoTags": ["probe:1"], "Layers": layers}
    if diff_ids is not None:
        config = json.dumps({"architecture": "amd64", "os": "linux",
                             "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
        names[hashlib.sha256(config).hexdigest() + ".json"] = config
        manifest["Config"] = hashlib.sha256(config).hexdigest() + ".json"
    names["manifest.json"] = json.dumps([manifest]).encode()
    with tarfile.open(path, "w") as tar:
        for name, data in names.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return path


def _diff_id(raw: bytes) -> str:
    return "sha256:" + hashlib.sha256(raw).hexdigest()


def _extract(image: Path, dest: Path, limits: ExtractLimits | None = None) -> Path:
    dest.mkdir(mode=0o700)
    with open_image(image) as img:
        apply_layers(img, str(dest), limits=limits)
    return dest


def _scan(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "secpolicy", "scan", *args], capture_output=True, text=True,
                          check=False, timeout=120)


# -- every blob is what its digest says -----------------------------------------------------


def test_a_manifest_whose_blob_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    """image-layout.md: the content of blobs/<alg>/<encoded> MUST match the digest. A manifest
    rewritten in place (same name, other layers) would have the results name one image while
    the scan read another."""
    layout = build_oci(tmp_path / "oci", [SSHD_NO])
    index = json.loads((layout / "index.json").read_text())
    manifest_path = layout / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]
    other = gzip.compress(b"\0" * 1024, mtime=0)
    manifest = json.loads(manifest_path.read_text())
    manifest["layers"][0].update(digest=_blob(layout, other), size=len(other))
    manifest_path.write_text(json.dumps(manifest))
    with pytest.raises(IntegrityError, match="does not match its digest"):
        open_image(layout)


def test_a_config_whose_blob_does_not_match_its_digest_is_refused(tmp_path: Path) -> None:
    layout = build_oci(tmp_path / "oci", [SSHD_NO])
    index = json.loads((layout / "index.json").read_text())
    manifest = json.loads((layout / "blobs/sha256" / index["manifests"][0]["digest"].split(":")[1]).read_text())
    config_path = layout / "blobs/sha256" / manifest["config"]["digest"].split(":")[1]
    config_path.write_text(config_path.read_text().replace("amd64", "arm64"))
    with pytest.raises(IntegrityError, match="does not match its digest"):
        open_image(layout)


def test_an_oci_layer_that_does_not_match_the_config_diff_id_is_refused(tmp_path: Path) -> None:
    good = _tar([(_info("etc", tarfile.DIRTYPE), None), (_info("etc/motd"), b"hello\n")])
    layout = _oci_raw(tmp_path / "oci", [good], diff_ids=[_diff_id(good + b"x")])
    (tmp_path / "root").mkdir(mode=0o700)
    with open_image(layout) as img, pytest.raises(IntegrityError, match="diff id"):
        apply_layers(img, str(tmp_path / "root"))
    layout = _oci_raw(tmp_path / "oci2", [good, good], diff_ids=[_diff_id(good)])
    with pytest.raises(IntegrityError, match="2 layers.*1 diff id"):
        open_image(layout)


def test_docker_archive_layers_are_checked_against_the_config_diff_ids(tmp_path: Path) -> None:
    """docker load and skopeo refuse these ("Inconsistent layer count: 2 in manifest, 1 in
    config"; "Digest did not match"): a layer no diff id covers, a compressed layer whose
    content is not its diff id, and an archive without a config, are not scanned."""
    good = _tar([(_info("etc", tarfile.DIRTYPE), None), (_info("etc/motd"), b"hello\n")])
    evil = _tar([(_info("etc", tarfile.DIRTYPE), None), (_info("etc/motd"), b"evil\n")])
    uncovered = _docker_archive(tmp_path / "short.tar", {"a/layer.tar": good, "b/layer.tar": evil},
                                ["a/layer.tar", "b/layer.tar"], [_diff_id(good)])
    with pytest.raises(IntegrityError, match="2 layers.*1 diff id"):
        open_image(uncovered)
    swapped = _docker_archive(tmp_path / "gz.tar", {"a/layer.tar.gz": gzip.compress(evil)}, ["a/layer.tar.gz"],
                              [_diff_id(good)])
    (tmp_path / "root").mkdir(mode=0o700)
    with open_image(swapped) as img, pytest.raises(IntegrityError, match="diff id"):
        apply_layers(img, str(tmp_path / "root"))
    no_config = _docker_archive(tmp_path / "noconfig.tar", {"a/layer.tar": good}, ["a/layer.tar"], None)
    with pytest.raises(InputError, match="no config"):
        open_image(no_config)


def test_docker_save_archive_with_a_repeated_layer_stored_as_a_link_is_read(tmp_path: Path) -> None:
    """docker save (before v25) stores a layer that appears twice once, the second as a
    symbolic link member; skopeo reads such archives."""
    one = _tar([(_info("etc", tarfile.DIRTYPE), None), (_info("etc/a"), b"1")])
    two = _tar([(_info("etc/a"), b"2")])
    archive = _docker_archive(tmp_path / "img.tar", {"aaa/layer.tar": one, "bbb/layer.tar": two},
                              ["aaa/layer.tar", "bbb/layer.tar", "ccc/layer.tar"],
                              [_diff_id(one), _diff_id(two), _diff_id(one)], links={"ccc/layer.tar": "../aaa/layer.tar"})
    root = _extract(archive, tmp_path / "root")
    assert (root / "etc/a").read_bytes() == b"1"  # the third layer, the first one again, wins


def test_docker_layer_names_cannot_leave_the_archive_directory(tmp_path: Path) -> None:
    outside = _tar([(_info("etc", tarfile.DIRTYPE), None), (_info("etc/motd"), b"from outside\n")])
    (tmp_path / "outside.tar").write_bytes(outside)
    unpacked = tmp_path / "unpacked"
    unpacked.mkdir()
    archive = _docker_archive(tmp_path / "img.tar", {"x/placeholder": b""}, ["x/../../outside.tar"],
                              [_diff_id(outside)])
    subprocess.run(["tar", "-C", str(unpacked), "-xf", str(archive)], check=True)
    (tmp_path / "root").mkdir(mode=0o700)
    with pytest.raises(InputError, match="outside"), open_image(unpacked) as img:
        apply_layers(img, str(tmp_path / "root"))
    assert not (tmp_path / "root/etc").exists()


# -- tar headers that would loop, exhaust memory or crash -----------------------------------


def test_an_archive_member_with_a_negative_size_is_refused_not_read_forever(tmp_path: Path) -> None:
    """A PAX size of -1536 sends Python's tar reader back to an earlier header, forever
    (CVE-2025-8194 in the interpreters this runs on)."""
    layer = _tar([(_info("etc", tarfile.DIRTYPE), None)])
    bad = _info("junk", size="-1536")
    path = tmp_path / "img.tar"
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("l.tar", layer), ("manifest.json", b'[{"Layers": ["l.tar"]}]')):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        tar.addfile(bad)
    path.write_bytes(buf.getvalue())
    code = "import sys; from secpolicy.image import open_image; open_image(sys.argv[1])"
    try:
        r = subprocess.run([sys.executable, "-c", code, str(path)], capture_output=True, text=True, timeout=30,
                           check=False)
    except subprocess.TimeoutExpired:
        pytest.fail("reading the archive did not end")
    assert r.returncode == 1 and "InputError" in r.stderr and "negative size" in r.stderr, r.stderr


def _gzip_layer_with_header(size: int, kind: bytes) -> bytes:
    """A gzip'd layer opening with a PAX or GNU long-name header that announces `size` bytes."""
    head = tarfile.TarInfo("././@PaxHeader" if kind == tarfile.XHDTYPE else "././@LongLink")
    head.size, head.type = size, kind
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    out = [z.compress(head.tobuf(format=tarfile.GNU_FORMAT))]
    zeros = b"\0" * (1 << 20)
    for _ in range(size // len(zeros)):
        out.append(z.compress(zeros))
    tail = tarfile.TarInfo("f")
    out += [z.compress(tail.tobuf(format=tarfile.GNU_FORMAT) + b"\0" * 1024), z.flush()]
    return b"".join(out)


@pytest.mark.parametrize("kind", [tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME])
def test_an_extended_header_too_large_to_hold_is_refused(tmp_path: Path, kind: bytes) -> None:
    """Python's tar reader reads a PAX or long-name header whole into memory: a few KiB of
    gzip announcing gigabytes would exhaust it. Headers past 1 MiB are refused instead."""
    gz = _gzip_layer_with_header(16 << 20, kind)
    layout = tmp_path / "oci"
    layout.mkdir()
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    config = json.dumps({"rootfs": {"diff_ids": [_diff_id(gzip.decompress(gz))]}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "config": {"digest": _blob(layout, config), "size": len(config)},
                           "layers": [{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                                       "digest": _blob(layout, gz), "size": len(gz)}]}).encode()
    (layout / "index.json").write_text(json.dumps({"manifests": [{"digest": _blob(layout, manifest)}]}))
    (tmp_path / "root").mkdir(mode=0o700)
    with open_image(layout) as img, pytest.raises(IntegrityError, match="extended header of 16777216 bytes"):
        apply_layers(img, str(tmp_path / "root"))


@pytest.mark.parametrize("pax", [{"uid": "-5"}, {"gid": "99999999999999"}, {"mtime": "nan"}, {"mtime": "1e300"}])
def test_an_owner_or_time_out_of_range_is_a_located_error_not_a_crash(tmp_path: Path, pax: dict[str, str]) -> None:
    layer = _tar([(_info("etc", tarfile.DIRTYPE), None), (_info("etc/motd", **pax), b"x")])
    layout = _oci_raw(tmp_path / "oci", [layer])
    r = _scan("--image", str(layout), "--rule", "cis-5.1.20-sshd-permit-root-login", "--quiet")
    assert r.returncode == 5, r.stderr
    assert "internal error" not in r.stderr and "etc/motd" in r.stderr and "out of range" in r.stderr, r.stderr


# -- the merged tree as a runtime unpacks it ------------------------------------------------


def test_a_hard_link_to_a_symbolic_link_links_the_link_itself(tmp_path: Path) -> None:
    """GNU tar and containerd (hardlinkRootPath: "Allow hardlink to the softlink, not the real
    one") link the symbolic link, dangling or not; it is not followed to its target."""
    layer = _tar([(_info("etc", tarfile.DIRTYPE), None), (_info("etc/real"), b"REAL"),
                  (_info("etc/lnk", tarfile.SYMTYPE, "real"), None),
                  (_info("etc/hl", tarfile.LNKTYPE, "etc/lnk"), None),
                  (_info("etc/dangling", tarfile.SYMTYPE, "/nowhere"), None),
                  (_info("etc/hl2", tarfile.LNKTYPE, "etc/dangling"), None)])
    root = _extract(_oci_raw(tmp_path / "oci", [layer]), tmp_path / "root")
    assert os.readlink(root / "etc/hl") == "real" and os.readlink(root / "etc/hl2") == "/nowhere"
    assert os.lstat(root / "etc/hl").st_ino == os.lstat(root / "etc/lnk").st_ino
    assert os.lstat(root / "etc/real").st_nlink == 1
    # Through a symbolic link in the directory part, a hard link still finds its target.
    layer2 = _tar([(_info("usr", tarfile.DIRTYPE), None), (_info("usr/bin", tarfile.DIRTYPE), None),
                   (_info("usr/bin/su"), b"su"), (_info("bin", tarfile.SYMTYPE, "usr/bin"), None),
                   (_info("sudo", tarfile.LNKTYPE, "bin/su"), None)])
    root2 = _extract(_oci_raw(tmp_path / "oci2", [layer2]), tmp_path / "root2")
    assert os.lstat(root2 / "sudo").st_ino == os.lstat(root2 / "usr/bin/su").st_ino


def test_a_device_or_fifo_replaces_what_a_lower_layer_had_there(tmp_path: Path) -> None:
    """A runtime removes the lower entry and makes the node; the node is not extracted here,
    but the lower file must not stay behind and be scanned as if the image held it."""
    base = _tar([(_info("etc", tarfile.DIRTYPE), None), (_info("etc/ssh", tarfile.DIRTYPE), None),
                 (_info("etc/ssh/sshd_config"), b"PermitRootLogin no\n"), (_info("etc/null"), b"a file")])
    top = _tar([(_info("etc/ssh/sshd_config", tarfile.FIFOTYPE), None), (_info("etc/null", tarfile.CHRTYPE), None)])
    root = _extract(_oci_raw(tmp_path / "oci", [base, top]), tmp_path / "root")
    assert not (root / "etc/ssh/sshd_config").exists() and not (root / "etc/null").exists()
    assert (root / "etc/ssh").is_dir()


def test_whiteouts_count_towards_the_entry_limit(tmp_path: Path) -> None:
    """A layer of nothing but whiteouts (512 bytes each, compressing to almost nothing) is
    bounded like any other entries."""
    wh = _tar([(_info(f"a/b/.wh.{i}"), b"") for i in range(50)])
    layout = _oci_raw(tmp_path / "oci", [_tar([(_info("a", tarfile.DIRTYPE), None)]), wh])
    (tmp_path / "root").mkdir(mode=0o700)
    with open_image(layout) as img, pytest.raises(InputError, match="more than 20 entries"):
        apply_layers(img, str(tmp_path / "root"), limits=ExtractLimits(max_entries=20))


def test_the_root_directory_entry_of_a_layer_is_not_reported_as_not_extracted(tmp_path: Path) -> None:
    """`tar -C rootfs -cf layer.tar .` starts every layer with `./`: nothing is lost there."""
    src = tmp_path / "src"
    (src / "etc").mkdir(parents=True)
    (src / "etc/motd").write_text("hi\n")
    subprocess.run(["tar", "-C", str(src), "-cf", str(tmp_path / "l.tar"), "."], check=True)
    layout = _oci_raw(tmp_path / "oci", [(tmp_path / "l.tar").read_bytes()])
    (tmp_path / "root").mkdir(mode=0o700)
    with open_image(layout) as img:
        report = apply_layers(img, str(tmp_path / "root"))
    assert report.skipped == [] and (tmp_path / "root/etc/motd").read_text() == "hi\n"
    assert stat.S_IMODE(os.stat(tmp_path / "root").st_mode) == 0o700  # the scratch root stays private
