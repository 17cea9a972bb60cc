"""Scan tasks on the cluster, streaming: shards are submitted as they come, at most a window of
them at once, and each result comes back as its task finishes.

One task per shard returns that shard's :class:`~pipeline.core.result.ScanResult` (its
summaries per group and layout, its skips, its record segments); the caller merges results as
they arrive, exactly, in any order. Shards are pulled from their iterator only when the window
has room, so the listing, the shards and the results all stream: the client holds at most a
window of shards, whatever the size of the collection.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from itertools import islice
from typing import Any, TypeVar

from distributed import Client, Future, as_completed

from ..config import ScanOptions
from ..core.files import Shard
from ..core.result import ScanResult
from ..errors import ImgstatsError
from ..fs.location import Location
from .sandbox import scan_in_sandbox
from .scan import scan_shard

__all__ = ["TASK_RETRIES", "stream_scans"]

log = logging.getLogger(__name__)

#: Task retries: a transient read error that outlasts the in-task retries fails the task,
#: and Dask runs it again (on any worker) this many times before the run fails.
TASK_RETRIES = 2
#: Finished tasks whose retries are counted on the scheduler in one call, before release.
_COUNT_EVERY = 256

T = TypeVar("T")


class Retries:
    """Task retries, counted on the scheduler for finished tasks before they are released."""

    def __init__(self, client: Client) -> None:
        self.client = client
        self.count = 0
        self._done: list[Future[Any]] = []

    def finished(self, future: Future[Any]) -> None:
        self._done.append(future)
        if len(self._done) >= _COUNT_EVERY:
            self.flush()

    def flush(self) -> None:
        def count(keys: list[str], allowed: int, dask_scheduler: Any = None) -> int:
            tasks = dask_scheduler.tasks
            return sum(allowed - tasks[key].retries for key in keys if key in tasks)

        done, self._done = self._done, []
        if not done:
            return
        try:  # a nested function travels by value: the scheduler needs no imgstats installed
            self.count += int(self.client.run_on_scheduler(count, [f.key for f in done],
                                                           TASK_RETRIES))
        except Exception as exc:
            log.debug("cannot count task retries: %s", exc)
        for future in done:
            future.release()


def stream_scans(
    client: Client,
    location: Location,
    options: ScanOptions,
    shards: Iterable[tuple[T, Shard]],
    window: int,
    retries: Retries | None = None,
) -> Iterator[tuple[T, ScanResult]]:
    """Scan each ``(tag, shard)`` on the cluster, at most ``window`` at once, and yield
    ``(tag, result)`` as each finishes (in no particular order).

    With a decode time limit (``options.decode_timeout``), each task decodes in a sandbox
    process (:mod:`pipeline.run.sandbox`): a file that hangs or crashes its decoder is skipped.
    A task that still fails after its retries fails the run with one line.
    """
    token = uuid.uuid4().hex[:12]
    scan: Callable[..., ScanResult] = scan_in_sandbox if options.decode_timeout else scan_shard
    task = partial(scan, location, options=options)
    pending = iter(shards)
    tags: dict[str, T] = {}
    running = as_completed([], loop=client.loop, with_results=True)

    def submit(count: int) -> None:
        for tag, shard in islice(pending, count):
            key = f"imgstats-scan-{token}-{shard.index}"
            tags[key] = tag
            running.add(client.submit(task, shard, key=key, retries=TASK_RETRIES, pure=False))

    submit(window)
    try:
        while tags:
            future, result = next(running)
            tag = tags.pop(str(future.key))
            if retries is not None:
                retries.finished(future)
            else:
                future.release()
            submit(1)  # one in, one out: the window stays full while shards remain
            yield tag, result
    except ImgstatsError:
        raise
    except Exception as exc:
        raise ImgstatsError(f"run failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if tags:  # stopped early (an error, Ctrl-C): nothing more is wanted
            with running.lock:
                waiting = list(running.futures)
            client.cancel(waiting)
        if retries is not None:
            retries.flush()
