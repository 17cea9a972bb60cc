"""Kernels that sum exact moments of integer samples in one pass.

A kernel takes one block of interleaved samples (a 1-D C-contiguous uint8 or uint16 array of
at most BLOCK_PIXELS pixels) and its channel count, and returns one uint64 array: per-channel
sums, sums of squares, minima and maxima, exactly. Both kernels view the block as rows of
whole pixels (at most _ROW_PIXELS) and keep one accumulator per column (column k holds channel
k % channels), so the inner loops run over contiguous memory with no per-sample channel
bookkeeping and vectorise; the columns are folded into channels once, at the end.
Overflow bounds, per column and block (rows <= BLOCK_PIXELS / _MIN_ROW_PIXELS + 1 = 2**19 + 1):
uint8 sums go through uint16 for at most 256 rows (256 * 255 < 2**16), then uint64; uint8
squares go through uint32 for at most 65536 rows (65536 * 255**2 < 2**32), then uint64;
uint16 sums, squares and all folds are added in uint64 (2**22 * 65535**2 < 2**64).
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable

import numpy as np

__all__ = ["BLOCK_PIXELS", "Kernel", "kernel"]

#: Pixels handed to a kernel at once: bounds its accumulators (see above) and the NumPy
#: kernel's temporaries; blocks are merged exactly in Python integers.
BLOCK_PIXELS = 1 << 22

Kernel = Callable[[np.ndarray, int], np.ndarray]

#: Row length bounds, in pixels: rows long enough for the inner loops to vectorise and short
#: enough for the accumulators (a few KB) to stay in the L1 cache.
_MIN_ROW_PIXELS = 8
_ROW_PIXELS = 512
_U8_SQUARES = (np.arange(256, dtype=np.uint32) ** 2).astype(np.uint16)


def _row_pixels(pixels: int) -> int:
    """Pixels per accumulator row: about pixels / 16, within the bounds above."""
    return max(1, min(pixels, max(_MIN_ROW_PIXELS, min(_ROW_PIXELS, pixels // 16))))


def _numpy_kernel(samples: np.ndarray, channels: int) -> np.ndarray:
    """Column reductions in NumPy (uint8 squares by table lookup): exact, with temporaries."""
    width = channels * _row_pixels(len(samples) // channels)
    rows = len(samples) // width
    parts = [samples[: rows * width].reshape(rows, width)]
    if len(samples) > rows * width:
        parts.append(samples[rows * width :].reshape(1, -1))
    out = np.zeros((4, channels), np.uint64)
    out[2] = np.iinfo(samples.dtype).max
    for part in parts:
        if part.dtype == np.uint8:
            squared = np.take(_U8_SQUARES, part)
        else:
            squared = np.multiply(part, part, dtype=np.uint64)
        columns = part.shape[1]
        out[0] += np.add.reduce(part, axis=0, dtype=np.uint64).reshape(-1, channels).sum(axis=0)
        out[1] += np.add.reduce(squared, axis=0, dtype=np.uint64).reshape(-1, channels).sum(0)
        low = np.minimum.reduce(part, axis=0).reshape(columns // channels, channels).min(axis=0)
        high = np.maximum.reduce(part, axis=0).reshape(columns // channels, channels).max(axis=0)
        out[2] = np.minimum(out[2], low)
        out[3] = np.maximum(out[3], high)
    return out.reshape(-1)


def _numba_kernel() -> Kernel:
    """The compiled single-pass kernel (numba, cached on disk, runs without the GIL)."""
    import numba

    # Self-contained functions: a jitted helper captured from this scope would change the
    # on-disk cache key in every process, so each worker would compile instead of loading.
    jit = numba.njit(cache=True, nogil=True, boundscheck=False)

    @jit
    def u8_kernel(samples, channels):  # type: ignore[no-untyped-def]
        n = samples.shape[0]
        pixels = n // channels
        width = channels * max(1, min(pixels, max(_MIN_ROW_PIXELS, min(_ROW_PIXELS, pixels // 16))))
        sums16 = np.zeros(width, np.uint16)
        sums64 = np.zeros(width, np.uint64)
        squares32 = np.zeros(width, np.uint32)
        squares64 = np.zeros(width, np.uint64)
        low = np.full(width, 255, np.uint8)
        high = np.zeros(width, np.uint8)
        for rows, start in enumerate(range(0, n, width), 1):
            row = samples[start : min(start + width, n)]
            for k in range(row.shape[0]):
                v = row[k]
                low[k] = min(low[k], v)
                high[k] = max(high[k], v)
                sums16[k] += np.uint16(v)
            for k in range(row.shape[0]):
                w = np.uint32(row[k])
                squares32[k] += w * w
            if rows % 256 == 0 or start + width >= n:
                for k in range(width):
                    sums64[k] += np.uint64(sums16[k])
                    sums16[k] = 0
            if rows % 65536 == 0 or start + width >= n:
                for k in range(width):
                    squares64[k] += np.uint64(squares32[k])
                    squares32[k] = 0
        out = np.zeros(4 * channels, np.uint64)
        out[2 * channels : 3 * channels] = 255
        for base in range(0, width, channels):
            for c in range(channels):
                k = base + c
                out[c] += sums64[k]
                out[channels + c] += squares64[k]
                out[2 * channels + c] = min(out[2 * channels + c], np.uint64(low[k]))
                out[3 * channels + c] = max(out[3 * channels + c], np.uint64(high[k]))
        return out

    @jit
    def u16_kernel(samples, channels):  # type: ignore[no-untyped-def]
        n = samples.shape[0]
        pixels = n // channels
        width = channels * max(1, min(pixels, max(_MIN_ROW_PIXELS, min(_ROW_PIXELS, pixels // 16))))
        sums = np.zeros(width, np.uint64)
        squares = np.zeros(width, np.uint64)
        low = np.full(width, 65535, np.uint16)
        high = np.zeros(width, np.uint16)
        for start in range(0, n, width):
            row = samples[start : min(start + width, n)]
            for k in range(row.shape[0]):
                v = row[k]
                low[k] = min(low[k], v)
                high[k] = max(high[k], v)
                w = np.uint64(v)
                sums[k] += w
                squares[k] += w * w
        out = np.zeros(4 * channels, np.uint64)
        out[2 * channels : 3 * channels] = 65535
        for base in range(0, width, channels):
            for c in range(channels):
                k = base + c
                out[c] += sums[k]
                out[channels + c] += squares[k]
                out[2 * channels + c] = min(out[2 * channels + c], np.uint64(low[k]))
                out[3 * channels + c] = max(out[3 * channels + c], np.uint64(high[k]))
        return out

    def kernel(samples: np.ndarray, channels: int) -> np.ndarray:
        compiled = u8_kernel if samples.dtype == np.uint8 else u16_kernel
        try:
            result: np.ndarray = compiled(samples, channels)
        except numba.core.errors.NumbaError:  # cannot compile here: NumPy is exact too
            return _numpy_kernel(samples, channels)
        return result

    return kernel


_kernels: dict[str, Kernel] = {}
_kernels_lock = threading.Lock()


def kernel(name: str | None = None) -> Kernel:
    """The moments kernel: ``numba`` when numba imports, else ``numpy``.

    ``IMGSTATS_MOMENTS_KERNEL=numpy`` (or ``numba``) chooses one, for benchmarks and tests.
    """
    name = name or os.environ.get("IMGSTATS_MOMENTS_KERNEL") or "numba"
    kernel = _kernels.get(name)
    if kernel is not None:
        return kernel
    with _kernels_lock:
        if name not in _kernels:
            if name == "numba":
                try:
                    _kernels[name] = _numba_kernel()
                except ImportError:
                    _kernels[name] = _numpy_kernel
            elif name == "numpy":
                _kernels[name] = _numpy_kernel
            else:
                raise ValueError(f"unknown moments kernel {name!r}")
        return _kernels[name]


