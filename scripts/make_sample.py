"""Write a small, deterministic sample image collection (JPEG, PNG, WebP, BMP, GIF) to a folder.

    python scripts/make_sample.py sample [--count 200] [--seed 0]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from PIL import Image

FORMATS = (("jpg", "JPEG", {"quality": 90}), ("png", "PNG", {}), ("webp", "WEBP", {}),
           ("bmp", "BMP", {}), ("gif", "GIF", {}))


def make_image(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A smooth colour gradient with noise: photo-like statistics, cheap to make."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    tint = rng.uniform(0.2, 1.0, size=3)
    base = np.stack([x / width, y / height, (x + y) / (width + height)], axis=-1) * 255 * tint
    noise = rng.normal(0, 25, size=(height, width, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8), "RGB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("folder", type=Path)
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for i in range(args.count):
        extension, fmt, options = FORMATS[i % len(FORMATS)]
        folder = args.folder / f"class{i % 4}"
        folder.mkdir(parents=True, exist_ok=True)
        image = make_image(rng, int(rng.integers(64, 320)), int(rng.integers(64, 240)))
        image.save(folder / f"img{i:05d}.{extension}", fmt, **options)
    print(f"wrote {args.count} images under {args.folder}")


if __name__ == "__main__":
    main()
