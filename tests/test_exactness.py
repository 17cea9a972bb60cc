"""Bit-exact statistics for every image mode and format, on a real Dask cluster.

Every file is written for real (Pillow, imagecodecs, or by hand for 16-bit PGM); the expected
numbers come from tests/reference.py, which sees only Python lists of pixels:

* rgb / gray mode: the torchvision way, ``Image.open(path).convert("RGB")`` (or ``"L"``);
* native mode: the exact arrays written (16-bit ones included), or Pillow's decode where the
  format is lossy (JPEG, lossy WebP), following the documented conversions (P -> RGB/RGBA,
  1 -> L 0/255, CMYK kept as Pillow's CMYK: 4 channels).
"""

from __future__ import annotations

import itertools
import logging
import re
import shutil
import warnings
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from pipeline import JobConfig, LayoutError, compute_stats
from pipeline.decode import decode

from reference import QUANTILES, Reference, decoded_histogram, pil_pixels, reference_stats

_run_ids = itertools.count()


# --- writing the samples ---------------------------------------------------------------------


def _size(rng: np.random.Generator) -> tuple[int, int]:
    """(height, width) between 5 x 7 and 48 x 64."""
    return int(rng.integers(5, 49)), int(rng.integers(7, 65))


def _u8(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    pixels = rng.integers(0, 256, size=shape, dtype=np.uint8)
    pixels.flat[0], pixels.flat[-1] = 0, 255
    return pixels


def _u16(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    pixels = rng.integers(0, 65536, size=shape, dtype=np.uint16)
    pixels.flat[0], pixels.flat[1], pixels.flat[-1] = 0, 257, 65535
    return pixels


def _palette(rng: np.random.Generator, colours: int) -> np.ndarray:
    """``colours`` distinct, clearly non-grey RGB colours, shape (colours, 3)."""
    codes = rng.choice(256**3, size=colours, replace=False)
    rgb = np.stack([codes >> 16, (codes >> 8) & 255, codes & 255], axis=-1).astype(np.uint8)
    rgb[:, 0] = rgb[:, 0] | 1  # r odd, g even: never grey
    rgb[:, 1] = rgb[:, 1] & 254
    return rgb


def _palette_image(index: np.ndarray, palette: np.ndarray) -> Image.Image:
    height, width = index.shape
    image = Image.frombytes("P", (width, height), index.astype(np.uint8).tobytes())
    image.putpalette(palette.tobytes())
    return image


def _lookup(index: np.ndarray, palette: np.ndarray, transparent: int | bytes | None) -> np.ndarray:
    """Palette indices to RGB, or RGBA when a transparent index or an alpha table is given."""
    rgb = palette[index]
    if transparent is None:
        return rgb
    if isinstance(transparent, bytes):  # tRNS alpha table; entries past its end are opaque
        table = np.full(256, 255, dtype=np.uint8)
        table[: len(transparent)] = np.frombuffer(transparent, dtype=np.uint8)
        alpha = table[index]
    else:
        alpha = np.where(index == transparent, 0, 255).astype(np.uint8)
    return np.concatenate([rgb, alpha[..., np.newaxis]], axis=-1)


Writer = Callable[[Path, np.random.Generator], np.ndarray | None]


def write_mode1(fmt: str) -> Writer:
    def write(path: Path, rng: np.random.Generator) -> np.ndarray:
        bits = rng.integers(0, 2, size=_size(rng)).astype(bool)
        bits.flat[0], bits.flat[-1] = False, True
        Image.fromarray(bits).save(path, fmt)
        return bits.astype(np.uint8) * 255

    return write


def write_pillow(fmt: str, channels: int | None, **options) -> Writer:
    """An 8-bit L (channels None), LA, RGB or RGBA image saved losslessly by Pillow."""

    def write(path: Path, rng: np.random.Generator) -> np.ndarray:
        shape = _size(rng) if channels is None else (*_size(rng), channels)
        pixels = _u8(rng, shape)
        Image.fromarray(pixels).save(path, fmt, **options)
        return pixels

    return write


def write_cmyk(fmt: str) -> Writer:
    """An 8-bit CMYK image saved losslessly by Pillow."""

    def write(path: Path, rng: np.random.Generator) -> np.ndarray:
        pixels = _u8(rng, (*_size(rng), 4))
        Image.fromarray(pixels, "CMYK").save(path, fmt)
        return pixels

    return write


def write_lossy(fmt: str, mode: str, **options) -> Writer:
    """A lossy file: the expected native pixels are Pillow's decode of it (None here)."""

    def write(path: Path, rng: np.random.Generator) -> None:
        height, width = _size(rng)
        bands = len(mode)
        pixels = _u8(rng, (height, width, bands))
        Image.frombytes(mode, (width, height), pixels.tobytes()).save(path, fmt, **options)

    return write


def write_pages(fmt: str, channels: int | None) -> Writer:
    """A multi-page TIFF whose later pages differ in content and size: only page 1 counts."""

    def write(path: Path, rng: np.random.Generator) -> np.ndarray:
        pages = []
        for _ in range(3):
            shape = _size(rng) if channels is None else (*_size(rng), channels)
            pages.append(_u8(rng, shape))
        images = [Image.fromarray(p) for p in pages]
        images[0].save(path, fmt, save_all=True, append_images=images[1:])
        return pages[0]

    return write


def write_palette(fmt: str, transparent: int | bytes | None, frames: int = 1) -> Writer:
    """A P image (PNG or GIF), optionally with transparency (an index, or a PNG alpha table)
    and more frames."""

    def write(path: Path, rng: np.random.Generator) -> np.ndarray:
        palette = _palette(rng, 16)
        size = _size(rng)
        indices = [rng.integers(0, 16, size=size) for _ in range(frames)]
        for index in indices:
            index.flat[0], index.flat[-1] = 0, 15
        # later frames use other colours (indices 8..15 only), so counting them would show
        for index in indices[1:]:
            index[:] = 8 + index % 8
        images = [_palette_image(i, palette) for i in indices]
        options = {} if transparent is None else {"transparency": transparent}
        if frames > 1:
            options.update(save_all=True, append_images=images[1:], duration=100, loop=0)
        images[0].save(path, fmt, **options)
        return _lookup(indices[0], palette, transparent)

    return write


def write_png16(channels: int | None) -> Writer:
    def write(path: Path, rng: np.random.Generator) -> np.ndarray:
        shape = _size(rng) if channels is None else (*_size(rng), channels)
        pixels = _u16(rng, shape)
        path.write_bytes(imagecodecs.png_encode(pixels))
        return pixels

    return write


def write_pillow16(fmt: str, pages: int = 1) -> Writer:
    """16-bit grey (Pillow mode I;16) PNG or TIFF, optionally multi-page."""

    def write(path: Path, rng: np.random.Generator) -> np.ndarray:
        arrays = [_u16(rng, _size(rng)) for _ in range(pages)]
        images = [Image.fromarray(a) for a in arrays]
        assert images[0].mode == "I;16"
        options = {"save_all": True, "append_images": images[1:]} if pages > 1 else {}
        images[0].save(path, fmt, **options)
        return arrays[0]

    return write


def write_tiff16_rgb_pages(path: Path, rng: np.random.Generator) -> np.ndarray:
    """A two-page 16-bit RGB TIFF (Pillow cannot write these; imagecodecs/libtiff can)."""
    size = _size(rng)
    pages = np.stack([_u16(rng, (*size, 3)), _u16(rng, (*size, 3))])
    path.write_bytes(imagecodecs.tiff_encode(pages))
    return pages[0]


def write_tiff16_big_endian(path: Path, rng: np.random.Generator) -> np.ndarray:
    """16-bit grey TIFF with big-endian samples (Pillow mode I;16B)."""
    pixels = _u16(rng, _size(rng))
    # a copy: imagecodecs.tiff_encode(byteorder=">") byte-swaps its input array in place
    path.write_bytes(imagecodecs.tiff_encode(pixels.copy(), byteorder=">"))
    with Image.open(path) as image:
        assert image.mode == "I;16B", image.mode
    return pixels


def write_pgm16(path: Path, rng: np.random.Generator) -> np.ndarray:
    """Binary PGM with maxval 65535, big-endian samples, written by hand."""
    pixels = _u16(rng, _size(rng))
    height, width = pixels.shape
    path.write_bytes(f"P5\n{width} {height}\n65535\n".encode() + pixels.astype(">u2").tobytes())
    return pixels


@dataclass(frozen=True)
class Sample:
    name: str  # relative path of the file
    layout: str  # expected native layout key, e.g. "RGB uint8"
    write: Writer

    @property
    def high_bit_depth(self) -> bool:
        return self.layout.endswith("uint16")


SAMPLES = (
    Sample("bits/mode1.png", "L uint8", write_mode1("PNG")),
    Sample("bits/mode1.bmp", "L uint8", write_mode1("BMP")),
    Sample("gray/gray.png", "L uint8", write_pillow("PNG", None)),
    Sample("gray/gray.jpg", "L uint8", write_lossy("JPEG", "L", quality=90)),
    Sample("gray/progressive.jpg", "L uint8", write_lossy("JPEG", "L", progressive=True)),
    Sample("gray/gray.pgm", "L uint8", write_pillow("PPM", None)),
    Sample("gray/pages.tif", "L uint8", write_pages("TIFF", None)),
    Sample("gray/alpha.png", "LA uint8", write_pillow("PNG", 2)),
    Sample("palette/plain.png", "RGB uint8", write_palette("PNG", None)),
    Sample("palette/transparent.png", "RGBA uint8", write_palette("PNG", 3)),
    Sample("palette/alpha_table.png", "RGBA uint8", write_palette("PNG", bytes([0, 64, 128, 200]))),
    Sample("palette/frames.gif", "RGB uint8", write_palette("GIF", None, frames=3)),
    Sample("palette/frames_transparent.gif", "RGBA uint8", write_palette("GIF", 5, frames=2)),
    Sample("rgb/rgb.png", "RGB uint8", write_pillow("PNG", 3)),
    Sample("rgb/rgb.jpg", "RGB uint8", write_lossy("JPEG", "RGB", quality=85)),
    Sample("rgb/UPPER.JPEG", "RGB uint8", write_lossy("JPEG", "RGB", quality=95)),
    Sample("rgb/444.jpg", "RGB uint8", write_lossy("JPEG", "RGB", quality=90, subsampling=0)),
    Sample(
        "rgb/422_progressive.jpeg",
        "RGB uint8",
        write_lossy("JPEG", "RGB", quality=80, subsampling=1, progressive=True),
    ),
    Sample("cmyk/cmyk.jpg", "CMYK uint8", write_lossy("JPEG", "CMYK", quality=90)),
    Sample("cmyk/cmyk.tif", "CMYK uint8", write_cmyk("TIFF")),
    Sample("rgb/lossless.webp", "RGB uint8", write_pillow("WEBP", 3, lossless=True)),
    Sample("rgb/lossy.webp", "RGB uint8", write_lossy("WEBP", "RGB", quality=70)),
    Sample("rgb/rgb.bmp", "RGB uint8", write_pillow("BMP", 3)),
    Sample("rgb/rgb.ppm", "RGB uint8", write_pillow("PPM", 3)),
    Sample("rgb/pages.tiff", "RGB uint8", write_pages("TIFF", 3)),
    Sample("rgba/rgba.png", "RGBA uint8", write_pillow("PNG", 4)),
    Sample("rgba/rgba.webp", "RGBA uint8", write_pillow("WEBP", 4, lossless=True, exact=True)),
    Sample("deep/gray16.png", "L uint16", write_png16(None)),
    Sample("deep/gray16_pillow.png", "L uint16", write_pillow16("PNG")),
    Sample("deep/gray16.tif", "L uint16", write_pillow16("TIFF")),
    Sample("deep/gray16_pages.tif", "L uint16", write_pillow16("TIFF", pages=2)),
    Sample("deep/gray16_big_endian.tif", "L uint16", write_tiff16_big_endian),
    Sample("deep/gray16.pgm", "L uint16", write_pgm16),
    Sample("deep/alpha16.png", "LA uint16", write_png16(2)),
    Sample("deep/rgb16.png", "RGB uint16", write_png16(3)),
    Sample("deep/rgb16_pages.tif", "RGB uint16", write_tiff16_rgb_pages),
    Sample("deep/rgba16.png", "RGBA uint16", write_png16(4)),
)
LAYOUTS = sorted({s.layout for s in SAMPLES})
SCALE = {"uint8": 255, "uint16": 65535}


@dataclass(frozen=True)
class Written:
    sample: Sample
    path: Path
    native: np.ndarray  # the expected native pixels, (H, W) or (H, W, C)


def _pillow_native(path: Path) -> np.ndarray:
    """Expected native pixels of a lossy file: Pillow's decode (CMYK as Pillow's CMYK)."""
    with Image.open(path) as image:
        assert image.mode in ("L", "RGB", "CMYK"), image.mode
        return np.asarray(image)


def _check_written(sample: Sample, path: Path, expected: np.ndarray) -> None:
    """The test data is right: an independent decoder reads back what was written."""
    data = path.read_bytes()
    if sample.high_bit_depth and path.suffix == ".png":
        back = imagecodecs.png_decode(data)
    elif sample.high_bit_depth and path.suffix == ".tif":
        back = imagecodecs.tiff_decode(data, index=0)
    elif sample.high_bit_depth:  # PGM written by hand: "P5\nW H\n65535\n" + big-endian
        magic, size, maxval, raster = data.split(b"\n", 3)
        width, height = map(int, size.split())
        assert (magic, maxval) == (b"P5", b"65535")
        back = np.frombuffer(raster, ">u2").reshape(height, width).astype(np.uint16)
    else:
        with Image.open(path) as image:
            back = np.asarray(image.convert(sample.layout.split()[0]))
    np.testing.assert_array_equal(np.squeeze(back), np.squeeze(expected), err_msg=sample.name)
    assert expected.dtype == np.dtype(sample.layout.split()[1]), sample.name


def write_samples(root: Path, samples=SAMPLES, seed: int = 2024) -> list[Written]:
    rng = np.random.default_rng(seed)
    written = []
    for sample in samples:
        path = root / sample.name
        path.parent.mkdir(parents=True, exist_ok=True)
        expected = sample.write(path, rng)
        if expected is None:
            expected = _pillow_native(path)
        _check_written(sample, path, expected)
        written.append(Written(sample, path, expected))
    return written


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, list[Written]]:
    root = tmp_path_factory.mktemp("corpus")
    written = write_samples(root)
    (root / "README.txt").write_text("not an image")  # ignored by extension
    return root, written


@pytest.fixture(scope="module")
def by_layout(corpus, tmp_path_factory) -> dict[str, tuple[Path, list[Written]]]:
    """One folder per native layout, holding copies of that layout's files."""
    _, written = corpus
    groups: dict[str, tuple[Path, list[Written]]] = {}
    for layout in LAYOUTS:
        folder = tmp_path_factory.mktemp(layout.replace(" ", "_"))
        members = [w for w in written if w.sample.layout == layout]
        for w in members:
            target = folder / w.sample.name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(w.path, target)
        groups[layout] = (folder, members)
    return groups


# --- helpers -----------------------------------------------------------------------------------


def compute(source: Path, tmp_path: Path, scheduler: str, **options) -> dict:
    """A real run on the shared cluster; the document of the version it wrote."""
    out = tmp_path / f"stats-{next(_run_ids)}"
    result = compute_stats(
        JobConfig(source=str(source), out=str(out), scheduler=scheduler, **options)
    )
    assert result.written
    return dict(result.stats.document)


def pillow_reference(paths: list[Path], convert: str) -> Reference:
    """The torchvision way: Image.open(path).convert(...), pixels as Python tuples."""
    images = []
    for path in paths:
        with Image.open(path) as image, warnings.catch_warnings():
            # what torchvision users see too, for P images with a tRNS alpha table
            warnings.filterwarnings("ignore", "Palette images with Transparency", UserWarning)
            images.append(pil_pixels(image.convert(convert)))
    return reference_stats(images, 255)


def pillow_array(path: Path, convert: str) -> np.ndarray:
    with Image.open(path) as image:
        return np.asarray(image.convert(convert))


def assert_exact(doc: dict, ref: Reference) -> None:
    """Every exactness key bit-identical to the reference (integers stay integers): the
    moments, the variance, the whole histogram and every quantile."""
    got = {key: doc[key] for key in Reference.KEYS}
    assert got == ref.as_document()
    for key in ("sum", "sum_sq", "min", "max"):
        assert all(type(v) is int for v in doc[key]), key
    assert all(type(v) is float for v in (*doc["mean"], *doc["std"], *doc["variance"]))
    assert doc["variance"] == list(ref.variance)
    assert decoded_histogram(doc["histogram"]) == list(ref.histogram)
    assert doc["histogram"]["bins"] == ref.scale + 1
    assert doc["quantiles"] == {"q": list(QUANTILES), "raw": ref.quantiles()}
    assert doc["skipped"] == []
    assert doc["scale"] == ref.scale


def _paths(written: list[Written]) -> list[Path]:
    return [w.path for w in written]


# --- rgb and gray mode ---------------------------------------------------------------------------


def test_rgb_mode_every_format(corpus, tmp_path, scheduler):
    root, written = corpus
    doc = compute(root, tmp_path, scheduler, mode="rgb")
    assert_exact(doc, pillow_reference(_paths(written), "RGB"))
    assert doc["channels"] == ["R", "G", "B"]
    assert (doc["dtype"], doc["scale"], doc["mode"]) == ("uint8", 255, "rgb")
    assert doc["files"]["count"] == len(SAMPLES)
    deep = sum(s.high_bit_depth for s in SAMPLES)
    assert doc["provenance"]["high_bit_depth_images"] == deep


def test_gray_mode_every_format(corpus, tmp_path, scheduler):
    root, written = corpus
    doc = compute(root, tmp_path, scheduler, mode="gray")
    assert_exact(doc, pillow_reference(_paths(written), "L"))
    assert doc["channels"] == ["L"]
    assert (doc["dtype"], doc["scale"], doc["mode"]) == ("uint8", 255, "gray")
    assert doc["provenance"]["high_bit_depth_images"] == sum(s.high_bit_depth for s in SAMPLES)


# --- native mode ----------------------------------------------------------------------------------


@pytest.mark.parametrize("layout", LAYOUTS)
def test_native_mode_per_layout(layout, by_layout, tmp_path, scheduler):
    folder, members = by_layout[layout]
    names, dtype = layout.split()
    doc = compute(folder, tmp_path, scheduler, mode="native")
    ref = reference_stats([w.native.tolist() for w in members], SCALE[dtype])
    assert_exact(doc, ref)
    assert doc["channels"] == list(names)
    assert (doc["dtype"], doc["scale"], doc["mode"]) == (dtype, SCALE[dtype], "native")
    assert doc["image_count"] == len(members)


def test_native_keeps_16_bit_rgb_png_exactly(tmp_path, scheduler):
    """Pillow alone reads 16-bit RGB PNG as 8-bit; native mode must keep every bit."""
    rng = np.random.default_rng(16)
    arrays = []
    for i in range(3):
        pixels = rng.integers(0, 256, size=(6 + i, 9, 3), dtype=np.uint16) * 256 + 1 + i
        pixels[0, 0] = (65535, 1, 0x8000)
        arrays.append(pixels)
        (tmp_path / "src").mkdir(exist_ok=True)
        (tmp_path / "src" / f"deep{i}.png").write_bytes(imagecodecs.png_encode(pixels))
    native = compute(tmp_path / "src", tmp_path, scheduler, mode="native")
    ref = reference_stats([a.tolist() for a in arrays], 65535)
    assert_exact(native, ref)
    assert (native["dtype"], native["scale"]) == ("uint16", 65535)
    assert native["max"][0] == 65535 and native["min"][1] == 1
    by_hand = [sum(int(v) for a in arrays for v in a[..., c].flat) for c in range(3)]
    assert native["sum"] == by_hand
    # the 8-bit view of the same files loses the low byte: rgb mode numbers are different
    rgb = compute(tmp_path / "src", tmp_path, scheduler, mode="rgb")
    assert rgb["dtype"] == "uint8" and max(rgb["max"]) <= 255
    assert rgb["sum"] != native["sum"]
    assert rgb["provenance"]["high_bit_depth_images"] == 3
    assert native["provenance"]["high_bit_depth_images"] == 3


def test_native_keeps_16_bit_ppm_exactly(tmp_path, scheduler):
    """Binary PPM with maxval 65535 stores 16-bit RGB; Pillow reads it as 8-bit RGB."""
    source = tmp_path / "ppm16"
    source.mkdir()
    rng = np.random.default_rng(17)
    arrays = []
    for i in range(2):
        pixels = _u16(rng, (5 + i, 7, 3))
        height, width, _ = pixels.shape
        header = f"P6\n{width} {height}\n65535\n".encode()
        (source / f"deep{i}.ppm").write_bytes(header + pixels.astype(">u2").tobytes())
        arrays.append(pixels)
    native = compute(source, tmp_path, scheduler, mode="native")
    assert (native["channels"], native["dtype"], native["scale"]) == (
        ["R", "G", "B"],
        "uint16",
        65535,
    )
    assert_exact(native, reference_stats([a.tolist() for a in arrays], 65535))
    assert native["provenance"]["high_bit_depth_images"] == 2
    rgb = compute(source, tmp_path, scheduler, mode="rgb")  # clipped by Pillow: must be counted
    assert rgb["provenance"]["high_bit_depth_images"] == 2
    assert_exact(rgb, pillow_reference(sorted(source.iterdir()), "RGB"))


def _png_with_trns(pixels: np.ndarray) -> bytes:
    """A PNG of grey or RGB ``pixels`` (8- or 16-bit) whose first pixel's colour is keyed
    transparent by a tRNS chunk (a colour key, not an alpha channel)."""
    png = imagecodecs.png_encode(pixels)
    assert png[12:16] == b"IHDR"
    key = np.asarray(pixels[0, 0]).reshape(-1).astype(">u2").tobytes()
    chunk = b"tRNS" + key
    crc = zlib.crc32(chunk).to_bytes(4, "big")
    return png[:33] + len(key).to_bytes(4, "big") + chunk + crc + png[33:]


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
@pytest.mark.parametrize("channels", [None, 3])
def test_png_colour_key_transparency(channels, dtype, tmp_path, scheduler):
    """Grey/RGB PNGs with a tRNS colour key, next to plain ones of the same layout.

    rgb/gray follow Pillow (which keeps mode L / I;16 / RGB); native counts the stored samples,
    one layout for the folder: like Pillow for 8-bit RGB + tRNS, the key adds no channel.
    """
    source = tmp_path / "keyed"
    source.mkdir()
    rng = np.random.default_rng(23)
    make = _u8 if dtype == np.uint8 else _u16
    arrays = []
    for i in range(2):
        shape = (5 + i, 7) if channels is None else (5 + i, 7, channels)
        pixels = make(rng, shape)
        arrays.append(pixels)
        (source / f"keyed{i}.png").write_bytes(_png_with_trns(pixels))
    plain = make(rng, (6, 8) if channels is None else (6, 8, channels))
    (source / "plain.png").write_bytes(imagecodecs.png_encode(plain))
    arrays.append(plain)
    paths = sorted(source.iterdir())
    for mode, convert in (("rgb", "RGB"), ("gray", "L")):
        doc = compute(source, tmp_path, scheduler, mode=mode)
        assert_exact(doc, pillow_reference(paths, convert))
    native = compute(source, tmp_path, scheduler, mode="native")
    names = "L" if channels is None else "RGB"
    dtype_name = np.dtype(dtype).name
    assert (native["channels"], native["dtype"]) == (list(names), dtype_name)
    assert_exact(native, reference_stats([a.tolist() for a in arrays], SCALE[dtype_name]))


def _layout_counts(message: str) -> dict[str, int]:
    return {key: int(n) for key, n in re.findall(r"([A-Z]+ (?:u?int\d+|float\d+)): (\d+)", message)}


def _write_mixed(folder: Path) -> None:
    rng = np.random.default_rng(3)
    folder.mkdir()
    for i in range(3):
        Image.fromarray(_u8(rng, (5, 7, 3))).save(folder / f"rgb{i}.png")
    for i in range(2):
        Image.fromarray(_u8(rng, (6, 7))).save(folder / f"gray{i}.png")
    Image.fromarray(_u8(rng, (5, 8, 4))).save(folder / "rgba.png")
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 10)  # skipped


def test_native_mixed_layouts_fail_with_counts(tmp_path, scheduler):
    source, out = tmp_path / "mixed", tmp_path / "stats"
    _write_mixed(source)
    with pytest.raises(LayoutError) as raised:
        compute_stats(
            JobConfig(source=str(source), out=str(out), scheduler=scheduler, mode="native")
        )
    assert raised.value.exit_code == 2
    assert _layout_counts(str(raised.value)) == {"RGB uint8": 3, "L uint8": 2, "RGBA uint8": 1}
    assert not list(out.glob("v*.json")) and not (out / "latest.json").exists()
    # the same folder is fine in rgb mode: every image becomes RGB
    doc = compute(source, tmp_path, scheduler, mode="rgb")
    assert doc["image_count"] == 6
    assert [s["path"] for s in doc["skipped"]] == ["broken.png"]


def test_native_mixed_layouts_cli_exit_2(tmp_path, scheduler, imgstats):
    source, out = tmp_path / "mixed", tmp_path / "stats"
    _write_mixed(source)
    done = imgstats(
        "compute", str(source), "--out", str(out), "--mode", "native", "--scheduler", scheduler
    )
    assert done.returncode == 2, done.stderr
    errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
    assert "Traceback" not in done.stderr
    assert len(errors) == 1, done.stderr  # one clear line (skip warnings aside)
    assert _layout_counts(errors[0]) == {"RGB uint8": 3, "L uint8": 2, "RGBA uint8": 1}
    assert not list(out.glob("v*.json"))


def test_native_mixed_sample_types_fail_with_counts(tmp_path, scheduler):
    """Same channels, different sample type (8- and 16-bit grey): one layout each."""
    source = tmp_path / "depths"
    source.mkdir()
    rng = np.random.default_rng(4)
    Image.fromarray(_u8(rng, (5, 7))).save(source / "gray8.png")
    for i in range(2):
        (source / f"gray16_{i}.png").write_bytes(imagecodecs.png_encode(_u16(rng, (5, 7))))
    with pytest.raises(LayoutError) as raised:
        compute_stats(
            JobConfig(
                source=str(source), out=str(tmp_path / "stats"), scheduler=scheduler, mode="native"
            )
        )
    assert raised.value.exit_code == 2
    assert _layout_counts(str(raised.value)) == {"L uint8": 1, "L uint16": 2}


# --- 16-bit warning ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["rgb", "gray"])
def test_high_bit_depth_warning(mode, tmp_path, scheduler, caplog):
    source = tmp_path / "src"
    source.mkdir()
    rng = np.random.default_rng(5)
    (source / "a16.png").write_bytes(imagecodecs.png_encode(_u16(rng, (5, 7, 3))))
    Image.fromarray(_u16(rng, (6, 7))).save(source / "b16.tif")
    write_pgm16(source / "c16.pgm", rng)
    Image.fromarray(_u8(rng, (5, 7, 3))).save(source / "d8.png")
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        doc = compute(source, tmp_path, scheduler, mode=mode)
    assert doc["provenance"]["high_bit_depth_images"] == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("3 images" in m and "--mode native" in m for m in warnings), warnings
    paths = sorted(source.iterdir())
    assert_exact(doc, pillow_reference(paths, "RGB" if mode == "rgb" else "L"))


def test_no_high_bit_depth_warning_for_8_bit(tmp_path, scheduler, caplog):
    source = tmp_path / "src"
    source.mkdir()
    rng = np.random.default_rng(6)
    for i in range(2):
        Image.fromarray(_u8(rng, (5, 7, 3))).save(source / f"x{i}.png")
    with caplog.at_level(logging.WARNING, logger="pipeline"):
        doc = compute(source, tmp_path, scheduler, mode="rgb")
    assert doc["provenance"]["high_bit_depth_images"] == 0
    assert not [r for r in caplog.records if "--mode native" in r.getMessage()]


# --- the CIFAR-10 lesson ---------------------------------------------------------------------


def test_dataset_std_not_mean_of_per_image_stds(tmp_path, scheduler):
    """Normalize needs the std of all pixels, not the average per-image std.

    Each image is nearly one flat colour (tiny per-image std) but the colours differ a lot
    between images (large dataset std): averaging per-image stds would be off by far.
    """
    source = tmp_path / "flat"
    source.mkdir()
    rng = np.random.default_rng(10)
    arrays = []
    for i in range(8):
        base = rng.integers(10, 246, size=3)
        noise = rng.integers(-3, 4, size=(5 + i, 7 + 2 * i, 3))
        pixels = (base + noise).astype(np.uint8)
        Image.fromarray(pixels).save(source / f"flat{i}.png")
        arrays.append(pixels)
    doc = compute(source, tmp_path, scheduler, mode="rgb")
    ref = reference_stats([a.tolist() for a in arrays], 255)
    assert_exact(doc, ref)
    per_image = [reference_stats([a.tolist()], 255).std for a in arrays]
    mean_of_stds = [sum(s[c] for s in per_image) / len(per_image) for c in range(3)]
    for c in range(3):
        assert doc["std"][c] == ref.std[c]
        assert doc["std"][c] > 0.15
        assert mean_of_stds[c] < 0.01
        assert abs(doc["std"][c] - mean_of_stds[c]) > 0.1


# --- decoded arrays stay valid -------------------------------------------------------------------


def test_decoded_pixels_stay_valid(corpus):
    """Decoders may reuse buffers; arrays already handed out must keep their pixels."""
    _, written = corpus
    files = [w for w in written if w.path.suffix.lower() in (".jpg", ".jpeg", ".png")]
    files = files + files[::-1]  # larger and smaller images after each other, twice
    for mode, convert in (("rgb", "RGB"), ("gray", "L")):
        with warnings.catch_warnings():  # Pillow's note on P + alpha table, as torchvision's
            warnings.filterwarnings("ignore", "Palette images with Transparency", UserWarning)
            kept = [(w.path, decode(w.path.read_bytes(), mode)) for w in files]
            expected_pixels = {w.path: pillow_array(w.path, convert) for w in files}
        for path, decoded in kept:
            expected = expected_pixels[path]
            got = decoded.pixels if convert == "RGB" else decoded.pixels[:, :, 0]
            np.testing.assert_array_equal(got, expected, err_msg=f"{mode} {path.name}")
