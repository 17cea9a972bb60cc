"""Benchmark imgstats against torchvision's decode-only loader, side by side, on the same files.

    python scripts/bench.py                       # 4,000 JPEGs + 20,000 PNGs, about 2 minutes
    python scripts/bench.py --jpegs 20000 --pngs 50000   # the issue's full-size goals
    python scripts/bench.py --folder DIR [--folder DIR2]  # your own image folders
    python scripts/bench.py --jpegs 0 --pngs 0 --big      # one 8,000 x 8,000 JPEG (memory)

For every corpus, in one run, with the same number of processes (``--processes``, 2):

- ``baseline``: torchvision's default loader, decode only: ``Image.open(path).convert("RGB")``
  and ``np.asarray``, nothing else, in a ``multiprocessing.Pool``;
- ``imgstats``: :func:`pipeline.compute_stats` as ``imgstats compute`` runs it (its own
  LocalCluster of N workers x 1 thread, listing, sharding, store write: the whole wall time).

The table gives images/s, MP/s, the ratio of wall times (imgstats / baseline: below 1 is faster),
the share of worker task time spent in the moments kernel and in decoding, the peak RSS of each
process, and the exactness verdict: imgstats' count, sum, sum_sq, min, max, mean and std against
an exact answer computed here from Pillow's own per-channel histograms (``Image.histogram()``)
with Python integers and ``fractions``/``decimal`` (no NumPy, no imgstats code).

Corpora are generated deterministically (``--seed``) and cached under ``--cache``
(default ``/tmp/imgstats-bench``): ImageNet-like ~500x375 photo-like JPEGs at quality 90
(a colour field, shapes and sensor-like noise) and CIFAR-like 32x32 PNGs. The machine is shared
and noisy: trust the ratios measured in one run, not the absolute times.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from decimal import Decimal, localcontext
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm",
                  ".pgm", ".pbm"}
FILES_PER_FOLDER = 1000
_NOISE_SIDE = 1024
_noise: np.ndarray | None = None


# --- corpora ------------------------------------------------------------------------------


def _noise_bank() -> np.ndarray:
    """A fixed tile of Gaussian sensor-like noise, cropped at random offsets per image."""
    global _noise
    if _noise is None:
        rng = np.random.default_rng(12345)
        noise = rng.normal(0, 12, size=(_NOISE_SIDE, _NOISE_SIDE, 3))
        _noise = np.clip(noise, -127, 127).astype(np.int16)
    return _noise


def photo_like(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth colour field, a few filled shapes and noise: photo-like JPEG statistics."""
    field = rng.uniform(0, 255, size=(4, 5, 3)).astype(np.uint8)
    image = Image.fromarray(field, "RGB").resize((width, height), Image.Resampling.BICUBIC)
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(4, 12))):
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        x1 = x0 + int(rng.integers(10, max(11, width // 2)))
        y1 = y0 + int(rng.integers(10, max(11, height // 2)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape((x0, y0, x1, y1), fill=colour)
    noise = _noise_bank()
    oy = int(rng.integers(0, _NOISE_SIDE - height + 1))
    ox = int(rng.integers(0, _NOISE_SIDE - width + 1))
    pixels = np.asarray(image).astype(np.int16) + noise[oy : oy + height, ox : ox + width]
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")


def _imagenet_size(rng: np.random.Generator) -> tuple[int, int]:
    """Mostly 500x375 / 375x500 / 500x333, as in ImageNet."""
    width, height = ((500, 375), (500, 375), (375, 500), (500, 333), (500, 400))[
        int(rng.integers(0, 5))
    ]
    return width, height


def _write_jpegs(task: tuple[Path, int, int, int]) -> None:
    folder, seed, start, stop = task
    for i in range(start, stop):
        rng = np.random.default_rng([seed, i])
        image = photo_like(rng, *_imagenet_size(rng))
        path = folder / f"c{i // FILES_PER_FOLDER:03d}" / f"img{i:07d}.jpg"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, "JPEG", quality=90)


def _write_pngs(task: tuple[Path, int, int, int]) -> None:
    folder, seed, start, stop = task
    for i in range(start, stop):
        rng = np.random.default_rng([seed, i])
        image = photo_like(rng, 32, 32)
        path = folder / f"c{i // FILES_PER_FOLDER:03d}" / f"img{i:07d}.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, "PNG")


def _write_big(path: Path, side: int, seed: int) -> None:
    rng = np.random.default_rng([seed, side])
    tile = photo_like(rng, 1000, 1000)
    image = Image.new("RGB", (side, side))
    for y in range(0, side, 1000):
        for x in range(0, side, 1000):
            image.paste(tile.rotate(90 * ((x + y) // 1000 % 4)), (x, y))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, "JPEG", quality=90)


def ensure_corpus(kind: str, count: int, cache: Path, seed: int, processes: int) -> Path:
    """The cached corpus folder, generated (deterministically) on first use."""
    folder = cache / f"{kind}-{count}-seed{seed}"
    done = folder / ".complete"
    if done.exists():
        return folder
    started = time.perf_counter()
    if kind == "big":
        _write_big(folder / "big.jpg", count, seed)
    else:
        writer = _write_jpegs if kind == "jpeg" else _write_pngs
        step = 250
        tasks = [(folder, seed, s, min(s + step, count)) for s in range(0, count, step)]
        with multiprocessing.Pool(processes) as pool:
            pool.map(writer, tasks, chunksize=1)
    done.write_text("ok\n")
    print(f"generated {folder} in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    return folder


def image_files(folder: Path) -> list[Path]:
    """Every image file under ``folder``, sorted (imgstats' extensions, no hidden files)."""
    return sorted(
        p
        for p in folder.rglob("*")
        if p.suffix.lower() in IMAGE_SUFFIXES
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(folder).parts)
    )
