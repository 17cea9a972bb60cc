"""An independent, obviously correct reference for imgstats' numbers.

Written only with Python integers, :class:`fractions.Fraction` and :mod:`decimal`: no numpy
reductions and nothing from ``pipeline``. Pixels come in as plain Python data (nested lists from
``np.asarray(image).tolist()``, or Pillow's flattened pixel data) and every statistic is
computed from them by counting, adding and multiplying integers.

Histograms are ``collections.Counter`` objects per channel (value -> samples); quantiles follow
numpy's ``inverted_cdf`` by their definition (the smallest sample value v with count(samples <=
v) >= q * n, q the exact decimal), found by walking the sorted values with Fractions; the
variance is ``float(Fraction(n * sum_sq - sum**2, (n * scale)**2))``.

Rounding: ``mean`` is ``float(Fraction(sum, n * scale))`` (``Fraction.__float__`` divides two
integers, which Python rounds correctly). ``std`` is ``sqrt(n * sum_sq - sum**2) / (n * scale)``
evaluated with ``decimal`` at :data:`PRECISION` significant digits, then converted to float
(``float(Decimal)`` is correctly rounded). 120 digits is far more than enough:

* a value exactly halfway between two floats is a dyadic rational m * 2**-k with m < 2**54,
  whose decimal expansion has fewer than 120 significant digits for every value above 2**-90
  (every std, and every tie used in these tests): the final conversion sees the exact tie and
  rounds it to even;
* any other value sqrt(v)/d lies at least about 2**-109 / d**2 (relative) away from every such
  midpoint (from |v * q**2 - p**2 * d**2| >= 1), i.e. more than 1e-110 for every d < 2**128
  used in these tests, while two 120-digit operations err by less than 1e-118.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, localcontext
from fractions import Fraction
from typing import Any

__all__ = [
    "PRECISION",
    "QUANTILES",
    "Reference",
    "decoded_histogram",
    "image_pixels",
    "nearest_float_mean",
    "nearest_float_sqrt_ratio",
    "pil_pixels",
    "reference_from_sums",
    "reference_quantile",
    "reference_stats",
]

#: Significant decimal digits used for the square root.
PRECISION = 120
#: The quantile levels of the contract's ``quantiles`` key.
QUANTILES = (0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999)


@dataclass(frozen=True)
class Reference:
    """The exact statistics of a collection, keyed like the stats file."""

    image_count: int
    pixel_count: int
    sum: tuple[int, ...]
    sum_sq: tuple[int, ...]
    min: tuple[int, ...]
    max: tuple[int, ...]
    mean: tuple[float, ...]
    std: tuple[float, ...]
    scale: int
    histogram: tuple[Counter[int], ...] = field(default=(), compare=False)
    variance: tuple[float, ...] = ()

    KEYS = ("image_count", "pixel_count", "sum", "sum_sq", "min", "max", "mean", "std")

    def as_document(self) -> dict[str, Any]:
        """The values a stats document must hold for these keys (lists, like JSON)."""
        return {
            key: list(value) if isinstance(value, tuple) else value
            for key, value in ((k, getattr(self, k)) for k in self.KEYS)
        }

    def quantiles(self, levels: Sequence[float] = QUANTILES) -> list[list[int]]:
        """For each level, per channel, the reference quantile (the contract's ``raw``)."""
        return [[reference_quantile(h, q) for h in self.histogram] for q in levels]


def reference_quantile(histogram: Mapping[int, int], q: float) -> int:
    """The smallest sample value v with count(samples <= v) >= q * n, q read as the decimal
    Python's repr prints, compared exactly."""
    level = Fraction(repr(q))
    n = sum(histogram.values())
    seen = 0
    for value in sorted(v for v, c in histogram.items() if c):
        seen += histogram[value]
        if seen >= level * n:
            return value
    raise AssertionError("unreachable: the last value reaches n")


def decoded_histogram(encoded: Mapping[str, Any]) -> list[Counter[int]]:
    """A stats file's ``histogram`` key read by its documented encoding, per channel."""
    if encoded["encoding"] == "dense":
        return [Counter({v: c for v, c in enumerate(row) if c}) for row in encoded["counts"]]
    return [
        Counter(dict(zip(values, counts, strict=True)))
        for values, counts in zip(encoded["values"], encoded["counts"], strict=True)
    ]


def nearest_float_mean(total: int, count: int, scale: int) -> float:
    """The float nearest to ``total / (count * scale)``."""
    return float(Fraction(total, count * scale))


def nearest_float_sqrt_ratio(numerator: int, denominator: int, digits: int = PRECISION) -> float:
    """The float nearest to ``sqrt(numerator) / denominator``, via ``decimal``."""
    if numerator < 0 or denominator <= 0:
        raise ValueError("need numerator >= 0 and denominator > 0")
    with localcontext() as context:
        context.prec = digits
        context.Emax = 10**9
        context.Emin = -(10**9)
        value = Decimal(numerator).sqrt() / Decimal(denominator)
        return float(value)


def _pixel(value: Any) -> tuple[int, ...]:
    """One pixel as a tuple of ints (a bare int is a one-channel pixel)."""
    if isinstance(value, bool):
        return (int(value),)
    if isinstance(value, int):
        return (value,)
    samples = tuple(value)
    if not samples or not all(isinstance(s, int) and not isinstance(s, bool) for s in samples):
        raise TypeError(f"a pixel must be an int or a sequence of ints, not {value!r}")
    return samples


def image_pixels(data: Any) -> list[tuple[int, ...]]:
    """Flatten one image's pixel data into a list of per-pixel tuples of ints.

    Accepts ``np.asarray(image).tolist()`` (rows of ints, or rows of per-pixel lists) and
    Pillow's flattened data (a sequence of ints or of tuples).
    """
    rows = list(data)
    if rows and isinstance(rows[0], list) and rows[0] and isinstance(rows[0][0], list):
        return [_pixel(p) for row in rows for p in row]  # H x W x C
    if rows and isinstance(rows[0], list):
        return [(v,) for row in rows for v in row]  # H x W
    return [_pixel(p) for p in rows]  # flat: ints or tuples


def pil_pixels(image: Any) -> list[tuple[int, ...]]:
    """A Pillow image's pixels, in the order Pillow stores them."""
    flat = image.get_flattened_data() if hasattr(image, "get_flattened_data") else image.getdata()
    return image_pixels(list(flat))


def reference_from_sums(
    count: int,
    sums: Sequence[int],
    sums_sq: Sequence[int],
    scale: int,
) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Mean and population std (ddof 0) on the [0, 1] scale from exact integer sums."""
    if count <= 0:
        raise ValueError("no pixels")
    mean = tuple(nearest_float_mean(s, count, scale) for s in sums)
    std = tuple(
        nearest_float_sqrt_ratio(count * q - s * s, count * scale)
        for s, q in zip(sums, sums_sq, strict=True)
    )
    return mean, std


def reference_stats(images: Iterable[Any], scale: int) -> Reference:
    """Exact per-channel statistics of a list of images (see :func:`image_pixels`)."""
    image_count = 0
    count = 0
    sums: list[int] = []
    sums_sq: list[int] = []
    mins: list[int] = []
    maxs: list[int] = []
    histograms: list[Counter[int]] = []
    for data in images:
        pixels = image_pixels(data)
        if not pixels:
            raise ValueError("an image without pixels")
        image_count += 1
        if not sums:
            channels = len(pixels[0])
            sums, sums_sq = [0] * channels, [0] * channels
            mins, maxs = list(pixels[0]), list(pixels[0])
            histograms = [Counter() for _ in range(channels)]
        for pixel in pixels:
            if len(pixel) != len(sums):
                raise ValueError(f"pixel {pixel} does not have {len(sums)} channels")
            for c, value in enumerate(pixel):
                sums[c] += value
                sums_sq[c] += value * value
                mins[c] = min(mins[c], value)
                maxs[c] = max(maxs[c], value)
                histograms[c][value] += 1
            count += 1
    mean, std = reference_from_sums(count, sums, sums_sq, scale)
    variance = tuple(
        float(Fraction(count * q - s * s, (count * scale) ** 2))
        for s, q in zip(sums, sums_sq, strict=True)
    )
    return Reference(
        image_count,
        count,
        tuple(sums),
        tuple(sums_sq),
        tuple(mins),
        tuple(maxs),
        mean,
        std,
        scale,
        tuple(histograms),
        variance,
    )
