"""Drift between two sets of images, from their exact histograms: pure maths, no I/O.

Per channel, B against A:

- ``mean_delta``, ``std_delta``: B's mean (std) minus A's on the [0, 1] scale, the float64
  nearest to the exact difference (of two rationals; of two square roots of rationals);
- ``wasserstein``: the Wasserstein-1 distance on the [0, 1] scale, the area between the two
  empirical CDFs: ``sum_v |F_A(v) - F_B(v)| / scale``, an exact rational, then rounded once;
- ``ks``: the Kolmogorov-Smirnov statistic ``max_v |F_A(v) - F_B(v)|``, exact, rounded once;
- ``js``: the Jensen-Shannon distance, base 2 (``scipy.spatial.distance.jensenshannon(p, q,
  base=2)``): the square root of the mean Kullback-Leibler divergence of p and q from their
  average, in float64 to a few ulps (logarithms: not exactly rounded).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import accumulate

import numpy as np

from ..core.exact import nearest_sqrt_difference
from ..core.histogram import Histogram
from ..errors import InputError
from ..store.document import GroupStats, Stats

__all__ = ["METRICS", "Comparison", "compare", "compare_stats", "drift", "exceeding"]

#: The metrics, in the order they are reported.
METRICS = ("mean_delta", "std_delta", "wasserstein", "ks", "js")
#: Metrics that are signed differences: ``--fail-above`` compares their absolute value.
SIGNED = frozenset({"mean_delta", "std_delta"})

Metrics = dict[str, tuple[float, ...]]


def drift(a: Histogram, b: Histogram, scale: int) -> Metrics:
    """Every metric, per channel, of ``b`` against ``a`` (same channels and bins)."""
    if a.counts.shape != b.counts.shape or not a.count or not b.count:
        raise InputError(f"cannot compare histograms shaped {a.counts.shape} and "
                         f"{b.counts.shape}")
    moments_a, moments_b = a.moments(), b.moments()
    na, nb = a.count, b.count
    metrics: dict[str, list[float]] = {name: [] for name in METRICS}
    for c in range(a.channels):
        sa, sb = moments_a.sum[c], moments_b.sum[c]
        qa, qb = moments_a.sum_sq[c], moments_b.sum_sq[c]
        metrics["mean_delta"].append(float(Fraction(sb, nb * scale) - Fraction(sa, na * scale)))
        metrics["std_delta"].append(nearest_sqrt_difference(
            Fraction(nb * qb - sb * sb, (nb * scale) ** 2),
            Fraction(na * qa - sa * sa, (na * scale) ** 2),
        ))
        # |F_A(v) - F_B(v)| * na * nb, in integers, at every sample value v
        gaps = [abs(x * nb - y * na) for x, y in zip(
            accumulate(a.counts[c].tolist()), accumulate(b.counts[c].tolist()), strict=True)]
        metrics["wasserstein"].append(float(Fraction(sum(gaps), na * nb * scale)))
        metrics["ks"].append(float(Fraction(max(gaps), na * nb)))
        metrics["js"].append(_jensen_shannon(a.counts[c], b.counts[c]))
    return {name: tuple(values) for name, values in metrics.items()}


def _jensen_shannon(a: np.ndarray, b: np.ndarray) -> float:
    """The Jensen-Shannon distance (base 2) of two count vectors, to a few ulps.

    With p = a / na, q = b / nb, m = (p + q) / 2 and r = (p - q) / (p + q) per bin, the
    divergence is ``sum(m * f(r)) / 2 / ln 2`` where ``f(r) = (1 + r) ln(1 + r) + (1 - r)
    ln(1 - r) >= 0``; r and m are correctly rounded ratios of integers, f is summed as its
    series ``sum_k r**(2k) / (k (2k - 1))`` where the two logarithms would cancel (|r| < 1/2),
    and every term is non-negative, added by ``math.fsum``.
    """
    na, nb = int(a.sum()), int(b.sum())
    terms = []
    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        if not x and not y:
            continue
        left, right = x * nb, y * na
        total = left + right
        terms.append(total / (2 * na * nb) * _f((left - right) / total))
    return math.sqrt(math.fsum(terms) / 2 / math.log(2))


def _f(r: float) -> float:
    """``(1 + r) ln(1 + r) + (1 - r) ln(1 - r)`` for -1 <= r <= 1, without cancellation."""
    if abs(r) >= 0.5:
        plus = (1 + r) * math.log1p(r) if r != -1 else 0.0  # 0 * log(0) is 0
        minus = (1 - r) * math.log1p(-r) if r != 1 else 0.0
        return plus + minus
    square, power, total, k = r * r, r * r, 0.0, 1
    while True:
        term = power / (k * (2 * k - 1))
        if term <= total * 2**-60:
            return total
        total += term
        power *= square
        k += 1


@dataclass(frozen=True)
class Comparison:
    """Drift of B against A: totals, and each group both have."""

    channels: tuple[str, ...]
    metrics: Metrics
    groups: Mapping[str, Metrics]
    only_in_a: tuple[str, ...] = ()
    only_in_b: tuple[str, ...] = ()

    def as_json(self) -> dict[str, object]:
        """The contract's ``diff --json`` shape."""
        return {
            "channels": list(self.channels),
            "metrics": {name: list(values) for name, values in self.metrics.items()},
            "groups": {
                name: {"metrics": {k: list(v) for k, v in metrics.items()}}
                for name, metrics in sorted(self.groups.items())
            },
            "groups_only_in_a": list(self.only_in_a),
            "groups_only_in_b": list(self.only_in_b),
        }


def compare(a: GroupStats, b: GroupStats) -> Metrics:
    """Every metric of ``b`` against ``a``; :class:`InputError` if they cannot be compared."""
    if a.channels != b.channels or a.dtype != b.dtype:
        raise InputError(
            f"cannot compare {','.join(a.channels)} {a.dtype} samples with "
            f"{','.join(b.channels)} {b.dtype} samples"
        )
    if a.histogram is None or b.histogram is None:
        raise InputError("diff needs the exact histograms (integer samples, stats files of "
                         "schema 2)")
    return drift(Histogram(a.histogram), Histogram(b.histogram), int(a.scale))


def compare_stats(a: Stats, b: Stats) -> Comparison:
    """B against A, totals and each group they both have."""
    common = sorted(set(a.groups) & set(b.groups))
    return Comparison(
        channels=a.channels,
        metrics=compare(a, b),
        groups={name: compare(a.groups[name], b.groups[name]) for name in common},
        only_in_a=tuple(sorted(set(a.groups) - set(b.groups))),
        only_in_b=tuple(sorted(set(b.groups) - set(a.groups))),
    )


def exceeding(comparison: Comparison, limits: Mapping[str, float]) -> list[str]:
    """Each channel whose metric exceeds its limit (signed deltas by absolute value), as
    ``ks 0.071 > 0.05 on channel G in group 'cats'``."""
    found = []
    sets: Sequence[tuple[str | None, Metrics]] = [
        (None, comparison.metrics), *sorted(comparison.groups.items())
    ]
    for group, metrics in sets:
        for name, limit in limits.items():
            for channel, value in zip(comparison.channels, metrics[name], strict=True):
                size = abs(value) if name in SIGNED else value
                if size > limit:
                    where = f" in group {group!r}" if group is not None else ""
                    found.append(f"{name} {value:.6g} > {limit:g} on channel {channel}{where}")
    return found
