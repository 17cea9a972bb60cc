"""Exact histograms of integer samples: what every 8- and 16-bit image is counted into.

A :class:`Histogram` holds, per channel, how many samples hold each value (int64, 256 bins
for 8-bit samples, 65,536 for 16-bit). Merging adds counts, so any split of a dataset, merged
in any order, gives the same histogram; taking a subset's histogram out is subtraction. The
pixel count, sums, sums of squares, min, max, every quantile and the share of samples at any
value follow from it exactly, once, at the end.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction

import numpy as np

from .kernels import kernel
from .moments import FloatMoments, Moments, float_moments
from .summary import Finalized

__all__ = ["AnySummary", "Histogram", "exact_quantile_level", "summarize"]


@dataclass(frozen=True, eq=False)
class Histogram:
    """Per-channel counts of every sample value: an int64 array shaped (channels, 2**bits)."""

    counts: np.ndarray

    @classmethod
    def empty(cls) -> Histogram:
        """The identity of :meth:`merge`: no samples, no channels yet."""
        return cls(np.zeros((0, 0), np.int64))

    @classmethod
    def of(cls, pixels: np.ndarray) -> Histogram:
        """The histogram of an image shaped (H, W, C) (or (H, W)) of uint8 or uint16."""
        channels = 1 if pixels.ndim == 2 else pixels.shape[-1]
        if pixels.dtype not in (np.uint8, np.uint16):
            raise TypeError(f"no histogram of {pixels.dtype} samples")
        samples = np.ascontiguousarray(pixels).reshape(-1)
        if not samples.size:
            return cls.empty()
        return cls(kernel()(samples, channels))

    @property
    def channels(self) -> int:
        return int(self.counts.shape[0])

    @property
    def bins(self) -> int:
        """256 for 8-bit samples, 65,536 for 16-bit."""
        return int(self.counts.shape[1])

    @property
    def count(self) -> int:
        """Samples per channel (pixels)."""
        return int(self.counts[0].sum()) if self.channels else 0

    def merge(self, other: Histogram) -> Histogram:
        """The histogram of both sample sets (associative, commutative, exact)."""
        if not other.count:
            return self
        if not self.count:
            return other
        self._check_shape(other)
        return Histogram(self.counts + other.counts)

    def subtract(self, other: Histogram) -> Histogram:
        """This histogram without a subset's samples (``other`` must be a subset)."""
        if not other.count:
            return self
        self._check_shape(other)
        rest = self.counts - other.counts
        if (rest < 0).any():
            raise ValueError("cannot take out samples that are not there")
        return Histogram(rest) if rest.any() else Histogram.empty()

    def _check_shape(self, other: Histogram) -> None:
        if self.counts.shape != other.counts.shape:
            raise ValueError(f"cannot merge histograms shaped {self.counts.shape} and "
                             f"{other.counts.shape}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return self.counts.shape == other.counts.shape and bool(
            np.array_equal(self.counts, other.counts)
        )

    __hash__ = None  # type: ignore[assignment]  # mutable-looking: compared by value

    def moments(self) -> Moments:
        """Count, per-channel sums, sums of squares, min and max, exactly."""
        if not self.count:
            return Moments(0, (), (), (), ())
        values = np.arange(self.bins, dtype=np.uint64)
        present = self.counts > 0
        return Moments(
            self.count,
            tuple(_exact_dot(values, row) for row in self.counts),
            tuple(_exact_dot(values * values, row) for row in self.counts),
            tuple(int(np.argmax(row)) for row in present),
            tuple(self.bins - 1 - int(np.argmax(row[::-1])) for row in present),
        )

    def finalize(self, scale: float) -> Finalized:
        """Per-channel mean, std and variance on the [0, 1] scale, each the float64 nearest
        to the exact value."""
        return self.moments().finalize(scale)

    def quantile(self, q: float | Fraction) -> tuple[int, ...]:
        """Per channel, the smallest sample value v with count(samples <= v) >= q * n:
        numpy's ``inverted_cdf``, exactly (q a float is read as the decimal its ``repr``
        prints: 0.001 is 1/1000)."""
        level = exact_quantile_level(q)
        n = self.count
        if not n:
            raise ValueError("no samples: quantiles are undefined")
        # the smallest cumulative count that reaches q * n (at least 1: a sample value)
        target = max(1, -((-level.numerator * n) // level.denominator))
        return tuple(
            int(np.searchsorted(np.cumsum(row), target, side="left")) for row in self.counts
        )

    def share_at(self, value: int) -> tuple[Fraction, ...]:
        """Per channel, the exact share of samples that hold ``value``."""
        n = self.count
        return tuple(Fraction(int(row[value]), n) for row in self.counts)


def exact_quantile_level(q: float | Fraction) -> Fraction:
    """``q`` as the exact decimal its ``repr`` shows (floats), checked to lie in [0, 1]."""
    level = q if isinstance(q, Fraction) else Fraction(repr(float(q)))
    if not 0 <= level <= 1:
        raise ValueError(f"a quantile level must be in [0, 1], not {q}")
    return level


def _exact_dot(weights: np.ndarray, counts: np.ndarray) -> int:
    """``sum(weights * counts)`` exactly, for uint64 ``weights`` < 2**32 and int64 counts over
    at most 2**16 bins: counts are split into 16-bit limbs, so every product is below 2**48 and
    every limb's dot product below 2**64 (no uint64 overflow); the limbs meet in Python ints."""
    total = 0
    limbs = counts.astype(np.uint64)
    for shift in range(0, 64, 16):
        limb = (limbs >> np.uint64(shift)) & np.uint64(0xFFFF)
        total += int(np.dot(weights, limb)) << shift
    return total


AnySummary = Histogram | FloatMoments


def summarize(pixels: np.ndarray) -> AnySummary:
    """An image's summary: its exact :class:`Histogram` (integer samples), or its
    :class:`~pipeline.core.moments.FloatMoments` (float samples: no histogram)."""
    if pixels.dtype.kind == "f":
        channels = 1 if pixels.ndim == 2 else pixels.shape[-1]
        return float_moments(pixels.reshape(-1, channels))
    return Histogram.of(pixels)
