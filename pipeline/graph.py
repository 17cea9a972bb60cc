"""The only module that imports Dask: start or attach a cluster, map shards, tree-reduce.

One task per shard returns that shard's :class:`~pipeline.scan.ScanResult`; merge tasks
combine ``split_every`` results at a time until one is left, and only that one comes back
to the client. Shards are submitted in batches that each stay far below distributed's
"large graph" threshold, so a million-file listing never goes to the scheduler as one message.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import signal
import socket
import uuid
from collections.abc import Callable, Iterator, Sequence
from functools import partial
from typing import Any

import dask
from dask.utils import parse_bytes
from distributed import Client, Future, LocalCluster, as_completed
from distributed.comm.addressing import parse_address, parse_host_port

from .decode import Mode
from .errors import ImgstatsError, SchedulerError
from .listing import Shard
from .location import Location
from .sandbox import scan_in_sandbox
from .scan import ScanResult, merge_results, scan_shard
from .signals import sigint_blocked

__all__ = ["DEFAULT_SPLIT_EVERY", "OnFilesDone", "dask_client", "run_scan", "submit_scan"]

log = logging.getLogger(__name__)

DEFAULT_SPLIT_EVERY = 8
#: Task retries: a transient read error that outlasts the in-task retries fails the task,
#: and Dask runs it again (on any worker) this many times before the run fails.
TASK_RETRIES = 2
#: Worker environment of the LocalCluster imgstats starts itself (its nannies set it before
#: spawning each worker). Dask's default ``MALLOC_TRIM_THRESHOLD_=65536`` makes glibc hand
#: freed memory back at once and mmap every buffer over 128 KB, so each image's buffers land
#: on fresh, zeroed pages: measured scan_shard CPU per JPEG file in one process, 1.5x on the
#: fast path and 2.5x on Pillow's; in a 4,000-JPEG run, +21% worker decode CPU. Buffers up to
#: 32 MB now come from the heap and up to 64 MB of free heap is kept; larger images are still
#: mmapped and returned. Left alone when either variable is in the environment (the nannies
#: pass it on) or the configuration has another trim threshold.
LOCAL_WORKER_ENVIRON = {
    "MALLOC_TRIM_THRESHOLD_": str(64 * 2**20),
    "MALLOC_MMAP_THRESHOLD_": str(32 * 2**20),
}
_DASK_DEFAULT_TRIM = "65536"
#: Each graph submission carries at most this fraction of distributed's large-graph warning
#: threshold (``distributed.admin.large-graph-warning-threshold``, 10 MB by default).
SUBMIT_BATCH_FRACTION = 0.25
#: Estimated pickled bytes of a listing entry beyond its path and token.
_ENTRY_OVERHEAD_BYTES = 40

#: Called with the number of files of each shard as its scan finishes (progress display).
OnFilesDone = Callable[[int], None]


@contextlib.contextmanager
def dask_client(
    scheduler: str | None = None,
    workers: int | None = None,
    threads_per_worker: int | None = None,
    processes: bool = True,
    timeout: float = 10,
) -> Iterator[Client]:
    """A client on ``scheduler``, or on a LocalCluster started for the block and closed after.

    A refused connection fails at once; a scheduler that does not answer, after ``timeout``
    seconds. The LocalCluster's processes do not see the terminal's Ctrl-C (see
    :mod:`pipeline.signals`); when the block ends with an exception (Ctrl-C among them) its
    workers are killed rather than waited for.
    """
    if scheduler:
        _check_reachable(scheduler, timeout)
        try:
            client = Client(scheduler, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError, ValueError) as exc:
            raise SchedulerError(f"cannot reach Dask scheduler at {scheduler}: {exc}") from exc
        with client:
            log.info(
                "attached to Dask scheduler %s (dashboard %s)", scheduler, client.dashboard_link
            )
            yield client
        return
    with contextlib.ExitStack() as stack:
        stack.enter_context(
            dask.config.set(
                {
                    "distributed.nanny.pre-spawn-environ": _worker_environ(),
                    # The workers' statistical profiler takes the GIL every 10 ms: 1-6% of a
                    # worker's CPU samples in py-spy profiles of JPEG and PNG runs.
                    "distributed.worker.profile.enabled": False,
                }
            )
        )
        with sigint_blocked():  # see pipeline.signals
            cluster = stack.enter_context(
                LocalCluster(
                    n_workers=workers,
                    threads_per_worker=threads_per_worker or 1,
                    processes=processes,
                    dashboard_address="127.0.0.1:0",
                    silence_logs=logging.CRITICAL,  # task errors are reported once, by the CLI
                )
            )
        client = stack.enter_context(Client(cluster, set_as_default=False))
        log.info(
            "started local Dask cluster: %d workers (dashboard %s)",
            len(cluster.workers),
            client.dashboard_link,
        )
        try:
            yield client
        except BaseException:
            _kill_workers(cluster)  # their results are not wanted: do not wait for them
            raise


def _check_reachable(address: str, timeout: float) -> None:
    """Fail fast, with one line, on an address that cannot be a scheduler or that refuses."""
    try:
        scheme, where = parse_address(address)
        host, port = parse_host_port(where) if scheme in ("tcp", "tls") else ("", 0)
    except (ValueError, TypeError) as exc:
        raise SchedulerError(f"{address!r} is not a Dask scheduler address: {exc}") from None
    if not host:
        return  # another transport: the client says what goes wrong
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            pass
    except ConnectionRefusedError:
        raise SchedulerError(
            f"cannot reach Dask scheduler at {address}: connection refused"
        ) from None
    except TimeoutError:
        raise SchedulerError(
            f"cannot reach Dask scheduler at {address}: no answer within {timeout:g} s "
            "(--scheduler-timeout)"
        ) from None
    except OSError as exc:
        reason = exc.strerror or type(exc).__name__
        raise SchedulerError(f"cannot reach Dask scheduler at {address}: {reason}") from None


def _kill_workers(cluster: LocalCluster) -> None:
    """SIGKILL the cluster's worker processes (their sandboxes die with them)."""
    for nanny in list(cluster.workers.values()):
        process = getattr(nanny, "process", None)
        pid = getattr(process, "pid", None)
        if pid:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def _worker_environ() -> dict[str, Any]:
    """Dask's pre-spawn environment with :data:`LOCAL_WORKER_ENVIRON` where not configured."""
    environ = dict(dask.config.get("distributed.nanny.pre-spawn-environ", default={}) or {})
    configured = str(environ.get("MALLOC_TRIM_THRESHOLD_", _DASK_DEFAULT_TRIM))
    if configured == _DASK_DEFAULT_TRIM and not any(k in os.environ for k in LOCAL_WORKER_ENVIRON):
        environ.update(LOCAL_WORKER_ENVIRON)
    return environ


def run_scan(
    client: Client,
    location: Location,
    shards: Sequence[Shard],
    mode: Mode,
    *,
    split_every: int = DEFAULT_SPLIT_EVERY,
    max_image_pixels: int | None,
    decode_timeout: float = 0,
    keep_rows: bool = False,
    on_files_done: OnFilesDone | None = None,
) -> ScanResult:
    """Scan every shard on the cluster and tree-reduce the results to one.

    ``on_files_done(n)`` is called (in this thread) as each shard of ``n`` files is scanned.
    """
    if split_every < 2:
        raise ValueError("split_every must be at least 2")
    if not shards:
        return ScanResult()
    scans, final = submit_scan(
        client,
        location,
        shards,
        mode,
        split_every=split_every,
        max_image_pixels=max_image_pixels,
        decode_timeout=decode_timeout,
        keep_rows=keep_rows,
    )
    try:
        if on_files_done is not None:
            sizes = {scan.key: len(shard.files) for scan, shard in zip(scans, shards, strict=True)}
            for scan in as_completed(scans, loop=client.loop):
                on_files_done(sizes[scan.key])
        result = final.result()
    except ImgstatsError:
        raise
    except Exception as exc:
        raise ImgstatsError(f"run failed: {type(exc).__name__}: {exc}") from exc
    return dataclasses.replace(result, task_retries=_task_retries(client, scans))


def _task_retries(client: Client, futures: Sequence[Future]) -> int:
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
    mode: Mode,
    *,
    split_every: int = DEFAULT_SPLIT_EVERY,
    max_image_pixels: int | None,
    decode_timeout: float = 0,
    keep_rows: bool = False,
) -> tuple[list[Future], Future]:
    """Submit the scan tasks, in batches, and the merge tree: (scan futures, final future).

    With a ``decode_timeout`` (seconds), each task decodes in a sandbox process
    (:mod:`pipeline.sandbox`): a file that hangs or crashes its decoder is skipped.
    """
    token = uuid.uuid4().hex[:12]
    options: dict[str, Any] = {
        "mode": mode,
        "max_image_pixels": max_image_pixels,
        "keep_rows": keep_rows,
    }
    if decode_timeout:
        task = partial(scan_in_sandbox, location, decode_timeout=decode_timeout, **options)
    else:
        task = partial(scan_shard, location, **options)
    scans: list[Future] = []
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
