"""Build OCI image layouts by hand for tests (no registry, no daemon): each layer a list of
entries, written as gzip'd tar blobs with a config and manifest as the OCI spec describes."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import tarfile
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Entry:
    name: str
    kind: str = "file"  # file | dir | symlink | hardlink | fifo | chardev
    data: bytes = b""
    link: str = ""
    mode: int = 0o644
    uid: int = 0
    gid: int = 0


def _layer_tar(entries: list[Entry]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for e in entries:
            info = tarfile.TarInfo(e.name)
            info.mode, info.uid, info.gid, info.mtime = e.mode, e.uid, e.gid, 1_700_000_000
            payload = None
            if e.kind == "file":
                info.size = len(e.data)
                payload = io.BytesIO(e.data)
            elif e.kind == "dir":
                info.type = tarfile.DIRTYPE
            elif e.kind == "symlink":
                info.type, info.linkname = tarfile.SYMTYPE, e.link
            elif e.kind == "hardlink":
                info.type, info.linkname = tarfile.LNKTYPE, e.link
            elif e.kind == "fifo":
                info.type = tarfile.FIFOTYPE
            elif e.kind == "chardev":
                info.type, info.devmajor, info.devminor = tarfile.CHRTYPE, 1, 3
            tar.addfile(info, payload)
    return buf.getvalue()


def _blob(layout: Path, data: bytes) -> str:
    digest = hashlib.sha256(data).hexdigest()
    (layout / "blobs" / "sha256").mkdir(parents=True, exist_ok=True)
    (layout / "blobs" / "sha256" / digest).write_bytes(data)
    return f"sha256:{digest}"


def build_oci(layout: Path, layers: list[list[Entry]], tag: str = "test") -> Path:
    layout.mkdir(parents=True, exist_ok=True)
    (layout / "oci-layout").write_text('{"imageLayoutVersion": "1.0.0"}')
    descs, diff_ids = [], []
    for entries in layers:
        raw = _layer_tar(entries)
        diff_ids.append("sha256:" + hashlib.sha256(raw).hexdigest())
        gz = gzip.compress(raw, mtime=0)
        descs.append({"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": _blob(layout, gz),
                      "size": len(gz)})
    config = json.dumps({"architecture": "amd64", "os": "linux", "config": {},
                         "rootfs": {"type": "layers", "diff_ids": diff_ids}}).encode()
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
                           "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                                      "digest": _blob(layout, config), "size": len(config)},
                           "layers": descs}).encode()
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
                                                "digest": _blob(layout, manifest), "size": len(manifest),
                                                "annotations": {"org.opencontainers.image.ref.name": tag}}]}
    (layout / "index.json").write_text(json.dumps(index))
    return layout


def entries_from_tree(top: Path) -> list[Entry]:
    """One layer holding a directory tree as it is on disk: modes, owners and links kept."""
    import os
    import stat

    out: list[Entry] = []
    for dirpath, dirnames, filenames in os.walk(top):
        dirnames.sort()
        for name in sorted(dirnames) + sorted(filenames):
            p = Path(dirpath) / name
            st = p.lstat()
            rel = str(p.relative_to(top))
            mode = stat.S_IMODE(st.st_mode)
            if stat.S_ISLNK(st.st_mode):
                out.append(Entry(rel, "symlink", link=os.readlink(p), uid=st.st_uid, gid=st.st_gid))
            elif stat.S_ISDIR(st.st_mode):
                out.append(Entry(rel, "dir", mode=mode, uid=st.st_uid, gid=st.st_gid))
            elif stat.S_ISREG(st.st_mode):
                out.append(Entry(rel, data=p.read_bytes(), mode=mode, uid=st.st_uid, gid=st.st_gid))
    return out
