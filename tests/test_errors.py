"""Bad input end to end: corrupt files are skipped and listed, or stop the run with nothing
written; bad sources and unreachable schedulers are one line on stderr with exit 2."""

from __future__ import annotations

import io
import json
import socket
import struct
import subprocess
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import one_error_line

GOOD = 12
BAD = {  # file -> words its skip reason must contain (case-insensitive)
    "bad/truncated.jpg": ("truncat",),
    "bad/truncated.png": ("truncat",),
    "bad/empty.png": ("empty",),
    "bad/notes.jpg": ("not an image",),
    "bad/huge_header.png": ("bomb",),
}
SMALL_BOMB = "bad/bomb.png"  # a real 64x64 image: a bomb only under --max-image-pixels 1000


def encoded(pixels: np.ndarray, fmt: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, fmt)
    return buffer.getvalue()


def png_claiming(width: int, height: int) -> bytes:
    """A well-formed PNG header (valid CRCs) claiming ``width`` x ``height`` RGB pixels."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = struct.pack(">I", zlib.crc32(kind + data))
        return struct.pack(">I", len(data)) + kind + data + crc

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(b"\0" * 64))
        + chunk(b"IEND", b"")
    )


def write_bad_files(root: Path, names=tuple(BAD)) -> None:
    rng = np.random.default_rng(7)
    pixels = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
    content = {
        "bad/truncated.jpg": encoded(pixels, "JPEG")[: len(encoded(pixels, "JPEG")) // 2],
        "bad/truncated.png": encoded(pixels, "PNG")[: len(encoded(pixels, "PNG")) // 2],
        "bad/empty.png": b"",
        "bad/notes.jpg": b"these are my notes, not a JPEG\n",
        "bad/huge_header.png": png_claiming(100_000, 100_000),
        SMALL_BOMB: encoded(rng.integers(0, 256, (64, 64, 3), dtype=np.uint8), "PNG"),
    }
    for name in names:
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content[name])


@pytest.fixture
def corrupt_source(tmp_path: Path) -> tuple[Path, list[np.ndarray]]:
    """``GOOD`` 16x12 PNGs under good/, every kind of bad file under bad/."""
    source = tmp_path / "images"
    rng = np.random.default_rng(0)
    arrays = []
    (source / "good").mkdir(parents=True)
    for i in range(GOOD):
        pixels = rng.integers(0, 256, (12, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(source / "good" / f"{i:02d}.png")
        arrays.append(pixels)
    write_bad_files(source, (*BAD, SMALL_BOMB))
    return source, arrays


def assert_nothing_written(store: Path) -> None:
    """No version, no latest.json, no temp or lock file: the folder is empty or absent."""
    assert not store.exists() or sorted(p.name for p in store.iterdir()) == []


def load(store: Path, name: str = "latest.json") -> dict:
    return json.loads((store / name).read_text())


def test_corrupt_files_are_skipped_and_listed(corrupt_source, tmp_path, imgstats, scheduler):
    source, arrays = corrupt_source
    store = tmp_path / "stats"
    done = imgstats("compute", str(source), "--out", str(store), "--scheduler", scheduler,
                    "--max-image-pixels", "1000")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == str(store / "v000001.json")
    doc = load(store)
    reasons = {s["path"]: s["error"] for s in doc["skipped"]}
    assert set(reasons) == {*BAD, SMALL_BOMB}
    for path, words in {**BAD, SMALL_BOMB: ("bomb",)}.items():
        assert all(w in reasons[path].lower() for w in words), (path, reasons[path])
    assert [s["path"] for s in doc["skipped"]] == sorted(reasons)
    # Only the good images were counted, every pixel of them.
    flat = np.concatenate([a.reshape(-1, 3) for a in arrays]).astype(np.int64)
    assert doc["image_count"] == GOOD and doc["files"]["count"] == GOOD
    assert doc["pixel_count"] == GOOD * 16 * 12
    assert doc["sum"] == [int(v) for v in flat.sum(0)]
    assert doc["sum_sq"] == [int(v) for v in (flat * flat).sum(0)]
    # Each skipped file is reported on stderr as a warning (not an error).
    for path in reasons:
        assert path in done.stderr
    assert "imgstats: error" not in done.stderr and "Traceback" not in done.stderr


def test_max_errors_limit(corrupt_source, tmp_path, imgstats, scheduler):
    """Default pixel limit: 5 bad files (the 64x64 image is fine). 5 <= 5 passes; 5 > 4 fails."""
    source, _ = corrupt_source
    at_limit, over_limit = tmp_path / "at", tmp_path / "over"
    with ThreadPoolExecutor(2) as pool:
        passed, failed = pool.map(lambda args: imgstats(*args), [
            ("compute", str(source), "--out", str(at_limit), "--scheduler", scheduler,
             "--max-errors", "5"),
            ("compute", str(source), "--out", str(over_limit), "--scheduler", scheduler,
             "--max-errors", "4"),
        ])
    assert passed.returncode == 0, passed.stderr
    doc = load(at_limit)
    assert {s["path"] for s in doc["skipped"]} == set(BAD)
    assert doc["image_count"] == GOOD + 1
    line = one_error_line(failed, 1, empty_stdout=True)
    assert "5" in line and "4" in line
    assert_nothing_written(over_limit)


def test_on_error_fail_writes_nothing(corrupt_source, tmp_path, imgstats, scheduler):
    source, _ = corrupt_source
    failing, clean = tmp_path / "failing", tmp_path / "clean"
    with ThreadPoolExecutor(2) as pool:
        failed, passed = pool.map(lambda args: imgstats(*args), [
            ("compute", str(source), "--out", str(failing), "--scheduler", scheduler,
             "--on-error", "fail"),
            ("compute", str(source), "--out", str(clean), "--scheduler", scheduler,
             "--on-error", "fail", "--exclude", "bad/*"),
        ])
    line = one_error_line(failed, 1, empty_stdout=True)
    assert any(name in line for name in BAD), line
    assert_nothing_written(failing)
    # With nothing to skip, --on-error fail runs normally.
    assert passed.returncode == 0, passed.stderr
    assert load(clean)["image_count"] == GOOD and load(clean)["skipped"] == []


def test_all_files_corrupt_is_bad_input(tmp_path, imgstats, scheduler):
    source, store = tmp_path / "images", tmp_path / "stats"
    write_bad_files(source)
    line = one_error_line(imgstats("compute", str(source), "--out", str(store),
                                   "--scheduler", scheduler), 2, empty_stdout=True)
    assert str(len(BAD)) in line
    assert_nothing_written(store)


def test_bad_sources_are_bad_input(tmp_path, imgstats):
    no_images = tmp_path / "no_images"
    (no_images / "sub").mkdir(parents=True)
    (no_images / "readme.txt").write_text("text")
    (no_images / "sub" / "labels.csv").write_text("a,b\n")
    Image.new("RGB", (4, 4)).save(no_images / ".hidden.png")  # hidden files do not count
    a_file = tmp_path / "photo.png"
    Image.new("RGB", (4, 4)).save(a_file)
    sources = {
        "missing": (tmp_path / "missing", "does not exist"),
        "no images": (no_images, "no image files"),
        "a file": (a_file, "not a folder"),
    }
    with ThreadPoolExecutor(2) as pool:
        runs = list(pool.map(
            lambda item: imgstats(
                "compute", str(item[1][0]), "--out", str(tmp_path / f"stats-{item[0]}")
            ),
            sources.items(),
        ))
    for (name, (path, words)), done in zip(sources.items(), runs, strict=True):
        line = one_error_line(done, 2, empty_stdout=True)
        assert str(path) in line and words in line, (name, line)
        assert_nothing_written(tmp_path / f"stats-{name}")


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_unreachable_scheduler(tmp_path, imgstats):
    source = tmp_path / "images"
    source.mkdir()
    Image.new("RGB", (16, 12), (1, 2, 3)).save(source / "one.png")
    address = f"tcp://127.0.0.1:{closed_port()}"

    def run(args: tuple, env: dict | None) -> tuple[subprocess.CompletedProcess, float]:
        started = time.monotonic()
        done = imgstats("compute", str(source), *args, env=env, timeout=90)
        return done, time.monotonic() - started

    with ThreadPoolExecutor(2) as pool:
        by_flag = pool.submit(run, ("--out", str(tmp_path / "flag"), "--scheduler", address), None)
        by_env = pool.submit(run, ("--out", str(tmp_path / "env")),
                             {"DASK_SCHEDULER_ADDRESS": address})
        results = [by_flag.result(), by_env.result()]
    for (done, seconds), store in zip(results, ("flag", "env"), strict=True):
        line = one_error_line(done, 2, empty_stdout=True)
        assert address in line
        assert seconds < 45
        assert_nothing_written(tmp_path / store)
