"""Incremental runs against fresh full runs, bit for bit, on real encoded images."""

from __future__ import annotations

import hashlib
import json
import re
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import JobConfig, compute_stats
from pipeline.fs.location import resolve
from pipeline.store import open_store
from pipeline.store.record import FileRecord
from pipeline.store.segments import read_record

#: Keys that describe the run, not the data: the only ones allowed to differ.
RUN_KEYS = {"version", "parent", "created", "run", "record"}


def save(path: Path, seed: int, size=(9, 13), fmt="PNG") -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path, fmt)


def make_dataset(folder: Path, count: int = 12) -> None:
    for i in range(count):
        save(folder / f"d{i % 3}" / f"img{i:03d}.png", seed=i, size=(6 + i, 11))


def content(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in RUN_KEYS}


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def run(tmp_path, scheduler):
    """``run(**options)`` computes tmp_path/images into tmp_path/stats on the shared cluster."""

    def compute(out="stats", **options):
        config = JobConfig(
            source=str(tmp_path / "images"),
            out=str(tmp_path / out),
            scheduler=scheduler,
            **options,
        )
        return compute_stats(config)

    return compute


def check_equals_full_run(tmp_path, run, result, **options):
    fresh = run(out=f"fresh-{time.monotonic_ns()}", full=True, **options)
    assert content(result.stats.document) == content(fresh.stats.document)
    assert result.stats.document["run"]["incremental"] is True


def rename(folder: Path) -> None:
    (folder / "d0" / "img000.png").rename(folder / "d2" / "renamed.png")


def reencode(folder: Path) -> None:
    save(folder / "d1" / "img001.png", seed=99, size=(7, 11))


SCENARIOS = {
    # name: (change the folder, files to read afterwards, files removed)
    "add": (lambda f: save(f / "d0" / "new.png", seed=50), 1, 0),
    "remove": (lambda f: (f / "d1" / "img004.png").unlink(), 0, 1),
    "modify": (reencode, 1, 0),
    "rename": (rename, 1, 1),
    "add corrupt": (lambda f: (f / "d0" / "bad.png").write_bytes(b"\x89PNG broken"), 1, 0),
    "add jpeg": (lambda f: save(f / "d2" / "photo.jpg", seed=7, size=(40, 30), fmt="JPEG"), 1, 0),
}


@pytest.mark.parametrize("group_by", [None, "dir"])
@pytest.mark.parametrize("scenario", SCENARIOS)
def test_incremental_equals_full_run(tmp_path, run, scenario, group_by):
    change, expected_read, expected_removed = SCENARIOS[scenario]
    make_dataset(tmp_path / "images")
    first = run(group_by=group_by)
    assert first.stats.document["run"]["files_read"] == 12
    change(tmp_path / "images")
    second = run(group_by=group_by)
    assert second.written and second.stats.version == 2 and second.stats.parent == 1
    assert second.stats.document["run"]["files_read"] == expected_read
    assert second.stats.document["run"]["files_removed"] == expected_removed
    assert ("groups" in second.stats.document) == (group_by is not None)
    check_equals_full_run(tmp_path, run, second, group_by=group_by)


def test_fixed_corrupt_file_is_counted_next_run(tmp_path, run):
    make_dataset(tmp_path / "images")
    bad = tmp_path / "images" / "d0" / "later.png"
    bad.write_bytes(b"not yet an image")
    first = run()
    assert [s["path"] for s in first.stats.skipped] == ["d0/later.png"]
    save(bad, seed=123)
    second = run()
    assert second.stats.skipped == []
    assert second.stats.image_count == first.stats.image_count + 1
    assert second.stats.document["run"]["files_read"] == 1
    check_equals_full_run(tmp_path, run, second)


def test_nothing_changed_writes_nothing(tmp_path, run, imgstats, scheduler):
    make_dataset(tmp_path / "images")
    first = run()
    before = snapshot(tmp_path / "stats")
    again = run()
    assert not again.written and again.stats.version == 1
    done = imgstats("compute", str(tmp_path / "images"), "--out", str(tmp_path / "stats"),
                    "--scheduler", scheduler)
    assert done.returncode == 0, done.stderr
    assert "nothing changed since version 1" in done.stderr
    assert done.stdout.splitlines()[-1] == first.url
    assert snapshot(tmp_path / "stats") == before


def test_change_of_mode_or_filters_or_full_is_a_full_run(tmp_path, run):
    make_dataset(tmp_path / "images")
    run()
    gray = run(mode="gray")
    assert gray.stats.document["run"]["incremental"] is False
    assert gray.stats.document["run"]["files_read"] == 12
    filtered = run(mode="gray", exclude=("d1/*",))
    assert filtered.stats.document["run"]["incremental"] is False
    assert filtered.stats.image_count == 8
    forced = run(mode="gray", exclude=("d1/*",), full=True)
    assert forced.written is True and forced.stats.parent == filtered.stats.version
    assert forced.stats.document["run"]["files_read"] == 8
    assert content(forced.stats.document) == content(filtered.stats.document)


def test_record_holds_exact_rows(tmp_path, run):
    make_dataset(tmp_path / "images")
    result = run()
    name = result.stats.document["record"]
    assert re.fullmatch(r"manifests/[0-9a-f]{32}\.parquet", name)
    store = open_store(resolve(str(tmp_path / "stats")))
    rows = [row for segment in read_record(store, name) for row in segment.rows()]
    assert len(rows) == 12
    assert [r.entry.path for r in rows] == sorted(r.entry.path for r in rows)
    assert sum(r.histogram.count for r in rows) == result.stats.pixel_count
    total = sum(r.histogram.counts for r in rows)
    assert np.array_equal(total, result.stats.histogram)
    for channel in range(3):
        assert sum(r.histogram.moments().sum[channel] for r in rows) == \
            result.stats.document["sum"][channel]
        assert (sum(r.histogram.moments().sum_sq[channel] for r in rows)
                == result.stats.document["sum_sq"][channel])


def test_record_histograms_round_trip_at_any_size():
    """Counts near int64's limit, 16-bit values at both ends: stored sparse, read back whole."""
    from pipeline.core.files import FileEntry
    from pipeline.core.histogram import Histogram
    from pipeline.core.keys import Layout
    from pipeline.store.record import FileRow

    counts = np.zeros((2, 65536), np.int64)
    counts[0, [0, 1, 65535]] = [2**62, 3, 2**40]
    counts[1, 32768] = 2**62 + 2**40 + 3
    row = FileRow(FileEntry("a.png", 1, "t"), Layout("LA", "uint16"), Histogram(counts), True)
    [back] = FileRecord.from_bytes(FileRecord.from_rows([row]).to_bytes()).rows()
    assert back == row
    assert back.histogram.moments().sum[0] == 2**40 * 65535 + 3


def test_incremental_on_s3_store(tmp_path, s3, scheduler):
    fs, options = s3
    folder = tmp_path / "images"
    make_dataset(folder)

    def compute(**extra):
        return compute_stats(JobConfig(source=str(folder), out="s3://imgstats-test/stats",
                                       store_options=options, scheduler=scheduler, **extra))

    compute()
    (folder / "d2" / "img002.png").unlink()
    save(folder / "d0" / "added.png", seed=77)
    second = compute()
    assert second.stats.document["run"]["files_read"] == 1
    assert second.stats.document["run"]["files_removed"] == 1
    assert fs.exists(f"imgstats-test/stats/{second.stats.document['record']}")
    assert second.stats.document["run"]["record"]["segments_written"] >= 1
    fresh = compute_stats(JobConfig(source=str(folder), out=str(tmp_path / "fresh"),
                                    scheduler=scheduler))
    assert content(second.stats.document) == content(fresh.stats.document)
    listing_before = sorted(fs.ls("imgstats-test/stats", detail=False, refresh=True))
    assert not compute().written
    assert sorted(fs.ls("imgstats-test/stats", detail=False, refresh=True)) == listing_before
    assert json.loads(fs.cat_file("imgstats-test/stats/latest.json"))["version"] == 2


@pytest.mark.parametrize("damage", [
    lambda doc: doc["files"].pop("count"),  # an older or hand-edited file
    lambda doc: doc["provenance"].pop("include"),
    lambda doc: doc["histogram"]["counts"][0].__setitem__(0, doc["pixel_count"] + 1),
    lambda doc: doc.update(record="../../dev/zero"),  # not a name the store makes
    lambda doc: doc.update(files="all of them"),
])
def test_a_version_it_cannot_build_on_means_a_full_run_and_a_warning(run, tmp_path, caplog,
                                                                      damage):
    make_dataset(tmp_path / "images")
    first = run()
    path = tmp_path / "stats" / "v000001.json"
    doc = json.loads(path.read_text())
    damage(doc)
    for name in ("v000001.json", "latest.json"):
        (tmp_path / "stats" / name).write_text(json.dumps(doc))
    save(tmp_path / "images" / "new.png", seed=99)
    second = run()
    assert second.stats.document["run"]["incremental"] is False
    assert second.stats.document["run"]["files_read"] == 13
    assert "full run: version 1 cannot be built on" in caplog.text
    assert second.stats.image_count == first.stats.image_count + 1
