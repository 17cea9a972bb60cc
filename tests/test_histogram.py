"""Quantiles, shares and moments of exact histograms against independent computations: the
contract's definition walked in Python with Fractions, and numpy's ``inverted_cdf`` where a
float computation is unambiguous; at every level, boundaries included."""

from __future__ import annotations

from collections import Counter
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pipeline.core.histogram import Histogram

from reference import reference_quantile

SETTINGS = settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def histograms(draw):
    """A random (channels, 256 or 65536) histogram with a few to many occupied values."""
    bins = draw(st.sampled_from([256, 65536]))
    channels = draw(st.integers(1, 4))
    counts = np.zeros((channels, bins), np.int64)
    occupied = draw(st.integers(1, 12))
    for c in range(channels):
        values = draw(st.lists(st.integers(0, bins - 1), min_size=occupied, max_size=occupied))
        weights = draw(st.lists(st.integers(1, 10**6), min_size=occupied, max_size=occupied))
        for v, w in zip(values, weights, strict=True):
            counts[c, v] += w
    # every channel counts the same number of samples (one per pixel): top up the lightest
    total = counts.sum(axis=1)
    for c in range(channels):
        counts[c, draw(st.integers(0, bins - 1))] += int(total.max() - total[c])
    return Histogram(counts)


def as_counters(histogram: Histogram) -> list[Counter[int]]:
    return [Counter({v: int(n) for v, n in enumerate(row) if n}) for row in histogram.counts]


LEVELS = st.one_of(
    st.sampled_from([0.0, 1.0, 0.001, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 0.999, 0.1, 1 / 3]),
    st.floats(0, 1, allow_nan=False),
)


@SETTINGS
@given(histograms(), LEVELS)
def test_quantile_is_the_definition(histogram, q):
    expected = tuple(reference_quantile(c, q) for c in as_counters(histogram))
    assert histogram.quantile(q) == expected


@pytest.mark.parametrize("q", [0.0, 0.2, 0.25, 0.5, 0.75, 0.8, 1.0])
def test_levels_on_a_count_boundary(q):
    """Five samples 10, 20, 30, 40, 50: q * n lands exactly on a cumulative count at q = 0.2,
    0.8, 1, where the smaller value is the one (count(<= v) >= q * n holds with equality)."""
    counts = np.zeros((1, 256), np.int64)
    counts[0, [10, 20, 30, 40, 50]] = 1
    expected = {0.0: 10, 0.2: 10, 0.25: 20, 0.5: 30, 0.75: 40, 0.8: 40, 1.0: 50}[q]
    assert Histogram(counts).quantile(q) == (expected,)
    samples = np.repeat(np.arange(256), counts[0])
    assert np.quantile(samples, q, method="inverted_cdf") == expected


def test_a_level_is_read_as_its_decimal():
    """100 samples 0..99 and q = 0.07: q * n is exactly 7, so count(<= 6) = 7 reaches it. The
    binary float 0.07 times 100 is 7.000000000000001, and numpy's float computation answers 7."""
    counts = np.zeros((1, 65536), np.int64)
    counts[0, :100] = 1
    histogram = Histogram(counts)
    assert histogram.quantile(0.07) == (6,)
    assert histogram.quantile(Fraction(7, 100)) == (6,)
    assert np.quantile(np.arange(100), 0.07, method="inverted_cdf") == 7  # why it matters
    assert histogram.quantile(0.0701) == (7,)
    assert histogram.quantile(0.999) == (99,)


@SETTINGS
@given(histograms(), st.floats(0.0005, 0.9995))
def test_quantile_agrees_with_numpy_away_from_boundaries(histogram, q):
    n = histogram.count
    if abs(q * n - round(q * n)) < 1e-6 * n:  # near a boundary: floats may tip either way
        return
    for c, row in enumerate(histogram.counts):
        if row.sum() > 10**6:
            return  # keep np.repeat small
        samples = np.repeat(np.arange(histogram.bins), row)
        assert histogram.quantile(q)[c] == np.quantile(samples, q, method="inverted_cdf")


def test_levels_outside_zero_one_are_refused():
    histogram = Histogram(np.ones((1, 256), np.int64))
    for q in (-0.1, 1.5, float("nan")):
        with pytest.raises(ValueError):
            histogram.quantile(q)
    with pytest.raises(ValueError, match="no samples"):
        Histogram.empty().quantile(0.5)


@SETTINGS
@given(histograms())
def test_moments_and_shares_follow_from_the_counts(histogram):
    for c, counter in enumerate(as_counters(histogram)):
        moments = histogram.moments()
        assert moments.count == sum(counter.values())
        assert moments.sum[c] == sum(v * n for v, n in counter.items())
        assert moments.sum_sq[c] == sum(v * v * n for v, n in counter.items())
        assert (moments.min[c], moments.max[c]) == (min(counter), max(counter))
        for value in (0, histogram.bins - 1, min(counter)):
            assert histogram.share_at(value)[c] == Fraction(counter[value], moments.count)


def test_moments_exact_beyond_int64():
    """Counts near 2**63 times values near 2**16: sums far beyond int64, still exact."""
    counts = np.zeros((1, 65536), np.int64)
    counts[0, 65535] = 2**62
    counts[0, 1] = 2**62 - 1
    moments = Histogram(counts).moments()
    assert moments.sum == (65535 * 2**62 + 2**62 - 1,)
    assert moments.sum_sq == (65535**2 * 2**62 + 2**62 - 1,)
    assert (moments.min, moments.max) == ((1,), (65535,))
