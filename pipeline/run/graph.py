"""The Dask graph of a scan: one task per shard, a tree of merges, only the result comes back.

One task per shard returns that shard's :class:`~pipeline.core.result.ScanResult`; merge tasks
combine ``split_every`` results at a time until one is left, and only that one comes back
to the client. Shards are submitted in batches that each stay far below distributed's
"large graph" threshold, so a million-file listing never goes to the scheduler as one message.
"""

from __future__ import annotations

import dataclasses
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import dask
from dask.utils import parse_bytes
from distributed import Client, Future, as_completed

from ..config import ScanOptions
from ..core.files import Shard
from ..core.result import ScanResult, merge_results
from ..errors import ImgstatsError
from ..fs.location import Location
from .sandbox import scan_in_sandbox
from .scan import scan_shard

__all__ = ["OnFilesDone", "run_scan", "submit_scan"]

log = logging.getLogger(__name__)

#: Task retries: a transient read error that outlasts the in-task retries fails the task,
#: and Dask runs it again (on any worker) this many times before the run fails.
TASK_RETRIES = 2
#: Each graph submission carries at most this fraction of distributed's large-graph warning
#: threshold (``distributed.admin.large-graph-warning-threshold``, 10 MB by default).
SUBMIT_BATCH_FRACTION = 0.25
#: Estimated pickled bytes of a listing entry beyond its path and token.
_ENTRY_OVERHEAD_BYTES = 40

#: Called with the number of files of each shard as its scan finishes (progress display).
OnFilesDone = Callable[[int], None]


def run_scan(
    client: Client,
    location: Location,
    shards: Sequence[Shard],
    options: ScanOptions,
    split_every: int,
    on_files_done: OnFilesDone | None = None,
) -> ScanResult:
    """Scan every shard on the cluster and tree-reduce the results to one.

    ``on_files_done(n)`` is called (in this thread) as each shard of ``n`` files is scanned.
    """
    if not shards:
        return ScanResult()
    scans, final = submit_scan(client, location, shards, options, split_every)
    try:
        if on_files_done is not None:
            sizes = {scan.key: len(shard.files) for scan, shard in zip(scans, shards, strict=True)}
            for scan in as_completed(scans, loop=client.loop):
                on_files_done(sizes[scan.key])
        result: ScanResult = final.result()
    except ImgstatsError:
        raise
    except Exception as exc:
        raise ImgstatsError(f"run failed: {type(exc).__name__}: {exc}") from exc
    return dataclasses.replace(result, task_retries=_task_retries(client, scans))


def _task_retries(client: Client, futures: Sequence[Future[ScanResult]]) -> int:
    """How many times these tasks failed and were run again (0 if the scheduler cannot say)."""

    def count(keys: list[str], allowed: int, dask_scheduler: Any = None) -> int:
        tasks = dask_scheduler.tasks
        return sum(allowed - tasks[key].retries for key in keys if key in tasks)

    try:
        # A nested function travels by value: the scheduler needs no imgstats installed.
        return int(client.run_on_scheduler(count, [f.key for f in futures], TASK_RETRIES))
    except Exception as exc:
        log.debug("cannot count task retries: %s", exc)
        return 0


def submit_scan(
    client: Client,
    location: Location,
    shards: Sequence[Shard],
    options: ScanOptions,
    split_every: int,
) -> tuple[list[Future[ScanResult]], Future[ScanResult]]:
    """Submit the scan tasks, in batches, and the merge tree: (scan futures, final future).

    With a decode time limit (``options.decode_timeout``), each task decodes in a sandbox
    process (:mod:`pipeline.run.sandbox`): a file that hangs or crashes its decoder is skipped.
    """
    token = uuid.uuid4().hex[:12]
    scan: Callable[..., ScanResult] = scan_in_sandbox if options.decode_timeout else scan_shard
    task = partial(scan, location, options=options)
    scans: list[Future[ScanResult]] = []
    for batch in _batches(shards, _batch_bytes()):
        scans += client.map(
            task,
            batch,
            key=[f"imgstats-scan-{token}-{shard.index}" for shard in batch],
            retries=TASK_RETRIES,
            pure=False,
        )
    level = scans
    depth = 0
    while len(level) > 1:
        depth += 1
        level = [
            client.submit(
                merge_results,
                level[start : start + split_every],
                key=f"imgstats-merge-{token}-{depth}-{start}",
                pure=False,
            )
            for start in range(0, len(level), split_every)
        ]
    return scans, level[0]


def _batch_bytes() -> int:
    threshold = dask.config.get("distributed.admin.large-graph-warning-threshold", default="10MB")
    return max(1, int(parse_bytes(threshold) * SUBMIT_BATCH_FRACTION))


def _batches(shards: Sequence[Shard], limit: int) -> Iterator[list[Shard]]:
    """Consecutive shards whose estimated pickled size adds up to at most ``limit`` bytes
    (a single larger shard goes alone)."""
    batch: list[Shard] = []
    size = 0
    for shard in shards:
        cost = sum(len(e.path) + len(e.token) for e in shard.files)
        cost += _ENTRY_OVERHEAD_BYTES * len(shard.files)
        if batch and size + cost > limit:
            yield batch
            batch, size = [], 0
        batch.append(shard)
        size += cost
    if batch:
        yield batch
