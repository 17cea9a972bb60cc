"""The versioned store: numbering, latest.json, never overwriting, racing writers, reading back
(local and memory://), and hostile stats files."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import JobConfig, StatsFileError, compute_stats, load_stats
from pipeline.fs.location import resolve
from pipeline.store import open_store, writable_store

PADDING = 50_000  # bytes per written document: a torn write would be visible


def make_images(folder: Path, count: int, seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        pixels = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"s{seed}_{i:03d}.png")


def document(version: int, parent: int | None, writer: str = "test") -> dict:
    """A valid stats document (one gray channel of 4 pixels: 0, 0, 5, 5)."""
    return {
        "schema": "imgstats.stats/1",
        "version": version,
        "parent": parent,
        "created": "2024-05-01T12:00:00+00:00",
        "source": "/data/images",
        "mode": "gray",
        "channels": ["L"],
        "dtype": "uint8",
        "scale": 255,
        "image_count": 1,
        "pixel_count": 4,
        "sum": [10],
        "sum_sq": [50],
        "min": [0],
        "max": [5],
        "mean": [10 / 4 / 255],
        "std": [2.5 / 255],
        "skipped": [],
        "files": {"count": 1, "bytes": 100, "fingerprint": "0" * 32},
        "run": {"writer": writer, "padding": "x" * PADDING},
        "provenance": {"ddof": 0},
        "tool": {"name": "imgstats", "version": "0.1.0"},
    }


def encode(doc: dict) -> bytes:
    return (json.dumps(doc, indent=2) + "\n").encode()


VERSION_FILE = re.compile(r"v\d{6}\.json")


def version_files(store: Path) -> list[str]:
    """The version files (``v000001.json``...), not latest.json or companion files."""
    return sorted(p.name for p in store.iterdir() if VERSION_FILE.fullmatch(p.name))


# --- through the CLI ------------------------------------------------------------------------


def test_versions_numbered_latest_and_never_overwritten(tmp_path, imgstats, scheduler):
    source, store = tmp_path / "images", tmp_path / "stats"
    make_images(source, 6)
    first = imgstats("compute", str(source), "--out", str(store), "--scheduler", scheduler)
    assert first.returncode == 0, first.stderr
    v1_bytes = (store / "v000001.json").read_bytes()
    v1_stat = (store / "v000001.json").stat()
    assert (store / "latest.json").read_bytes() == v1_bytes
    make_images(source, 1, seed=1)  # a change, so a new version is due
    second = imgstats("compute", str(source), "--out", str(store), "--scheduler", scheduler)
    assert second.returncode == 0, second.stderr
    assert second.stdout.strip().splitlines()[-1] == str(store / "v000002.json")
    assert version_files(store) == ["v000001.json", "v000002.json"]
    # v1 untouched: same bytes, same inode, same mtime.
    assert (store / "v000001.json").read_bytes() == v1_bytes
    after = (store / "v000001.json").stat()
    assert (after.st_ino, after.st_mtime_ns) == (v1_stat.st_ino, v1_stat.st_mtime_ns)
    v1, v2 = json.loads(v1_bytes), json.loads((store / "v000002.json").read_text())
    assert (v1["version"], v1["parent"]) == (1, None)
    assert (v2["version"], v2["parent"]) == (2, 1)
    assert v2["image_count"] == 7 and v1["image_count"] == 6
    assert (store / "latest.json").read_bytes() == (store / "v000002.json").read_bytes()
    # Nothing changed: exit 0, no third version, nothing rewritten.
    third = imgstats("compute", str(source), "--out", str(store), "--scheduler", scheduler)
    assert third.returncode == 0, third.stderr
    assert version_files(store) == ["v000001.json", "v000002.json"]
    assert (store / "v000001.json").read_bytes() == v1_bytes
    assert json.loads((store / "latest.json").read_text())["version"] == 2
    assert not [p.name for p in store.iterdir() if p.name.startswith(".tmp")]


def test_two_cli_runs_at_once_on_one_store(tmp_path, scheduler):
    """Two cron hosts, one store: both succeed with their own version numbers."""
    store = tmp_path / "stats"
    sources = [tmp_path / "a", tmp_path / "b"]  # different sources: both runs are full runs
    make_images(sources[0], 5, seed=1)
    make_images(sources[1], 7, seed=2)
    runs = [
        subprocess.Popen(
            [sys.executable, "-m", "pipeline", "compute", str(src), "--out", str(store),
             "--scheduler", scheduler],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        )
        for src in sources
    ]
    outputs = [run.communicate(timeout=120) for run in runs]
    for run, (_, err) in zip(runs, outputs, strict=True):
        assert run.returncode == 0, err
    urls = {out.strip().splitlines()[-1] for out, _ in outputs}
    assert urls == {str(store / "v000001.json"), str(store / "v000002.json")}
    assert version_files(store) == ["v000001.json", "v000002.json"]
    docs = {json.loads((store / name).read_text())["source"]: json.loads((store / name).read_text())
            for name in version_files(store)}
    assert set(docs) == {str(s) for s in sources}
    assert sorted(d["image_count"] for d in docs.values()) == [5, 7]
    assert (store / "latest.json").read_bytes() == (store / "v000002.json").read_bytes()


# --- racing writers, directly on the store ---------------------------------------------------

WRITER = """
import json, os, sys, time
from pipeline.fs.location import resolve
from pipeline.store import open_store, writable_store

store_url, name, count, go, template = sys.argv[1:6]
with open(template) as handle:
    doc = json.load(handle)

def build(version, parent, tag):
    doc.update(version=version, parent=parent)
    doc["run"]["writer"] = tag
    return (json.dumps(doc, indent=2) + "\\n").encode()

store = writable_store(open_store(resolve(store_url)))  # creates the folder
open(go + "-ready-" + name, "w").close()
while not os.path.exists(go):
    time.sleep(0.005)
for i in range(int(count)):
    tag = f"{name}-{i}"
    version = store.write(lambda v, p: build(v, p, tag), None)
    with open(os.path.join(store_url, "latest.json")) as handle:
        latest = json.load(handle)["version"]
    print(version, latest, tag, flush=True)
"""


def watch(store: Path, stop: threading.Event, seen: list[int], problems: list[str]) -> None:
    """Read latest.json and the newest version file over and over while writers run."""
    while not stop.is_set():
        try:
            newest = max((p.name for p in store.iterdir() if VERSION_FILE.fullmatch(p.name)),
                         default=None)
        except FileNotFoundError:
            newest = None
        for name in ("latest.json", newest):
            try:
                data = (store / name).read_bytes() if name else None
            except FileNotFoundError:
                continue
            if data is None:
                continue
            try:
                doc = json.loads(data)
            except ValueError:
                problems.append(f"{name}: {len(data)} bytes, not complete JSON")
                continue
            if name == "latest.json":
                if seen and doc["version"] < seen[-1]:
                    problems.append(f"latest.json went back from {seen[-1]} to {doc['version']}")
                seen.append(doc["version"])
        time.sleep(0.002)


def check_race_result(store_url: str, names: list[str], tags: set[str]) -> None:
    total = len(tags)
    store = open_store(resolve(store_url))
    assert store.versions() == list(range(1, total + 1))
    written = [store.load(v) for v in store.versions()]
    assert [s.version for s in written] == list(range(1, total + 1))
    assert {s.document["run"]["writer"] for s in written} == tags  # no write lost or doubled
    assert all(len(s.document["run"]["padding"]) == PADDING for s in written)
    assert load_stats(store_url).version == total
    assert sorted(names) == sorted(f"v{v:06d}.json" for v in range(1, total + 1))


def test_store_write_race_between_processes(tmp_path):
    store, go = tmp_path / "stats", tmp_path / "go"
    script = tmp_path / "writer.py"
    script.write_text(WRITER)
    template = tmp_path / "template.json"
    template.write_bytes(encode(document(0, None)))
    procs = [
        subprocess.Popen([sys.executable, str(script), str(store), f"p{n}", "5", str(go),
                          str(template)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for n in range(4)
    ]
    stop, seen, problems = threading.Event(), [], []
    watcher = threading.Thread(target=watch, args=(store, stop, seen, problems))
    watcher.start()
    deadline = time.monotonic() + 60
    while len(list(tmp_path.glob("go-ready-*"))) < 4:  # every writer imported, at the line
        assert time.monotonic() < deadline and all(p.poll() is None for p in procs)
        time.sleep(0.01)
    go.touch()
    try:
        outputs = [p.communicate(timeout=120) for p in procs]
    finally:
        stop.set()
        watcher.join()
    reports = []
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        reports += [line.split() for line in out.splitlines()]
    assert len(reports) == 20
    versions = [int(v) for v, _, _ in reports]
    assert sorted(versions) == list(range(1, 21))  # unique, no gap
    # latest.json is never below a write that has completed.
    assert all(int(latest) >= int(version) for version, latest, _ in reports)
    assert not problems, problems[:5]
    check_race_result(str(store), version_files(store), {tag for _, _, tag in reports})
    assert (store / "latest.json").read_bytes() == (store / "v000020.json").read_bytes()
    assert not [p.name for p in store.iterdir() if p.name.startswith(".tmp")]


@pytest.mark.parametrize("kind", ["local", "memory"])
def test_store_write_race_between_threads(tmp_path, memfs, kind):
    url = str(tmp_path / "stats") if kind == "local" else "memory://race/stats"
    store = writable_store(open_store(resolve(url)))
    barrier = threading.Barrier(4)

    def writer(name: str) -> list[tuple[int, int, str]]:
        barrier.wait()
        done = []
        for i in range(5):
            tag = f"{name}-{i}"
            version = store.write(lambda v, p, tag=tag: encode(document(v, p, tag)), None)
            done.append((version, load_stats(url).version, tag))
        return done

    with ThreadPoolExecutor(4) as pool:
        reports = [r for batch in pool.map(writer, ["t0", "t1", "t2", "t3"]) for r in batch]
    assert sorted(v for v, _, _ in reports) == list(range(1, 21))
    assert all(latest >= version for version, latest, _ in reports)
    names = [n.rstrip("/").rsplit("/", 1)[-1] for n in store.fs.ls(store.location.path,
                                                                   detail=False)]
    check_race_result(url, [n for n in names if VERSION_FILE.fullmatch(n)],
                      {t for _, _, t in reports})


# --- reading back ----------------------------------------------------------------------------


def test_load_stats_latest_version_and_file(tmp_path):
    url = str(tmp_path / "stats")
    store = writable_store(open_store(resolve(url)))
    for expected in (1, 2, 3):
        parent = max(store.versions(), default=None)
        assert store.write(lambda v, p: encode(document(v, p, f"w{v}")), parent) == expected
    latest = load_stats(url)
    assert (latest.version, latest.parent) == (3, 2)
    assert load_stats(url, version=1).document["run"]["writer"] == "w1"
    assert load_stats(url, version=1).parent is None
    assert load_stats(str(tmp_path / "stats" / "v000002.json")).version == 2
    assert load_stats("file://" + url).version == 3
    assert latest.normalize_kwargs() == {"mean": [10 / 4 / 255], "std": [2.5 / 255]}
    assert latest.channels == ("L",) and latest.scale == 255
    with pytest.raises(StatsFileError, match="4"):
        load_stats(url, version=4)
    with pytest.raises(StatsFileError, match=r"no stats store at .*empty': it does not exist"):
        load_stats(str(tmp_path / "empty"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(StatsFileError, match="no stats versions"):
        load_stats(str(tmp_path / "empty"))


def test_memory_store_compute_and_load(tmp_path, memfs, scheduler):
    make_images(tmp_path / "images", 4)
    config = JobConfig(source=str(tmp_path / "images"), out="memory://team/stats",
                       scheduler=scheduler)
    first = compute_stats(config)
    make_images(tmp_path / "images", 1, seed=3)
    second = compute_stats(config)
    assert (first.url, second.url) == ("memory://team/stats/v000001.json",
                                       "memory://team/stats/v000002.json")
    assert memfs.exists("/team/stats/latest.json")
    latest, v1 = load_stats("memory://team/stats"), load_stats("memory://team/stats", version=1)
    assert (latest.version, latest.parent, latest.image_count) == (2, 1, 5)
    assert (v1.version, v1.parent, v1.image_count) == (1, None, 4)
    assert latest.mean == second.stats.mean and v1.std == first.stats.std
    assert load_stats("memory://team/stats/v000001.json").document == v1.document


# --- hostile stats files ---------------------------------------------------------------------


def mutated(change) -> bytes:
    doc = document(1, None)
    change(doc)
    return encode(doc)


HOSTILE = {
    "empty file": (b"", "JSON"),
    "not JSON": (b"{'version': 1", "JSON"),
    "binary": (b"\x89PNG\r\n\x1a\n\x00\xff", "JSON"),
    "array": (b"[1, 2, 3]", "object"),
    "string": (b'"imgstats.stats/1"', "object"),
    "deep nesting": (b"[" * 100_000, "JSON"),
    "no schema": (mutated(lambda d: d.pop("schema")), "schema"),
    "other schema": (mutated(lambda d: d.update(schema="imgstats.stats/3")), "schema"),
    "schema number": (mutated(lambda d: d.update(schema=1)), "schema"),
    "no version": (mutated(lambda d: d.pop("version")), "version"),
    "no mean": (mutated(lambda d: d.pop("mean")), "mean"),
    "no channels": (mutated(lambda d: d.pop("channels")), "channels"),
    "version as text": (mutated(lambda d: d.update(version="1")), "version"),
    "version as bool": (mutated(lambda d: d.update(version=True)), "version"),
    "parent as text": (mutated(lambda d: d.update(parent="0")), "parent"),
    "channels as text": (mutated(lambda d: d.update(channels="L")), "channels"),
    "mean as text": (mutated(lambda d: d.update(mean="0.5")), "mean"),
    "mean of text": (mutated(lambda d: d.update(mean=["0.5"])), "mean"),
    "mean too short": (mutated(lambda d: d.update(channels=["R", "G"])), "mean"),
    "scale as text": (mutated(lambda d: d.update(scale="255")), "scale"),
    "image_count float": (mutated(lambda d: d.update(image_count=1.5)), "image_count"),
    "NaN std": (mutated(lambda d: d.update(std=[float("nan")])), "std"),
    "infinite mean": (mutated(lambda d: d.update(mean=[1e308 * 10])), "mean"),
    "huge integer mean": (mutated(lambda d: d.update(mean=[10**400])), "mean"),
    "huge integer scale": (mutated(lambda d: d.update(scale=10**400)), "scale"),
    "5000-digit integer": (
        encode(document(1, None)).replace(b'"pixel_count": 4', b'"pixel_count": ' + b"9" * 5000),
        "JSON",
    ),
    "zero scale": (mutated(lambda d: d.update(scale=0)), "scale"),
    "skipped not a list": (mutated(lambda d: d.update(skipped=5)), "skipped"),
}


def test_hostile_fixtures_are_what_they_claim():
    assert b"NaN" in HOSTILE["NaN std"][0] and b"Infinity" in HOSTILE["infinite mean"][0]
    assert b"9" * 5000 in HOSTILE["5000-digit integer"][0]
    assert json.loads(encode(document(1, None)))["std"] == [2.5 / 255]


@pytest.mark.parametrize("data,key", HOSTILE.values(), ids=HOSTILE.keys())
def test_hostile_stats_file_is_a_clear_error(tmp_path, data, key):
    path = tmp_path / "stats" / "v000001.json"
    path.parent.mkdir()
    path.write_bytes(data)
    for load in (lambda: load_stats(str(path)), lambda: load_stats(str(path.parent), version=1),
                 lambda: load_stats(str(path.parent))):
        with pytest.raises(StatsFileError) as caught:
            load()
        message = str(caught.value)
        assert key.lower() in message.lower(), message
        assert "v000001.json" in message, message
        assert "\n" not in message and len(message) < 500


def test_missing_stats_file_is_a_stats_file_error(tmp_path):
    """Like a missing version (StatsFileError), a missing stats file is not an OSError."""
    with pytest.raises(StatsFileError, match=r"v000001\.json"):
        load_stats(str(tmp_path / "nowhere" / "v000001.json"))


SHOWN = ["not JSON", "huge integer mean", "zero scale", "skipped not a list"]


def test_show_on_hostile_files_is_one_line(tmp_path, imgstats):
    paths = []
    for i, name in enumerate(SHOWN):
        path = tmp_path / f"case{i}" / "v000001.json"
        path.parent.mkdir()
        path.write_bytes(HOSTILE[name][0])
        paths.append(path.parent)
    cases = [*SHOWN, "missing file"]
    paths.append(tmp_path / "nowhere" / "v000001.json")
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(lambda p: imgstats("show", str(p)), paths))
    wrong = {}
    for name, done in zip(cases, runs, strict=True):
        lines = done.stderr.strip().splitlines()
        if (
            done.returncode == 0
            or done.stdout
            or "Traceback" in done.stderr
            or len(lines) != 1
            or not lines[0].startswith("imgstats: error: ")
            or "unexpected" in lines[0]  # a hostile or missing file is bad input, not a bug
        ):
            wrong[name] = (done.returncode, done.stderr.strip()[-300:])
    assert not wrong, wrong


def test_a_1_gb_stats_file_is_refused_without_reading_it_all(tmp_path):
    path = tmp_path / "stats" / "v000001.json"
    path.parent.mkdir()
    with open(path, "wb") as handle:
        handle.write(b'{"schema": "imgstats.stats/1", "pad": "')
        handle.truncate(2**30)  # sparse: 1 GiB long, nothing on disk
    script = (
        "import resource, sys\n"
        "from pipeline import StatsFileError, load_stats\n"
        "for args in ((sys.argv[1],), (sys.argv[2],), (sys.argv[2], 1)):\n"
        "    try:\n"
        "        load_stats(*args)\n"
        "    except StatsFileError as exc:\n"
        "        print(exc)\n"
        "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)\n"
    )
    done = subprocess.run([sys.executable, "-c", script, str(path), str(path.parent)],
                          capture_output=True, text=True, timeout=120)
    *errors, peak_mb = done.stdout.strip().splitlines()
    assert len(errors) == 3, done.stderr
    assert all("v000001.json' is larger than" in line for line in errors), errors
    assert int(peak_mb) < 1024  # a bounded read, not the whole gigabyte
