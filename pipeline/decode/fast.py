"""Fast paths: the same pixels as Pillow gives, from faster decoders, for the common files.

8-bit YCbCr or gray JPEGs with a standard subsampling (4:4:4, 4:2:2, 4:2:0, 4:4:0, 4:1:1),
baseline or progressive, are decoded by simplejpeg (libjpeg-turbo, accurate DCT and fancy
upsampling: Pillow's settings) from simplejpeg's own header read; plain 8-bit gray/RGB/RGBA
PNGs (a checked IHDR, then the image data) by libpng (imagecodecs) from their IHDR; other
8-bit PNGs by libpng once Pillow has opened them and checked their chunks. Each function
returns None for a file it does not take: Pillow decides those. ``IMGSTATS_FAST_DECODE=0`` in
the environment (of the workers) turns the fast paths off.

Pixels are decoded into a per-thread buffer that is reused once the previous image's arrays
are gone (fresh large allocations are mmapped and zeroed page by page under Dask's
``MALLOC_TRIM_THRESHOLD_``), so callers may keep :class:`~pipeline.decode.decoded.Decoded`
objects safely.
"""

from __future__ import annotations

import os
import sys
import threading
import zlib

import numpy as np
from PIL import Image

from ..core.keys import Mode
from .decoded import Decoded

__all__ = ["PNG_COLOUR_LAYOUTS", "fast_png", "jpeg_without_pillow", "png_without_pillow"]

#: PNG colour types (IHDR byte 25) that keep their samples, with their channel letters.
PNG_COLOUR_LAYOUTS = {0: "L", 2: "RGB", 4: "LA", 6: "RGBA"}

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


def jpeg_without_pillow(data: bytes, mode: Mode, max_pixels: int | None) -> Decoded | None:
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


def png_without_pillow(data: bytes, mode: Mode, max_pixels: int | None) -> Decoded | None:
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
    pillow_mode = PNG_COLOUR_LAYOUTS.get(data[25])  # also the mode Pillow gives them
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    if pillow_mode is None or _over_limits(width * height, max_pixels):
        return None
    return _fast_png_as(data, mode, pillow_mode, (width, height))


def fast_png(image: Image.Image, data: bytes, mode: Mode) -> Decoded | None:
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
