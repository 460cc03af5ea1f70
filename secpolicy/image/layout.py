"""Reads container images without a daemon: `docker save`/`podman save` archives and OCI image
layouts (a directory or a tar of one). Finds the manifest and its layers, checking digests."""

from __future__ import annotations

import hashlib
import json
import os
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


@dataclass(frozen=True)
class Layer:
    name: str  # where it is in the archive or layout (for messages)
    digest: str | None  # sha256:... when the format records it
    media_type: str | None


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
                "os": self.os, "layers": [{"name": layer.name, "digest": layer.digest} for layer in self.layers]}


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
                self._tar = tarfile.open(path, "r:")  # noqa: SIM115 - closed by close()
            except (tarfile.TarError, OSError) as exc:
                raise InputError(f"not an image archive (a tar is expected): {exc}", path) from None
            for m in self._tar.getmembers():
                self._members[_norm(m.name)] = m

    def close(self) -> None:
        if self._tar is not None:
            self._tar.close()

    def exists(self, name: str) -> bool:
        if self.is_dir:
            return os.path.isfile(os.path.join(self.path, name)) and not os.path.islink(os.path.join(self.path, name))
        m = self._members.get(_norm(name))
        return m is not None and m.isreg()

    @contextmanager
    def open(self, name: str) -> Iterator[IO[bytes]]:
        if self.is_dir:
            full = os.path.join(self.path, name)
            if _norm(name).startswith("../") or os.path.islink(full):
                raise InputError(f"image refers to {name!r} outside its layout or through a link", self.path)
            try:
                f = open(full, "rb")  # noqa: SIM115 - closed below
            except OSError as exc:
                raise InputError(f"cannot read {name} of the image: {exc.strerror}", self.path) from None
        else:
            assert self._tar is not None
            m = self._members.get(_norm(name))
            if m is None or not m.isreg():
                raise InputError(f"the image archive has no file {name!r}", self.path)
            extracted = self._tar.extractfile(m)
            assert extracted is not None
            f = extracted  # type: ignore[assignment]
        try:
            yield f
        finally:
            f.close()

    def json(self, name: str) -> Any:
        with self.open(name) as f:
            data = f.read(_MAX_JSON + 1)
        if len(data) > _MAX_JSON:
            raise InputError(f"{name} of the image is larger than {_MAX_JSON} bytes", self.path)
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
        if desc.get("mediaType") != "application/vnd.oci.image.index.v1+json":
            break
        nested = source.json(_blob(desc["digest"]))
        candidates = nested.get("manifests") or []
        desc = next((m for m in candidates if (m.get("platform") or {}).get("architecture") in ("amd64", None)),
                    candidates[0] if candidates else None)
        if desc is None:
            raise InputError("image index lists no manifest", source.path)
    manifest_digest = str(desc["digest"])
    manifest = source.json(_blob(manifest_digest))
    tags = tuple(str(t) for t in [(desc.get("annotations") or {}).get("org.opencontainers.image.ref.name")] if t)
    config_digest = str((manifest.get("config") or {}).get("digest")) if manifest.get("config") else None
    config = source.json(_blob(config_digest)) if config_digest else {}
    layers = tuple(Layer(_blob(str(entry["digest"])), str(entry["digest"]), entry.get("mediaType"))
                   for entry in manifest.get("layers") or [])
    return ImageInfo(source.path, fmt, manifest_digest, config_digest, tags, config.get("architecture"),
                     config.get("os"), layers)


def _docker(source: _Source) -> ImageInfo:
    manifest = source.json("manifest.json")
    if not isinstance(manifest, list) or not manifest or not isinstance(manifest[0], dict):
        raise InputError("manifest.json of a docker archive is a list of images", source.path)
    entry = manifest[0]
    config_name = str(entry.get("Config") or "")
    config = source.json(config_name) if config_name else {}
    diff_ids = (config.get("rootfs") or {}).get("diff_ids") or []
    names = [str(n) for n in entry.get("Layers") or []]
    layers = []
    for i, name in enumerate(names):
        # Layers in a docker archive are stored uncompressed: their digest is the diff id.
        digest = str(diff_ids[i]) if i < len(diff_ids) and not name.endswith(".gz") else None
        layers.append(Layer(name, digest, None))
    config_digest = None
    if config_name:
        with source.open(config_name) as f:
            config_digest = "sha256:" + hashlib.sha256(f.read(_MAX_JSON)).hexdigest()
    return ImageInfo(source.path, "docker-archive", None, config_digest,
                     tuple(str(t) for t in entry.get("RepoTags") or []), config.get("architecture"), config.get("os"),
                     tuple(layers))


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
