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

import numpy as np

from .exact import nearest_sqrt_ratio
from .kernels import BLOCK_PIXELS, Kernel, kernel
from .summary import Finalized

__all__ = ["AnyMoments", "FloatMoments", "Moments", "from_pixels", "merge"]


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

    def finalize(self, scale: float) -> Finalized:
        """Per-channel mean and population std (ddof 0) on the [0, 1] scale.

        Each is the float64 nearest to the exact value: ``sum / (n * scale)`` and
        ``sqrt(n * sum_sq - sum**2) / (n * scale)``.
        """
        n = self.count
        if not n:
            raise ValueError("no pixels: mean and std are undefined")
        if scale != int(scale) or scale <= 0:
            raise ValueError(f"integer samples need a positive integer scale, not {scale}")
        denominator = n * int(scale)
        mean = tuple(s / denominator for s in self.sum)  # int / int is correctly rounded
        std = tuple(
            nearest_sqrt_ratio(n * q - s * s, denominator)
            for s, q in zip(self.sum, self.sum_sq, strict=True)
        )
        return Finalized(mean, std)


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

    def finalize(self, scale: float) -> Finalized:
        """Per-channel mean and population std on the [0, 1] scale (float64, not exact)."""
        if not self.count:
            raise ValueError("no pixels: mean and std are undefined")
        mean = tuple(m / scale for m in self.mean)
        std = tuple(math.sqrt(max(q, 0.0) / self.count) / scale for q in self.m2)
        return Finalized(mean, std)


AnyMoments = Moments | FloatMoments


def merge(a: AnyMoments, b: AnyMoments) -> AnyMoments:
    """``a.merge(b)`` for moments of one kind (what one layout holds)."""
    if isinstance(a, Moments) and isinstance(b, Moments):
        return a.merge(b)
    if isinstance(a, FloatMoments) and isinstance(b, FloatMoments):
        return a.merge(b)
    raise TypeError("cannot merge moments of integer and float samples")


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
    return _integer_moments(flat, kernel())


def _integer_moments(flat: np.ndarray, compute: Kernel) -> Moments:
    """Exact moments of integer samples shaped (pixels, channels): one kernel call per block."""
    count, channels = flat.shape
    if not count or not channels:
        return Moments.empty()
    samples = np.ascontiguousarray(flat).reshape(-1)
    block = BLOCK_PIXELS * channels
    total = Moments.empty()
    for start in range(0, len(samples), block):
        part = samples[start : start + block]
        values = compute(part, channels).tolist()  # Python ints
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


def _float_moments(flat: np.ndarray) -> FloatMoments:
    total = FloatMoments.empty()
    for start in range(0, len(flat), BLOCK_PIXELS):
        block = flat[start : start + BLOCK_PIXELS].astype(np.float64)
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
