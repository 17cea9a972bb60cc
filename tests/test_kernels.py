"""The exact histogram kernels (numba and NumPy) against a pure-Python count.

Every kernel must count, per channel, exactly the samples Python counts one by one
(``collections.Counter``), for uint8 and uint16, any channel count, odd shapes and tails that
are not whole periods of four pixels, unaligned inputs, edge values (0, 255, 65535), and inputs
longer than a block (the uint32 sub-counters' fold). Moments derived from the histogram must be
the Python integers computed sample by sample.
"""

from __future__ import annotations

import pickle
from collections import Counter

import numpy as np
import pytest

from pipeline.core import kernels
from pipeline.core.histogram import Histogram
from pipeline.core.moments import Moments

KERNELS = ["numba", "numpy"]


def python_counts(pixels: np.ndarray) -> list[Counter[int]]:
    """Per channel, value -> how many samples hold it, counted in Python."""
    channels = 1 if pixels.ndim == 2 else pixels.shape[-1]
    columns = list(zip(*pixels.reshape(-1, channels).tolist(), strict=True))
    return [Counter(column) for column in columns]


def python_moments(pixels: np.ndarray) -> Moments:
    """Count, sums, sums of squares, min and max with Python integers, sample by sample."""
    channels = 1 if pixels.ndim == 2 else pixels.shape[-1]
    columns = list(zip(*pixels.reshape(-1, channels).tolist(), strict=True))
    return Moments(
        len(columns[0]),
        tuple(sum(c) for c in columns),
        tuple(sum(v * v for v in c) for c in columns),
        tuple(min(c) for c in columns),
        tuple(max(c) for c in columns),
    )


def counted(histogram: np.ndarray) -> list[Counter[int]]:
    return [Counter({v: int(n) for v, n in enumerate(row) if n}) for row in histogram]


def histogram_with(kernel: str, pixels: np.ndarray) -> np.ndarray:
    channels = 1 if pixels.ndim == 2 else pixels.shape[-1]
    samples = np.ascontiguousarray(pixels).reshape(-1)
    got = kernels.kernel(kernel)(samples, channels)
    bins = 256 if pixels.dtype == np.uint8 else 65536
    assert got.shape == (channels, bins) and got.dtype == np.int64
    return got


SHAPES = [
    (1, 1),
    (1, 1, 1),
    (2, 3),
    (3, 5, 1),
    (7, 5, 3),
    (1, 1000, 3),
    (1000, 1, 3),
    (17, 9, 2),
    (33, 65, 4),
    (31, 37, 3),
    (1, 3, 3),  # fewer pixels than one period of four
    (1, 5, 4),
    (64, 64, 3),
    (375, 500, 3),
]


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_random_arrays_equal_python(kernel, dtype, shape):
    rng = np.random.default_rng([len(shape), *shape, np.dtype(dtype).itemsize])
    top = int(np.iinfo(dtype).max)
    pixels = rng.integers(0, top, size=shape, dtype=dtype, endpoint=True)
    pixels.flat[0] = 0
    pixels.flat[-1] = top
    got = histogram_with(kernel, pixels)
    assert counted(got) == python_counts(pixels)
    assert Histogram(got).moments() == python_moments(pixels)


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 7), (9, 11, 4), (600, 500, 3)], ids=str)
def test_constant_images(kernel, dtype, shape):
    """All one value: every sample in one bin (the case that chains one counter)."""
    top = int(np.iinfo(dtype).max)
    channels = 1 if len(shape) == 2 else shape[-1]
    pixels = int(np.prod(shape[:2]))
    for value in (0, top, 255, 1):
        if value > top:
            continue
        got = histogram_with(kernel, np.full(shape, value, dtype=dtype))
        expected = np.zeros_like(got)
        expected[:, value] = pixels
        assert np.array_equal(got, expected), value
        assert got.sum() == pixels * channels


@pytest.mark.parametrize("kernel", KERNELS)
def test_channels_kept_apart(kernel):
    """Each channel its own constant: a kernel mixing channels up would show it."""
    for dtype, values in ((np.uint16, (0, 255, 65535, 4097)), (np.uint8, (0, 255, 7, 128))):
        pixels = np.empty((301, 257, 4), dtype=dtype)
        for c, value in enumerate(values):
            pixels[..., c] = value
        got = histogram_with(kernel, pixels)
        n = 301 * 257
        for c, value in enumerate(values):
            assert got[c, value] == n and got[c].sum() == n


@pytest.mark.parametrize("kernel", KERNELS)
def test_unaligned_and_strided_inputs(kernel):
    """Samples that start at an odd address (the 32-bit loads) or are views of a larger array."""
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)
    raw = np.zeros(base.size + 1, np.uint8)
    raw[1:] = base.reshape(-1)
    odd = raw[1:]  # one byte past an aligned buffer
    assert odd.ctypes.data % 4
    got = kernels.kernel(kernel)(odd, 3)
    assert counted(got) == python_counts(base)
    for view in (base[::2, ::3], base[5:50, 7:80, :2], np.asfortranarray(base), base[..., 1]):
        assert counted(histogram_with(kernel, view)) == python_counts(np.ascontiguousarray(view))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_more_than_a_block(kernel, dtype):
    """A block and a bit, every sample the maximum: the uint32 sub-counters are folded into
    int64 before they could overflow, and the tail after the last block is counted."""
    top = int(np.iinfo(dtype).max)
    count = kernels.BLOCK_PIXELS + 777
    got = histogram_with(kernel, np.full((count, 1, 3), top, dtype=dtype))
    assert (got[:, top] == count).all() and got.sum() == 3 * count


def test_the_default_kernel_is_the_compiled_one(monkeypatch):
    """With numba installed, the default kernel is the compiled one, not the fallback."""
    pytest.importorskip("numba")
    monkeypatch.delenv("IMGSTATS_KERNEL", raising=False)
    assert kernels.kernel() is kernels.kernel("numba")
    assert kernels.kernel("numba") is not kernels._numpy_kernel


@pytest.mark.parametrize("kernel", KERNELS)
def test_the_environment_chooses_the_kernel(kernel, monkeypatch):
    monkeypatch.setenv("IMGSTATS_KERNEL", kernel)
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert kernels.kernel() is kernels.kernel(kernel)
    assert counted(Histogram.of(pixels).counts) == python_counts(pixels)


def test_empty_arrays():
    assert Histogram.of(np.zeros((0, 5, 3), np.uint8)) == Histogram.empty()
    assert Histogram.of(np.zeros((0, 4), np.uint16)).count == 0


def test_unknown_kernel_refused():
    with pytest.raises(ValueError, match="unknown histogram kernel"):
        kernels.kernel("fortran")


def test_histogram_pickle_round_trip():
    counts = np.zeros((3, 256), np.int64)
    counts[0, 0], counts[1, 255], counts[2, 7] = 2**62, 5, 2**40
    value = Histogram(counts)
    back = pickle.loads(pickle.dumps(value))
    assert back == value and back.moments() == value.moments()
