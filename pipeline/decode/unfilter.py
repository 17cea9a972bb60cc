"""The compiled PNG unfilter kernel (numba, cached on disk, run without the GIL).

A module of its own, imported only when a plain PNG is decoded here
(:mod:`pipeline.decode.png`), so that numba's on-disk cache key is the same in every process.
"""

from __future__ import annotations

import numba
import numpy as np

__all__ = ["unfilter"]


@numba.njit(cache=True, nogil=True, boundscheck=False)
def _unfilter(raw, out, bpp):  # type: ignore[no-untyped-def]
    height, stride = out.shape
    for y in range(height):
        src = y * (stride + 1)
        kind = raw[src]
        src += 1
        if kind == 0:  # None
            for x in range(stride):
                out[y, x] = raw[src + x]
        elif kind == 1:  # Sub
            for x in range(min(bpp, stride)):
                out[y, x] = raw[src + x]
            for x in range(bpp, stride):
                out[y, x] = (raw[src + x] + out[y, x - bpp]) & 0xFF
        elif kind == 2:  # Up
            for x in range(stride):
                up = out[y - 1, x] if y else 0
                out[y, x] = (raw[src + x] + up) & 0xFF
        elif kind == 3:  # Average
            for x in range(stride):
                left = int(out[y, x - bpp]) if x >= bpp else 0
                up = int(out[y - 1, x]) if y else 0
                out[y, x] = (raw[src + x] + (left + up) // 2) & 0xFF
        elif kind == 4:  # Paeth
            for x in range(stride):
                a = int(out[y, x - bpp]) if x >= bpp else 0
                b = int(out[y - 1, x]) if y else 0
                c = int(out[y - 1, x - bpp]) if x >= bpp and y else 0
                p = a + b - c
                pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
                if pa <= pb and pa <= pc:
                    predicted = a
                elif pb <= pc:
                    predicted = b
                else:
                    predicted = c
                out[y, x] = (raw[src + x] + predicted) & 0xFF
        else:
            return False
    return True


def unfilter(raw: np.ndarray, out: np.ndarray, bpp: int) -> bool:
    """Undo the PNG filters of ``raw`` (uint8: each scanline's filter type, then its bytes)
    into ``out`` (uint8, C-contiguous, shaped (height, bytes per scanline)); ``bpp`` the bytes
    per pixel. False: a filter type the standard does not define."""
    return bool(_unfilter(raw, out, bpp))
