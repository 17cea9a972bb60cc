"""Benchmark imgstats against torchvision's decode-only loader, side by side, on the same files.

    python scripts/bench.py                       # 4,000 JPEGs + 20,000 PNGs, about 2 minutes
    python scripts/bench.py --jpegs 20000 --pngs 50000   # the issue's full-size goals
    python scripts/bench.py --folder DIR [--folder DIR2]  # your own image folders
    python scripts/bench.py --jpegs 0 --pngs 0 --big      # one 8,000 x 8,000 JPEG (memory)
    python scripts/bench.py --pngs 0 --resize 256 --center-crop 224   # what a transform costs

For every corpus, in one run, with the same number of processes (``--processes``, 2):

- ``baseline``: torchvision's default loader, decode only: ``Image.open(path).convert("RGB")``
  and ``np.asarray``, nothing else, in a ``multiprocessing.Pool``;
- ``imgstats``: :func:`pipeline.compute_stats` as ``imgstats compute`` runs it (its own
  LocalCluster of N workers x 1 thread, listing, sharding, store write: the whole wall time).

The table gives images/s, MP/s, the ratio of wall times (imgstats / baseline: below 1 is faster),
the share of worker task time spent counting the exact histogram and decoding (and the first
over the second: the histogram's cost as a share of decode time), the per-file record's size per
file, the peak RSS of each process, and the exactness verdict: imgstats' count, sum, sum_sq, min,
max, mean, std, variance and whole histogram against an exact answer computed here from
Pillow's own per-channel histograms (``Image.histogram()``) with Python integers and
``fractions``/``decimal`` (no NumPy, no imgstats code).

With ``--resize``/``--center-crop``, imgstats runs twice on each corpus, without and with the
transform (the reference applies torchvision's rules itself, independently of imgstats), and
the probe times the transform in the workers: its CPU per image and share of task time.

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
sys.path.append(str(ROOT))  # after PYTHONPATH: another checkout of pipeline can be measured

IMAGE_SUFFIXES = {
    ".jpg",
    ".jpeg",
    ".png",
    ".bmp",
    ".gif",
    ".tif",
    ".tiff",
    ".webp",
    ".ppm",
    ".pgm",
    ".pbm",
}
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


# --- the exact reference: Pillow's histograms, Python integers -------------------------------


FILTERS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
           "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
           "box": Image.Resampling.BOX, "hamming": Image.Resampling.HAMMING}


def torchvision_transform(image: Image.Image, transform: dict[str, Any]) -> Image.Image:
    """torchvision's Resize(N) and CenterCrop((h, w)) of a PIL image, by their documented
    rules (no imgstats code): Pillow's crop fills outside the image with zeros."""
    if transform.get("resize"):
        size, (width, height) = transform["resize"], image.size
        short, long = min(width, height), max(width, height)
        new = (size, int(size * long / short))
        new = new if width <= height else new[::-1]
        if new != image.size:
            image = image.resize(new, FILTERS[transform.get("interpolation", "bilinear")])
    if transform.get("center_crop"):
        text = str(transform["center_crop"])
        crop_height, crop_width = (int(v) for v in (text.split("x") * 2)[:2])
        width, height = image.size
        left = -((crop_width - width) // 2) if crop_width > width else round(
            (width - crop_width) / 2)
        top = -((crop_height - height) // 2) if crop_height > height else round(
            (height - crop_height) / 2)
        image = image.crop((left, top, left + crop_width, top + crop_height))
    return image


def _histogram_chunk(task: tuple[Sequence[str], dict[str, Any]]) -> tuple[int, list[int]]:
    """Images and the summed per-channel 256-bin histograms of ``convert("RGB")`` (then the
    transform)."""
    paths, transform = task
    total = [0] * 768
    for path in paths:
        with Image.open(path) as image:
            histogram = torchvision_transform(image.convert("RGB"), transform).histogram()
        total = [a + b for a, b in zip(total, histogram, strict=True)]
    return len(paths), total


def reference(
    paths: Sequence[Path], pool: Any, chunk: int, transform: dict[str, Any] | None = None
) -> dict[str, Any]:
    """Exact count, sum, sum_sq, min, max, mean, std, variance and the histogram itself from
    Pillow's RGB histograms (of the transformed images)."""
    images, histogram = 0, [0] * 768
    tasks = [(part, transform or {}) for part in _chunks(paths, chunk)]
    for count, part in pool.imap_unordered(_histogram_chunk, tasks):
        images += count
        histogram = [a + b for a, b in zip(histogram, part, strict=True)]
    channels = [histogram[256 * c : 256 * (c + 1)] for c in range(3)]
    n = sum(channels[0])
    sums = [sum(v * h for v, h in enumerate(ch)) for ch in channels]
    squares = [sum(v * v * h for v, h in enumerate(ch)) for ch in channels]
    with localcontext() as context:
        context.prec = 120
        std = [
            float(Decimal(n * q - s * s).sqrt() / Decimal(n * 255))
            for s, q in zip(sums, squares, strict=True)
        ]
    return {
        "image_count": images,
        "pixel_count": n,
        "sum": sums,
        "sum_sq": squares,
        "min": [min(v for v, h in enumerate(ch) if h) for ch in channels],
        "max": [max(v for v, h in enumerate(ch) if h) for ch in channels],
        "mean": [float(Fraction(s, n * 255)) for s in sums],
        "std": std,
        "variance": [float(Fraction(n * q - s * s, (n * 255) ** 2))
                     for s, q in zip(sums, squares, strict=True)],
        "histogram": {"bins": 256, "encoding": "dense", "counts": channels},
    }


def _chunks(paths: Sequence[Path], size: int) -> list[list[str]]:
    return [[str(p) for p in paths[i : i + size]] for i in range(0, len(paths), size)]


# --- the baseline: torchvision's default loader, decode only ---------------------------------


def _baseline_chunk(paths: Sequence[str]) -> tuple[int, int, int, int]:
    """torchvision's ``default_loader`` + ``np.asarray``, nothing else.

    Returns (pid, images, pixels, peak RSS in KB).
    """
    pixels = 0
    for path in paths:
        with open(path, "rb") as f:
            array = np.asarray(Image.open(f).convert("RGB"))
        pixels += array.shape[0] * array.shape[1]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return os.getpid(), len(paths), pixels, peak


def run_baseline(paths: Sequence[Path], context: Any, processes: int, chunk: int) -> dict[str, Any]:
    """Wall time of the decode-only loop over ``paths`` in a Pool (pool start-up included)."""
    started = time.perf_counter()
    peaks: dict[int, int] = {}
    images = pixels = 0
    with context.Pool(processes) as pool:
        for pid, count, npix, peak in pool.imap_unordered(_baseline_chunk, _chunks(paths, chunk)):
            images += count
            pixels += npix
            peaks[pid] = max(peaks.get(pid, 0), peak)
    wall = time.perf_counter() - started
    return {"wall": wall, "images": images, "pixels": pixels, "peak_rss_mb": _mb(peaks.values())}


def _mb(kilobytes: Iterable[int]) -> list[float]:
    return sorted(round(k / 1024, 1) for k in kilobytes)


# --- imgstats, instrumented in its workers ---------------------------------------------------

#: The probe, loaded in every worker (a ``distributed.worker.preload``) and every decode
#: sandbox child (as ``sitecustomize``, found through PYTHONPATH, which the worker hands on):
#: times decode and histogram calls, samples resident memory while an image is decoded
#: (``ru_maxrss`` would not do: it keeps the peak of the forked parent from before the
#: worker's exec), and writes the figures to OUT/<role>-PID.json every 64 images and when the
#: process ends (a sandbox is killed with its worker: it may not reach its end).
PROBE = """
import atexit, json, os, resource, time

_stats = {"pid": os.getpid(), "decode": 0.0, "decode_cpu": 0.0, "moments": 0.0, "images": 0,
          "transform_cpu": 0.0, "transformed": 0}
_PAGE = resource.getpagesize()


def _rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * _PAGE


def write():
    path = os.path.join(OUT, "%s-%d.json" % (_stats["role"], os.getpid()))
    with open(path + ".tmp", "w") as f:
        json.dump(_stats, f)
    os.replace(path + ".tmp", path)  # a reader never sees half a file


def install(role):
    import pipeline.run.scan as scan

    _stats["role"] = role
    decode, from_pixels = scan.decode, scan.summarize
    clock = time.perf_counter

    def timed_decode(*args, **kwargs):
        started, cpu = clock(), time.thread_time()
        try:
            return decode(*args, **kwargs)
        finally:
            _stats["decode"] += clock() - started
            _stats["decode_cpu"] += time.thread_time() - cpu

    def timed_from_pixels(pixels):
        if pixels.size <= 8 * 8 * 4:  # the sandbox's warm-up (loads the compiled kernels)
            return from_pixels(pixels)
        if pixels.nbytes > 2**22 or _stats["images"] % 16 == 0:
            _stats["peak_rss"] = max(_stats["peak_rss"], _rss())
        started = clock()
        try:
            return from_pixels(pixels)
        finally:
            elapsed = clock() - started
            if not _stats["images"]:
                _stats["first_moments"] = elapsed  # includes loading the compiled kernel
            _stats["moments"] += elapsed
            _stats["images"] += 1
            if _stats["images"] % 64 == 0:
                write()

    transform = getattr(scan, "apply_transform", None)

    def timed_transform(*args, **kwargs):
        cpu = time.thread_time()
        try:
            return transform(*args, **kwargs)
        finally:
            _stats["transform_cpu"] += time.thread_time() - cpu
            _stats["transformed"] += 1

    scan.decode, scan.summarize = timed_decode, timed_from_pixels
    if transform is not None:
        scan.apply_transform = timed_transform
    _stats["start_rss"] = _stats["peak_rss"] = _rss()
    atexit.register(write)
"""

PRELOAD = """
import os, sys
sys.path.insert(0, OUT)
import imgstats_bench_probe as probe


def dask_setup(worker):
    os.environ["PYTHONPATH"] = os.pathsep.join(filter(None, [OUT, os.environ.get("PYTHONPATH")]))
    os.environ["IMGSTATS_BENCH_PROBE"] = "1"
    probe.install("worker")


def dask_teardown(worker):
    probe._stats["end_rss"] = probe._rss()
    probe.write()
"""

SITECUSTOMIZE = """
import os
if os.environ.get("IMGSTATS_BENCH_PROBE") == "1":
    import imgstats_bench_probe
    imgstats_bench_probe.install("sandbox")
"""


def run_imgstats(folder: Path, workers: int, scratch: Path, **options: Any) -> dict[str, Any]:
    """``imgstats compute folder`` via :func:`pipeline.compute_stats`.

    Returns the wall time, the written stats document and, over the workers, the decode and
    moments seconds and the peak RSS of each.
    """
    import dask

    from pipeline import JobConfig, compute_stats

    run_dir = Path(tempfile.mkdtemp(dir=scratch))
    out = f"OUT = {str(run_dir)!r}\n"
    (run_dir / "imgstats_bench_probe.py").write_text(out + PROBE)
    (run_dir / "sitecustomize.py").write_text(SITECUSTOMIZE)
    preload = run_dir / "bench_preload.py"
    preload.write_text(out + PRELOAD)
    config = JobConfig(
        source=str(folder),
        out=str(run_dir / "stats"),
        workers=workers,
        threads_per_worker=1,
        quiet=True,
        **options,
    )
    with dask.config.set({"distributed.worker.preload": [str(preload)]}):
        started = time.perf_counter()
        result = compute_stats(config)
        wall = time.perf_counter() - started
    document = json.loads(Path(result.url).read_text())
    sandboxed = config.decode_timeout > 0
    reports: list[dict[str, Any]] = []
    for _ in range(100):  # written as the processes end, when the cluster closes
        reports = [json.loads(p.read_text()) for p in run_dir.glob("*-*.json")]
        if len(reports) >= workers * (1 + sandboxed):
            break
        time.sleep(0.1)
    task_seconds = document["run"]["task_seconds"]
    manifest = run_dir / "stats" / str(document.get("record"))
    # a fresh store: every segment is this version's
    segments = (run_dir / "stats" / "segments").rglob("*")
    record_bytes = sum(p.stat().st_size for p in segments if p.is_file())
    first = [round(r.get("first_moments", 0.0), 2) for r in reports]
    decode_cpu = sum(r["decode_cpu"] for r in reports)
    moments = sum(r["moments"] for r in reports)
    decode = sum(r["decode"] for r in reports)
    transformed = sum(r.get("transformed", 0) for r in reports)
    transform_cpu = sum(r.get("transform_cpu", 0.0) for r in reports)
    return {
        "wall": wall,
        "images": document["image_count"],
        "pixels": document["pixel_count"],
        "document": document,
        "task_seconds": task_seconds,
        "moments_share": moments / task_seconds if task_seconds else float("nan"),
        "decode_share": decode / task_seconds if task_seconds else float("nan"),
        "histogram_vs_decode": moments / decode if decode else float("nan"),
        "record_bytes_per_file": (record_bytes + manifest.stat().st_size)
        / document["files"]["count"] if manifest.is_file() else float("nan"),
        "peak_rss_mb": {
            role: _mb(r["peak_rss"] // 1024 for r in reports if r["role"] == role)
            for role in ("worker", "sandbox")
        },
        "start_rss_mb": _mb(r["start_rss"] // 1024 for r in reports),
        "shards": document["run"].get("shards"),
        "first_moments": first,
        "decode_wall_vs_cpu": (decode, decode_cpu),
        "transform_us_per_image": transform_cpu / transformed * 1e6 if transformed else None,
        "transform_share": transform_cpu / task_seconds if task_seconds else float("nan"),
        "decode_cpu_us_per_image": decode_cpu / document["image_count"] * 1e6,
    }


def verdict(document: dict[str, Any], expected: dict[str, Any]) -> str:
    """``exact``, or the keys whose values differ from the reference."""
    wrong = [key for key, value in expected.items() if document.get(key) != value]
    return "exact" if not wrong else "WRONG: " + ", ".join(wrong)


# --- in-process profile of one shard ----------------------------------------------------------


def profile_scan(folder: Path, files: int, transform: dict[str, Any] | None = None) -> str:
    """cProfile of :func:`pipeline.run.scan.scan_shard` over the first ``files`` files as one
    shard, in this process (after a warm-up pass): CPU per file, shares of the main steps, top
    functions; with ``transform``, also the CPU per file with it, best of 3 interleaved."""
    import cProfile
    import io
    import pstats

    from pipeline.config import ScanOptions
    from pipeline.core.files import Shard
    from pipeline.fs.listing import iter_images
    from pipeline.fs.location import resolve
    from pipeline.run.scan import scan_shard

    location = resolve(str(folder), {})
    entries = list(iter_images(location.filesystem(), location.path))[:files]
    shard = Shard(0, tuple(entries))
    options = ScanOptions("rgb")
    scan_shard(location, shard, options)  # warm-up: page cache, imports, compiled kernel
    started = time.process_time()
    scan_shard(location, shard, options)
    cpu = time.process_time() - started
    transformed = ""
    if transform:
        from pipeline.config import JobConfig

        shaped = JobConfig(source=".", out=".", **transform).scan_options
        best = {"without": float("inf"), "with": float("inf")}
        for _ in range(3):
            for name, opts in (("without", options), ("with", shaped)):
                started = time.process_time()
                scan_shard(location, shard, opts)
                best[name] = min(best[name], time.process_time() - started)
        per_file = {name: value / len(entries) * 1e6 for name, value in best.items()}
        transformed = (
            f"\nscan_shard CPU per file, best of 3 interleaved: {per_file['without']:.0f} us "
            f"without, {per_file['with']:.0f} us with {transform}: the transform costs "
            f"{per_file['with'] - per_file['without']:.0f} us per file"
        )
    profiler = cProfile.Profile()
    profiler.enable()
    scan_shard(location, shard, options)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    cumulative: dict[str, float] = {}
    for (filename, _, function), (_, _, _, cum, _) in stats.stats.items():  # type: ignore[attr-defined]
        key = f"{Path(filename).name}:{function}"
        cumulative[key] = cumulative.get(key, 0.0) + cum
    total = cumulative.get("scan.py:scan_shard", 0.0) or 1.0
    steps = {
        "read (local file)": ("reading.py:_read_local",),
        "decode: Image.open (Pillow header parse)": ("Image.py:open",),
        "decode: fast paths (simplejpeg / libpng)": (
            "fast.py:jpeg_without_pillow",
            "fast.py:_fast_png_as",
        ),
        "decode, all": ("image.py:decode",),
        "moments (from_pixels)": ("moments.py:from_pixels",),
        "FileSet.add (fingerprint)": ("files.py:add",),
    }
    lines = [
        f"scan_shard over {len(entries)} files of {folder}: {cpu / len(entries) * 1e6:.0f} us CPU "
        "per file unprofiled; share of scan_shard time under cProfile:"
    ]
    lines += [
        f"  {name:44s} {sum(cumulative.get(key, 0.0) for key in keys) / total:6.1%}"
        for name, keys in steps.items()
    ]
    stats.sort_stats("tottime").print_stats(12)
    lines.append(out.getvalue().strip())
    return "\n".join(lines) + transformed


# --- the report ------------------------------------------------------------------------------

HEADER = (
    "| corpus | run | images | wall s | images/s | MP/s | wall / baseline | speed vs baseline "
    "| histogram / decode share of task time (histogram / decode) | record bytes per file "
    "| peak RSS per process, MB | exactness |\n"
    "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | --- | --- |"
)


def row(corpus: str, name: str, run: dict[str, Any], baseline: dict[str, Any], exact: str) -> str:
    """One table row; ratios are against ``baseline``'s wall time on the same files."""
    wall = run["wall"]
    ratio = wall / baseline["wall"]
    share = record = ""
    if "moments_share" in run:
        share = (f"{run['moments_share']:.1%} / {run['decode_share']:.1%} "
                 f"({run['histogram_vs_decode']:.1%})")
        record = f"{run['record_bytes_per_file']:,.0f}"
    peaks = run["peak_rss_mb"]
    if isinstance(peaks, dict):  # imgstats: each worker and its decode sandbox
        rss = "; ".join(
            f"{role} " + ", ".join(f"{m:.0f}" for m in values)
            for role, values in peaks.items()
            if values
        )
    else:
        rss = ", ".join(f"{m:.0f}" for m in peaks)
    return (
        f"| {corpus} | {name} | {run['images']} | {wall:.2f} | {run['images'] / wall:,.0f} | "
        f"{run['pixels'] / wall / 1e6:,.1f} | {ratio:.2f} | {1 / ratio:.2f} | {share} | {record} "
        f"| {rss} | {exact} |"
    )


def bench_corpus(
    label: str, folder: Path, args: argparse.Namespace, context: Any, scratch: Path
) -> list[str]:
    """Reference, then ``--repeat`` rounds of baseline and imgstats; table rows."""
    paths = image_files(folder)
    if not paths:
        raise SystemExit(f"no images under {folder}")
    if args.repeat < 1:  # --repeat 0: no timed runs (with --profile: the profile only)
        return []
    chunk = max(1, min(256, len(paths) // (4 * args.processes)))
    print(f"[{label}] {len(paths)} files under {folder}: exact reference...", file=sys.stderr)
    with context.Pool(args.processes) as pool:
        expected = reference(paths, pool, chunk)
    rows = []
    for round_ in range(args.repeat):
        tag = label if args.repeat == 1 else f"{label} #{round_ + 1}"
        print(f"[{tag}] baseline...", file=sys.stderr)
        baseline = run_baseline(paths, context, args.processes, chunk)
        print(f"[{tag}] imgstats...", file=sys.stderr)
        result = run_imgstats(folder, args.processes, scratch, **args.options)
        counted = baseline["images"] == expected["image_count"]
        name = f"baseline: Pillow loader, Pool({args.processes})"
        rows.append(row(tag, name, baseline, baseline, "decode only" if counted else "COUNT?"))
        name = f"imgstats compute, {args.processes} workers x 1 thread"
        rows.append(row(tag, name, result, baseline, verdict(result["document"], expected)))
        print(
            f"[{tag}] imgstats: {result['shards']} shards, task time {result['task_seconds']:.2f}"
            f" s, worker RSS at start {result['start_rss_mb']} MB, first moments call "
            f"{result['first_moments']} s, decode wall/CPU s {result['decode_wall_vs_cpu']}",
            file=sys.stderr,
        )
        if args.transform:
            print(f"[{tag}] imgstats with the transform...", file=sys.stderr)
            if round_ == 0:
                with context.Pool(args.processes) as pool:
                    transformed = reference(paths, pool, chunk, args.transform)
            shaped = run_imgstats(folder, args.processes, scratch, **args.options,
                                  **args.transform)
            name = (f"imgstats compute {args.transform_flags}, {args.processes} workers x 1 "
                    "thread")
            rows.append(row(tag, name, shaped, baseline, verdict(shaped["document"],
                                                                 transformed)))
            extra = shaped["wall"] - result["wall"]
            rows.append(
                f"| {tag} | transform: {shaped['transform_us_per_image']:,.0f} us CPU per image "
                f"in the workers ({shaped['transform_share']:.1%} of task time; decode "
                f"{shaped['decode_cpu_us_per_image']:,.0f} us); wall +{extra:.2f} s, "
                f"{extra / len(paths) * 1e6:,.0f} us per image | | | | | | | | | | |"
            )
        if args.scaling:
            single = run_imgstats(folder, 1, scratch, **args.options)
            name = "imgstats compute, 1 worker x 1 thread"
            rows.append(row(tag, name, single, baseline, verdict(single["document"], expected)))
            rows.append(
                f"| {tag} | scaling: throughput 2 workers / 1 worker | | | | | | "
                f"{single['wall'] / result['wall']:.2f} | | | | |"
            )
    return rows


def bench_marginal(args: argparse.Namespace, context: Any, scratch: Path) -> list[str]:
    """Per-file cost at steady state, fixed costs cancelled: the wall time difference between
    two PNG corpora (``--marginal SMALL,LARGE``) over their file count difference, for the
    loader in ``Pool(1)`` and for imgstats with 1 worker x 1 thread, interleaved; both exact
    checked against the reference."""
    small, large = args.marginal
    folders = {n: ensure_corpus("png", n, args.cache, args.seed, args.processes)
               for n in (small, large)}
    walls: dict[tuple[str, int], list[float]] = {}
    verdicts = []
    for n, folder in folders.items():
        paths = image_files(folder)
        chunk = max(1, min(256, len(paths) // 4))
        with context.Pool(args.processes) as pool:
            expected = reference(paths, pool, chunk)
        for _ in range(args.marginal_repeat):
            print(f"[marginal {n}] loader, imgstats...", file=sys.stderr)
            walls.setdefault(("loader", n), []).append(
                run_baseline(paths, context, 1, chunk)["wall"])
            result = run_imgstats(folder, 1, scratch, **args.options)
            walls.setdefault(("imgstats", n), []).append(result["wall"])
            verdicts.append(verdict(result["document"], expected))
    best = {key: min(values) for key, values in walls.items()}
    per_file = {name: (best[(name, large)] - best[(name, small)]) / (large - small) * 1e6
                for name in ("loader", "imgstats")}
    return [
        f"| marginal cost per 32x32 PNG, 1 process, {small:,} -> {large:,} files (best of "
        f"{args.marginal_repeat}) | loader {per_file['loader']:.1f} us | imgstats "
        f"{per_file['imgstats']:.1f} us | imgstats / loader "
        f"{per_file['imgstats'] / per_file['loader']:.2f} | walls s: "
        + ", ".join(f"{name} {n}: {best[(name, n)]:.2f}" for name, n in sorted(best))
        + f" | {'exact' if set(verdicts) == {'exact'} else verdicts} |"
    ]


def bench_fixed(args: argparse.Namespace, scratch: Path) -> list[str]:
    """A run's fixed cost: ``imgstats compute ONE --out STORE --workers 2`` over a folder of
    one 32x32 PNG, as a user runs it (a fresh interpreter, a LocalCluster), ``--fixed`` times
    with a fresh store each time; and a bare ``python -c pass`` for scale."""
    import shutil
    import subprocess

    source = ensure_corpus("png", 2000, args.cache, args.seed, args.processes)
    one = scratch / "one"
    one.mkdir(exist_ok=True)
    shutil.copy(image_files(source)[0], one / "one.png")
    env = dict(os.environ)
    # after PYTHONPATH, as this script's own sys.path: another checkout can be measured
    env["PYTHONPATH"] = os.pathsep.join(p for p in (env.get("PYTHONPATH"), str(ROOT)) if p)
    command = [sys.executable, "-m", "pipeline", "compute", str(one), "--workers",
               str(args.processes), "--quiet"]
    walls, bare = [], []
    for attempt in range(args.fixed):
        started = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - started)
        store = scratch / f"one-store-{attempt}"
        started = time.perf_counter()
        subprocess.run([*command, "--out", str(store)], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        walls.append(time.perf_counter() - started)
    walls.sort()
    return [
        f"| one 32x32 PNG, `imgstats compute ONE --out STORE --workers {args.processes}` "
        f"({args.fixed} runs) | min {walls[0]:.2f} s | median {walls[len(walls) // 2]:.2f} s "
        f"| max {walls[-1]:.2f} s | `python -c pass` {min(bare):.3f} s |"
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jpegs", type=int, default=4000, help="ImageNet-like JPEGs (0: none)")
    parser.add_argument("--pngs", type=int, default=20000, help="CIFAR-like PNGs (0: none)")
    parser.add_argument(
        "--folder", type=Path, action="append", default=[], help="also this folder (repeatable)"
    )
    parser.add_argument("--big", action="store_true", help="also one 8,000 x 8,000 JPEG")
    parser.add_argument("--processes", type=int, default=2, help="processes for both (2)")
    parser.add_argument(
        "--repeat", type=int, default=1, help="rounds of baseline + imgstats (0: none)"
    )
    parser.add_argument("--scaling", action="store_true", help="also imgstats with 1 worker")
    parser.add_argument(
        "--profile", type=int, default=0, metavar="N", help="also cProfile N files in-process"
    )
    parser.add_argument(
        "--decode-timeout",
        type=float,
        help="imgstats' decode_timeout (default: imgstats' default; 0: no sandbox)",
    )
    parser.add_argument("--resize", type=int, help="also imgstats with --resize N")
    parser.add_argument("--center-crop", help="also imgstats with --center-crop N|HxW")
    parser.add_argument("--interpolation", default="bilinear", help="of the resize")
    parser.add_argument(
        "--marginal", type=lambda text: tuple(int(n) for n in text.split(",")), metavar="S,L",
        help="also the per-file cost between S and L 32x32 PNGs, 1 process each",
    )
    parser.add_argument("--marginal-repeat", type=int, default=2, help="rounds (best of)")
    parser.add_argument("--fixed", type=int, default=0, metavar="N",
                        help="also N runs of the CLI over one image (fixed cost)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/imgstats-bench"))
    args = parser.parse_args()
    args.options = {} if args.decode_timeout is None else {"decode_timeout": args.decode_timeout}
    args.transform = {
        key: value for key, value in (("resize", args.resize), ("center_crop", args.center_crop))
        if value is not None
    }
    if args.transform and args.resize is not None:
        args.transform["interpolation"] = args.interpolation
    args.transform_flags = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in
                                    args.transform.items())

    multiprocessing.set_forkserver_preload(["numpy", "PIL.Image"])
    context = multiprocessing.get_context("forkserver")  # never fork a process with threads
    args.cache.mkdir(parents=True, exist_ok=True)
    corpora = []
    if args.jpegs:
        folder = ensure_corpus("jpeg", args.jpegs, args.cache, args.seed, args.processes)
        corpora.append((f"JPEG {args.jpegs}", folder))
    if args.pngs:
        folder = ensure_corpus("png", args.pngs, args.cache, args.seed, args.processes)
        corpora.append((f"PNG {args.pngs}", folder))
    if args.big:
        corpora.append(("JPEG 8000x8000", ensure_corpus("big", 8000, args.cache, args.seed, 1)))
    corpora += [(str(folder), folder) for folder in args.folder]
    rows = []
    with tempfile.TemporaryDirectory(prefix="imgstats-bench-") as scratch:
        for label, folder in corpora:
            rows += bench_corpus(label, folder, args, context, Path(scratch))
        more: list[str] = []
        if args.marginal:
            more += bench_marginal(args, context, Path(scratch))
        if args.fixed:
            more += bench_fixed(args, Path(scratch))
    from pipeline.decode import decoder_versions

    print(f"\nscripts/bench.py {' '.join(sys.argv[1:])}")
    print(f"{os.cpu_count()} CPUs; {decoder_versions()}\n")
    if rows:
        print(HEADER)
        print("\n".join(rows))
    if more:
        print("\n" + "\n".join(more))
    if args.profile:
        for _, folder in corpora:
            print("\n" + profile_scan(folder, args.profile, args.transform))


if __name__ == "__main__":
    main()
