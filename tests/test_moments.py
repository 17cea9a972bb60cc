"""Property tests of exact histograms and the moments they give (pipeline.core.histogram,
pipeline.core.moments) against the independent reference (tests/reference.py): any split, any
merge order and tree, the same bits."""

from __future__ import annotations

import itertools
import math
import os
from contextlib import contextmanager
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from pipeline.core import kernels
from pipeline.core.exact import nearest_sqrt_ratio
from pipeline.core.histogram import Histogram, summarize
from pipeline.core.moments import FloatMoments, Moments

from reference import (
    image_pixels,
    nearest_float_sqrt_ratio,
    reference_from_sums,
    reference_stats,
)

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

SCALES = {np.dtype(np.uint8): 255, np.dtype(np.uint16): 65535}

#: The histogram kernels summarize can use (pipeline/core/kernels.py: IMGSTATS_KERNEL);
#: "numba" falls back to NumPy where numba does not import.
KERNELS = ["numba", "numpy"]


def from_pixels(pixels: np.ndarray) -> Moments | FloatMoments:
    """An image's moments as a run computes them: from its summary."""
    return summarize(pixels).moments()


def histogram(pixels: np.ndarray) -> Histogram:
    summary = summarize(pixels)
    assert isinstance(summary, Histogram)
    return summary


@contextmanager
def moments_kernel(name: str):
    """Run summarize with the named kernel (the documented environment switch)."""
    key = "IMGSTATS_KERNEL"
    old = os.environ.get(key)
    os.environ[key] = name
    try:
        yield
    finally:
        if old is None:
            del os.environ[key]
        else:
            os.environ[key] = old


# --- strategies ----------------------------------------------------------------------------


@st.composite
def int_images(draw, channels=None, dtype=None, max_side=9):
    """A uint8 or uint16 image shaped (H, W) or (H, W, C), values over the full range."""
    dtype = draw(st.sampled_from([np.uint8, np.uint16])) if dtype is None else dtype
    if channels is None:
        channels = draw(st.sampled_from([None, 1, 2, 3, 4]))
    height = draw(st.integers(1, max_side))
    width = draw(st.integers(1, max_side))
    shape = (height, width) if channels is None else (height, width, channels)
    info = np.iinfo(dtype)
    elements = st.one_of(
        st.integers(info.min, info.max),
        st.sampled_from([info.min, info.max, info.max - 1, 1]),
    )
    return draw(hnp.arrays(dtype, shape, elements=elements))


@st.composite
def same_layout_images(draw, count):
    """``count`` images sharing a channel count and sample type (sizes may differ)."""
    dtype = draw(st.sampled_from([np.uint8, np.uint16]))
    channels = draw(st.sampled_from([1, 2, 3, 4]))
    return [draw(int_images(channels=channels, dtype=dtype)) for _ in range(count)]


def as_channels_last(pixels: np.ndarray) -> np.ndarray:
    return pixels.reshape(-1, 1 if pixels.ndim == 2 else pixels.shape[-1])


def exact_moments(pixels: np.ndarray) -> Moments:
    """Moments computed by the reference from the pixels as Python lists."""
    ref = reference_stats([pixels.tolist()], SCALES[pixels.dtype])
    return Moments(ref.pixel_count, ref.sum, ref.sum_sq, ref.min, ref.max)


# --- from_pixels and finalize -----------------------------------------------------------------


@pytest.mark.parametrize("kernel", KERNELS)
@SETTINGS
@given(pixels=int_images())
def test_from_pixels_equals_reference(kernel, pixels):
    with moments_kernel(kernel):
        got = from_pixels(pixels)
    assert isinstance(got, Moments)
    assert got == exact_moments(pixels)
    assert all(isinstance(v, int) for v in (*got.sum, *got.sum_sq, *got.min, *got.max))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(5, 7), (5, 7, 1), (6, 4, 2), (3, 8, 3), (4, 4, 4), (700, 3, 3)])
def test_from_pixels_every_layout(kernel, dtype, shape):
    """Every layout native mode can produce, incl. single-channel 16-bit (I;16 PNG/TIFF, PGM)."""
    rng = np.random.default_rng(sum(shape) * 7 + np.dtype(dtype).itemsize)
    top = np.iinfo(dtype).max
    pixels = rng.integers(0, top, size=shape, dtype=dtype, endpoint=True)
    pixels.flat[0], pixels.flat[-1] = 0, top
    expected = exact_moments(pixels)
    with moments_kernel(kernel):
        got = from_pixels(pixels)
    assert got == expected
    assert got.channels == (1 if len(shape) == 2 else shape[-1])
    assert got.finalize(SCALES[np.dtype(dtype)])[:2] == reference_from_sums(
        expected.count, expected.sum, expected.sum_sq, SCALES[np.dtype(dtype)]
    )


@pytest.mark.parametrize("kernel", KERNELS)
def test_from_pixels_uint16_gray_full_range(kernel):
    """The 16-bit gray case alone: a (H, W) uint16 array such as a 16-bit gray PNG gives."""
    pixels = np.array([[0, 1, 255, 256], [257, 65534, 65535, 4096]], dtype=np.uint16)
    with moments_kernel(kernel):
        got = from_pixels(pixels)
    values = [0, 1, 255, 256, 257, 65534, 65535, 4096]
    assert got == Moments(8, (sum(values),), (sum(v * v for v in values),), (0,), (65535,))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(
    ("dtype", "channels", "modulus"), [(np.uint8, 1, 251), (np.uint16, 3, 65521)]
)
def test_from_pixels_across_blocks(kernel, dtype, channels, modulus):
    """More pixels than one block: the fold of the sub-counters must be exact too."""
    count = kernels.BLOCK_PIXELS + 12_345
    column = (np.arange(count, dtype=np.int64) % modulus).astype(dtype)
    pixels = np.stack([column] * channels, axis=-1).reshape(count, 1, channels)
    pixels[-1, 0, -1] = np.iinfo(dtype).max  # the maximum only in the last block
    with moments_kernel(kernel):
        got = from_pixels(pixels)
    full, rest = divmod(count, modulus)
    multiplicity = {v: full + (v < rest) for v in range(modulus)}
    last = (count - 1) % modulus
    sums, squares = [], []
    for c in range(channels):
        s = sum(v * m for v, m in multiplicity.items())
        q = sum(v * v * m for v, m in multiplicity.items())
        if c == channels - 1:
            top = int(np.iinfo(dtype).max)
            s += top - last
            q += top * top - last * last
        sums.append(s)
        squares.append(q)
    top = int(np.iinfo(dtype).max)
    expected_max = tuple([modulus - 1] * (channels - 1) + [top])
    assert got == Moments(count, tuple(sums), tuple(squares), (0,) * channels, expected_max)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize(("dtype", "channels"), [(np.uint8, 1), (np.uint8, 3), (np.uint16, 2)])
def test_from_pixels_saturated_blocks(kernel, dtype, channels):
    """Every sample at the maximum, more than a block: the accumulators' worst case."""
    count = kernels.BLOCK_PIXELS + 777
    top = int(np.iinfo(dtype).max)
    pixels = np.full((count, 1, channels), top, dtype=dtype)
    pixels[5, 0, 0] = 0
    with moments_kernel(kernel):
        got = from_pixels(pixels)
    sums = [count * top - (top if c == 0 else 0) for c in range(channels)]
    squares = [count * top * top - (top * top if c == 0 else 0) for c in range(channels)]
    mins = tuple([0] + [top] * (channels - 1))
    assert got == Moments(count, tuple(sums), tuple(squares), mins, (top,) * channels)


@SETTINGS
@given(int_images())
def test_finalize_equals_reference(pixels):
    scale = SCALES[pixels.dtype]
    ref = reference_stats([pixels.tolist()], scale)
    mean, std, variance = histogram(pixels).finalize(scale)
    assert mean == ref.mean
    assert std == ref.std
    assert variance == ref.variance


@st.composite
def huge_moments(draw):
    """Moments of an enormous dataset described by (value, multiplicity) pairs per channel."""
    top = draw(st.sampled_from([255, 65535]))
    channels = draw(st.integers(1, 4))
    count = draw(st.integers(1, 10**15))
    sums, squares, mins, maxs = [], [], [], []
    for _ in range(channels):
        values = draw(st.lists(st.integers(0, top), min_size=1, max_size=4))
        cuts = sorted(
            draw(
                st.lists(st.integers(0, count), min_size=len(values) - 1, max_size=len(values) - 1)
            )
        )
        bounds = [0, *cuts, count]
        weights = [b - a for a, b in itertools.pairwise(bounds)]
        used = [v for v, w in zip(values, weights, strict=True) if w]
        sums.append(sum(v * w for v, w in zip(values, weights, strict=True)))
        squares.append(sum(v * v * w for v, w in zip(values, weights, strict=True)))
        mins.append(min(used))
        maxs.append(max(used))
    return top, Moments(count, tuple(sums), tuple(squares), tuple(mins), tuple(maxs))


@SETTINGS
@given(huge_moments())
def test_finalize_exact_for_huge_counts(case):
    scale, moments = case
    final = moments.finalize(scale)
    assert final[:2] == reference_from_sums(moments.count, moments.sum, moments.sum_sq, scale)
    n = moments.count
    assert final.variance == tuple(
        float(Fraction(n * q - s * s, (n * scale) ** 2))
        for s, q in zip(moments.sum, moments.sum_sq, strict=True)
    )


def test_finalize_constant_and_empty():
    pixels = np.full((4, 5, 3), 17, dtype=np.uint8)
    mean, std, variance = histogram(pixels).finalize(255)
    assert mean == (17 / 255,) * 3
    assert std == variance == (0.0, 0.0, 0.0)
    with pytest.raises(ValueError, match="no pixels"):
        Histogram.empty().finalize(255)


# --- merge algebra of histograms --------------------------------------------------------------


@SETTINGS
@given(same_layout_images(3))
def test_merge_associative(images):
    a, b, c = (histogram(i) for i in images)
    assert a.merge(b).merge(c) == a.merge(b.merge(c))


@SETTINGS
@given(same_layout_images(2))
def test_merge_commutative(images):
    a, b = (histogram(i) for i in images)
    assert a.merge(b) == b.merge(a)
    assert a.merge(b).count == a.count + b.count


@SETTINGS
@given(int_images())
def test_merge_identity(pixels):
    m = histogram(pixels)
    assert Histogram.empty().merge(m) == m
    assert m.merge(Histogram.empty()) == m
    assert Histogram.empty().merge(Histogram.empty()) == Histogram.empty()


def test_merge_refuses_different_channel_counts_and_depths():
    rgb = histogram(np.ones((2, 2, 3), np.uint8))
    with pytest.raises(ValueError, match="shaped"):
        rgb.merge(histogram(np.ones((2, 2), np.uint8)))
    with pytest.raises(ValueError, match="shaped"):
        rgb.merge(histogram(np.ones((2, 2, 3), np.uint16)))


def _tree_merge(parts: list[Histogram], fan_in: int) -> Histogram:
    level = list(parts)
    while len(level) > 1:
        level = [_fold(level[i : i + fan_in]) for i in range(0, len(level), fan_in)]
    return level[0] if level else Histogram.empty()


def _fold(parts: list[Histogram]) -> Histogram:
    total = Histogram.empty()
    for part in parts:
        total = total.merge(part)
    return total


@pytest.mark.parametrize("kernel", KERNELS)
@SETTINGS
@given(pixels=int_images(max_side=12), data=st.data())
def test_any_split_any_order_equals_whole(kernel, pixels, data):
    with moments_kernel(kernel):
        _check_any_split(pixels, data)


def _check_any_split(pixels, data):
    flat = as_channels_last(pixels)
    n, channels = flat.shape
    order = data.draw(st.permutations(range(n)), label="pixel order")
    shuffled = flat[list(order)]
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=8), label="cuts"))
    bounds = [0, *cuts, n]
    parts = [
        Histogram.of(shuffled[a:b].reshape(b - a, 1, channels))
        for a, b in itertools.pairwise(bounds)
    ]
    merge_order = data.draw(st.permutations(range(len(parts))), label="merge order")
    permuted = [parts[i] for i in merge_order]
    fan_in = data.draw(st.integers(2, 4), label="fan-in")
    whole = histogram(pixels)
    assert _fold(permuted) == whole
    assert _tree_merge(permuted, fan_in) == whole
    scale = SCALES[pixels.dtype]
    assert _tree_merge(permuted, fan_in).finalize(scale) == whole.finalize(scale)
    assert _tree_merge(permuted, fan_in).moments() == whole.moments()
    for q in (0, 0.001, 0.5, 0.999, 1):
        assert _tree_merge(permuted, fan_in).quantile(q) == whole.quantile(q)


@SETTINGS
@given(same_layout_images(2))
def test_subtract_inverts_merge(images):
    a, b = (histogram(i) for i in images)
    merged = a.merge(b)
    assert merged.subtract(b) == a
    assert merged.subtract(a) == b
    assert merged.subtract(b).moments() == a.moments()  # min and max too: no bookkeeping
    assert merged.subtract(Histogram.empty()) == merged
    assert merged.subtract(merged) == Histogram.empty()
    with pytest.raises(ValueError):
        a.subtract(merged)


# --- nearest_sqrt_ratio -------------------------------------------------------------------------


def _is_nearest(value: float, numerator: int, denominator: int) -> bool:
    """Exact check: ``value`` is a nearest float to sqrt(numerator)/denominator."""
    exact_sq = Fraction(numerator, denominator * denominator)
    below = math.nextafter(value, 0.0)
    above = math.nextafter(value, math.inf)
    low = (Fraction(below) + Fraction(value)) / 2
    high = (Fraction(value) + Fraction(above)) / 2
    return low * low <= exact_sq <= high * high


@st.composite
def near_midpoints(draw):
    """(v, d) with sqrt(v)/d exactly on, or just beside, a midpoint between two floats."""
    low = draw(st.floats(1e-6, 1e6, allow_nan=False, allow_infinity=False))
    midpoint = (Fraction(low) + Fraction(math.nextafter(low, math.inf))) / 2
    k = draw(st.integers(1, 2**20))
    root = midpoint.numerator * k  # sqrt(v) / d == midpoint when v = root**2, d = den * k
    offset = draw(st.sampled_from([-2, -1, 0, 1, 2]))
    return root * root + offset, midpoint.denominator * k


@SETTINGS
@given(st.integers(0, 2**256), st.integers(1, 2**128))
def test_nearest_sqrt_ratio_random(numerator, denominator):
    got = nearest_sqrt_ratio(numerator, denominator)
    assert got == nearest_float_sqrt_ratio(numerator, denominator)


@SETTINGS
@given(st.integers(0, 2**120), st.integers(1, 2**64))
def test_nearest_sqrt_ratio_perfect_squares(root, denominator):
    got = nearest_sqrt_ratio(root * root, denominator)
    assert got == nearest_float_sqrt_ratio(root * root, denominator)
    assert got == float(Fraction(root, denominator))  # exact square root: one rounding only


@SETTINGS
@given(near_midpoints())
def test_nearest_sqrt_ratio_near_midpoints(case):
    numerator, denominator = case
    got = nearest_sqrt_ratio(numerator, denominator)
    assert got == nearest_float_sqrt_ratio(numerator, denominator)
    assert _is_nearest(got, numerator, denominator)


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        (0, 7, 0.0),
        (4, 1, 2.0),
        (2, 1, math.sqrt(2)),
        ((2**53 + 1) ** 2, 1, 2.0**53),  # a tie: to even, down
        ((2**53 + 3) ** 2, 1, 2.0**53 + 4),  # a tie: to even, up
        ((2**53 + 1) ** 2 + 1, 1, 2.0**53 + 2),  # just above the tie
        ((2**53 + 1) ** 2 - 1, 1, 2.0**53),  # just below the tie
        (3, 1, math.sqrt(3)),
        (10**40, 10**20, 1.0),
    ],
)
def test_nearest_sqrt_ratio_known(numerator, denominator, expected):
    assert nearest_sqrt_ratio(numerator, denominator) == expected
    assert nearest_float_sqrt_ratio(numerator, denominator) == expected


@pytest.mark.parametrize(
    ("numerator", "denominator", "expected"),
    [
        (9, 2**1075, 2 * 5e-324),  # 1.5 x the smallest subnormal: a tie, to even (up)
        (25, 2**1075, 2 * 5e-324),  # 2.5 x: a tie, to even (down)
        (1, 2**1076, 0.0),  # a quarter of the smallest subnormal
    ],
)
def test_nearest_sqrt_ratio_subnormal(numerator, denominator, expected):
    assert nearest_sqrt_ratio(numerator, denominator) == expected


def test_nearest_sqrt_ratio_rejects_bad_input():
    with pytest.raises(ValueError):
        nearest_sqrt_ratio(-1, 3)
    with pytest.raises(ValueError):
        nearest_sqrt_ratio(1, 0)


@SETTINGS
@given(st.integers(1, 2**200), st.integers(1, 2**80))
def test_reference_sqrt_is_nearest(numerator, denominator):
    """The decimal-based reference itself, checked exactly with Fractions."""
    assert _is_nearest(nearest_float_sqrt_ratio(numerator, denominator), numerator, denominator)


def test_reference_accepts_every_pixel_format():
    gray = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    rgb = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    assert image_pixels(gray.tolist()) == [(1,), (2,), (3,), (4,)]
    assert image_pixels([1, 2, 3, 4]) == image_pixels(gray.tolist())
    assert image_pixels(rgb.tolist())[-1] == (9, 10, 11)
    assert image_pixels([(0, 1, 2), (3, 4, 5)]) == [(0, 1, 2), (3, 4, 5)]
    ref = reference_stats([gray.tolist(), [[5]]], 255)
    assert (ref.image_count, ref.pixel_count, ref.sum, ref.sum_sq) == (2, 5, (15,), (55,))
    assert (ref.min, ref.max) == ((1,), (5,))
    assert ref.mean == (15 / (5 * 255),)
    assert ref.std == (math.sqrt(2) / 255,)  # population variance of 1..5 is 2


# --- FloatMoments ---------------------------------------------------------------------------------


@st.composite
def float_images(draw):
    channels = draw(st.integers(1, 4))
    height, width = draw(st.integers(1, 8)), draw(st.integers(1, 8))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    elements = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=32)
    return draw(hnp.arrays(dtype, (height, width, channels), elements=elements))


@SETTINGS
@given(float_images(), st.data())
def test_float_moments_merge_close_to_numpy(pixels, data):
    """Float samples are merged in float64 (Chan et al.): close to numpy, not bit-exact."""
    flat = as_channels_last(pixels)
    n, channels = flat.shape
    cuts = sorted(data.draw(st.lists(st.integers(0, n), max_size=5), label="cuts"))
    bounds = [0, *cuts, n]
    parts = [
        from_pixels(flat[a:b].reshape(b - a, 1, channels)) for a, b in itertools.pairwise(bounds)
    ]
    merged = FloatMoments.empty()
    for part in parts:
        assert isinstance(part, FloatMoments)
        merged = merged.merge(part)
    whole = flat.astype(np.float64)
    assert merged.count == n
    mean, std, variance = merged.finalize(1.0)
    spread = float(np.abs(whole).max()) + 1.0
    np.testing.assert_allclose(mean, whole.mean(axis=0), rtol=1e-9, atol=1e-12 * spread)
    np.testing.assert_allclose(std, whole.std(axis=0), rtol=1e-7, atol=1e-9 * spread)
    np.testing.assert_allclose(variance, whole.var(axis=0), rtol=1e-7, atol=1e-9 * spread**2)
    assert merged.min == tuple(float(v) for v in whole.min(axis=0))
    assert merged.max == tuple(float(v) for v in whole.max(axis=0))
    np.testing.assert_allclose(merged.sum, whole.sum(axis=0), rtol=1e-9, atol=1e-9 * spread * n)


def test_float_moments_identity_and_scale():
    pixels = np.array([[[0.25], [0.75]]], dtype=np.float32)
    m = summarize(pixels)
    assert isinstance(m, FloatMoments)
    assert FloatMoments.empty().merge(m) == m == m.merge(FloatMoments.empty())
    assert m.finalize(1.0) == ((0.5,), (0.25,), (0.0625,))
    assert m.finalize(2.0) == ((0.25,), (0.125,), (0.015625,))
    with pytest.raises(ValueError):
        FloatMoments.empty().finalize(1.0)


def test_summarize_rejects_other_integer_types():
    with pytest.raises(TypeError):
        summarize(np.zeros((2, 2), dtype=np.int32))


@SETTINGS
@given(int_images())
def test_moments_are_order_free_of_pixels(pixels):
    """Reversing the pixel order changes nothing (the histogram sees a multiset)."""
    flat = as_channels_last(pixels)
    assume(len(flat) > 1)
    reversed_ = flat[::-1].reshape(len(flat), 1, flat.shape[1])
    assert from_pixels(np.ascontiguousarray(reversed_)) == from_pixels(pixels)
