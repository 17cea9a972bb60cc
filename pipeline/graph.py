"""The only module that imports Dask: start or attach a cluster, map shards, tree-reduce.

One task per shard returns that shard's :class:`~pipeline.scan.ScanResult`; merge tasks
combine ``split_every`` results at a time until one is left, and only that one comes back
to the client.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import uuid
from collections.abc import Iterator, Sequence
from functools import partial

from distributed import Client, LocalCluster, progress

from .decode import Mode
from .errors import ImgstatsError, SchedulerError
from .listing import Shard
from .location import Location
from .scan import ScanResult, merge_results, scan_shard

__all__ = ["DEFAULT_SPLIT_EVERY", "dask_client", "run_scan"]

log = logging.getLogger(__name__)

DEFAULT_SPLIT_EVERY = 8
#: Task retries: a transient read error that outlasts the in-task retries fails the task,
#: and Dask runs it again (on any worker) this many times before the run fails.
TASK_RETRIES = 2


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    processes: bool = True,
    timeout: float = 10,
) -> Iterator[Client]:
    """A client on ``scheduler``, or on a LocalCluster started for the block and closed after."""
    if scheduler:
        try:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise SchedulerError(f"cannot reach Dask scheduler at {scheduler}: {exc}") from exc
        with client:
            log.info("attached to Dask scheduler %s (dashboard %s)", scheduler,
                     client.dashboard_link)
            yield client
        return
    with (
        LocalCluster(
            n_workers=workers,
            threads_per_worker=threads_per_worker or 1,
            processes=processes,
            dashboard_address=":0",
            silence_logs=logging.ERROR,
        ) as cluster,
        Client(cluster, set_as_default=False) as client,
    ):
        log.info(
            "started local Dask cluster: %d workers (dashboard %s)",
            len(cluster.workers),
            client.dashboard_link,
        )
        yield client


def run_scan(
    client: Client,
    location: Location,
    shards: Sequence[Shard],
    mode: Mode,
    *,
    split_every: int = DEFAULT_SPLIT_EVERY,
    max_image_pixels: int | None,
    keep_rows: bool = False,
    show_progress: bool = False,
) -> ScanResult:
    """Scan every shard on the cluster and tree-reduce the results to one."""
    if split_every < 2:
        raise ValueError("split_every must be at least 2")
    if not shards:
        return ScanResult()
    token = uuid.uuid4().hex[:12]
    task = partial(
        scan_shard,
        location,
        mode=mode,
        max_image_pixels=max_image_pixels,
        keep_rows=keep_rows,
    )
    level = client.map(
        task,
        list(shards),
        key=[f"imgstats-scan-{token}-{shard.index}" for shard in shards],
        retries=TASK_RETRIES,
        pure=False,
    )
    scans = list(level)
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
    if show_progress and sys.stderr.isatty():
        progress(scans + level, notebook=False)
    try:
        return level[0].result()
    except ImgstatsError:
        raise
    except Exception as exc:
        raise ImgstatsError(f"run failed: {type(exc).__name__}: {exc}") from exc
