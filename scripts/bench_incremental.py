"""Nightly-cron economics: an incremental run after 1% of the files changed, against a full run.

    python scripts/bench_incremental.py [--files 50000] [--changed 0.01] [--folder DIR]
    python scripts/bench_incremental.py --verify [--jpegs 4000] [--repeat 3]

Generates small PNGs (deterministic), runs a full compute, re-encodes a share of the files
in place (new pixels, so new size/mtime), then times in one go: the incremental run and a
``--full`` run over the same current files, and checks that both give the same statistics.
Also times the listing-versus-record diff alone at 10x the size, to show it stays linear.

``--verify``: what ``--verify`` costs against ``--full`` on scripts/bench.py's ImageNet-like
JPEG corpus (copied, since it is changed): after a full run, each round rewrites one file with
other bytes of the same size and restores its mtime (what size and mtime cannot see), then
times a ``--verify`` run (every file read and hashed, the one changed decoded) and a ``--full``
run (every file read and decoded), each starting its own local cluster as the CLI does, and
checks that both give the same statistics. Wall time includes the fixed costs (cluster and
sandbox start, listing, the record); task time is the workers' time in scan tasks. The
machine is shared: trust the ratios of one round.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

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
    parser.add_argument("--verify", action="store_true", help="--verify against --full, JPEGs")
    parser.add_argument("--jpegs", type=int, default=4000, help="with --verify: corpus size")
    parser.add_argument("--repeat", type=int, default=3, help="with --verify: rounds")
    parser.add_argument("--cache", type=Path, default=Path("/tmp/imgstats-bench"),
                        help="scripts/bench.py's corpus cache")
    args = parser.parse_args()
    if args.verify:
        verify_against_full(args)
        return
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


def rewrite_keeping_size_and_mtime(path: Path) -> None:
    """Other bytes, the same size, the old mtime: one byte in the middle of the JPEG's
    entropy-coded data changed."""
    before = path.stat()
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0x5A
    path.write_bytes(bytes(data))
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))


def verify_against_full(args: argparse.Namespace) -> None:
    from bench import ensure_corpus  # scripts/bench.py: its cached JPEG corpus

    corpus = ensure_corpus("jpeg", args.jpegs, args.cache, 0, args.workers)
    with tempfile.TemporaryDirectory() as temp:
        work = args.folder or Path(temp)
        images, store = work / "images", work / "stats"
        shutil.copytree(corpus, images, ignore=shutil.ignore_patterns(".complete"))
        files = sorted(images.rglob("*.jpg"))

        def run(**options: Any) -> tuple[dict[str, Any], float]:
            config = JobConfig(source=str(images), out=str(store), workers=args.workers,
                               threads_per_worker=1, quiet=True, **options)
            started = time.perf_counter()
            result = compute_stats(config)
            return result.stats.document, time.perf_counter() - started

        _, first_s = run()
        print(f"{len(files)} JPEGs ({sum(f.stat().st_size for f in files) / 2**20:.0f} MiB), "
              f"{args.workers} workers x 1 thread; first full run {first_s:.2f} s")
        print(f"{'round':<7}{'run':<10}{'wall s':>8}{'task s':>8}{'read':>7}{'decoded':>9}"
              f"{'verified':>10}")
        for round_ in range(1, args.repeat + 1):
            rewrite_keeping_size_and_mtime(files[round_ * 997 % len(files)])
            verified, verify_s = run(verify=True)
            full, full_s = run(full=True)
            for name, doc, seconds in (("--verify", verified, verify_s), ("--full", full, full_s)):
                info = doc["run"]
                print(f"{round_:<7}{name:<10}{seconds:>8.2f}{info['task_seconds']:>8.2f}"
                      f"{info['files_read']:>7}{info['files_decoded']:>9}"
                      f"{info['files_verified']:>10}")
            same = {k: v for k, v in verified.items() if k not in RUN_KEYS} == {
                k: v for k, v in full.items() if k not in RUN_KEYS}
            tasks = verified["run"]["task_seconds"] / full["run"]["task_seconds"]
            print(f"{round_:<7}verify / full: wall {verify_s / full_s:.3f} (full is "
                  f"{full_s / verify_s:.1f}x the time), worker task time {tasks:.3f}; "
                  f"identical statistics: {same}")


if __name__ == "__main__":
    main()
