"""Bytes to pixels under a mode: the only module that knows image formats.

``rgb`` and ``gray`` follow torchvision's default loader exactly: Pillow's
``Image.open(f).convert("RGB")`` (or ``"L"``), first frame. ``native`` keeps the stored
samples at their stored bit depth; Pillow reads 16-bit colour PNG and TIFF as 8-bit, so
those go through imagecodecs (libpng / libtiff), which keeps every bit.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from typing import Literal

import numpy as np
from PIL import Image, UnidentifiedImageError

from .errors import DecodeError

__all__ = ["MODES", "Decoded", "decode", "decoder_versions"]

Mode = Literal["rgb", "gray", "native"]
MODES: tuple[Mode, ...] = ("rgb", "gray", "native")

#: Pillow's own default (about 89.5 MP); above it an image is treated as a decompression bomb.
DEFAULT_MAX_IMAGE_PIXELS: int = Image.MAX_IMAGE_PIXELS or 89_478_485

# A bomb is an error, not a warning, wherever imgstats decodes (warnings.catch_warnings is not
# thread-safe, so this is a process-wide filter on Pillow's own warning category).
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

# Pillow modes kept as they are in native mode, with their channel names.
_NATIVE_LAYOUTS = {"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA"}
_PNG_COLOUR_LAYOUTS = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}


@dataclass(frozen=True)
class Decoded:
    """Pixels shaped (H, W, C), their channel layout (``"RGB"``...) and the source bit depth."""

    pixels: np.ndarray
    layout: str
    high_bit_depth: bool  # the file stores more than 8 bits per sample

    @property
    def dtype(self) -> str:
        return str(self.pixels.dtype)


def decode(data: bytes, mode: Mode, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> Decoded:
    """Decode an encoded image (first frame) under ``mode``; :class:`DecodeError` if it cannot."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    if not data:
        raise DecodeError("empty file")
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_size(image, max_pixels)
            high = _high_bit_depth(image, data)
            if mode == "rgb":
                return _as_decoded(image.convert("RGB"), "RGB", high)
            if mode == "gray":
                return _as_decoded(image.convert("L"), "L", high)
            return _native(image, data, high)
    except DecodeError:
        raise
    except Image.DecompressionBombError as exc:
        raise DecodeError(f"decompression bomb: {exc}") from exc
    except Image.DecompressionBombWarning as exc:
        raise DecodeError(f"decompression bomb: {exc}") from exc
    except UnidentifiedImageError as exc:
        raise DecodeError("not an image Pillow can identify") from exc
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError) as exc:
        raise DecodeError(f"cannot decode: {exc}") from exc


def _check_size(image: Image.Image, max_pixels: int | None) -> None:
    width, height = image.size
    if max_pixels is not None and width * height > max_pixels:
        raise DecodeError(
            f"decompression bomb: {width}x{height} = {width * height} pixels "
            f"exceeds the limit of {max_pixels}"
        )


def _as_decoded(image: Image.Image, layout: str, high: bool) -> Decoded:
    pixels = np.asarray(image)
    if pixels.ndim == 2:
        pixels = pixels[:, :, np.newaxis]
    return Decoded(pixels, layout, high)


def _high_bit_depth(image: Image.Image, data: bytes) -> bool:
    """Whether the file stores more than 8 bits per sample (Pillow may have hidden it)."""
    if image.mode.startswith("I"):
        return True
    if image.format == "PNG":
        return data[24] == 16
    if image.format == "TIFF":
        bits = image.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(bits) > 8 and image.mode != "F"
    return False


def _native(image: Image.Image, data: bytes, high: bool) -> Decoded:
    if high and image.format == "PNG" and data[25] in _PNG_COLOUR_LAYOUTS:
        import imagecodecs  # only needed for 16-bit PNG

        pixels = imagecodecs.png_decode(data)
        if pixels.ndim == 2:
            pixels = pixels[:, :, np.newaxis]
        return Decoded(pixels, _PNG_COLOUR_LAYOUTS[data[25]], True)
    if high and image.format == "TIFF" and not image.mode.startswith("I"):
        import imagecodecs

        pixels = imagecodecs.tiff_decode(data, index=0)
        if pixels.ndim == 2:
            pixels = pixels[:, :, np.newaxis]
        layout = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}.get(pixels.shape[-1])
        if layout is None:
            raise DecodeError(f"unsupported TIFF layout with {pixels.shape[-1]} samples")
        return Decoded(pixels, layout, True)
    mode = image.mode
    if mode in _NATIVE_LAYOUTS:
        return _as_decoded(image, _NATIVE_LAYOUTS[mode], high)
    if mode.startswith("I;16"):
        pixels = np.asarray(image).astype(np.uint16)
        return Decoded(pixels[:, :, np.newaxis], "L", True)
    if mode == "I":
        if image.format != "PPM":
            raise DecodeError("32-bit integer samples are not supported")
        pixels = np.asarray(image).astype(np.uint16)  # PGM maxval <= 65535
        return Decoded(pixels[:, :, np.newaxis], "L", True)
    if mode == "F":
        return _as_decoded(image, "L", False)
    if mode == "1":
        return _as_decoded(image.convert("L"), "L", False)
    if mode in ("P", "PA"):
        alpha = mode == "PA" or "transparency" in image.info
        target = "RGBA" if alpha else "RGB"
        return _as_decoded(image.convert(target), target, False)
    if mode in ("La", "LA"):
        return _as_decoded(image.convert("LA"), "LA", False)
    if mode in ("RGBa", "RGBX"):
        target = "RGBA" if mode == "RGBa" else "RGB"
        return _as_decoded(image.convert(target), target, False)
    # CMYK, YCbCr, LAB, HSV: no R,G,B samples are stored; Pillow's conversion gives them.
    return _as_decoded(image.convert("RGB"), "RGB", high)


#: How each mode turns stored samples into the counted ones (recorded in provenance).
CONVERSIONS = {
    "rgb": 'PIL.Image.open(f).convert("RGB"), first frame (torchvision default_loader)',
    "gray": 'PIL.Image.open(f).convert("L"), first frame',
    "native": (
        "stored samples, first frame: L/LA/RGB/RGBA kept; 16-bit PNG and TIFF via imagecodecs; "
        'P -> RGB (RGBA with transparency), 1 -> L (0/255), CMYK/YCbCr -> Pillow convert("RGB")'
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
