"""Plain PNGs decoded here: the image data inflated by zlib, unfiltered by a compiled kernel.

For 8-bit, non-interlaced files whose chunks :mod:`pipeline.decode.fast` has checked, the
samples are a deterministic function of the image data (PNG's five filters over the inflated
scanlines), so this gives libpng's and Pillow's pixels without either: libpng's set-up costs
~40 us a call, most of a 32x32 image's decode. Anything unusual (an IDAT chunk whose CRC does
not match, a zlib stream that is not exactly one complete stream of the expected length, an
undefined filter type, a kernel that cannot compile) gives None: the caller then asks libpng
or Pillow, which decide as they always did.
"""

from __future__ import annotations

import zlib

import numpy as np

__all__ = ["decode_plain_png"]


def decode_plain_png(data: bytes, out: np.ndarray, channels: int) -> bool:
    """Decode a checked 8-bit, non-interlaced PNG of ``channels`` samples a pixel into
    ``out`` (uint8, C-contiguous, height x width x channels); False: leave it to libpng."""
    height = out.shape[0]
    stride = out.size // height if height else 0
    filtered = _image_data(data, height * (stride + 1))
    if filtered is None:
        return False
    try:
        from .unfilter import unfilter
    except ImportError:  # numba missing or broken here
        return False
    raw = np.frombuffer(filtered, np.uint8)
    return unfilter(raw, out.reshape(height, stride), channels)


def _image_data(data: bytes, expected: int) -> bytes | None:
    """The inflated concatenation of the IDAT chunks, when every IDAT CRC matches and they
    hold exactly one zlib stream of ``expected`` bytes, ending at their end."""
    view = memoryview(data)
    parts = []
    offset = 8
    while offset + 8 <= len(data):
        length = int.from_bytes(view[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        end = offset + 12 + length
        if end > len(data):
            return None
        if kind == b"IDAT":
            body = view[offset + 8 : end - 4]
            if zlib.crc32(view[offset + 4 : end - 4]) != int.from_bytes(view[end - 4 : end], "big"):
                return None
            parts.append(body)
        elif parts:  # the image data ends at the first other chunk
            break
        offset = end
    if not parts:
        return None
    stream = zlib.decompressobj()
    try:  # at most one byte more than expected: enough to tell that there is more
        inflated = stream.decompress(parts[0] if len(parts) == 1 else b"".join(parts),
                                     expected + 1)
    except zlib.error:
        return None
    if len(inflated) != expected or not stream.eof or stream.unused_data:
        return None
    return inflated
