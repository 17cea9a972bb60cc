"""The compiled histogram kernels (numba, cached on disk, run without the GIL).

Module-level functions, so that numba's on-disk cache key is the same in every process: a
worker or sandbox loads the machine code instead of compiling it (a jitted helper captured
from a closure would change the key in every process). :mod:`pipeline.core.kernels` explains
the method and imports this module only when the compiled kernel is asked for.
"""

from __future__ import annotations

import numba
import numpy as np

from .kernels import BLOCK_PIXELS

__all__ = ["histogram"]

_jit = numba.njit(cache=True, nogil=True, boundscheck=False)
_inline = numba.njit(cache=True, nogil=True, boundscheck=False, inline="always")


@_inline
def _count_words(words, table, period):  # type: ignore[no-untyped-def]
    # Byte b of word m of a period counts into sub-table 4 * m + b: with a period of four
    # pixels (4 * channels samples), sample i lands in table i % period.
    step = period // 4
    for base in range(0, words.shape[0], step):
        for m in range(step):
            w = words[base + m]
            table[(4 * m) * 256 + (w & 0xFF)] += 1
            table[(4 * m + 1) * 256 + ((w >> 8) & 0xFF)] += 1
            table[(4 * m + 2) * 256 + ((w >> 16) & 0xFF)] += 1
            table[(4 * m + 3) * 256 + (w >> 24)] += 1


@_jit
def _u8(samples, channels):  # type: ignore[no-untyped-def]
    period = 4 * channels
    table = np.zeros(period * 256, np.uint32)  # 4 sub-tables a channel: <= 16 KB, in L1
    out = np.zeros((channels, 256), np.int64)
    n = samples.shape[0]
    for start in range(0, n, BLOCK_PIXELS * channels):
        stop = min(n, start + BLOCK_PIXELS * channels)
        whole = start + (stop - start) // period * period  # whole periods: whole words
        words = samples[start:whole].view(np.uint32)
        if channels == 3:  # constant periods: the loop above unrolls
            _count_words(words, table, 12)
        elif channels == 1:
            _count_words(words, table, 4)
        elif channels == 4:
            _count_words(words, table, 16)
        else:
            _count_words(words, table, period)
        for j in range(stop - whole):  # fewer than 4 pixels left: sample j -> table j
            table[j * 256 + samples[whole + j]] += 1
        for j in range(period):  # fold sub-table j (channel j % channels), zero it
            c = j % channels
            for v in range(256):
                out[c, v] += table[j * 256 + v]
                table[j * 256 + v] = 0
    return out


@_inline
def _count_u16(samples, table, channels):  # type: ignore[no-untyped-def]
    for base in range(0, samples.shape[0], channels):
        for c in range(channels):
            table[c * 65536 + samples[base + c]] += 1


@_jit
def _u16(samples, channels):  # type: ignore[no-untyped-def]
    table = np.zeros(channels * 65536, np.uint32)
    out = np.zeros((channels, 65536), np.int64)
    n = samples.shape[0]
    for start in range(0, n, BLOCK_PIXELS * channels):
        block = samples[start : min(n, start + BLOCK_PIXELS * channels)]
        if channels == 1:
            _count_u16(block, table, 1)
        elif channels == 3:
            _count_u16(block, table, 3)
        elif channels == 4:
            _count_u16(block, table, 4)
        else:
            _count_u16(block, table, channels)
        for c in range(channels):
            for v in range(65536):
                out[c, v] += table[c * 65536 + v]
                table[c * 65536 + v] = 0
    return out


def histogram(samples: np.ndarray, channels: int) -> np.ndarray:
    """The int64 (channels, 2**bits) histogram of interleaved uint8 or uint16 samples
    (1-D, C-contiguous, 4-byte aligned)."""
    kernel = _u8 if samples.dtype == np.uint8 else _u16
    result: np.ndarray = kernel(samples, channels)
    return result
