"""Bytes to pixels under a mode: the only module that knows image formats.

``rgb`` and ``gray`` follow torchvision's default loader exactly: Pillow's
``Image.open(f).convert("RGB")`` (or ``"L"``), first frame. ``native`` keeps the stored
samples at their stored bit depth; Pillow reads 16-bit colour PNG and TIFF as 8-bit, so
those go through imagecodecs (libpng / libtiff), which keeps every bit.

The common files take a fast path (:mod:`pipeline.decode.fast`): the same pixels, faster.
These are files Pillow opens with the mode and size the header says, within the pixel limits.
Anything else (CMYK, YCCK, RGB JPEGs, 12-bit, other sampling factors, palette or 16-bit PNGs,
APNG, images over the pixel limits), and any file the fast decoder reports as damaged, even
with a mere warning, goes through Pillow. ``tests/test_fast_decode.py`` checks pixel identity
with Pillow over many encodings, and on mutated files that a fast path never accepts what
Pillow refuses.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from ..config import DEFAULT_MAX_IMAGE_PIXELS
from ..core.keys import MODES, Mode
from ..errors import DecodeError
from .decoded import Decoded
from .fast import PNG_COLOUR_LAYOUTS, fast_png, jpeg_without_pillow, png_without_pillow

__all__ = ["decode", "warm_up_decoders"]

# A bomb is an error, not a warning, wherever imgstats decodes (warnings.catch_warnings is not
# thread-safe, so this is a process-wide filter on Pillow's own warning category).
warnings.filterwarnings("error", category=Image.DecompressionBombWarning)

# Pillow modes kept as they are in native mode, with their channel names. CMYK is Pillow's
# CMYK: ink amounts, 0 for none (Adobe's inverted JPEG samples un-inverted, as Pillow does).
_NATIVE_LAYOUTS = {"L": "L", "LA": "LA", "RGB": "RGB", "RGBA": "RGBA", "CMYK": "CMYK"}
# TIFF PhotometricInterpretation (tag 262) and samples per pixel -> channel letters, for the
# high bit depth TIFFs that imagecodecs decodes: min-is-white/black, RGB, separated (CMYK).
_TIFF_PHOTOMETRIC = 262
_TIFF_LAYOUTS = {
    (0, 1): "L", (0, 2): "LA", (1, 1): "L", (1, 2): "LA",
    (2, 3): "RGB", (2, 4): "RGBA", (5, 4): "CMYK",
}


def decode(data: bytes, mode: Mode, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> Decoded:
    """Decode an encoded image (first frame) under ``mode``; :class:`DecodeError` if it cannot."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    if not data:
        raise DecodeError("empty file")
    _let_pillow_allow(max_pixels)
    fast = jpeg_without_pillow(data, mode, max_pixels) or png_without_pillow(
        data, mode, max_pixels
    )
    if fast is not None:
        return fast
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_size(image, max_pixels)
            fast = fast_png(image, data, mode)
            if fast is not None:
                return fast
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


def _let_pillow_allow(max_pixels: int | None) -> None:
    """Raise Pillow's own bomb limit (checked inside ``Image.open``) to ``max_pixels`` when
    that is higher than Pillow's default; :func:`_check_size` enforces ``max_pixels`` itself.
    ``None`` turns both off, as asked. Process-wide, like Pillow's setting."""
    wanted = None if max_pixels is None else max(max_pixels, DEFAULT_MAX_IMAGE_PIXELS)
    if wanted != Image.MAX_IMAGE_PIXELS:
        Image.MAX_IMAGE_PIXELS = wanted


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
        bits = getattr(image, "tag_v2", {}).get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(bits) > 8 and image.mode != "F"
    if image.format == "PPM":
        header = _pnm_header(data)
        return header is not None and header[2] > 255
    return False


def _pnm_header(data: bytes) -> tuple[int, int, int, int] | None:
    """Width, height, maxval and raster offset of a binary PGM/PPM (P5/P6), else None."""
    if data[:2] not in (b"P5", b"P6"):
        return None
    numbers: list[int] = []
    at = 2
    while len(numbers) < 3:
        while at < len(data) and data[at : at + 1].isspace():
            at += 1
        if data[at : at + 1] == b"#":  # a comment runs to the end of the line
            at = data.find(b"\n", at)
            if at < 0:
                return None
            continue
        start = at
        while at < len(data) and data[at : at + 1].isdigit():
            at += 1
        if start == at:
            return None
        numbers.append(int(data[start:at]))
    width, height, maxval = numbers
    return width, height, maxval, at + 1  # one whitespace byte ends the header


def _native(image: Image.Image, data: bytes, high: bool) -> Decoded:
    if high and image.format == "PNG" and data[25] in PNG_COLOUR_LAYOUTS:
        import imagecodecs  # only needed for 16-bit PNG

        pixels = imagecodecs.png_decode(data)
        if pixels.ndim == 2:
            pixels = pixels[:, :, np.newaxis]
        layout = PNG_COLOUR_LAYOUTS[data[25]]
        # libpng turns a tRNS colour key into an alpha channel; the stored samples have none.
        return Decoded(pixels[:, :, : len(layout)], layout, True)
    if high and image.format == "PPM" and image.mode == "RGB":
        width, height, _, offset = _pnm_header(data) or (0, 0, 0, 0)
        count = width * height * 3
        if len(data) < offset + 2 * count:
            raise DecodeError("truncated 16-bit PPM raster")
        raster = np.frombuffer(data, ">u2", count=count, offset=offset)
        return Decoded(raster.astype(np.uint16).reshape(height, width, 3), "RGB", True)
    if high and image.format == "TIFF" and not image.mode.startswith("I"):
        import imagecodecs

        photometric = getattr(image, "tag_v2", {}).get(_TIFF_PHOTOMETRIC, 1)
        try:
            pixels = imagecodecs.tiff_decode(data, index=0)
        except imagecodecs.TiffError as exc:  # libtiff reads 16-bit CMYK only as 8-bit RGBA
            raise DecodeError(
                f"cannot decode this TIFF (photometric {photometric}) at its bit depth: {exc}"
            ) from exc
        if pixels.ndim == 2:
            pixels = pixels[:, :, np.newaxis]
        channels = _TIFF_LAYOUTS.get((photometric, pixels.shape[-1]))
        if channels is None:
            raise DecodeError(
                f"unsupported TIFF layout: {pixels.shape[-1]} samples, photometric {photometric}"
            )
        return Decoded(pixels, channels, True)
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
    # YCbCr, LAB, HSV: Pillow's conversion gives R,G,B samples.
    return _as_decoded(image.convert("RGB"), "RGB", high)


def warm_up_decoders() -> list[Decoded]:
    """A tiny PNG and JPEG decoded in every mode: loads every 8-bit codec and fast path."""
    decoded = []
    for fmt in ("PNG", "JPEG"):
        buffer = io.BytesIO()
        Image.new("RGB", (8, 8)).save(buffer, fmt)
        decoded += [decode(buffer.getvalue(), mode) for mode in MODES]
    return decoded
