"""Exact, mergeable per-channel moments. Pure: numpy and the standard library only.

Integer samples (8- and 16-bit) are summarised by :class:`Moments`: the pixel count,
per-channel sums and sums of squares as Python integers, and per-channel min/max.
Merging adds integers, so any split of a dataset, merged in any order, gives the same
numbers bit for bit, and the variance is derived once, exactly, in :meth:`Moments.finalize`.

Float samples are summarised by :class:`FloatMoments` (count, mean, centred M2), merged with
the pairwise update of Chan, Golub and LeVeque in float64: stable, but not bit-exact across
splits.
"""

from __future__ import annotations

import math
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = ["FloatMoments", "Moments", "from_pixels", "nearest_sqrt_ratio"]

#: Pixels handed to the kernel at once: bounds its accumulators (see "kernels" below) and the
#: NumPy kernel's temporaries; blocks are merged exactly in Python integers.
_BLOCK_PIXELS = 1 << 22


@dataclass(frozen=True)
class Moments:
    """Exact moments of integer samples: ``count`` pixels per channel, per-channel tuples."""

    count: int
    sum: tuple[int, ...]
    sum_sq: tuple[int, ...]
    min: tuple[int, ...]
    max: tuple[int, ...]

    @classmethod
    def empty(cls) -> Moments:
        """The identity of :meth:`merge`: no pixels, no channels yet."""
        return cls(0, (), (), (), ())

    def __reduce__(self) -> tuple[type[Moments], tuple[object, ...]]:
        # Pickled as constructor arguments: smaller and about 1.5x faster than the default.
        return Moments, (self.count, self.sum, self.sum_sq, self.min, self.max)

    @property
    def channels(self) -> int:
        return len(self.sum)

    def merge(self, other: Moments) -> Moments:
        """Moments of the union of both pixel sets (associative, commutative, exact)."""
        if not other.count:
            return self
        if not self.count:
            return other
        _check_channels(self, other)
        return Moments(
            self.count + other.count,
            tuple(a + b for a, b in zip(self.sum, other.sum, strict=True)),
            tuple(a + b for a, b in zip(self.sum_sq, other.sum_sq, strict=True)),
            tuple(map(min, self.min, other.min)),
            tuple(map(max, self.max, other.max)),
        )

    def subtract(self, other: Moments, min_: tuple[int, ...], max_: tuple[int, ...]) -> Moments:
        """Take ``other`` (a subset's moments) out; min/max must be supplied by the caller,
        since they cannot be un-merged."""
        if not other.count:
            return self
        _check_channels(self, other)
        count = self.count - other.count
        if count < 0:
            raise ValueError("cannot subtract more pixels than there are")
        if count == 0:
            return Moments.empty()
        return Moments(
            count,
            tuple(a - b for a, b in zip(self.sum, other.sum, strict=True)),
            tuple(a - b for a, b in zip(self.sum_sq, other.sum_sq, strict=True)),
            tuple(min_),
            tuple(max_),
        )

    def finalize(self, scale: int) -> tuple[tuple[float, ...], tuple[float, ...]]:
        """Per-channel mean and population std (ddof 0) on the [0, 1] scale.

        Each is the float64 nearest to the exact value: ``sum / (n * scale)`` and
        ``sqrt(n * sum_sq - sum**2) / (n * scale)``.
        """
        n = self.count
        if not n:
            raise ValueError("no pixels: mean and std are undefined")
        denominator = n * scale
        mean = tuple(s / denominator for s in self.sum)  # int / int is correctly rounded
        std = tuple(
            nearest_sqrt_ratio(n * q - s * s, denominator)
            for s, q in zip(self.sum, self.sum_sq, strict=True)
        )
        return mean, std


@dataclass(frozen=True)
class FloatMoments:
    """Moments of float samples: count, per-channel mean and centred sum of squares (M2)."""

    count: int
    mean: tuple[float, ...]
    m2: tuple[float, ...]
    min: tuple[float, ...]
    max: tuple[float, ...]

    @classmethod
    def empty(cls) -> FloatMoments:
        return cls(0, (), (), (), ())

    @property
    def channels(self) -> int:
        return len(self.mean)

    @property
    def sum(self) -> tuple[float, ...]:
        return tuple(m * self.count for m in self.mean)

    @property
    def sum_sq(self) -> tuple[float, ...]:
        return tuple(m2 + self.count * m * m for m, m2 in zip(self.mean, self.m2, strict=True))

    def merge(self, other: FloatMoments) -> FloatMoments:
        """Chan et al.'s pairwise update in float64 (stable, not bit-exact across splits)."""
        if not other.count:
            return self
        if not self.count:
            return other
        _check_channels(self, other)
        na, nb = self.count, other.count
        n = na + nb
        mean, m2 = [], []
        for ma, mb, qa, qb in zip(self.mean, other.mean, self.m2, other.m2, strict=True):
            delta = mb - ma
            mean.append(ma + delta * (nb / n))
            m2.append(qa + qb + delta * delta * (na * nb / n))
        return FloatMoments(
            n,
            tuple(mean),
            tuple(m2),
            tuple(map(min, self.min, other.min)),
            tuple(map(max, self.max, other.max)),
        )

    def finalize(self, scale: float) -> tuple[tuple[float, ...], tuple[float, ...]]:
        if not self.count:
            raise ValueError("no pixels: mean and std are undefined")
        mean = tuple(m / scale for m in self.mean)
        std = tuple(math.sqrt(max(q, 0.0) / self.count) / scale for q in self.m2)
        return mean, std


AnyMoments = Moments | FloatMoments


def _check_channels(a: AnyMoments, b: AnyMoments) -> None:
    if a.channels != b.channels:
        raise ValueError(f"cannot merge moments of {a.channels} and {b.channels} channels")


def from_pixels(pixels: np.ndarray) -> AnyMoments:
    """Moments of an image array shaped (H, W) or (H, W, C).

    uint8 and uint16 give exact :class:`Moments`; float arrays give :class:`FloatMoments`.
    """
    channels = 1 if pixels.ndim == 2 else pixels.shape[-1]
    flat = pixels.reshape(-1, channels)
    if flat.dtype.kind == "f":
        return _float_moments(flat)
    if flat.dtype not in (np.uint8, np.uint16):
        raise TypeError(f"unsupported sample type {flat.dtype}")
    return _integer_moments(flat, _kernel())


def _integer_moments(flat: np.ndarray, kernel: Kernel) -> Moments:
    """Exact moments of integer samples shaped (pixels, channels): one kernel call per block."""
    count, channels = flat.shape
    if not count or not channels:
        return Moments.empty()
    samples = np.ascontiguousarray(flat).reshape(-1)
    block = _BLOCK_PIXELS * channels
    total = Moments.empty()
    for start in range(0, len(samples), block):
        part = samples[start : start + block]
        values = kernel(part, channels).tolist()  # Python ints
        total = total.merge(
            Moments(
                len(part) // channels,
                tuple(values[:channels]),
                tuple(values[channels : 2 * channels]),
                tuple(values[2 * channels : 3 * channels]),
                tuple(values[3 * channels :]),
            )
        )
    return total


# --- kernels ---------------------------------------------------------------------------------
#
# A kernel takes one block of interleaved samples (a 1-D C-contiguous uint8 or uint16 array of
# at most _BLOCK_PIXELS pixels) and its channel count, and returns one uint64 array: per-channel
# sums, sums of squares, minima and maxima, exactly. Both kernels view the block as rows of
# whole pixels (at most _ROW_PIXELS) and keep one accumulator per column (column k holds channel
# k % channels), so the inner loops run over contiguous memory with no per-sample channel
# bookkeeping and vectorise; the columns are folded into channels once, at the end.
# Overflow bounds, per column and block (rows <= _BLOCK_PIXELS / _MIN_ROW_PIXELS + 1 = 2**19 + 1):
# uint8 sums go through uint16 for at most 256 rows (256 * 255 < 2**16), then uint64; uint8
# squares go through uint32 for at most 65536 rows (65536 * 255**2 < 2**32), then uint64;
# uint16 sums, squares and all folds are added in uint64 (2**22 * 65535**2 < 2**64).

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
            return compiled(samples, channels)
        except numba.core.errors.NumbaError:  # cannot compile here: NumPy is exact too
            return _numpy_kernel(samples, channels)

    return kernel


_kernels: dict[str, Kernel] = {}
_kernels_lock = threading.Lock()


def _kernel(name: str | None = None) -> Kernel:
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


def _float_moments(flat: np.ndarray) -> FloatMoments:
    total = FloatMoments.empty()
    for start in range(0, len(flat), _BLOCK_PIXELS):
        block = flat[start : start + _BLOCK_PIXELS].astype(np.float64)
        mean = block.mean(axis=0)
        m2 = ((block - mean) ** 2).sum(axis=0)
        part = FloatMoments(
            len(block),
            tuple(float(m) for m in mean),
            tuple(float(q) for q in m2),
            tuple(float(v) for v in block.min(axis=0)),
            tuple(float(v) for v in block.max(axis=0)),
        )
        total = total.merge(part)
    return total


def nearest_sqrt_ratio(numerator: int, denominator: int) -> float:
    """The float64 nearest to ``sqrt(numerator) / denominator``, ties to even.

    A first guess from an integer square root, then corrected by comparing the exact value
    with the midpoints between neighbouring floats, squared, in integers.
    """
    if numerator < 0 or denominator <= 0:
        raise ValueError("need numerator >= 0 and denominator > 0")
    if numerator == 0:
        return 0.0
    shift = 64
    guess = float(Fraction(math.isqrt(numerator << (2 * shift)), denominator << shift))

    def compare(midpoint: Fraction) -> int:
        """Sign of sqrt(numerator)/denominator - midpoint, exactly."""
        left = numerator * midpoint.denominator**2
        right = (midpoint.numerator * denominator) ** 2
        return (left > right) - (left < right)

    while True:
        below = math.nextafter(guess, 0.0)
        above = math.nextafter(guess, math.inf)
        low_mid = (Fraction(below) + Fraction(guess)) / 2
        high_mid = (Fraction(guess) + Fraction(above)) / 2
        if compare(low_mid) < 0:
            guess = below
        elif compare(high_mid) > 0:
            guess = above
        elif compare(low_mid) == 0:
            return guess if _even(guess) else below
        elif compare(high_mid) == 0:
            return guess if _even(guess) else above
        else:
            return guess


def _even(value: float) -> bool:
    """Whether the last bit of the float's 53-bit significand is 0."""
    return int(math.frexp(value)[0] * (1 << 53)) % 2 == 0
