"""The exact moments kernels (numba and NumPy) against a pure-Python integer computation.

Every kernel must give the same count, sums, sums of squares, minima and maxima as Python
integers computed sample by sample, for uint8 and uint16, any channel count, odd shapes, edge
values (0, 255, 65535) and inputs long enough to exercise every accumulator flush.
"""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from pipeline.core import kernels
from pipeline.core import moments as mom
from pipeline.core.moments import Moments, from_pixels

KERNELS = ["numba", "numpy"]


def python_moments(pixels: np.ndarray) -> Moments:
    """Count, sums, sums of squares, min and max with Python integers, sample by sample."""
    channels = 1 if pixels.ndim == 2 else pixels.shape[-1]
    values = pixels.reshape(-1, channels).tolist()
    if not values:
        return Moments.empty()
    columns = list(zip(*values, strict=True))
    return Moments(
        len(values),
        tuple(sum(c) for c in columns),
        tuple(sum(v * v for v in c) for c in columns),
        tuple(min(c) for c in columns),
        tuple(max(c) for c in columns),
    )


def moments_with(kernel: str, pixels: np.ndarray) -> Moments:
    channels = 1 if pixels.ndim == 2 else pixels.shape[-1]
    return mom._integer_moments(pixels.reshape(-1, channels), kernels.kernel(kernel))


def constant_moments(value: int, pixels: int, channels: int) -> Moments:
    return Moments(
        pixels,
        (value * pixels,) * channels,
        (value * value * pixels,) * channels,
        (value,) * channels,
        (value,) * channels,
    )


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
    got = moments_with(kernel, pixels)
    assert got == python_moments(pixels)
    assert all(isinstance(v, int) for v in (*got.sum, *got.sum_sq, *got.min, *got.max))


@pytest.mark.parametrize("kernel", KERNELS)
@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("shape", [(1, 1, 3), (5, 7), (9, 11, 4), (600, 500, 3)], ids=str)
def test_edge_values(kernel, dtype, shape):
    """All zeros, all maximum (the overflow case: 600 x 500 rows cross every uint8 flush)."""
    top = int(np.iinfo(dtype).max)
    channels = 1 if len(shape) == 2 else shape[-1]
    pixels = int(np.prod(shape[:2]))
    for value in (0, top, 255, 1):
        if value > top:
            continue
        array = np.full(shape, value, dtype=dtype)
        assert moments_with(kernel, array) == constant_moments(value, pixels, channels)


@pytest.mark.parametrize("kernel", KERNELS)
def test_channels_kept_apart(kernel):
    """Each channel its own constant: a kernel mixing columns up would show it."""
    pixels = np.empty((301, 257, 4), dtype=np.uint16)
    for c, value in enumerate((0, 255, 65535, 4097)):
        pixels[..., c] = value
    got = moments_with(kernel, pixels)
    n = 301 * 257
    assert got.sum == (0, 255 * n, 65535 * n, 4097 * n)
    assert got.sum_sq == (0, 255**2 * n, 65535**2 * n, 4097**2 * n)
    assert got.min == got.max == (0, 255, 65535, 4097)


@pytest.mark.parametrize("kernel", KERNELS)
def test_extremes_anywhere(kernel):
    """Min and max found wherever they sit: first, last and a middle column."""
    rng = np.random.default_rng(7)
    for position in (0, -1, 12345):
        pixels = rng.integers(10, 200, size=(97, 211, 3), dtype=np.uint8)
        pixels.reshape(-1)[position] = 0
        pixels.reshape(-1)[position - 1] = 255
        assert moments_with(kernel, pixels) == python_moments(pixels)


@pytest.mark.parametrize("kernel", KERNELS)
def test_block_merge(kernel, monkeypatch):
    """Arrays longer than a block are cut into blocks and merged exactly."""
    monkeypatch.setattr(mom, "BLOCK_PIXELS", 1000)
    rng = np.random.default_rng(11)
    for shape in [(1000, 1, 3), (1001, 1, 3), (77, 59, 2), (3000, 7)]:
        pixels = rng.integers(0, 65535, size=shape, dtype=np.uint16, endpoint=True)
        assert moments_with(kernel, pixels) == python_moments(pixels)


@pytest.mark.parametrize("kernel", KERNELS)
def test_full_block_of_maximum_uint16(kernel):
    """A real block and a bit, every sample 65535: the uint64 bounds of the kernels."""
    count = mom.BLOCK_PIXELS + 777
    pixels = np.full((count, 1, 3), 65535, dtype=np.uint16)
    assert moments_with(kernel, pixels) == constant_moments(65535, count, 3)


@pytest.mark.parametrize("kernel", KERNELS)
def test_full_block_of_maximum_uint8(kernel):
    count = mom.BLOCK_PIXELS + 4097
    pixels = np.full((count, 1, 3), 255, dtype=np.uint8)
    assert moments_with(kernel, pixels) == constant_moments(255, count, 3)


@pytest.mark.parametrize("kernel", KERNELS)
def test_strided_and_fortran_inputs(kernel, monkeypatch):
    monkeypatch.setenv("IMGSTATS_MOMENTS_KERNEL", kernel)
    rng = np.random.default_rng(3)
    base = rng.integers(0, 256, size=(60, 90, 3), dtype=np.uint8)
    for pixels in (base[::2, ::3], base[5:50, 7:80, :2], np.asfortranarray(base), base[..., 1]):
        assert from_pixels(pixels) == python_moments(np.ascontiguousarray(pixels))


@pytest.mark.parametrize("kernel", KERNELS)
def test_from_pixels_uses_the_chosen_kernel(kernel, monkeypatch):
    monkeypatch.setenv("IMGSTATS_MOMENTS_KERNEL", kernel)
    pixels = np.arange(2 * 3 * 3, dtype=np.uint8).reshape(2, 3, 3)
    assert from_pixels(pixels) == python_moments(pixels)


def test_empty_arrays():
    for kernel in KERNELS:
        assert moments_with(kernel, np.zeros((0, 5, 3), np.uint8)) == Moments.empty()
    assert from_pixels(np.zeros((0, 4), np.uint16)) == Moments.empty()


def test_numba_kernel_is_compiled():
    """With numba installed, the default kernel is the compiled one, not the fallback."""
    pytest.importorskip("numba")
    assert kernels.kernel("numba") is not kernels._numpy_kernel


def test_unknown_kernel_refused():
    with pytest.raises(ValueError, match="unknown moments kernel"):
        kernels.kernel("fortran")


def test_moments_pickle_round_trip():
    value = Moments(3, (1, 2**70, 3), (4, 5, 6), (0, 1, 2), (7, 8, 2**65))
    assert pickle.loads(pickle.dumps(value)) == value
    assert pickle.loads(pickle.dumps(Moments.empty())) == Moments.empty()
