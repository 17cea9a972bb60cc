"""Reading the bytes of a shard's files: concurrently on object stores, bounded in memory."""

from __future__ import annotations

import asyncio
import inspect
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fsspec.asyn import sync

from ..core.files import FileEntry
from ..core.result import Skip
from ..errors import SourceVanishedError
from .location import Location

__all__ = ["CONCURRENT_READS", "WINDOW_BYTES", "read_files"]

#: Read failures that will not go away on a retry: the file is skipped with the reason.
_PERMANENT_READ_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError)
_READ_ATTEMPTS = 3
#: Files fetched at once on async filesystems, and the most bytes held by one window.
CONCURRENT_READS = 32
WINDOW_BYTES = 64 * 2**20


def read_files(
    fs: Any, location: Location, files: Sequence[FileEntry]
) -> Iterator[tuple[FileEntry, bytes | Skip]]:
    """Each file's bytes (or why not), in order.

    On async filesystems (s3, gcs, http...) a window of files is fetched concurrently: with
    object stores' first-byte latency, one blocking request after another would leave the
    worker idle. The window is bounded in files and bytes, so memory stays bounded.
    """
    if not getattr(fs, "async_impl", False):
        read = _read_local if location.protocol == "file" else fs.cat_file
        for entry in files:
            yield entry, _read(read, location.join(entry.path), entry)
        return
    for window in _windows(files):
        paths = [location.join(entry.path) for entry in window]
        fetched = sync(fs.loop, _fetch_concurrently, fs, paths)
        for entry, data in zip(window, fetched, strict=True):
            if isinstance(data, FileNotFoundError) and _bucket_is_gone(data):
                raise SourceVanishedError(
                    f"cannot read {location.url}: its bucket no longer exists"
                ) from None
            if isinstance(data, _PERMANENT_READ_ERRORS):
                yield entry, Skip(entry.path, f"cannot read: {type(data).__name__}")
            elif isinstance(data, BaseException):
                raise data  # the client library retried it already: the task fails, Dask retries
            else:
                yield entry, data


def _bucket_is_gone(exc: BaseException) -> bool:
    """Whether a missing object is missing because its whole bucket is (s3fs keeps the
    service's error code on the exception it raises from)."""
    cause = exc.__cause__ or exc.__context__
    error = (getattr(cause, "response", None) or {}).get("Error") or {}
    return error.get("Code") == "NoSuchBucket"


def _windows(files: Sequence[FileEntry]) -> Iterator[Sequence[FileEntry]]:
    start = 0
    while start < len(files):
        stop, size = start, 0
        while stop < len(files) and stop - start < CONCURRENT_READS and (
            stop == start or size + files[stop].size <= WINDOW_BYTES
        ):
            size += files[stop].size
            stop += 1
        yield files[start:stop]
        start = stop


async def _fetch_concurrently(fs: Any, paths: Sequence[str]) -> list[bytes | BaseException]:
    # s3fs sends a HEAD before each GET unless told to read in one request.
    single = (
        {"max_concurrency": 1}
        if "max_concurrency" in inspect.signature(fs._cat_file).parameters
        else {}
    )
    fetched: list[bytes | BaseException] = await asyncio.gather(
        *(fs._cat_file(path, **single) for path in paths), return_exceptions=True
    )
    return fetched


def _read_local(path: str) -> bytes:
    """A local file's bytes, without fsspec's per-call overhead (tens of µs: it counts for
    collections of tiny files)."""
    with open(path, "rb") as handle:
        return handle.read()


def _read(read: Callable[[str], bytes], path: str, entry: FileEntry) -> bytes | Skip:
    """The file's bytes; a :class:`Skip` for permanent errors; transient ones are retried,
    then raised so the task fails (and Dask retries it)."""
    for attempt in range(_READ_ATTEMPTS):
        try:
            return read(path)
        except _PERMANENT_READ_ERRORS as exc:
            return Skip(entry.path, f"cannot read: {type(exc).__name__}")
        except OSError:
            if attempt == _READ_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")
