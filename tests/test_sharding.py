"""However the work is split, the numbers are the same, bit for bit.

Real files, a real Dask cluster: ``compute_stats`` with many shard settings, ``stream_scans``
with hand-made shards (one file each, seven files each, everything in one shard) merged in
any order, shards of very different sizes, plus pure tests of the listing (the plan's own
are in ``test_plan.py``).
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from distributed import Client
from PIL import Image

from pipeline import JobConfig, compute_stats
from pipeline.config import (
    DEFAULT_MAX_IMAGE_PIXELS,
    DEFAULT_SHARD_FILES,
    ScanOptions,
)
from pipeline.core.files import Shard
from pipeline.core.histogram import Histogram
from pipeline.core.keys import Layout, ResultKey
from pipeline.core.moments import Moments
from pipeline.core.result import ScanResult, merge_results
from pipeline.errors import InputError, NoImagesError, SourceNotFoundError
from pipeline.fs.listing import iter_images
from pipeline.fs.location import resolve
from pipeline.run.graph import stream_scans
from pipeline.run.job import SHARDS_PER_THREAD
from pipeline.store.record import FileRecord

from planning import planned_shards
from reference import Reference, pil_pixels, reference_stats

#: Keys that legitimately differ between two runs over the same data.
RUN_KEYS = ("created", "run", "version", "record")
#: Options of ``run_scan`` as ``imgstats compute`` passes them, decoding in the worker itself.
IN_PROCESS = ScanOptions("rgb", DEFAULT_MAX_IMAGE_PIXELS, decode_timeout=0)

_run_ids = itertools.count()


# --- data ----------------------------------------------------------------------------------------


def _write_mixed_corpus(root, count: int = 23, seed: int = 7) -> None:
    """``count`` small images in several formats and folders, all decoded to RGB in rgb mode."""
    rng = np.random.default_rng(seed)
    formats = [("png", {}), ("bmp", {}), ("jpg", {"quality": 90}), ("webp", {"lossless": True}),
               ("tif", {}), ("gif", {}), ("ppm", {})]  # fmt: skip
    for i in range(count):
        extension, options = formats[i % len(formats)]
        height, width = int(rng.integers(5, 40)), int(rng.integers(7, 50))
        channels = 4 if i % 5 == 0 and extension in ("png", "webp", "tif") else 3
        pixels = rng.integers(0, 256, size=(height, width, channels), dtype=np.uint8)
        image = Image.fromarray(pixels)
        if extension == "gif":
            image = image.convert("RGB").quantize(64)
        folder = root / f"class{i % 3}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"img{i:03d}.{extension}", **options)


def rgb_reference(paths) -> Reference:
    images = []
    for path in paths:
        with Image.open(path) as image:
            images.append(pil_pixels(image.convert("RGB")))
    return reference_stats(images, 255)


def image_files(root) -> list:
    return sorted(p for p in root.rglob("*") if p.is_file())


def comparable(doc) -> dict:
    return {k: v for k, v in doc.items() if k not in RUN_KEYS}


def compute(source, out_root, scheduler, **options) -> dict:
    out = out_root / f"stats-{next(_run_ids)}"
    result = compute_stats(
        JobConfig(source=str(source), out=str(out), scheduler=scheduler, **options)
    )
    return dict(result.stats.document)


def assert_reference(doc, ref: Reference) -> None:
    assert {key: doc[key] for key in Reference.KEYS} == ref.as_document()
    assert doc["skipped"] == []


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("mixed")
    _write_mixed_corpus(root)
    return root, rgb_reference(image_files(root))


@pytest.fixture(scope="module")
def baseline(corpus, cluster, tmp_path_factory):
    """A run with the default shard limits and fan-in."""
    root, ref = corpus
    doc = compute(root, tmp_path_factory.mktemp("baseline"), cluster.scheduler_address)
    assert_reference(doc, ref)
    return doc


# --- compute_stats: shard limits and fan-in -----------------------------------------------------


@pytest.mark.parametrize("segment_files", [1, 5, 32])
@pytest.mark.parametrize("shard_files", [1, 7, 10**9])
def test_compute_same_document_for_any_split(
    shard_files, segment_files, corpus, baseline, tmp_path, scheduler
):
    root, ref = corpus
    doc = compute(root, tmp_path, scheduler, shard_files=shard_files, segment_files=segment_files)
    assert comparable(doc) == comparable(baseline)
    assert_reference(doc, ref)
    if shard_files == 1:
        assert doc["run"]["shards"] == ref.image_count  # really one file per task
    else:
        assert 1 <= doc["run"]["shards"] < ref.image_count


# --- stream_scans with hand-made shards: 1 file, 7 files, everything in one shard -------------


def cut(entries, files_per_shard) -> list[Shard]:
    """The listing in shards of ``files_per_shard`` files, in order."""
    return [Shard(i, tuple(entries[start:start + files_per_shard]))
            for i, start in enumerate(range(0, len(entries), files_per_shard))]


def run_scan(client, location, shards, options, window, reverse=False) -> ScanResult:
    """Every shard scanned, at most ``window`` at once, and the results merged in the order
    they arrived (or its reverse)."""
    results = [r for _, r in stream_scans(client, location, options,
                                          ((s.index, s) for s in shards), window)]
    return merge_results(reversed(results) if reverse else results)


@pytest.fixture(scope="module")
def client(cluster):
    with Client(cluster.scheduler_address, set_as_default=False) as connected:
        yield connected


@pytest.fixture(scope="module")
def one_shard_result(corpus, client):
    root, _ = corpus
    location = resolve(str(root))
    entries = list(iter_images(location.filesystem(), location.path))
    shards = cut(entries, len(entries))
    assert len(shards) == 1
    return run_scan(client, location, shards, IN_PROCESS, window=1)


def _as_reference(result) -> Reference:
    """A ScanResult's single layout, finalised, in the reference's terms."""
    [(key, summary)] = result.summaries.items()
    assert key == ResultKey("", Layout("RGB", "uint8"))
    moments = summary.moments()
    mean, std, variance = summary.finalize(255)
    return Reference(
        result.images[key],
        moments.count,
        moments.sum,
        moments.sum_sq,
        moments.min,
        moments.max,
        mean,
        std,
        255,
        variance=variance,
    )


@pytest.mark.parametrize("window,reverse", [(1, False), (3, True), (8, False), (8, True)])
@pytest.mark.parametrize("files_per_shard", [1, 7, 10**9])
def test_run_scan_same_moments_for_any_split(
    files_per_shard, window, reverse, corpus, client, one_shard_result
):
    root, ref = corpus
    location = resolve(str(root))
    entries = list(iter_images(location.filesystem(), location.path))
    shards = cut(entries, files_per_shard)
    assert len(shards) == math.ceil(len(entries) / min(files_per_shard, len(entries)))
    result = run_scan(client, location, shards, IN_PROCESS, window, reverse)
    assert result.summaries == one_shard_result.summaries
    assert result.images == one_shard_result.images
    assert result.files == one_shard_result.files
    assert result.skipped == ()
    assert _as_reference(result) == ref


def test_run_scan_rows_match_reference_per_file(corpus, client):
    """Per-file moments (kept for incremental runs) are exact too, file by file."""
    root, _ = corpus
    location = resolve(str(root))
    entries = list(iter_images(location.filesystem(), location.path))
    shards = cut(entries, 5)
    result = run_scan(client, location, shards, IN_PROCESS, window=3)
    rows = {row.entry.path: row for row in FileRecord.from_parts(result.rows).rows()}
    assert all(len(FileRecord.from_bytes(part.data)) <= IN_PROCESS.segment_files
               for part in result.rows)
    assert sorted(rows) == [e.path for e in entries]
    for entry in entries:
        ref = rgb_reference([root / entry.path])
        row = rows[entry.path]
        assert str(row.layout) == "RGB uint8"
        assert row.entry == entry
        got = row.histogram.moments()
        assert (got.count, got.sum, got.sum_sq) == (ref.pixel_count, ref.sum, ref.sum_sq)
        assert (got.min, got.max) == (ref.min, ref.max), entry.path
        assert [dict(c) for c in ref.histogram] == [
            {v: int(n) for v, n in enumerate(row) if n} for row in row.histogram.counts
        ]


# --- shards of very different sizes --------------------------------------------------------------


@pytest.fixture(scope="module")
def lopsided(tmp_path_factory):
    """One large bright image among many tiny dark ones.

    Any split that puts the large image in a shard of its own (or with few tiny ones) gives
    per-shard means far apart, so an unweighted average of shard means is far from the truth.
    """
    root = tmp_path_factory.mktemp("lopsided")
    rng = np.random.default_rng(11)
    arrays = []
    for prefix in ("a", "z"):
        for i in range(20):
            tiny = rng.integers(0, 31, size=(5, 7, 3), dtype=np.uint8)
            Image.fromarray(tiny).save(root / f"{prefix}{i:02d}.png")
            arrays.append(tiny)
    huge = rng.integers(200, 256, size=(160, 200, 3), dtype=np.uint8)
    Image.fromarray(huge).save(root / "m_huge.png")
    arrays.append(huge)
    return root, reference_stats([a.tolist() for a in arrays], 255)


@pytest.mark.parametrize("shard_bytes", [1, 1000])
def test_uneven_shards_are_weighted(shard_bytes, lopsided, tmp_path, scheduler, client):
    root, ref = lopsided
    doc = compute(root, tmp_path, scheduler, shard_bytes=shard_bytes)
    assert_reference(doc, ref)
    # the split the run really used, rebuilt: uneven, so an unweighted merge would be wrong
    location = resolve(str(root))
    entries = list(iter_images(location.filesystem(), location.path))
    min_shards = doc["run"]["worker_threads"] * SHARDS_PER_THREAD
    shards = planned_shards(entries, shard_bytes, DEFAULT_SHARD_FILES, min_shards)
    assert len(shards) == doc["run"]["shards"] > 1
    shard_refs = [rgb_reference([root / e.path for e in shard.files]) for shard in shards]
    pixel_counts = [r.pixel_count for r in shard_refs]
    assert max(pixel_counts) > 100 * min(pixel_counts)
    for c in range(3):
        unweighted = sum(r.mean[c] for r in shard_refs) / len(shard_refs)
        assert abs(unweighted - ref.mean[c]) > 0.2
        weighted = sum(r.sum[c] for r in shard_refs) / (ref.pixel_count * 255)
        assert weighted == ref.mean[c] == doc["mean"][c]
    # and the same numbers as everything in one shard
    one = run_scan(client, location, cut(entries, len(entries)), IN_PROCESS, window=2)
    assert _as_reference(one) == ref


# --- list_images ---------------------------------------------------------------------------------

IMAGES = [
    "A/upper.PNG",
    "a/b/deep.png",
    "a/mixed.JpEg",
    "c.jpg",
    "d.TIFF",
    "e.tif",
    "f.webp",
    "g.BMP",
    "h.gif",
    "i.ppm",
    "j.pgm",
    "k.pbm",
    "folder.png/inside.jpg",
]
NOT_IMAGES = [
    ".hidden.png",
    ".git/objects/x.png",
    "a/.cache/y.jpg",
    "notes.txt",
    "archive.png.zip",
    "noext",
    "png",
    "a/b/readme.md",
    "photo.jpg~",
    "data.json",
]


def _populate(write) -> None:
    for i, name in enumerate(IMAGES + NOT_IMAGES):
        write(name, b"x" * (i + 1))


def _expected_sizes() -> dict[str, int]:
    return {name: i + 1 for i, name in enumerate(IMAGES)}


@pytest.fixture
def local_tree(tmp_path):
    root = tmp_path / ".parent_may_be_hidden" / "data"

    def write(name, data):
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)

    _populate(write)
    return root


@pytest.fixture
def memory_tree(memfs):
    _populate(lambda name, data: memfs.pipe(f"/data/{name}", data))
    return memfs


def _check_listing(entries) -> None:
    paths = [e.path for e in entries]
    assert paths == sorted(IMAGES)
    assert {e.path: e.size for e in entries} == _expected_sizes()
    assert all(e.token for e in entries)


def test_list_images_local(local_tree):
    location = resolve(str(local_tree))
    _check_listing(list(iter_images(location.filesystem(), location.path)))
    # a trailing slash and a file:// URL list the same files
    again = resolve(f"file://{local_tree}/")
    assert list(iter_images(again.filesystem(), again.path)) == list(iter_images(
        location.filesystem(), location.path
    ))


def test_list_images_memory(memory_tree):
    location = resolve("memory://data")
    _check_listing(list(iter_images(location.filesystem(), location.path)))
    _check_listing(list(iter_images(memory_tree, "/data")))


@pytest.mark.parametrize(
    ("include", "exclude", "expected"),
    [
        (("a/*",), (), ["a/b/deep.png", "a/mixed.JpEg"]),  # * crosses /
        (("*.png", "*.PNG"), (), ["A/upper.PNG", "a/b/deep.png"]),
        (("*.png",), (), ["a/b/deep.png"]),  # patterns are case-sensitive
        ((), ("*.gif", "a/*", "folder.png/*"), None),
        (("[cd]*",), ("*.TIFF",), ["c.jpg"]),
    ],
)
def test_list_images_filters(local_tree, memory_tree, include, exclude, expected):
    if expected is None:
        expected = sorted(
            n for n in IMAGES if n != "h.gif" and not n.startswith(("a/", "folder.png/"))
        )
    for fs, root in ((resolve(str(local_tree)).filesystem(), str(local_tree)),
                     (memory_tree, "/data")):  # fmt: skip
        entries = list(iter_images(fs, root, include=include, exclude=exclude))
        assert [e.path for e in entries] == expected


def test_list_images_missing_source(tmp_path, memfs):
    location = resolve(str(tmp_path / "nowhere"))
    with pytest.raises(SourceNotFoundError) as raised:
        list(iter_images(location.filesystem(), location.path))
    assert raised.value.exit_code == 2
    (tmp_path / "file.png").write_bytes(b"x")
    file_location = resolve(str(tmp_path / "file.png"))
    with pytest.raises(SourceNotFoundError):
        list(iter_images(file_location.filesystem(), file_location.path))
    with pytest.raises(SourceNotFoundError):
        list(iter_images(memfs, "/nowhere"))


def test_list_images_no_images(tmp_path, memfs, local_tree):
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "notes.txt").write_text("hello")
    (tmp_path / "docs" / ".hidden.png").write_bytes(b"x")
    location = resolve(str(tmp_path / "docs"))
    with pytest.raises(NoImagesError) as raised:
        list(iter_images(location.filesystem(), location.path))
    assert isinstance(raised.value, InputError) and raised.value.exit_code == 2
    memfs.pipe("/empty/readme.md", b"x")
    with pytest.raises(NoImagesError):
        list(iter_images(memfs, "/empty"))
    local = resolve(str(local_tree))
    with pytest.raises(NoImagesError):
        list(iter_images(local.filesystem(), local.path, include=("*.exr",)))


def test_compute_missing_source_is_input_error(tmp_path, scheduler):
    with pytest.raises(SourceNotFoundError) as raised:
        compute(tmp_path / "nowhere", tmp_path, scheduler)
    assert raised.value.exit_code == 2
    assert not list(tmp_path.glob("stats-*/v*.json"))


def test_moments_type_is_exact_in_scan(one_shard_result):
    """The merged result holds an exact histogram, whose moments are Python integers."""
    [summary] = one_shard_result.summaries.values()
    assert isinstance(summary, Histogram) and summary.counts.dtype == np.int64
    moments = summary.moments()
    assert isinstance(moments, Moments)
    assert all(type(v) is int for v in (*moments.sum, *moments.sum_sq))
