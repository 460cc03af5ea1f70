"""Container images as scan roots: read a docker/podman archive or an OCI layout without a
daemon and apply its layers to a private scratch directory that nothing escapes."""

from __future__ import annotations

from secpolicy.image.extract import ExtractLimits, ExtractReport, apply_layers
from secpolicy.image.layout import Image, ImageInfo, Layer, open_image

__all__ = ["ExtractLimits", "ExtractReport", "Image", "ImageInfo", "Layer", "apply_layers", "open_image"]
