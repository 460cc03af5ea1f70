"""Container images as scan roots: read a docker/podman archive or an OCI layout without a
daemon and apply its layers to a private scratch directory that nothing escapes."""

from __future__ import annotations

import os
import shutil
import tempfile
from typing import Any, Self

from secpolicy.image.extract import ExtractLimits, ExtractReport, apply_layers
from secpolicy.image.layout import Image, ImageInfo, Layer, open_image

__all__ = ["ExtractLimits", "ExtractReport", "ExtractedImage", "Image", "ImageInfo", "Layer", "apply_layers",
           "open_image"]


class ExtractedImage:
    """An image's file system in a private temporary directory for as long as the `with`
    block lasts: `root` is scanned like a mounted root, `describe()` goes into the results."""

    def __init__(self, path: str, *, workdir: str | None = None, limits: ExtractLimits | None = None) -> None:
        self.path = os.path.abspath(path)
        self.workdir = workdir
        self.limits = limits
        self.root = ""
        self.info: ImageInfo | None = None
        self.report = ExtractReport()

    def __enter__(self) -> Self:
        with open_image(self.path) as img:
            self.info = img.info
            self.root = tempfile.mkdtemp(prefix="secpolicy-image-", dir=self.workdir)  # 0700
            try:
                self.report = apply_layers(img, self.root, limits=self.limits)
            except BaseException:
                self.cleanup()
                raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def cleanup(self) -> None:
        if self.root:
            shutil.rmtree(self.root, ignore_errors=True)
            self.root = ""

    def describe(self) -> dict[str, Any]:
        assert self.info is not None
        return {**self.info.to_dict(), "path": self.path, "entries": self.report.entries,
                "bytes": self.report.bytes, "whiteouts": self.report.whiteouts,
                "not_extracted": [{"name": n, "why": w} for n, w in self.report.skipped[:100]]}
