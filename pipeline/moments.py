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
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

__all__ = ["FloatMoments", "Moments", "from_pixels", "nearest_sqrt_ratio"]

#: Rows of pixels handled at once, so temporaries stay bounded for huge images and the
#: uint64 histogram dot products cannot overflow (n * 65535**2 < 2**64 for n < 2**32).
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
    total = Moments.empty()
    for start in range(0, max(len(flat), 1), _BLOCK_PIXELS):
        total = total.merge(_histogram_moments(flat[start : start + _BLOCK_PIXELS]))
    return total


def _histogram_moments(flat: np.ndarray) -> Moments:
    """Exact moments from one per-channel histogram: sums, squares, min and max in one go."""
    count, channels = flat.shape
    if not count:
        return Moments.empty()
    levels = 1 << (8 * flat.dtype.itemsize)
    index_type = np.uint16 if levels * channels <= 1 << 16 else np.uint32
    offsets = np.arange(channels, dtype=index_type) * levels
    index = np.add(flat, offsets, dtype=index_type)
    hist = np.bincount(index.ravel(), minlength=levels * channels).reshape(channels, levels)
    hist = hist.astype(np.uint64)
    values = np.arange(levels, dtype=np.uint64)
    sums = hist @ values
    squares = hist @ (values * values)
    mins, maxs = [], []
    for row in hist:
        nonzero = np.flatnonzero(row)
        mins.append(int(nonzero[0]))
        maxs.append(int(nonzero[-1]))
    return Moments(
        count,
        tuple(int(s) for s in sums),
        tuple(int(q) for q in squares),
        tuple(mins),
        tuple(maxs),
    )


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
