"""Transforms: the statistics of the pixels as the model sees them, after torchvision's
``Resize`` and ``CenterCrop`` on the PIL image, and after a function of the user's.

torchvision is not installed here: the reference below implements its documented rules
itself, independently of pipeline/decode/transform.py: the output size with exact integer
arithmetic, the crop as a zero canvas and numpy slicing, the half-to-even offset with
``divmod``. Only the resampling itself is Pillow's, as in torchvision.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from pipeline import JobConfig, compute_stats
from pipeline.cli.show import format_stats
from pipeline.core.transform import INTERPOLATIONS, Transform
from pipeline.decode import decode
from pipeline.decode.transform import apply, center_crop, resize
from pipeline.errors import InputError, UsageError
from pipeline.store.document import Stats

from conftest import one_error_line
from reference import QUANTILES, decoded_histogram, reference_stats

#: torchvision's InterpolationMode -> Pillow filter (torchvision's ``pil_modes_mapping``).
PILLOW_FILTERS = {
    "nearest": Image.Resampling.NEAREST,
    "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC,
    "lanczos": Image.Resampling.LANCZOS,
    "box": Image.Resampling.BOX,
    "hamming": Image.Resampling.HAMMING,
}
#: (width, height): squares, portraits, landscapes, odd and even, 1-pixel strips.
SIZES = [(1, 1), (1, 9), (9, 1), (2, 3), (3, 2), (7, 7), (8, 8), (8, 13), (13, 8), (10, 31),
         (31, 10), (24, 17), (17, 24), (50, 37), (37, 50), (64, 63), (99, 100)]
_runs = itertools.count()


# --- the reference: torchvision's documented rules ---------------------------------------------


def reference_size(width: int, height: int, size: int) -> tuple[int, int]:
    """Resize(size): the shorter side to size, the longer to int(size * long / short)."""
    if width <= height:
        return size, (size * height) // width
    return (size * width) // height, size


def reference_resize(image: Image.Image, size: int, interpolation: str) -> Image.Image:
    new = reference_size(*image.size, size)
    return image if new == image.size else image.resize(new, PILLOW_FILTERS[interpolation])


def _crop_axis(size: int, crop: int) -> tuple[int, int, int]:
    """(where the image lands in the output, where the output starts in the image, length)."""
    if crop > size:  # zero padding: (crop - size) // 2 before, the rest after
        return (crop - size) // 2, 0, size
    half, odd = divmod(size - crop, 2)
    start = half + 1 if odd and half % 2 == 1 else half  # round(half + 0.5): to even
    return 0, start, crop


def reference_crop(pixels: np.ndarray, crop: tuple[int, int]) -> np.ndarray:
    """CenterCrop((h, w)) of (H, W, C) pixels: a zero canvas with the centred window."""
    (dy, sy, ly), (dx, sx, lx) = _crop_axis(pixels.shape[0], crop[0]), _crop_axis(
        pixels.shape[1], crop[1])
    out = np.zeros((*crop, pixels.shape[2]), pixels.dtype)
    out[dy : dy + ly, dx : dx + lx] = pixels[sy : sy + ly, sx : sx + lx]
    return out


def hwc(image: Image.Image) -> np.ndarray:
    pixels = np.asarray(image)
    return pixels[:, :, None] if pixels.ndim == 2 else pixels


def reference_pixels(image: Image.Image, resize_to: int | None, crop: tuple[int, int] | None,
                     interpolation: str = "bilinear") -> np.ndarray:
    if resize_to is not None:
        image = reference_resize(image, resize_to, interpolation)
    pixels = hwc(image)
    return reference_crop(pixels, crop) if crop is not None else pixels


def gradient(width: int, height: int, mode: str = "RGB", seed: int = 0) -> Image.Image:
    """Random samples with a gradient (so that any offset or flip shows)."""
    rng = np.random.default_rng([seed, width, height])
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (height, width), dtype=np.uint16))
    if mode == "F":
        return Image.fromarray(rng.random((height, width), dtype=np.float32))
    channels = len(mode)
    base = np.add.outer(np.arange(height) * 3, np.arange(width) * 5)[:, :, None] % 200
    noise = rng.integers(0, 56, (height, width, channels))
    pixels = (base + noise).astype(np.uint8)
    return Image.fromarray(pixels[:, :, 0] if channels == 1 else pixels)


# --- the rules, image by image -------------------------------------------------------------------


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_resize_follows_torchvision_on_every_size(interpolation):
    for (width, height), size in itertools.product(SIZES, (1, 4, 7, 16, 33, 64)):
        image = gradient(width, height)
        got = resize(image, size, interpolation)
        expected = reference_resize(image, size, interpolation)
        assert got.size == expected.size == reference_size(width, height, size)
        assert min(got.size) == size
        assert np.array_equal(np.asarray(got), np.asarray(expected)), (width, height, size)


def test_resize_to_the_same_size_leaves_the_image_alone():
    image = gradient(24, 17)
    assert resize(image, 17, "lanczos") is image


@pytest.mark.parametrize("mode", ["L", "LA", "RGB", "RGBA", "I;16", "F"])
def test_center_crop_follows_torchvision(mode):
    crops = [(1, 1), (5, 5), (8, 8), (7, 12), (12, 7), (13, 13), (40, 3), (3, 40), (64, 80)]
    for (width, height), crop in itertools.product(SIZES, crops):
        image = gradient(width, height, mode)
        got = center_crop(image, crop)
        assert got.mode == image.mode and got.size == (crop[1], crop[0])
        assert np.array_equal(hwc(got), reference_crop(hwc(image), crop)), (width, height, crop)


def test_odd_differences_round_half_to_even():
    """(size - crop) / 2 = 1.5, 2.5, 3.5 start the crop at 2, 2, 4 (Python's round)."""
    for width, start in ((11, 2), (13, 2), (15, 4), (12, 2), (14, 3)):
        columns = np.tile(np.arange(width, dtype=np.uint8), (4, 1))
        cropped = np.asarray(center_crop(Image.fromarray(columns), (4, 8)))
        assert cropped[0, 0] == start == _crop_axis(width, 8)[1], width


def test_a_larger_crop_pads_with_zeros_left_and_top_first():
    image = Image.fromarray(np.full((3, 4), 200, np.uint8))
    out = np.asarray(center_crop(image, (6, 9)))  # 3 rows, 5 columns of padding
    assert (out[1:4, 2:6] == 200).all() and out.sum() == 200 * 12
    assert (out[0] == 0).all() and (out[4:] == 0).all()
    assert (out[:, :2] == 0).all() and (out[:, 6:] == 0).all()


def test_8_bit_rgb_resized_per_channel_is_pillows_rgb_resize():
    """Why 16-bit RGB may be resized channel by channel: it is what Pillow does for 8-bit."""
    image = gradient(37, 50)
    for interpolation in INTERPOLATIONS:
        whole = hwc(resize(image, 21, interpolation))
        planes = np.stack([np.asarray(resize(p, 21, interpolation)) for p in image.split()], -1)
        assert np.array_equal(whole, planes), interpolation


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=85)
    return buffer.getvalue()


@pytest.mark.parametrize("interpolation", INTERPOLATIONS)
def test_decoded_then_transformed_is_the_torchvision_pipeline(interpolation):
    """Through the real decoders (JPEG and PNG fast paths, Pillow), in every mode: the same
    pixels as torchvision's loader + Resize + CenterCrop on ``Image.open(f).convert(...)``."""
    cases = [(resize_to, crop) for resize_to in (None, 9, 20) for crop in (None, (9, 9), (16, 25))
             if resize_to or crop]
    for (width, height), (resize_to, crop) in itertools.product(
        [(13, 8), (17, 24), (31, 10), (50, 37)], cases
    ):
        source = gradient(width, height, "RGB", seed=width)
        spec = Transform.parse(resize_to, None if crop is None else f"{crop[0]}x{crop[1]}",
                               interpolation)
        assert spec is not None
        for data, mode, convert in ((_png(source), "rgb", "RGB"), (_jpeg(source), "rgb", "RGB"),
                                    (_jpeg(source), "gray", "L"), (_png(source), "gray", "L")):
            got = apply(decode(data, mode), spec)
            with Image.open(io.BytesIO(data)) as opened:
                expected = reference_pixels(opened.convert(convert), resize_to, crop,
                                            interpolation)
            assert np.array_equal(got.pixels, expected), (width, height, resize_to, crop, mode)
            assert got.channels == convert


def test_native_layouts_are_transformed_as_pillow_holds_them():
    """RGBA and LA as Pillow resizes them (alpha premultiplied), 16-bit gray as I;16, 16-bit
    RGB channel by channel (Pillow has no 16-bit RGB mode)."""
    spec = Transform.parse(11, "9x14", "bicubic")
    assert spec is not None
    for mode in ("RGBA", "LA"):
        image = gradient(23, 17, mode)
        got = apply(decode(_png(image), "native"), spec)
        assert got.channels == mode
        assert np.array_equal(got.pixels, reference_pixels(image, 11, (9, 14), "bicubic"))
    gray16 = gradient(23, 17, "I;16")
    got = apply(decode(_png(gray16), "native"), spec)
    assert got.pixels.dtype == np.uint16 and got.channels == "L"
    assert np.array_equal(got.pixels, reference_pixels(gray16, 11, (9, 14), "bicubic"))
    rgb16 = np.random.default_rng(5).integers(0, 65536, (17, 23, 3), dtype=np.uint16)
    got = apply(decode(imagecodecs.png_encode(rgb16), "native"), spec)
    planes = [reference_pixels(Image.fromarray(np.ascontiguousarray(rgb16[:, :, c])), 11,
                               (9, 14), "bicubic") for c in range(3)]
    assert got.channels == "RGB" and np.array_equal(got.pixels, np.concatenate(planes, -1))


# --- options -------------------------------------------------------------------------------------


@pytest.mark.parametrize("options,words", [
    ({"resize": 0}, "resize must be a positive"),
    ({"center_crop": "0"}, "at least 1x1"),
    ({"center_crop": "224x"}, "N or HxW"),
    ({"center_crop": "wide"}, "N or HxW"),
    ({"interpolation": "cubic"}, "interpolation must be one of"),
    ({"transform": "no_colon"}, "MODULE:NAME"),
    ({"transform": "a b:c"}, "MODULE:NAME"),
])
def test_bad_transform_options_are_usage_errors(options, words):
    with pytest.raises(UsageError, match=words):
        JobConfig(source="/data", out="/stats", **options)


def test_transform_options_from_yaml_values():
    config = JobConfig.from_mapping({"source": "a", "out": "b", "resize": 256, "center_crop": 224,
                                     "interpolation": "bicubic"})
    assert config.transform_spec == Transform(256, (224, 224), "bicubic")
    assert JobConfig(source="a", out="b", center_crop="224x200").transform_spec == Transform(
        None, (224, 200), None)
    assert JobConfig(source="a", out="b", interpolation="nearest").transform_spec is None
    with pytest.raises(UsageError, match="unknown key 'transform_sha256'"):
        JobConfig.from_mapping({"source": "a", "out": "b", "transform_sha256": "00"})


# --- runs ----------------------------------------------------------------------------------------


def write_corpus(root: Path) -> list[Path]:
    """PNGs and JPEGs of many sizes and aspect ratios, some smaller than the crops."""
    paths = []
    for i, (width, height) in enumerate([(40, 30), (30, 40), (17, 17), (64, 21), (9, 12),
                                         (25, 26), (8, 50), (33, 20)]):
        image = gradient(width, height, "RGB", seed=100 + i)
        path = root / f"c{i % 2}" / f"{i:02d}.{'png' if i % 3 else 'jpg'}"
        path.parent.mkdir(parents=True, exist_ok=True)
        image.save(path, quality=90) if path.suffix == ".jpg" else image.save(path)
        paths.append(path)
    return paths


def compute(root: Path, tmp_path: Path, scheduler: str, **options) -> dict:
    out = tmp_path / f"stats-{next(_runs)}"
    result = compute_stats(JobConfig(source=str(root), out=str(out), scheduler=scheduler,
                                     **options))
    assert result.written
    return dict(result.stats.document)


def assert_exact(doc: dict, images: list[np.ndarray], scale: int = 255) -> None:
    """Every statistic bit-identical to the reference over these pixels."""
    ref = reference_stats([p.tolist() for p in images], scale)
    assert {key: doc[key] for key in ref.KEYS} == ref.as_document()
    assert doc["variance"] == list(ref.variance)
    assert decoded_histogram(doc["histogram"]) == list(ref.histogram)
    assert doc["quantiles"] == {"q": list(QUANTILES), "raw": ref.quantiles()}


@pytest.mark.parametrize("resize_to,crop,interpolation", [
    (20, "18x25", "bilinear"),  # the crop wider than some resized images: padding
    (13, "16", "lanczos"),  # the crop larger than every resized image in one side at least
    (None, "30x7", "bilinear"),  # a crop alone (interpolation means nothing)
])
def test_a_run_is_exact_over_the_transformed_pixels(resize_to, crop, interpolation, tmp_path,
                                                     scheduler):
    root = tmp_path / "images"
    paths = write_corpus(root)
    doc = compute(root, tmp_path, scheduler, resize=resize_to, center_crop=crop,
                  interpolation=interpolation, group_by="dir")
    size = Transform.parse(None, crop).crop  # type: ignore[union-attr]
    expected = {}
    for path in paths:
        with Image.open(path) as image:
            expected[path] = reference_pixels(image.convert("RGB"), resize_to, size,
                                              interpolation)
    assert_exact(doc, list(expected.values()))
    for group in ("c0", "c1"):
        assert_exact(doc["groups"][group], [p for k, p in expected.items() if k.parent.name ==
                                            group])
    assert doc["pixel_count"] == len(paths) * size[0] * size[1]
    assert doc["transform"] == {
        "resize": resize_to, "center_crop": list(size),
        "interpolation": interpolation if resize_to else None, "function": None,
        "function_sha256": None,
    }
    described = ((f"Resize({resize_to}, interpolation={interpolation}), " if resize_to else "")
                 + f"CenterCrop(({size[0]}, {size[1]}))")
    assert doc["provenance"]["transform"].startswith(described + ": torchvision's rules")
    assert f"\ntransform {described}\n" in format_stats(Stats.from_document(doc))


def test_functions_of_the_user(tmp_path, scheduler):
    """A PIL image out (another layout), an integer array out (another sample type), a
    function that fails and one that returns floats: each file skipped with the reason."""
    import user_transforms

    root = tmp_path / "images"
    paths = write_corpus(root)
    originals = []
    for path in paths:
        with Image.open(path) as image:
            originals.append(image.convert("RGB"))
    gray = compute(root, tmp_path, scheduler, resize=16, center_crop="12x20",
                   transform="user_transforms:mirror_gray", decode_timeout=0)
    assert gray["channels"] == ["L"]
    assert_exact(gray, [hwc(user_transforms.mirror_gray(Image.fromarray(
        reference_pixels(image, 16, (12, 20))))) for image in originals])
    digest = hashlib.sha256(Path(user_transforms.__file__).read_bytes()).hexdigest()
    assert gray["transform"]["function"] == "user_transforms:mirror_gray"
    assert gray["transform"]["function_sha256"] == digest
    wide = compute(root, tmp_path, scheduler, transform="user_transforms:widen_to_16_bit",
                   decode_timeout=0)
    assert (wide["dtype"], wide["scale"], wide["histogram"]["bins"]) == ("uint16", 65535, 65536)
    assert_exact(wide, [user_transforms.widen_to_16_bit(image) for image in originals], 65535)
    for name, reason in (("broken", "failed: RuntimeError: this function always fails"),
                         ("returns_floats", "returned float64 samples")):
        with pytest.raises(InputError, match=f"none of the {len(paths)} .*{reason}"):
            compute(root, tmp_path, scheduler, transform=f"user_transforms:{name}",
                    decode_timeout=0)


def test_a_function_that_cannot_be_loaded_fails_before_the_run(tmp_path, imgstats):
    root = tmp_path / "images"
    write_corpus(root)
    out = tmp_path / "st"
    for spec, words in (("user_transforms:nothing", "has no nothing"),
                        ("user_transforms:np", "is not callable")):
        with pytest.raises(UsageError, match=words):  # before any listing or cluster
            compute_stats(JobConfig(source=str(root), out=str(out), scheduler="tcp://0:1",
                                    transform=spec))
    done = imgstats("compute", str(root), "--out", str(out), "--transform", "no_such_module:f")
    assert "cannot import no_such_module" in one_error_line(done, 2, empty_stdout=True)
    assert not out.exists()


def content(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in {"version", "parent", "created", "run",
                                                       "record"}}


def test_incremental_runs_keep_the_transform_and_a_new_one_is_a_full_run(tmp_path, scheduler):
    root = tmp_path / "images"
    paths = write_corpus(root)
    out = tmp_path / "st"
    options = {"resize": 20, "center_crop": "18x25", "interpolation": "hamming"}

    def run(**changes):
        config = JobConfig(source=str(root), out=str(out), scheduler=scheduler,
                           **{**options, **changes})
        return compute_stats(config)

    run()
    gradient(44, 19, "RGB", seed=7).save(root / "c0" / "new.png")
    paths[3].unlink()
    second = run()
    doc = dict(second.stats.document)
    assert doc["run"]["incremental"] is True and doc["run"]["files_read"] == 1
    assert content(doc) == content(compute(root, tmp_path, scheduler, **options))
    assert not run().written  # nothing changed, same transform
    for change in ({"center_crop": "18x24"}, {"interpolation": "box"}, {"resize": None}):
        again = run(**change)
        assert again.written and again.stats.document["run"]["incremental"] is False, change
        assert again.stats.document["run"]["files_read"] == len(paths)
        options.update(change)


def test_a_changed_function_is_a_full_run_even_on_a_warm_cluster(tmp_path, scheduler,
                                                                   monkeypatch):
    """The function's source is pinned: edited between runs, the same long-lived workers
    import it again, the run reads every file and counts what the new code gives; workers
    that hold other code than the client skip every file, saying so."""
    from distributed import Client

    module = f"tweak_{tmp_path.name.replace('-', '_')}"
    code = tmp_path / "code"
    code.mkdir()
    source = code / f"{module}.py"
    body = "from PIL import ImageOps\n\ndef change(image):\n    return {}\n"
    source.write_text(body.format("ImageOps.invert(image)"))
    monkeypatch.syspath_prepend(str(code))
    with Client(scheduler) as client:
        client.run(lambda: sys.path.insert(0, str(code)))  # as the workers' installed code
    root = tmp_path / "images"
    paths = write_corpus(root)
    originals = []
    for path in paths:
        with Image.open(path) as image:
            originals.append(image.convert("RGB"))
    out = tmp_path / "st"

    def run() -> dict:
        config = JobConfig(source=str(root), out=str(out), scheduler=scheduler,
                           transform=f"{module}:change", decode_timeout=0)
        return dict(compute_stats(config).stats.document)

    first = run()
    assert_exact(first, [255 - hwc(image) for image in originals])
    source.write_text(body.format("ImageOps.posterize(image, 2)"))
    second = run()
    assert second["run"]["incremental"] is False and second["run"]["files_read"] == len(paths)
    assert second["transform"]["function_sha256"] == hashlib.sha256(
        source.read_bytes()).hexdigest() != first["transform"]["function_sha256"]
    assert_exact(second, [hwc(image) & 0b11000000 for image in originals])
    # the client now sees other code than the workers' sys.path gives them
    other = tmp_path / "other"
    other.mkdir()
    (other / f"{module}.py").write_text(body.format("image"))
    monkeypatch.syspath_prepend(str(other))
    sys.modules.pop(module, None)
    with pytest.raises(InputError, match="is not the client's"):
        run()


@pytest.mark.slow  # a local cluster of its own: ~13 s
def test_the_cli_imports_the_function_from_the_current_folder_in_its_sandboxes(tmp_path):
    """As a user runs it: ``--transform mymodule:fn`` beside the data, a local cluster whose
    workers decode in sandbox processes (the default), which import it from there too."""
    (tmp_path / "mymodule.py").write_text(textwrap.dedent("""
        from PIL import ImageOps

        def fn(image):
            return ImageOps.flip(image)
    """))
    root = tmp_path / "images"
    paths = write_corpus(root)
    done = subprocess.run(
        [sys.executable, "-m", "pipeline", "compute", "images", "--out", "st", "--workers", "1",
         "--resize", "12", "--transform", "mymodule:fn"],
        cwd=tmp_path, capture_output=True, text=True, timeout=180,
        env={k: v for k, v in os.environ.items() if k != "DASK_SCHEDULER_ADDRESS"},
    )
    assert done.returncode == 0, done.stderr
    doc = json.loads((tmp_path / "st" / "latest.json").read_text())
    flipped = []
    for path in paths:
        with Image.open(path) as image:
            flipped.append(reference_pixels(image.convert("RGB"), 12, None)[::-1])
    assert_exact(doc, flipped)
    assert doc["transform"]["function"] == "mymodule:fn"
