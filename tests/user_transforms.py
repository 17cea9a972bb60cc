"""Deterministic ``--transform`` functions of the kind users write (tests/ is on the path of
the test process and, through it, of the shared cluster's workers)."""

from __future__ import annotations

import time

import numpy as np
from PIL import Image, ImageOps


def mirror_gray(image: Image.Image) -> Image.Image:
    """A PIL image out: mirrored, then Pillow's gray conversion."""
    return ImageOps.mirror(image).convert("L")


def widen_to_16_bit(image: Image.Image) -> np.ndarray:
    """An array out: each 8-bit sample v as the 16-bit v * 257 + (row % 7)."""
    pixels = np.asarray(image).astype(np.uint16) * 257
    rows = np.arange(pixels.shape[0], dtype=np.uint16).reshape(-1, 1, 1) % 7
    return pixels + rows


def broken(image: Image.Image) -> Image.Image:
    raise RuntimeError("this function always fails")


def returns_floats(image: Image.Image) -> np.ndarray:
    return np.asarray(image, dtype=np.float64) / 255


def slow_identity(image: Image.Image) -> Image.Image:
    """The image unchanged, 25 ms later: a run that lasts however fast the machine decodes."""
    time.sleep(0.025)
    return image
