"""Load: many pages of S3 listing, one shard of very many files, memory that stays bounded.
Slow (run with ``-m slow``); each prints its figures for the README's reliability section."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time

import numpy as np
import pytest
from PIL import Image

from pipeline.fs.listing import iter_images
from pipeline.fs.location import resolve

pytestmark = pytest.mark.slow

BUCKET = "imgstats-test"


def tiny_png(value: int) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(np.full((4, 4, 3), value % 256, dtype=np.uint8)).save(buffer, "PNG")
    return buffer.getvalue()


def test_listing_20000_objects_over_many_pages(s3):
    fs, options = s3
    payloads = {f"{BUCKET}/many/{i // 1000:02d}/{i:06d}.png": tiny_png(i) for i in range(20_000)}
    payloads[f"{BUCKET}/many/notes.txt"] = b"not an image"
    fs.pipe(payloads)
    location = resolve(f"s3://{BUCKET}/many", options)
    started = time.perf_counter()
    entries = list(iter_images(location.filesystem(), location.path))
    seconds = time.perf_counter() - started
    print(f"listed {len(entries)} objects in {seconds:.1f} s")
    assert len(entries) == 20_000
    assert entries[0].path == "00/000000.png" and entries[-1].path == "19/019999.png"
    assert all(entry.token for entry in entries)  # every object has its ETag


SCAN_ONE_SHARD = """
import json, resource, sys, time
from pipeline.config import ScanOptions
from pipeline.core.files import FileEntry, Shard
from pipeline.fs.location import resolve
from pipeline.run.scan import scan_shard
folder, count = sys.argv[1], int(sys.argv[2])
entries = tuple(FileEntry(f"{i:06d}.png", 0, "") for i in range(count))
started = time.perf_counter()
result = scan_shard(resolve(folder), Shard(0, entries), ScanOptions("rgb"))
print(json.dumps({"images": sum(result.images.values()), "seconds": time.perf_counter() - started,
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def scan_in_subprocess(folder, count: int) -> dict:
    done = subprocess.run([sys.executable, "-c", SCAN_ONE_SHARD, str(folder), str(count)],
                          capture_output=True, text=True, check=True)
    return json.loads(done.stdout)


def test_one_shard_of_50000_files_has_bounded_memory(tmp_path):
    data = tiny_png(7)
    for i in range(50_000):
        (tmp_path / f"{i:06d}.png").write_bytes(data)
    small = scan_in_subprocess(tmp_path, 1_000)
    large = scan_in_subprocess(tmp_path, 50_000)
    print(f"one shard: 1,000 files {small['max_rss_mb']:.0f} MB peak RSS, "
          f"50,000 files {large['max_rss_mb']:.0f} MB ({large['seconds']:.1f} s)")
    assert large["images"] == 50_000
    assert large["max_rss_mb"] - small["max_rss_mb"] < 64  # no per-file growth to speak of


HUGE_SCAN = """
import json, resource, sys
from pipeline.config import ScanOptions
from pipeline.core.files import FileEntry, Shard
from pipeline.fs.location import resolve
from pipeline.run.scan import scan_shard
result = scan_shard(resolve(sys.argv[1]), Shard(0, (FileEntry("huge.png", 0, ""),)),
                    ScanOptions("gray", max_image_pixels=int(sys.argv[2])))
summary = next(iter(result.summaries.values()), None)
moments = summary.moments() if summary is not None else None
counted = (moments.count, moments.sum[0], moments.sum_sq[0]) if moments else None
print(json.dumps({"counted": counted, "skipped": [s.error for s in result.skipped],
                  "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def test_one_100_megapixel_image_with_a_raised_pixel_limit(tmp_path):
    side = 10_000
    row = (np.arange(side, dtype=np.uint64) % 256).astype(np.uint8)
    Image.fromarray(np.broadcast_to(row, (side, side))).save(tmp_path / "huge.png", "PNG")

    def scan(limit: int) -> dict:
        done = subprocess.run([sys.executable, "-c", HUGE_SCAN, str(tmp_path), str(limit)],
                              capture_output=True, text=True, check=True)
        return json.loads(done.stdout)

    result = scan(side * side)  # above Pillow's default limit of ~89.5 MP
    row_sum = sum(v % 256 for v in range(side))
    row_sum_sq = sum((v % 256) ** 2 for v in range(side))
    print(f"one {side}x{side} gray PNG: peak RSS {result['max_rss_mb']:.0f} MB")
    assert result["skipped"] == []
    assert result["counted"] == [side * side, row_sum * side, row_sum_sq * side]
    assert result["max_rss_mb"] < 235 + 3 * side * side / 2**20  # the image plus a constant
    refused = scan(side * side - 1)
    assert refused["counted"] is None
    assert "decompression bomb" in refused["skipped"][0]
