"""The per-file record in immutable segments, on a real store: unchanged segments are shared
by reference between versions (never rewritten, never deleted), concurrent runs each get
their own version, and a client killed mid-run, after it wrote segments, leaves nothing that
the next run trips on."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import JobConfig, compute_stats, load_stats
from pipeline.fs.location import resolve
from pipeline.store import open_store
from pipeline.store.segments import read_manifest, read_record

from conftest import ROOT

#: Keys that describe the run, not the data.
RUN_KEYS = {"version", "parent", "created", "run", "record"}


def content(doc: dict) -> dict:
    return {k: v for k, v in doc.items() if k not in RUN_KEYS}


def save(path: Path, seed: int, size=(8, 10)) -> None:
    rng = np.random.default_rng(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(rng.integers(0, 256, (*size, 3), dtype=np.uint8)).save(path)


def make_dataset(folder: Path, count: int = 60) -> None:
    for i in range(count):
        save(folder / f"d{i % 6}" / f"img{i:03d}.png", seed=i, size=(5 + i % 7, 9))


def files_under(folder: Path) -> dict[str, tuple[str, int]]:
    """Every file under ``folder``: its digest and modification time."""
    return {
        str(p.relative_to(folder)): (hashlib.sha256(p.read_bytes()).hexdigest(),
                                     p.stat().st_mtime_ns)
        for p in sorted(folder.rglob("*")) if p.is_file()
    }


def manifest_segments(store_path: Path, manifest: str) -> list[str]:
    store = open_store(resolve(str(store_path)))
    return [s.name for s in read_manifest(store.read_bytes(manifest), manifest)]


@pytest.fixture
def run(tmp_path, scheduler):
    def compute(out="stats", **options):
        options.setdefault("segment_files", 4)
        return compute_stats(JobConfig(source=str(tmp_path / "images"), out=str(tmp_path / out),
                                       scheduler=scheduler, **options))

    return compute


def test_unchanged_segments_are_shared_by_reference(tmp_path, run):
    make_dataset(tmp_path / "images")
    first = run()
    store_path = tmp_path / "stats"
    old = manifest_segments(store_path, first.stats.document["record"])
    assert len(old) >= 10
    before = files_under(store_path)

    save(tmp_path / "images" / "d3" / "img003.png", seed=1000)  # one file changes
    second = run()
    record = second.stats.document["run"]["record"]
    new = manifest_segments(store_path, second.stats.document["record"])
    shared = set(old) & set(new)
    assert len(shared) == len(old) - 1  # every segment but the changed file's, by name
    assert record["segments_reused"] == len(old) - 1
    assert record["segments_read"] == record["segments_written"] == 1
    sizes = {name: (store_path / name).stat().st_size for name in old}
    assert record["bytes_read"] == sum(v for k, v in sizes.items() if k not in shared)
    assert record["bytes_read"] < sum(sizes.values()) / 5
    after = files_under(store_path)
    before.pop("latest.json")
    for name, state in before.items():  # nothing the first version uses was touched
        assert after[name] == state
    # both versions are whole: stats, and a record that adds up to them
    for result in (first, second):
        stats = load_stats(str(store_path), version=result.stats.version)
        store = open_store(resolve(str(store_path)))
        rows = [row for part in read_record(store, stats.document["record"])
                for row in part.rows()]
        assert sum(r.histogram.count for r in rows) == stats.pixel_count
    fresh = run(out="fresh", full=True)
    assert content(second.stats.document) == content(fresh.stats.document)


def test_ranges_waiting_for_the_manifest_stay_bounded(tmp_path, run, monkeypatch):
    """A changed file at the start holds the manifest back (it is written in path order): the
    plan pauses instead of queueing every unchanged segment behind it (it did: at 3,000,000
    files that queue was the incremental client's growth, ~93 MB per million files)."""
    from pipeline.run import recorder, work
    from pipeline.run.job import WINDOW_PER_THREAD

    make_dataset(tmp_path / "images", count=120)
    run(segment_files=2)  # 60 segments
    save(tmp_path / "images" / "d0" / "img000.png", seed=500)  # the very first file changes
    save(tmp_path / "images" / "d5" / "img113.png", seed=501)  # and one near the end
    monkeypatch.setattr(work, "MAX_BACKLOG", 5)
    backlog: list[int] = []
    reuse = recorder.Recorder.reuse

    def watched(self, segment):
        reuse(self, segment)
        backlog.append(self.backlog)

    monkeypatch.setattr(recorder.Recorder, "reuse", watched)
    second = run(segment_files=2)
    assert len(backlog) >= 50  # the reused segments, each watched
    assert max(backlog) <= 5 + WINDOW_PER_THREAD * second.stats.document["run"]["worker_threads"]
    assert second.stats.document["run"]["files_read"] == 2
    fresh = run(out="fresh", full=True, segment_files=5)
    assert content(second.stats.document) == content(fresh.stats.document)


def test_concurrent_runs_each_get_their_own_version(tmp_path, scheduler):
    make_dataset(tmp_path / "images", count=30)
    command = [sys.executable, "-m", "pipeline", "compute", str(tmp_path / "images"), "--out",
               str(tmp_path / "stats"), "--scheduler", scheduler, "--full"]
    processes = [subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outputs = [p.communicate(timeout=180) for p in processes]
    assert [p.returncode for p in processes] == [0, 0, 0], [err for _, err in outputs]
    urls = sorted(out.strip().splitlines()[-1] for out, _ in outputs)
    assert [Path(u).name for u in urls] == ["v000001.json", "v000002.json", "v000003.json"]
    documents = [load_stats(str(tmp_path / "stats"), version=v).document for v in (1, 2, 3)]
    assert content(documents[0]) == content(documents[1]) == content(documents[2])
    assert load_stats(str(tmp_path / "stats")).version == 3
    records = {doc["record"] for doc in documents}
    assert len(records) == 3  # each run wrote its own manifest and segments
    for doc in documents:
        segments = manifest_segments(tmp_path / "stats", doc["record"])
        assert all((tmp_path / "stats" / name).is_file() for name in segments)


def test_client_killed_after_writing_segments_leaves_a_store_the_next_run_uses(
    tmp_path, run, scheduler
):
    folder = tmp_path / "images"
    make_dataset(folder, count=12)
    run()
    store_path = tmp_path / "stats"
    before = files_under(store_path)
    for i in range(300):  # enough work that segments are written well before the end
        save(folder / "more" / f"big{i:03d}.png", seed=1000 + i, size=(120, 160))
    config = tmp_path / "config.yaml"
    config.write_text("segment_files: 1\nshard_files: 1\n")
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline", "compute", str(folder), "--out", str(store_path),
         "--config", str(config), "--scheduler", scheduler, "--quiet"],
        cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    try:
        while not _written_segments(store_path, before):
            assert process.poll() is None, "the run ended before it wrote a segment"
            assert time.monotonic() < deadline, "no segment written within 120 s"
            time.sleep(0.02)
        process.send_signal(signal.SIGKILL)
        process.wait(30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    after = files_under(store_path)
    orphans = set(after) - set(before)
    assert orphans and all(name.startswith("segments/") for name in orphans)
    for name, state in before.items():  # versions, latest.json, manifests: as they were
        assert after[name] == state
    assert load_stats(str(store_path)).version == 1

    resumed = run()
    assert resumed.written and resumed.stats.version == 2 and resumed.stats.parent == 1
    assert resumed.stats.image_count == 312
    fresh = run(out="fresh", full=True)
    assert content(resumed.stats.document) == content(fresh.stats.document)
    again = run()  # and the version after it builds on it, reading nothing
    assert not again.written


def _written_segments(store: Path, before: dict[str, tuple[str, int]]) -> bool:
    folder = store / "segments"
    return any(str(p.relative_to(store)) not in before for p in folder.rglob("*.arrow"))


@pytest.mark.parametrize("segment_files", [1, 3, 32])
def test_any_segment_size_gives_the_same_numbers_and_reads_only_changed_ranges(
    tmp_path, run, segment_files
):
    make_dataset(tmp_path / "images", count=40)
    run(segment_files=segment_files)
    (tmp_path / "images" / "d1" / "img007.png").unlink()
    save(tmp_path / "images" / "d5" / "img005.png", seed=77)
    save(tmp_path / "images" / "zz" / "new.png", seed=78)
    second = run(segment_files=segment_files)
    doc = second.stats.document
    assert doc["run"]["files_read"] == 2 and doc["run"]["files_removed"] == 1
    assert doc["run"]["record"]["segments_read"] <= 2
    fresh = run(out=f"fresh-{segment_files}", full=True, segment_files=7)
    assert content(doc) == content(fresh.stats.document)
    assert os.path.exists(tmp_path / "stats" / doc["record"])
