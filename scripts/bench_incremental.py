"""Nightly-cron economics: an incremental run after 1% of the files changed, against a full run.

    python scripts/bench_incremental.py [--files 50000] [--changed 0.01] [--folder DIR]

Generates small PNGs (deterministic), runs a full compute, re-encodes a share of the files
in place (new pixels, so new size/mtime), then times in one go: the incremental run and a
``--full`` run over the same current files, and checks that both give the same statistics.
Also times the listing-versus-record diff alone at 10x the size, to show it stays linear.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline import JobConfig, compute_stats
from pipeline.core.files import FileEntry
from pipeline.run.incremental import plan

RUN_KEYS = {"version", "parent", "created", "run", "record"}


def write_png(path: Path, rng: np.random.Generator) -> None:
    Image.fromarray(rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)).save(path, "PNG")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=50_000)
    parser.add_argument("--changed", type=float, default=0.01)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--folder", type=Path, help="work folder (default: a temp folder)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as temp:
        work = args.folder or Path(temp)
        images, store = work / "images", work / "stats"
        rng = np.random.default_rng(0)
        started = time.perf_counter()
        for i in range(args.files):
            folder = images / f"{i // 1000:03d}"
            if i % 1000 == 0:
                folder.mkdir(parents=True, exist_ok=True)
            write_png(folder / f"{i:07d}.png", rng)
        print(f"generated {args.files} 32x32 PNGs in {time.perf_counter() - started:.1f} s")

        def run(**options):
            config = JobConfig(source=str(images), out=str(store), workers=args.workers,
                               threads_per_worker=1, **options)
            started = time.perf_counter()
            result = compute_stats(config)
            return result, time.perf_counter() - started

        first, first_s = run()
        changed = rng.choice(args.files, int(args.files * args.changed), replace=False)
        for i in sorted(changed):
            write_png(images / f"{i // 1000:03d}" / f"{i:07d}.png", rng)
        incremental, incremental_s = run()
        full, full_s = run(full=True)
        same = {k: v for k, v in incremental.stats.document.items() if k not in RUN_KEYS} == {
            k: v for k, v in full.stats.document.items() if k not in RUN_KEYS
        }
        print(f"{'run':<28}{'wall s':>8}{'files read':>12}{'bytes read':>13}")
        rows = (("first full run", first, first_s), ("incremental (after change)", incremental,
                incremental_s), ("full run (same files)", full, full_s))
        for name, result, seconds in rows:
            run_info = result.stats.document["run"]
            print(f"{name:<28}{seconds:>8.2f}{run_info['files_read']:>12}"
                  f"{run_info['bytes_read']:>13}")
        bytes_ratio = (incremental.stats.document["run"]["bytes_read"]
                       / full.stats.document["run"]["bytes_read"])
        print(f"incremental / full: wall {incremental_s / full_s:.3f}, bytes {bytes_ratio:.3f}; "
              f"identical statistics: {same}")

    for n in (args.files, args.files * 10):
        previous = [FileEntry(f"{i:08d}.png", 100, "t") for i in range(n)]
        current = [FileEntry(e.path, e.size, "u" if i % 100 == 0 else "t")
                   for i, e in enumerate(previous)]
        started = time.perf_counter()
        planned = plan(current, previous)
        print(f"diff of {n} listed files against the record: "
              f"{time.perf_counter() - started:.3f} s ({len(planned.to_read)} to read)")


if __name__ == "__main__":
    main()
