"""What provenance says about decoding: each mode's conversion and every decoder's version."""

from __future__ import annotations

import numpy as np

__all__ = ["CONVERSIONS", "decoder_versions"]

#: How each mode turns stored samples into the counted ones (recorded in provenance).
CONVERSIONS = {
    "rgb": 'PIL.Image.open(f).convert("RGB"), first frame (torchvision default_loader)',
    "gray": 'PIL.Image.open(f).convert("L"), first frame',
    "native": (
        "stored samples, first frame: L/LA/RGB/RGBA/CMYK kept; 16-bit PNG and TIFF via "
        "imagecodecs; P -> RGB (RGBA with transparency), 1 -> L (0/255), "
        'YCbCr/LAB/HSV -> Pillow convert("RGB")'
    ),
}


def decoder_versions() -> dict[str, str]:
    """Versions of every library that can decode a pixel, for provenance."""
    from PIL import __version__ as pillow_version
    from PIL import features

    versions = {"Pillow": pillow_version, "numpy": np.__version__}
    for feature in ("libjpeg_turbo", "zlib", "libtiff", "webp"):
        try:
            version = features.version(feature)
        except ValueError:
            version = None
        if version:
            versions[feature] = version
    try:
        import imagecodecs

        versions["imagecodecs"] = imagecodecs.__version__
        versions["libpng (imagecodecs)"] = imagecodecs.png_version()
    except (ImportError, AttributeError):
        pass
    return versions
