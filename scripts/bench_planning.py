"""Planning at scale: listing, sharding and graph submission for a million files, on the client.

    python scripts/bench_planning.py                      # 1,000,000 ImageNet-size files
    python scripts/bench_planning.py --file-kb 3          # 1,000,000 CIFAR-size files
    python scripts/bench_planning.py --unbatched          # submit all shards in one message

The listing is synthetic (``FileEntry`` objects, as :func:`pipeline.fs.listing.list_images` returns
them after walking a bucket, in sorted order, then sorted again as it does); sharding is
:func:`pipeline.core.files.make_shards` with the defaults ``imgstats compute`` uses; submission is
:func:`pipeline.run.graph.submit_scan` on a LocalCluster with no workers, so nothing runs: the
figures are the client's own (the LocalCluster's scheduler lives in the client process, as with
``imgstats compute`` without ``--scheduler``), timed until the scheduler holds every task.
Reports time and resident memory per step, peak RSS, and whether distributed warned
"Sending large graph" (goal: under 30 s and 1.5 GB, no warning).
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
import tempfile
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.append(str(ROOT))  # after PYTHONPATH: another checkout of pipeline can be measured

from distributed import Client, LocalCluster  # noqa: E402

from pipeline.config import (  # noqa: E402
    DEFAULT_SHARD_BYTES,
    DEFAULT_SHARD_FILES,
    DEFAULT_SPLIT_EVERY,
    ScanOptions,
)
from pipeline.core.files import FileEntry, make_shards  # noqa: E402
from pipeline.fs.location import resolve  # noqa: E402
from pipeline.run import graph  # noqa: E402

#: ``imgstats compute`` asks for at least this many shards per worker thread (job.py).
SHARDS_PER_THREAD = 4


def rss_mb() -> float:
    """Current resident set size of this process, MB."""
    with open("/proc/self/statm") as f:
        pages = int(f.read().split()[1])
    return pages * resource.getpagesize() / 2**20


def peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_listing(files: int, file_kb: float) -> list[FileEntry]:
    """ImageNet-like relative paths (1,000 classes), sizes around ``file_kb``, mtime tokens."""
    per_class = max(1, -(-files // 1000))
    mean = int(file_kb * 1024)
    return [
        FileEntry(
            f"train/n{i // per_class:08d}/n{i // per_class:08d}_{i:07d}.JPEG",
            mean // 2 + (i * 2654435761) % (mean + 1),  # deterministic spread, 0.5-1.5 x mean
            f"{1_700_000_000 + i * 0.37:.6f}",
        )
        for i in range(files)
    ]


class _GraphWarnings(logging.Handler):
    """Counts 'Sending large graph' from warnings and from distributed's loggers."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "large graph" in record.getMessage():
            self.count += 1


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--files", type=int, default=1_000_000)
    parser.add_argument("--file-kb", type=float, default=110, help="mean file size (110: ImageNet)")
    parser.add_argument("--threads", type=int, default=2, help="worker threads to plan for")
    parser.add_argument(
        "--unbatched", action="store_true", help="submit every shard in one message (as before)"
    )
    args = parser.parse_args()
    if args.unbatched:
        graph.SUBMIT_BATCH_FRACTION = 1e9

    steps: list[tuple[str, float, float]] = []
    start_rss = rss_mb()
    started = time.perf_counter()
    entries = synthetic_listing(args.files, args.file_kb)
    entries.sort()  # list_images sorts its listing
    steps.append(("listing (synthetic FileEntry list, sorted)", time.perf_counter(), rss_mb()))

    shards = make_shards(
        entries,
        DEFAULT_SHARD_BYTES,
        DEFAULT_SHARD_FILES,
        min_shards=args.threads * SHARDS_PER_THREAD,
    )
    steps.append((f"make_shards: {len(shards)} shards", time.perf_counter(), rss_mb()))

    counter = _GraphWarnings()
    logging.getLogger("distributed").addHandler(counter)
    logging.captureWarnings(True)
    logging.getLogger("py.warnings").addHandler(counter)
    location = resolve(tempfile.mkdtemp(prefix="imgstats-planning-"), {})
    with (
        warnings.catch_warnings(),
        LocalCluster(n_workers=0, dashboard_address=None, processes=True) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        warnings.simplefilter("always")
        steps.append(("LocalCluster (no workers) + client", time.perf_counter(), rss_mb()))
        scans, _final = graph.submit_scan(
            client, location, shards, ScanOptions("rgb", None), DEFAULT_SPLIT_EVERY
        )
        steps.append(("submit_scan returned", time.perf_counter(), rss_mb()))
        expected = len(scans) + sum(_merge_levels(len(scans)))
        while client.run_on_scheduler(_task_count) < expected:
            time.sleep(0.05)
        steps.append((f"scheduler holds all {expected} tasks", time.perf_counter(), rss_mb()))
    total = time.perf_counter() - started

    print(f"scripts/bench_planning.py {' '.join(sys.argv[1:])}")
    print(
        f"{args.files:,} files of ~{args.file_kb:g} KB; shard limits {DEFAULT_SHARD_BYTES:,} B / "
        f"{DEFAULT_SHARD_FILES:,} files; batch fraction {graph.SUBMIT_BATCH_FRACTION:g}\n"
    )
    print("| step | done at, s | RSS after, MB |")
    print("| --- | ---: | ---: |")
    print(f"| start | 0.00 | {start_rss:,.0f} |")
    for name, when, rss in steps:
        print(f"| {name} | {when - started:.2f} | {rss:,.0f} |")
    print(
        f"\ntotal {total:.2f} s; peak RSS {peak_mb():,.0f} MB; "
        f"'Sending large graph' warnings: {counter.count}"
    )


def _merge_levels(count: int, split_every: int = graph.DEFAULT_SPLIT_EVERY) -> list[int]:
    """Merge tasks per level of the tree reduction over ``count`` results."""
    levels = []
    while count > 1:
        count = -(-count // split_every)
        levels.append(count)
    return levels


def _task_count(dask_scheduler: object) -> int:
    return len(dask_scheduler.tasks)  # type: ignore[attr-defined]


if __name__ == "__main__":
    main()
