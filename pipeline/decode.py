"""Bytes to pixels under a mode: the only module that knows image formats.

``rgb`` and ``gray`` follow torchvision's default loader exactly: Pillow's
``Image.open(f).convert("RGB")`` (or ``"L"``), first frame. ``native`` keeps the stored
samples at their stored bit depth; Pillow reads 16-bit colour PNG and TIFF as 8-bit, so
those go through imagecodecs (libpng / libtiff), which keeps every bit.

Fast paths give the same pixels as Pillow, faster, for the common files: 8-bit YCbCr or gray
JPEGs with a standard subsampling (4:4:4, 4:2:2, 4:2:0, 4:4:0, 4:1:1), baseline or
progressive, are decoded by simplejpeg (libjpeg-turbo, accurate DCT and fancy upsampling:
Pillow's settings) from simplejpeg's own header read; plain 8-bit gray/RGB/RGBA PNGs (a
checked IHDR, then the image data) by libpng (imagecodecs) from their IHDR; other 8-bit PNGs
by libpng once Pillow has opened them and checked their chunks. These are files Pillow opens
with the mode and size the header says, within the pixel limits. Anything else (CMYK, YCCK,
RGB JPEGs, 12-bit, other sampling factors, palette or 16-bit PNGs, APNG, images over the
pixel limits), and any file the fast decoder reports as damaged, even with a mere warning,
goes through Pillow. ``tests/test_fast_decode.py`` checks pixel identity with Pillow over many
encodings, and on mutated files that a fast path never accepts what Pillow refuses.
Fast-path pixels are decoded into a per-thread buffer that is reused once the previous
image's arrays are gone (fresh large allocations are mmapped and zeroed page by page
under Dask's ``MALLOC_TRIM_THRESHOLD_``), so callers may keep :class:`Decoded` objects safely.
``IMGSTATS_FAST_DECODE=0`` in the environment (of the workers) turns the fast paths off.
"""

from __future__ import annotations

import io
import os
import sys
import threading
import warnings
import zlib
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
        # str(dtype) runs Python code in NumPy (~50 us, a fifth of a tiny PNG's time)
        dtype = self.pixels.dtype
        return _DTYPE_NAMES.get(dtype) or str(dtype)


_DTYPE_NAMES = {np.dtype(t): np.dtype(t).name for t in (np.uint8, np.uint16, np.float32)}


def decode(data: bytes, mode: Mode, max_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS) -> Decoded:
    """Decode an encoded image (first frame) under ``mode``; :class:`DecodeError` if it cannot."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r}")
    if not data:
        raise DecodeError("empty file")
    _let_pillow_allow(max_pixels)
    fast = _jpeg_without_pillow(data, mode, max_pixels) or _png_without_pillow(
        data, mode, max_pixels
    )
    if fast is not None:
        return fast
    try:
        with Image.open(io.BytesIO(data)) as image:
            _check_size(image, max_pixels)
            fast = _fast_png(image, data, mode)
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
        bits = image.tag_v2.get(258, (8,))
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
    if high and image.format == "PNG" and data[25] in _PNG_COLOUR_LAYOUTS:
        import imagecodecs  # only needed for 16-bit PNG

        pixels = imagecodecs.png_decode(data)
        if pixels.ndim == 2:
            pixels = pixels[:, :, np.newaxis]
        layout = _PNG_COLOUR_LAYOUTS[data[25]]
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


# --- fast paths ------------------------------------------------------------------------------

#: JPEG subsamplings (as simplejpeg's header names them) whose decode is pixel-identical to
#: Pillow's (tests/test_fast_decode.py).
_JPEG_SUBSAMPLINGS = frozenset({"444", "422", "420", "440", "411", "Gray"})
#: The JPEG colour spaces (as simplejpeg's header names them) decoded fast, and the mode
#: Pillow gives such a file.
_JPEG_PILLOW_MODES = {"YCbCr": "RGB", "Gray": "L"}
#: (mode, Pillow's image mode) -> (simplejpeg colourspace, channels, layout) for JPEG.
_JPEG_TARGETS = {
    ("rgb", "RGB"): ("RGB", 3, "RGB"),
    ("rgb", "L"): ("RGB", 3, "RGB"),  # libjpeg-turbo's gray -> RGB copies Y, as Pillow does
    ("gray", "L"): ("GRAY", 1, "L"),
    ("native", "RGB"): ("RGB", 3, "RGB"),
    ("native", "L"): ("GRAY", 1, "L"),
}
#: (mode, Pillow's image mode) -> layout for 8-bit PNG (Pillow modes L, LA, RGB, RGBA).
_PNG_TARGETS = {
    ("rgb", "RGB"): "RGB",
    ("rgb", "RGBA"): "RGB",  # Pillow's RGBA -> RGB drops alpha
    ("rgb", "L"): "RGB",  # Pillow's L -> RGB copies L
    ("gray", "L"): "L",
    ("native", "L"): "L",
    ("native", "LA"): "LA",
    ("native", "RGB"): "RGB",
    ("native", "RGBA"): "RGBA",
}
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_FAST = os.environ.get("IMGSTATS_FAST_DECODE", "1") != "0"
#: The largest output kept for reuse per thread (larger images get a fresh array each time).
_REUSE_MAX_BYTES = 64 * 2**20
_REUSE_ROUND = 2**20
_buffers = threading.local()


def _jpeg_without_pillow(data: bytes, mode: Mode, max_pixels: int | None) -> Decoded | None:
    """A plain JPEG (YCbCr or gray, within the pixel limits) decoded by simplejpeg without
    Pillow's header parse, which is Python code and ~9% of a small JPEG's time; None: take
    the usual path.

    Pillow opens every file that starts with a JPEG marker as JPEG (or MPO, whose frame 0 is
    this JPEG) and gives a 3-component YCbCr file mode RGB, a 1-component one mode L, which is
    what the strict decode below yields; tests/test_fast_decode.py checks, on mutated files
    too, that this path never counts a file Pillow refuses, or counts it differently.
    """
    if not _FAST or data[:3] != b"\xff\xd8\xff":
        return None
    try:
        import simplejpeg

        height, width, stored, subsampling = simplejpeg.decode_jpeg_header(data)
    except Exception:  # whatever the fast decoder cannot read, Pillow decides
        return None
    target = _JPEG_TARGETS.get((mode, _JPEG_PILLOW_MODES.get(stored, "")))
    if target is None or subsampling not in _JPEG_SUBSAMPLINGS:
        return None
    if _over_limits(width * height, max_pixels):
        return None  # the usual path says why, in Pillow's words
    colourspace, channels, layout = target
    out = _output((height, width, channels))
    try:  # strict: any libjpeg warning (damaged data...) sends the file to Pillow
        simplejpeg.decode_jpeg(
            data, colorspace=colourspace, fastdct=False, fastupsample=False, buffer=out, strict=True
        )
    except Exception:
        return None
    return Decoded(out, layout, False)


def _over_limits(pixels: int, max_pixels: int | None) -> bool:
    limits = (max_pixels, Image.MAX_IMAGE_PIXELS)
    return any(limit is not None and pixels > limit for limit in limits)


def _png_without_pillow(data: bytes, mode: Mode, max_pixels: int | None) -> Decoded | None:
    """A plain 8-bit PNG decoded without Pillow's header parse (Python code, ~30% of a tiny
    PNG's time); None: take the usual path.

    Only the simplest files: a valid IHDR (CRC checked) followed at once by the image data
    (no palette, transparency, animation or metadata chunk that Pillow might read, apply or
    refuse), 8-bit gray, gray+alpha, RGB or RGBA; Pillow opens these as L, LA, RGB, RGBA.
    tests/test_fast_decode.py checks, on mutated files too, that this path never counts a
    file Pillow refuses, or counts it differently.
    """
    if not _FAST or len(data) < 41 or data[:8] != _PNG_SIGNATURE or data[12:16] != b"IHDR":
        return None
    ihdr_length = int.from_bytes(data[8:12], "big")
    if ihdr_length != 13 or zlib.crc32(data[12:29]) != int.from_bytes(data[29:33], "big"):
        return None
    if data[37:41] != b"IDAT" or data[24] != 8:
        return None
    pillow_mode = _PNG_COLOUR_LAYOUTS.get(data[25])  # also the mode Pillow gives them
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if pillow_mode is None or _over_limits(width * height, max_pixels):
        return None
    return _fast_png_as(data, mode, pillow_mode, (width, height))


def _fast_png(image: Image.Image, data: bytes, mode: Mode) -> Decoded | None:
    """A PNG Pillow has opened (and checked up to its image data) decoded by libpng, or None
    (use Pillow)."""
    if (
        not _FAST
        or image.format != "PNG"
        or data[:8] != _PNG_SIGNATURE
        or "transparency" in image.info  # libpng would add an alpha channel
        or getattr(image, "n_frames", 1) != 1
    ):
        return None
    return _fast_png_as(data, mode, image.mode, image.size)


def _fast_png_as(
    data: bytes, mode: Mode, pillow_mode: str, size: tuple[int, int]
) -> Decoded | None:
    """The PNG decoded by libpng as Pillow would give an image of ``pillow_mode`` and
    ``size`` (no transparency, one frame), or None (use Pillow)."""
    layout = _PNG_TARGETS.get((mode, pillow_mode))
    if (
        layout is None
        or len(data) < 29
        or data[24] != 8  # bit depth
        or not _plain_png(data)
    ):
        return None
    import imagecodecs

    width, height = size
    stored = len(pillow_mode)
    shape = (height, width) if stored == 1 else (height, width, stored)
    try:
        if stored == len(layout):
            out = _output((height, width, stored))
            imagecodecs.png_decode(data, out=out.reshape(shape))
            return Decoded(out, layout, False)
        pixels = imagecodecs.png_decode(data)
    except Exception:  # whatever libpng cannot do, Pillow decides
        return None
    if pixels.shape != shape:
        return None
    out = _output((height, width, len(layout)))
    if stored == 1:
        out[...] = pixels[:, :, np.newaxis]  # L -> RGB
    else:
        out[...] = pixels[:, :, : len(layout)]  # RGBA -> RGB
    return Decoded(out, layout, False)


def _plain_png(data: bytes) -> bool:
    """Whether every chunk is whole and nothing but IDAT follows the first IDAT until IEND.

    Pillow has already checked the chunks before the first IDAT (CRCs included) when it
    opened the file (or there are none but a checked IHDR: :func:`_png_without_pillow`);
    after the image data it reads the remaining chunks and refuses the file if one is cut
    short or cannot be decoded, which libpng would let pass: such files, and files without
    IEND, are left to Pillow.
    """
    offset, seen_idat = 8, False
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        end = offset + 12 + length
        if end > len(data):
            return False
        if kind == b"IEND":
            return seen_idat
        if kind == b"IDAT":
            seen_idat = True
        elif seen_idat:
            return False
        offset = end
    return False


def _output(shape: tuple[int, int, int]) -> np.ndarray:
    """An uninitialised C-contiguous uint8 array of ``shape``: a view of this thread's buffer
    when nothing else refers to it any more, else (or when too large) a fresh array."""
    size = shape[0] * shape[1] * shape[2]
    if size > _REUSE_MAX_BYTES:
        return np.empty(shape, np.uint8)
    buffer = getattr(_buffers, "buffer", None)
    # Free means referenced only by _buffers, this frame and getrefcount's argument: views
    # handed out earlier keep it referenced (through .base) for as long as they live.
    if buffer is None or buffer.size < size or sys.getrefcount(buffer) > 3:
        capacity = -(-size // _REUSE_ROUND) * _REUSE_ROUND
        buffer = np.empty(min(max(capacity, size), _REUSE_MAX_BYTES), np.uint8)
        _buffers.buffer = buffer
    return buffer[:size].reshape(shape)


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
