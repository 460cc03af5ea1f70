"""Reads container images without a daemon: `docker save`/`podman save` archives and OCI image
layouts (a directory or a tar of one). Finds the manifest and its layers, checking digests."""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import stat
import tarfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Self

from secpolicy.errors import InputError, IntegrityError

__all__ = ["ImageInfo", "Layer", "open_image"]

# A manifest or index is a small JSON document: bound what is read of one.
_MAX_JSON = 4 << 20
_GZIP = {"application/vnd.oci.image.layer.v1.tar+gzip", "application/vnd.docker.image.rootfs.diff.tar.gzip"}
_ZSTD = {"application/vnd.oci.image.layer.v1.tar+zstd"}
_PLAIN = {"application/vnd.oci.image.layer.v1.tar", "application/vnd.docker.image.rootfs.diff.tar"}
_INDEX = {"application/vnd.oci.image.index.v1+json", "application/vnd.docker.distribution.manifest.list.v2+json"}
# Python's tar reader holds an extended header (PAX, GNU long name, sparse map) whole in memory.
_MAX_HEADER = 1 << 20
_MAX_LINKS = 8  # symbolic links followed to a file of an image archive


class _BoundedReads:
    """The archive's file object while a sparse map is read: at most `budget` bytes."""

    def __init__(self, f: Any, budget: int) -> None:
        self._f = f
        self._left = budget

    def read(self, n: int = -1) -> bytes:
        if self._left <= 0:
            raise tarfile.ReadError(f"a sparse map larger than {_MAX_HEADER} bytes")
        data: bytes = self._f.read(n if 0 <= n <= self._left else self._left)
        self._left -= len(data)
        return data

    def __getattr__(self, name: str) -> Any:
        return getattr(self._f, name)


class SafeTarInfo(tarfile.TarInfo):
    """Header checks Python's tar reader lacks (before 3.11.14 / 3.12.12 / 3.13.6): a negative
    size sends it back to an earlier header forever (CVE-2025-8194); an extended header or
    sparse map of gigabytes, announced by a few bytes of gzip, is read whole into memory.
    Raised as ReadError, which the reader passes on (a HeaderError past the first member would
    silently end the archive)."""

    def _proc_member(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        if self.size < 0:
            raise tarfile.ReadError(f"member {self.name!r} has a negative size")
        if self.type in (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE, tarfile.GNUTYPE_LONGNAME,
                         tarfile.GNUTYPE_LONGLINK) and self.size > _MAX_HEADER:
            raise tarfile.ReadError(f"an extended header of {self.size} bytes (more than {_MAX_HEADER})")
        return super()._proc_member(tf)  # type: ignore[misc]

    def _apply_pax_info(self, pax_headers: dict[str, str], encoding: str, errors: str) -> None:
        super()._apply_pax_info(pax_headers, encoding, errors)  # type: ignore[misc]
        if self.size < 0:
            raise tarfile.ReadError(f"member {self.name!r} has a negative size")

    def _proc_sparse(self, tf: tarfile.TarFile) -> tarfile.TarInfo:
        return self._bounded(tf, lambda: super(SafeTarInfo, self)._proc_sparse(tf))  # type: ignore[misc]

    def _proc_gnusparse_10(self, nxt: tarfile.TarInfo, pax_headers: dict[str, str], tf: tarfile.TarFile) -> None:
        self._bounded(tf, lambda: super(SafeTarInfo, self)._proc_gnusparse_10(nxt, pax_headers, tf))  # type: ignore[misc]

    @staticmethod
    def _bounded(tf: tarfile.TarFile, proc: Any) -> Any:
        f = tf.fileobj
        tf.fileobj = _BoundedReads(f, _MAX_HEADER)
        try:
            return proc()
        except ValueError as exc:
            raise tarfile.ReadError(f"a malformed sparse map: {exc}") from None
        finally:
            tf.fileobj = f


@dataclass(frozen=True)
class Layer:
    name: str  # where it is in the archive or layout (for messages)
    digest: str | None  # sha256:... of the stored (maybe compressed) bytes, when the format records it
    media_type: str | None
    diff_id: str | None = None  # sha256:... of the uncompressed tar, from the image's config


@dataclass(frozen=True)
class ImageInfo:
    """What identifies the image in results: its format, manifest digest, tags, config."""

    path: str
    format: str  # oci-layout | oci-archive | docker-archive
    manifest_digest: str | None
    config_digest: str | None
    tags: tuple[str, ...]
    architecture: str | None
    os: str | None
    layers: tuple[Layer, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"path": self.path, "format": self.format, "manifest_digest": self.manifest_digest,
                "config_digest": self.config_digest, "tags": list(self.tags), "architecture": self.architecture,
                "os": self.os,
                "layers": [{"name": layer.name, "digest": layer.digest or layer.diff_id} for layer in self.layers]}


class _Source:
    """Files of an image, whether in a directory or inside a tar archive."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._tar: tarfile.TarFile | None = None
        self._members: dict[str, tarfile.TarInfo] = {}
        try:
            st = os.stat(path)
        except OSError as exc:
            raise InputError(f"cannot read the image: {exc.strerror}", path) from None
        self.is_dir = stat.S_ISDIR(st.st_mode)
        if not self.is_dir:
            if not stat.S_ISREG(st.st_mode):
                raise InputError("an image is a directory (OCI layout) or a tar archive, not a special file", path)
            try:
                self._tar = tarfile.open(path, "r:", tarinfo=SafeTarInfo)  # noqa: SIM115 - closed by close()
                members = self._tar.getmembers()
            except (tarfile.TarError, OSError) as exc:
                self.close()
                raise InputError(f"not an image archive (a tar is expected): {exc}", path) from None
            for m in members:
                self._members[_norm(m.name)] = m

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def exists(self, name: str) -> bool:
        if self.is_dir:
            return os.path.isfile(os.path.join(self.path, name)) and not os.path.islink(os.path.join(self.path, name))
        m = self._members.get(_norm(name))
        return m is not None and m.isreg()

    def _member(self, name: str) -> tarfile.TarInfo | None:
        """The regular file `name` names in the archive, through symbolic link members (old
        `docker save` stores a layer repeated in an image as a link to its first copy)."""
        m = self._members.get(_norm(name))
        for _ in range(_MAX_LINKS):
            if m is None or not m.issym():
                break
            target = posixpath.normpath(posixpath.join(posixpath.dirname(_norm(m.name)), m.linkname))
            if m.linkname.startswith("/") or target == ".." or target.startswith("../"):
                raise InputError(f"image refers to {name!r} through a link outside the archive", self.path)
            m = self._members.get(_norm(target))
        return m

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        if self.is_dir:
            full = os.path.join(self.path, name)
            top = os.path.realpath(self.path)
            if os.path.commonpath([top, os.path.realpath(full)]) != top:
                raise InputError(f"image refers to {name!r} outside its layout", self.path)
            try:
                f = open(full, "rb")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise InputError(f"cannot read {name} of the image: {exc.strerror}", self.path) from None
        else:
            assert self._tar is not None
            m = self._member(name)
            if m is None or not m.isreg():
                raise InputError(f"the image archive has no file {name!r}", self.path)
            extracted = self._tar.extractfile(m)
            assert extracted is not None
            f = extracted  # type: ignore[assignment]
        try:
            yield f
        finally:
            f.close()

    def json(self, name: str, digest: str | None = None) -> Any:
        """The JSON document `name`; with `digest`, its bytes must hash to it (a blob of an OCI
        layout: "The content of blobs/<alg>/<encoded> MUST match the digest")."""
        with self.open(name) as f:
            data = f.read(_MAX_JSON + 1)
        if len(data) > _MAX_JSON:
            raise InputError(f"{name} of the image is larger than {_MAX_JSON} bytes", self.path)
        if digest is not None and "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise IntegrityError(f"{self.path}: {name} does not match its digest {digest}")
        try:
            return json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InputError(f"{name} of the image is not JSON: {exc}", self.path) from None


def _norm(name: str) -> str:
    parts = [p for p in name.replace("\\", "/").split("/") if p not in ("", ".")]
    return "/".join(parts)


def _blob(digest: str) -> str:
    algo, _, hexdigest = digest.partition(":")
    if algo != "sha256" or len(hexdigest) != 64 or not all(c in "0123456789abcdef" for c in hexdigest):
        raise InputError(f"unsupported or malformed digest {digest!r} (sha256 expected)")
    return f"blobs/sha256/{hexdigest}"


class Image:
    """An opened image: `layers()` yields each layer's uncompressed tar stream in order,
    after checking its digest where the format records one."""

    def __init__(self, source: _Source, info: ImageInfo) -> None:
        self._source = source
        self.info = info

    def close(self) -> None:
        self._source.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def verify_layer(self, layer: Layer) -> None:
        """The layer's bytes hash to its recorded digest (a swapped layer is an integrity error)."""
        if layer.digest is None:
            return
        h = hashlib.sha256()
        with self._source.open(layer.name) as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        if "sha256:" + h.hexdigest() != layer.digest:
            raise IntegrityError(f"{self.info.path}: layer {layer.name} does not match its digest {layer.digest}")

    @contextmanager
    def layer_stream(self, layer: Layer) -> Iterator[IO[bytes]]:
        with self._source.open(layer.name) as raw:
            head = raw.read(4)
            raw.seek(0)
            media = layer.media_type or ""
            if media in _ZSTD or head == b"\x28\xb5\x2f\xfd":
                try:
                    import zstandard
                except ImportError:
                    raise InputError(f"layer {layer.name} is zstd-compressed: pip install zstandard",
                                     self.info.path) from None
                with zstandard.ZstdDecompressor().stream_reader(raw) as z:
                    yield z
            elif media in _GZIP or head[:2] == b"\x1f\x8b":
                import gzip

                with gzip.GzipFile(fileobj=raw, mode="rb") as g:
                    yield g  # type: ignore[misc]  # a GzipFile is a binary file object
            elif media in _PLAIN or not media:
                yield raw
            else:
                raise InputError(f"layer {layer.name} has an unsupported media type {media!r}", self.info.path)


def _diff_ids(config: Any, layers: int, path: str) -> list[str]:
    """The config's diff ids, one per layer: a runtime refuses an image where they disagree
    (skopeo: "Inconsistent layer count"; containerd: "number of layers and diffIDs don't match")."""
    rootfs = config.get("rootfs") if isinstance(config, dict) else None
    diff_ids = rootfs.get("diff_ids") if isinstance(rootfs, dict) else None
    if not isinstance(diff_ids, list) or len(diff_ids) != layers:
        count = len(diff_ids) if isinstance(diff_ids, list) else 0
        raise IntegrityError(f"{path}: the manifest lists {layers} layers but the config has {count} diff ids")
    for d in diff_ids:
        _blob(str(d))  # sha256:<64 hex>
    return [str(d) for d in diff_ids]


def _oci(source: _Source, fmt: str) -> ImageInfo:
    layout = source.json("oci-layout")
    if not isinstance(layout, dict) or layout.get("imageLayoutVersion") != "1.0.0":
        raise InputError("oci-layout: imageLayoutVersion 1.0.0 expected", source.path)
    index = source.json("index.json")
    manifests = index.get("manifests") if isinstance(index, dict) else None
    if not isinstance(manifests, list) or not manifests:
        raise InputError("index.json lists no manifest", source.path)
    desc = manifests[0]
    # An index may point at another index (multi-platform images): take the linux/amd64 one.
    for _ in range(4):
        if desc.get("mediaType") not in _INDEX:
            break
        digest = str(desc["digest"])
        nested = source.json(_blob(digest), digest)
        candidates = nested.get("manifests") or []
        desc = next((m for m in candidates if (m.get("platform") or {}).get("architecture") in ("amd64", None)),
                    candidates[0] if candidates else None)
        if desc is None:
            raise InputError("image index lists no manifest", source.path)
    manifest_digest = str(desc["digest"])
    manifest = source.json(_blob(manifest_digest), manifest_digest)
    tags = tuple(str(t) for t in [(desc.get("annotations") or {}).get("org.opencontainers.image.ref.name")] if t)
    config_digest = str((manifest.get("config") or {}).get("digest") or "")
    if not config_digest:
        raise InputError("the image manifest names no config", source.path)
    config = source.json(_blob(config_digest), config_digest)
    entries = manifest.get("layers") or []
    diff_ids = _diff_ids(config, len(entries), source.path)
    layers = tuple(Layer(_blob(str(entry["digest"])), str(entry["digest"]), entry.get("mediaType"), diff_id)
                   for entry, diff_id in zip(entries, diff_ids, strict=True))
    return ImageInfo(source.path, fmt, manifest_digest, config_digest, tags, config.get("architecture"),
                     config.get("os"), layers)


def _docker(source: _Source) -> ImageInfo:
    manifest = source.json("manifest.json")
    if not isinstance(manifest, list) or not manifest or not isinstance(manifest[0], dict):
        raise InputError("manifest.json of a docker archive is a list of images", source.path)
    entry = manifest[0]
    config_name = str(entry.get("Config") or "")
    if not config_name:
        raise InputError("manifest.json names no config for the image", source.path)
    config = source.json(config_name)
    names = [str(n) for n in entry.get("Layers") or []]
    # A docker archive records no digest of the stored bytes: each layer is checked, once
    # uncompressed, against its diff id, as docker load does.
    layers = tuple(Layer(name, None, None, diff_id)
                   for name, diff_id in zip(names, _diff_ids(config, len(names), source.path), strict=True))
    with source.open(config_name) as f:
        config_digest = "sha256:" + hashlib.sha256(f.read(_MAX_JSON)).hexdigest()
    return ImageInfo(source.path, "docker-archive", None, config_digest,
                     tuple(str(t) for t in entry.get("RepoTags") or []), config.get("architecture"), config.get("os"),
                     layers)


def open_image(path: str | Path) -> Image:
    """An OCI layout directory or tar, or a docker/podman save archive."""
    source = _Source(str(path))
    try:
        if source.exists("manifest.json"):
            info = _docker(source)
        elif source.exists("oci-layout"):
            info = _oci(source, "oci-layout" if source.is_dir else "oci-archive")
        else:
            raise InputError("not a container image: neither manifest.json (docker save) nor oci-layout (OCI)",
                             str(path))
        if not info.layers:
            raise InputError("the image has no layers", str(path))
    except (KeyError, TypeError, AttributeError) as exc:
        source.close()
        raise InputError(f"malformed image metadata: {exc}", str(path)) from None
    except BaseException:
        source.close()
        raise
    return Image(source, info)
