"""Reading the bytes of a shard's files: bounded in size and memory, concurrently on object
stores.

Whatever the listing found under an image name, a read never blocks and never runs away:

- locally, only regular files are read (checked with ``stat``, then again with ``fstat`` on
  a descriptor opened with ``O_NONBLOCK | O_NOCTTY``): a FIFO, a socket, a device or a
  link to one is skipped with what it is, without blocking on it;
- at most ``max_bytes`` are read: a larger file is skipped with its size, without reading
  it; locally, at most the size ``fstat`` gave plus :data:`GROWTH_MARGIN` (a file that
  yields more, a ``/proc`` file, a file still being written, is skipped);
- running out of memory for one file costs that file.

Time is bounded where the reads run: in a decode sandbox, which watches each local read as it
watches each decode (:func:`read_files`' ``on_read``), or by the storage client's timeouts.
"""

from __future__ import annotations

import asyncio
import errno
import inspect
import os
import stat
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from fsspec.asyn import sync

from ..config import DEFAULT_MAX_FILE_BYTES
from ..core.files import FileEntry
from ..core.result import Skip
from ..errors import SourceVanishedError
from .location import Location

__all__ = ["CONCURRENT_READS", "GROWTH_MARGIN", "WINDOW_BYTES", "OnRead", "read_files"]

#: Read failures that will not go away on a retry: the file is skipped with the reason.
_PERMANENT_READ_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError,
                          NotADirectoryError)
#: errno values of a local read that may go away on a retry (network file systems, resource
#: limits); every other errno is the file's own problem and skips it.
_TRANSIENT_ERRNOS = frozenset({
    errno.EIO, errno.EAGAIN, errno.EBUSY, errno.EINTR, errno.ENOMEM, errno.EMFILE,
    errno.ENFILE, errno.ESTALE, errno.ETIMEDOUT, errno.ECONNRESET, errno.ECONNABORTED,
    errno.ENETDOWN, errno.ENETUNREACH, errno.EHOSTDOWN, errno.EHOSTUNREACH, errno.ENOLCK,
    errno.ENOBUFS,
})
_READ_ATTEMPTS = 3
#: Files fetched at once on async filesystems, and the most bytes held by one window.
CONCURRENT_READS = 32
WINDOW_BYTES = 64 * 2**20
#: Bytes a local file may yield beyond the size ``fstat`` gave when it was opened.
GROWTH_MARGIN = 64 * 2**10

#: Called with a file's index in ``files`` just before it is read (locally).
OnRead = Callable[[int], None]

_KINDS = {
    stat.S_IFIFO: "a FIFO",
    stat.S_IFSOCK: "a socket",
    stat.S_IFCHR: "a character device",
    stat.S_IFBLK: "a block device",
    stat.S_IFDIR: "a folder",
}


class _Unreadable(Exception):
    """This file cannot be read, for good: ``str(exc)`` says why (the skip reason)."""


def read_files(
    fs: Any,
    location: Location,
    files: Sequence[FileEntry],
    max_bytes: int | None = DEFAULT_MAX_FILE_BYTES,
    on_read: OnRead | None = None,
) -> Iterator[tuple[FileEntry, bytes | Skip]]:
    """Each file's bytes (or a :class:`Skip` saying why not), in order; ``max_bytes`` (None:
    no limit) bounds each file.

    On async filesystems (s3, gcs, http...) a window of files is fetched concurrently: with
    object stores' first-byte latency, one blocking request after another would leave the
    worker idle. The window is bounded in files and bytes, so memory stays bounded.
    """
    if not getattr(fs, "async_impl", False):
        local = location.protocol == "file"
        for index, entry in enumerate(files):
            if on_read is not None:
                on_read(index)
            path = location.join(entry.path)
            yield entry, _read(fs, path, entry, max_bytes, local)
        return
    for window in _windows(files):
        wanted = [entry for entry in window if not _over(entry.size, max_bytes)]
        ends = [None if not e.size or max_bytes is None else max_bytes + 1 for e in wanted]
        paths = [location.join(entry.path) for entry in wanted]
        fetched = dict(zip(wanted, sync(fs.loop, _fetch_concurrently, fs, paths, ends),
                           strict=True))
        for entry in window:
            data = fetched.get(entry)
            if data is None:
                yield entry, Skip(entry.path, _too_large(entry.size, max_bytes))
            elif isinstance(data, FileNotFoundError) and _bucket_is_gone(data):
                raise SourceVanishedError(
                    f"cannot read {location.url!r}: its bucket no longer exists"
                ) from None
            elif isinstance(data, _PERMANENT_READ_ERRORS):
                yield entry, Skip(entry.path, f"cannot read: {type(data).__name__}")
            elif isinstance(data, MemoryError):
                yield entry, Skip(entry.path, _out_of_memory(entry.size))
            elif isinstance(data, BaseException):
                raise data  # the client library retried it already: the task fails, Dask retries
            elif _over(len(data), max_bytes):  # bigger than listed: its size is not known
                yield entry, Skip(entry.path, _too_large(None, max_bytes))
            else:
                yield entry, data


def _over(size: int, max_bytes: int | None) -> bool:
    return max_bytes is not None and size > max_bytes


def _too_large(size: int | None, max_bytes: int | None) -> str:
    """The skip reason of a file over ``max_bytes``; ``size`` None: only known to be over."""
    limit = f"the {max_bytes or 0:,} bytes allowed (--max-file-bytes)"
    if size is None:
        return f"too large to read: more than {limit}"
    return f"too large to read: {size:,} bytes, more than {limit}"


def _out_of_memory(size: int) -> str:
    return f"too large to read: out of memory for its {size:,} bytes"


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


async def _fetch_concurrently(
    fs: Any, paths: Sequence[str], ends: Sequence[int | None]
) -> list[bytes | BaseException]:
    # s3fs sends a HEAD before each GET unless told to read in one request; a range (the
    # size bound) is one request anyway.
    single = (
        {"max_concurrency": 1}
        if "max_concurrency" in inspect.signature(fs._cat_file).parameters
        else {}
    )

    def bounds(end: int | None) -> dict[str, int]:
        return {} if end is None else {"start": 0, "end": end}

    fetched: list[bytes | BaseException] = await asyncio.gather(
        *(fs._cat_file(path, **single, **bounds(end)) for path, end in zip(paths, ends,
                                                                          strict=True)),
        return_exceptions=True,
    )
    return fetched


def _read_local(path: str, max_bytes: int | None) -> bytes:
    """A local regular file's bytes, bounded (see the module's docstring); :class:`_Unreadable`
    for anything else. Plain ``os`` calls: fsspec's per-call overhead (tens of µs) counts for
    collections of tiny files."""
    _require_regular(path, os.stat(path))  # before opening: opening a device can act on it
    fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    with open(fd, "rb") as handle:
        status = os.fstat(fd)
        _require_regular(path, status)  # it may have been replaced since
        if _over(status.st_size, max_bytes):
            raise _Unreadable(_too_large(status.st_size, max_bytes))
        ceiling = status.st_size + GROWTH_MARGIN
        if max_bytes is not None:
            ceiling = min(ceiling, max_bytes)
        try:
            data = handle.read(ceiling + 1)
        except MemoryError:
            raise _Unreadable(_out_of_memory(status.st_size)) from None
    if len(data) > ceiling:
        if ceiling == max_bytes:
            raise _Unreadable(_too_large(None, max_bytes))
        raise _Unreadable(
            f"cannot read: it yields more than its size ({status.st_size:,} bytes) when read "
            "(still being written, or not a plain file)"
        )
    return data


def _require_regular(path: str, status: os.stat_result) -> None:
    if stat.S_ISREG(status.st_mode):
        return
    kind = _KINDS.get(stat.S_IFMT(status.st_mode), "not a plain file")
    link = "a link to " if os.path.islink(path) else ""
    raise _Unreadable(f"not a regular file: {link}{kind}")


def _read_other(fs: Any, path: str, size: int, max_bytes: int | None) -> bytes:
    """A file of another synchronous filesystem, at most ``max_bytes`` + 1 bytes."""
    if _over(size, max_bytes):
        raise _Unreadable(_too_large(size, max_bytes))
    try:
        data: bytes = (
            fs.cat_file(path) if max_bytes is None else fs.cat_file(path, 0, max_bytes + 1)
        )
    except MemoryError:
        raise _Unreadable(_out_of_memory(size)) from None
    if _over(len(data), max_bytes):
        raise _Unreadable(_too_large(None, max_bytes))
    return data


def _read(
    fs: Any, path: str, entry: FileEntry, max_bytes: int | None, local: bool
) -> bytes | Skip:
    """The file's bytes; a :class:`Skip` for permanent errors; transient ones are retried,
    then raised so the task fails (and Dask retries it)."""
    for attempt in range(_READ_ATTEMPTS):
        try:
            if local:
                return _read_local(path, max_bytes)
            return _read_other(fs, path, entry.size, max_bytes)
        except _Unreadable as exc:
            return Skip(entry.path, str(exc))
        except _PERMANENT_READ_ERRORS as exc:
            return Skip(entry.path, f"cannot read: {type(exc).__name__}")
        except OSError as exc:
            if local and exc.errno not in _TRANSIENT_ERRNOS:
                return Skip(entry.path, f"cannot read: {exc.strerror or type(exc).__name__}")
            if attempt == _READ_ATTEMPTS - 1:
                raise
            time.sleep(0.1 * 2**attempt)
    raise AssertionError("unreachable")
