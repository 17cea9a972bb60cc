"""One shard's work: read its files, decode them, sum their moments.

Runs inside a Dask task (or anywhere): it opens its own filesystem from a
:class:`~pipeline.location.Location`, so no live filesystem crosses a process boundary and
image bytes never travel through the scheduler.
"""

from __future__ import annotations

import asyncio
import inspect
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from fsspec.asyn import sync

from . import moments as mom
from .decode import DEFAULT_MAX_IMAGE_PIXELS, Decoded, Mode, decode
from .errors import DecodeError, SourceVanishedError
from .listing import FileEntry, FileSet, Shard
from .location import Location
from .record import FileRecord, FileRow
from .retries import retry_count

__all__ = ["FileRow", "ScanResult", "Skip", "read_files", "scan_shard"]

#: Read failures that will not go away on a retry: the file is skipped with the reason.
_PERMANENT_READ_ERRORS = (FileNotFoundError, PermissionError, IsADirectoryError)
_READ_ATTEMPTS = 3
#: Files fetched at once on async filesystems, and the most bytes held by one window.
CONCURRENT_READS = 32
WINDOW_BYTES = 64 * 2**20


@dataclass(frozen=True, order=True)
class Skip:
    """A file that could not be counted, and why."""

    path: str
    error: str


@dataclass(frozen=True)
class ScanResult:
    """Merged moments per layout (``"RGB uint8"``...), plus what was skipped and counted.

    Layouts are kept apart so a mixed native run is reported with counts, never merged.
    ``rows`` holds, when asked for, each shard's per-file moments as a compact Arrow block
    (:meth:`~pipeline.record.FileRecord.to_block`): incremental runs need them.
    """

    moments: dict[str, mom.AnyMoments] = field(default_factory=dict)
    images: Counter[str] = field(default_factory=Counter)
    high_bit_depth: int = 0
    skipped: tuple[Skip, ...] = ()
    files: FileSet = field(default_factory=FileSet)
    rows: tuple[bytes, ...] = ()
    bytes_read: int = 0
    seconds: float = 0.0
    retries: int = 0  # storage requests sent again (see :mod:`pipeline.retries`)
    task_retries: int = 0  # scan tasks run again after failing (set by the graph)

    def merge(self, other: ScanResult) -> ScanResult:
        merged = dict(self.moments)
        for layout, value in other.moments.items():
            merged[layout] = merged[layout].merge(value) if layout in merged else value
        return ScanResult(
            merged,
            self.images + other.images,
            self.high_bit_depth + other.high_bit_depth,
            self.skipped + other.skipped,
            self.files.merge(other.files),
            self.rows + other.rows,
            self.bytes_read + other.bytes_read,
            self.seconds + other.seconds,
            self.retries + other.retries,
            self.task_retries + other.task_retries,
        )


def merge_results(results: Iterable[ScanResult]) -> ScanResult:
    """Merge any number of results (the combine step of the tree reduction)."""
    total = ScanResult()
    for result in results:
        total = total.merge(result)
    return total


def scan_shard(
    location: Location,
    shard: Shard,
    mode: Mode,
    max_image_pixels: int | None = DEFAULT_MAX_IMAGE_PIXELS,
    keep_rows: bool = False,
    on_decode: Callable[[int], None] | None = None,
) -> ScanResult:
    """Decode every file of ``shard`` and return its merged moments and skip list.

    ``on_decode``, if given, is called with a file's index in ``shard.files`` just before
    its decode starts and with -1 once its moments are summed (the sandbox watches these).
    """
    started = time.perf_counter()
    fs = location.filesystem()
    retries = retry_count(fs)
    retried_before = retries.value
    totals: dict[str, mom.AnyMoments] = {}
    images: Counter[str] = Counter()
    skipped: list[Skip] = []
    counted = FileSet()
    rows: list[FileRow] = []
    high = 0
    nbytes = 0
    for index, (entry, data) in enumerate(read_files(fs, location, shard.files)):
        if isinstance(data, Skip):
            skipped.append(data)
            continue
        nbytes += len(data)
        if len(data) != entry.size:  # rewritten since it was listed: counted as it is now
            entry = FileEntry(entry.path, len(data), "")  # no token: the next run reads it
        if on_decode is not None:
            on_decode(index)
        try:
            counted_file = _count(data, mode, max_image_pixels)
        finally:
            if on_decode is not None:
                on_decode(-1)
        if isinstance(counted_file, str):
            skipped.append(Skip(entry.path, counted_file))
            continue
        key, value, high_bit_depth = counted_file
        totals[key] = totals[key].merge(value) if key in totals else value
        images[key] += 1
        high += high_bit_depth
        counted = counted.add(entry)
        if keep_rows and isinstance(value, mom.Moments):  # float samples keep no record
            rows.append(FileRow(entry, key, value, high_bit_depth))
    return ScanResult(
        totals,
        images,
        high,
        tuple(skipped),
        counted,
        (FileRecord.from_rows(rows).to_block(),) if rows else (),
        nbytes,
        time.perf_counter() - started,
        retries.value - retried_before,
    )


def _count(
    data: bytes, mode: Mode, max_image_pixels: int | None
) -> tuple[str, mom.AnyMoments, bool] | str:
    """One file's (layout key, moments, high bit depth), or why it cannot be counted."""
    try:
        decoded = decode(data, mode, max_image_pixels)
    except DecodeError as exc:
        return str(exc)
    except MemoryError:
        return "out of memory while decoding"
    except Exception as exc:  # a decoder bug on a hostile file must not fail the run
        return f"cannot decode: {type(exc).__name__}: {exc}"
    return layout_key(decoded), mom.from_pixels(decoded.pixels), decoded.high_bit_depth


def layout_key(decoded: Decoded) -> str:
    """``"RGB uint8"``: channel names and sample type, what one run must share."""
    return f"{decoded.layout} {decoded.dtype}"


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
    return await asyncio.gather(
        *(fs._cat_file(path, **single) for path in paths), return_exceptions=True
    )


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
