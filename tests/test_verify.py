"""``--verify`` (issue 17, item 3): a same-size rewrite with its mtime restored, which size and
mtime cannot see, found by the content digest in the record; unchanged files read, not decoded;
the result bit for bit a full run's, and the independent reference's."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from pipeline import JobConfig, compute_stats
from pipeline.core.digest import content_digest
from pipeline.core.files import FileEntry, Shard
from pipeline.core.keys import Layout
from pipeline.errors import UsageError
from pipeline.store.record import FileRecord

from reference import pil_pixels, reference_stats

#: Keys that describe the run, not the data: the only ones allowed to differ.
RUN_KEYS = {"version", "parent", "created", "run", "record"}
FILES = 12


def content(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in RUN_KEYS}


def save_bmp(path: Path, seed: int, size=(7, 5)) -> None:
    """An uncompressed BMP: its size depends on its dimensions only."""
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)).save(path, "BMP")


def make_dataset(folder: Path) -> None:
    for i in range(FILES):
        save_bmp(folder / f"d{i % 3}" / f"img{i:03d}.bmp", seed=i, size=(5 + i, 4))


def rewrite_keeping_size_and_mtime(path: Path, data: bytes | None = None, seed: int = 99) -> None:
    """New bytes of the same length, then the old mtime restored (what a restore tool, a
    ``cp --preserve``, or a bit flip on disk leaves): size and mtime say nothing changed."""
    before = path.stat()
    if data is None:
        with Image.open(path) as image:
            size = image.size
        save_bmp(path, seed, size)
    else:
        path.write_bytes(data)
    after = path.stat()
    assert after.st_size == before.st_size
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert path.stat().st_mtime_ns == before.st_mtime_ns


def reference(folder: Path) -> dict:
    """The independent reference (pure Python integers) over what Pillow decodes now."""
    images = []
    for path in sorted(folder.rglob("*.bmp")):
        with Image.open(path) as image:
            images.append(pil_pixels(image.convert("RGB")))
    return reference_stats(images, 255).as_document()


@pytest.fixture
def run(tmp_path, scheduler):
    """``run(**options)`` computes tmp_path/images into tmp_path/stats on the shared cluster,
    in segments of 4 files (so a run spans several)."""

    def compute(out="stats", **options):
        options.setdefault("segment_files", 4)
        config = JobConfig(source=str(tmp_path / "images"), out=str(tmp_path / out),
                           scheduler=scheduler, **options)
        return compute_stats(config)

    return compute


def full_run(run, **options) -> dict:
    return run(out=f"fresh-{time.monotonic_ns()}", full=True, **options).stats.document


def test_verify_finds_a_rewrite_that_size_and_mtime_miss(tmp_path, run, imgstats, scheduler,
                                                         caplog):
    images = tmp_path / "images"
    make_dataset(images)
    first = run()
    rewrite_keeping_size_and_mtime(images / "d1" / "img004.bmp")

    # The documented limit of size+mtime: a plain incremental run sees nothing, and keeps the
    # old pixels' numbers (every later plain run would too).
    plain = run()
    assert not plain.written and plain.stats.version == 1
    truth = reference(images)
    assert {k: first.stats.document[k] for k in truth} != truth

    # --verify, through the CLI: every file read, one decoded, the result a full run's.
    done = imgstats("compute", str(images), "--out", str(tmp_path / "stats"), "--verify",
                    "--scheduler", scheduler)
    assert done.returncode == 0, done.stderr
    assert "12 files read, 11 reused" in done.stderr
    verified = run(full=False).stats  # nothing changed since: the version --verify wrote
    assert verified.version == 2 and verified.parent == 1
    info = verified.document["run"]
    assert info["incremental"] and info["verify"]
    assert (info["files_read"], info["files_verified"], info["files_decoded"]) == (12, 11, 1)
    assert info["files_reused"] == 11
    assert {k: verified.document[k] for k in truth} == truth
    assert content(verified.document) == content(full_run(run))

    # Nothing changed since: a plain run and a --verify run write nothing; the latter says
    # it read and verified every file.
    with caplog.at_level(logging.INFO, logger="pipeline.run.job"):
        again = run(verify=True)
    assert not again.written and again.stats.version == 2
    assert "nothing changed since version 2 (12 files read, their digests verified)" in caplog.text
    history = imgstats("history", str(tmp_path / "stats")).stdout.splitlines()
    assert history[1].split()[4] == "full" and history[2].split()[4] == "verify", history


@pytest.mark.parametrize("group_by", [None, pytest.param("dir", marks=pytest.mark.slow)])
def test_verify_with_other_changes_equals_a_full_run(tmp_path, run, group_by):
    images = tmp_path / "images"
    make_dataset(images)
    run(group_by=group_by)
    rewrite_keeping_size_and_mtime(images / "d0" / "img003.bmp", seed=7)  # other pixels
    broken = images / "d2" / "img005.bmp"
    rewrite_keeping_size_and_mtime(broken, b"\0" * broken.stat().st_size)  # now undecodable
    save_bmp(images / "d1" / "img010.bmp", seed=123, size=(9, 9))  # changed the usual way
    save_bmp(images / "d0" / "new.bmp", seed=50)  # added
    (images / "d1" / "img007.bmp").unlink()  # removed
    result = run(verify=True, group_by=group_by)
    info = result.stats.document["run"]
    assert result.written and info["verify"]
    # 12 listed (one gone, one new): 8 verified; the new, the usual change, the two rewrites decoded
    assert (info["files_read"], info["files_verified"], info["files_decoded"]) == (12, 8, 4)
    assert (info["files_reused"], info["files_removed"]) == (8, 1)
    assert [s["path"] for s in result.stats.skipped] == ["d2/img005.bmp"]
    assert content(result.stats.document) == content(full_run(run, group_by=group_by))


#: How records were written before digests were kept (and before they were Arrow files).
OLD_PARQUET = {
    "compression": "zstd",
    "use_dictionary": ["layout"],
    "column_encoding": {"size": "DELTA_BINARY_PACKED", "bins.list.element": "DELTA_BINARY_PACKED",
                        "counts.list.element": "DELTA_BINARY_PACKED"},
}


def strip_digests(store: Path) -> None:
    """Rewrite every record segment as records were before digests were kept: Parquet files
    (no larger than the size its manifest gives, the read bound) under the same names."""
    segments = list(store.glob("segments/**/*.arrow"))
    assert segments
    for segment in segments:
        size = segment.stat().st_size
        table = FileRecord.from_bytes(segment.read_bytes()).table.drop_columns(["digest"])
        pq.write_table(table, segment, **OLD_PARQUET)
        assert segment.stat().st_size <= size


def test_a_record_without_digests_loads_and_verify_counts_its_files_again(tmp_path, run):
    images = tmp_path / "images"
    make_dataset(images)
    run()
    strip_digests(tmp_path / "stats")
    rewrite_keeping_size_and_mtime(images / "d2" / "img008.bmp")
    result = run(verify=True)  # nothing can be verified: every file is counted again
    info = result.stats.document["run"]
    assert (info["files_verified"], info["files_decoded"]) == (0, 12)
    assert content(result.stats.document) == content(full_run(run))
    rewrite_keeping_size_and_mtime(images / "d0" / "img000.bmp", seed=5)
    info = run(verify=True).stats.document["run"]  # the record has digests now
    assert (info["files_verified"], info["files_decoded"]) == (11, 1)


def test_record_digests_round_trip_and_older_records_load():
    entry = FileEntry("a.png", 3, "t")
    digest = content_digest(b"abc")
    record = FileRecord.from_columns([entry, FileEntry("b.png", 4, "t")],
                                     [Layout("L", "uint8")] * 2,
                                     [False, False], [np.array([1])] * 2, [np.array([3])] * 2,
                                     [digest, None])
    loaded = FileRecord.from_bytes(record.to_bytes())
    assert loaded.digests() == [digest, None]
    older = pa.BufferOutputStream()
    pq.write_table(record.table.drop_columns(["digest"]), older, **OLD_PARQUET)
    assert FileRecord.from_bytes(older.getvalue().to_pybytes()).digests() == [None, None]
    assert FileRecord.from_bytes(older.getvalue().to_pybytes()).rows() == [
        dataclasses.replace(row, digest=None) for row in loaded.rows()]


def test_a_shard_keeps_each_files_expected_digest_when_cut():
    files = tuple(FileEntry(f"{i}.png", i, "t") for i in range(4))
    shard = Shard(7, files, (b"a", None, b"c", b"d"))
    assert shard.part(1, 3) == Shard(7, files[1:3], (None, b"c"))
    assert shard.without(2) == Shard(7, files[:2] + files[3:], (b"a", None, b"d"))
    assert Shard(7, files).without(0).expected_digest(0) is None


def test_verify_is_an_option_of_the_config(tmp_path):
    values = {"source": str(tmp_path), "out": str(tmp_path / "s")}
    assert JobConfig.from_mapping({**values, "verify": True}).verify
    assert not JobConfig.from_mapping(values).verify
    with pytest.raises(UsageError, match="'verify' must be true or false"):
        JobConfig.from_mapping({**values, "verify": "yes"})
