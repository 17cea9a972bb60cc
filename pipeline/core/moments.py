"""Per-channel moments: exact ones of integer samples, and the float summary of float samples.

:class:`Moments` holds the pixel count and, per channel, the sum, sum of squares, min and max
of integer samples as Python integers (a :class:`~pipeline.core.histogram.Histogram` derives
them exactly); :meth:`Moments.finalize` turns them, once, into the float64 nearest to each
exact mean, std and variance.

Float samples are summarised by :class:`FloatMoments` (count, mean, centred M2), merged with
the pairwise update of Chan, Golub and LeVeque in float64: stable, but not bit-exact across
splits.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .exact import nearest_sqrt_ratio
from .summary import Finalized

__all__ = ["FloatMoments", "Moments", "float_moments"]

#: Float pixels converted to float64 at once (bounds the temporaries).
FLOAT_BLOCK_PIXELS = 1 << 22


@dataclass(frozen=True)
class Moments:
    """Exact moments of integer samples: ``count`` pixels per channel, per-channel tuples."""

    count: int
    sum: tuple[int, ...]
    sum_sq: tuple[int, ...]
    min: tuple[int, ...]
    max: tuple[int, ...]

    @property
    def channels(self) -> int:
        return len(self.sum)

    def finalize(self, scale: float) -> Finalized:
        """Per-channel mean, population std (ddof 0) and variance on the [0, 1] scale.

        Each is the float64 nearest to the exact value: ``sum / (n * scale)``,
        ``sqrt(n * sum_sq - sum**2) / (n * scale)`` and ``(n * sum_sq - sum**2) / (n *
        scale)**2``.
        """
        n = self.count
        if not n:
            raise ValueError("no pixels: mean and std are undefined")
        if scale != int(scale) or scale <= 0:
            raise ValueError(f"integer samples need a positive integer scale, not {scale}")
        denominator = n * int(scale)
        spread = [n * q - s * s for s, q in zip(self.sum, self.sum_sq, strict=True)]
        return Finalized(
            tuple(s / denominator for s in self.sum),  # int / int is correctly rounded
            tuple(nearest_sqrt_ratio(d, denominator) for d in spread),
            tuple(float(Fraction(d, denominator * denominator)) for d in spread),
        )


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

    def moments(self) -> FloatMoments:
        return self

    def merge(self, other: FloatMoments) -> FloatMoments:
        """Chan et al.'s pairwise update in float64 (stable, not bit-exact across splits)."""
        if not other.count:
            return self
        if not self.count:
            return other
        if self.channels != other.channels:
            raise ValueError(
                f"cannot merge moments of {self.channels} and {other.channels} channels"
            )
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
        """Per-channel mean, population std and variance on the [0, 1] scale (float64, not
        exact)."""
        if not self.count:
            raise ValueError("no pixels: mean and std are undefined")
        variance = tuple(max(q, 0.0) / self.count / (scale * scale) for q in self.m2)
        return Finalized(
            tuple(m / scale for m in self.mean),
            tuple(math.sqrt(max(q, 0.0) / self.count) / scale for q in self.m2),
            variance,
        )


def float_moments(flat: np.ndarray) -> FloatMoments:
    """The :class:`FloatMoments` of float samples shaped (pixels, channels)."""
    total = FloatMoments.empty()
    for start in range(0, len(flat), FLOAT_BLOCK_PIXELS):
        block = flat[start : start + FLOAT_BLOCK_PIXELS].astype(np.float64)
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
