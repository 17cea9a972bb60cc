"""Scan tasks on the cluster, streaming: shards are submitted as they come, at most a window of
them at once, and each result comes back as its task finishes.

One task per shard returns that shard's :class:`~pipeline.core.result.ScanResult` (its
summaries per group and layout, its skips, its record segments); the caller merges results as
they arrive, exactly, in any order. Shards are pulled from their iterator only when the window
has room, so the listing, the shards and the results all stream: the client holds at most a
window of shards, whatever the size of the collection. The iterator can also ask for a result
before it is asked again (back-pressure of its own): it yields None.
"""

from __future__ import annotations

import logging
import uuid
from asyncio import CancelledError
from collections.abc import Callable, Iterable, Iterator
from functools import partial
from typing import TypeVar

from distributed import Client, as_completed
from distributed.scheduler import KilledWorker

from ..config import ScanOptions
from ..core.files import Shard
from ..core.result import ScanResult
from ..errors import ImgstatsError
from ..fs.location import Location
from .sandbox import scan_in_sandbox
from .scan import scan_shard

__all__ = ["TASK_RETRIES", "Retries", "stream_scans"]

log = logging.getLogger(__name__)

#: Task retries: a transient read error that outlasts the in-task retries fails the task,
#: and it runs again (on any worker) this many times before the run fails.
TASK_RETRIES = 2

T = TypeVar("T")
_END = object()


class Retries:
    """How many scan tasks failed and ran again (the run's ``retries.tasks``)."""

    def __init__(self) -> None:
        self.count = 0


def stream_scans(
    client: Client,
    location: Location,
    options: ScanOptions,
    shards: Iterable[tuple[T, Shard] | None],
    window: int,
    retries: Retries | None = None,
) -> Iterator[tuple[T, ScanResult]]:
    """Scan each ``(tag, shard)`` on the cluster, at most ``window`` at once, and yield
    ``(tag, result)`` as each finishes (in no particular order). A None from ``shards`` stops
    the pulling until the next result (or goes on at once when nothing is in flight).

    With a decode time limit (``options.decode_timeout``), each task decodes in a sandbox
    process (:mod:`pipeline.run.sandbox`): a file that hangs or crashes its decoder is skipped.
    A task that fails runs again, up to :data:`TASK_RETRIES` times, counted in ``retries``
    (each result is released as it arrives: a worker that retires holds no finished data);
    a task that still fails fails the run with one line.
    """
    token = uuid.uuid4().hex[:12]
    scan: Callable[..., ScanResult] = scan_in_sandbox if options.decode_timeout else scan_shard
    task = partial(scan, location, options=options)
    pending = iter(shards)
    #: what each task in flight scans: key -> (tag, shard, attempt)
    flight: dict[str, tuple[T, Shard, int]] = {}
    running = as_completed([], loop=client.loop, with_results=True, raise_errors=False)

    def submit(tag: T, shard: Shard, attempt: int = 0) -> None:
        key = f"imgstats-scan-{token}-{shard.index}-{attempt}"
        flight[key] = tag, shard, attempt
        running.add(client.submit(task, shard, key=key, pure=False))

    def fill() -> None:
        """Pull shards until the window is full, the iterator pauses or ends."""
        while len(flight) < window:
            item = next(pending, _END)
            if item is _END:
                return
            if item is None:
                if flight:
                    return
                continue
            assert isinstance(item, tuple)
            submit(*item)

    fill()
    try:
        while flight:
            future, result = next(running)
            tag, shard, attempt = flight.pop(str(future.key))
            future.release()  # the result is here: nothing of it stays on the cluster
            if not isinstance(result, ScanResult):  # (the status may have moved on since)
                error = _failure(result)
                if isinstance(error, CancelledError):
                    raise ImgstatsError(f"run failed: the task of shard {shard.index} was "
                                        f"cancelled ({error})")
                if attempt >= TASK_RETRIES or isinstance(error, KilledWorker):
                    raise error
                log.debug("shard %d failed (%s); running it again", shard.index, error)
                if retries is not None:
                    retries.count += 1
                submit(tag, shard, attempt + 1)
                continue
            yield tag, result
            fill()  # after the caller took the result in: its back-pressure sees it
    except ImgstatsError:
        raise
    except Exception as exc:
        raise ImgstatsError(f"run failed: {type(exc).__name__}: {exc}") from exc
    finally:
        if flight:  # stopped early (an error, Ctrl-C): nothing more is wanted
            with running.lock:
                waiting = list(running.futures)
            client.cancel(waiting)


def _failure(result: object) -> BaseException:
    """The exception of a task that did not return: as_completed gives an erred task's
    ``(type, exception, traceback)`` and a cancelled task's CancelledError."""
    if isinstance(result, tuple):
        _, error, traceback = result
        return error.with_traceback(traceback)  # type: ignore[no-any-return]
    if isinstance(result, BaseException):
        return result
    return TypeError(f"a scan task returned {type(result).__name__}")
