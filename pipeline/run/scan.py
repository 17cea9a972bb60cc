"""One shard's work: read its files, decode them, sum their moments.

Runs inside a Dask task, a decode sandbox or anywhere: it opens its own filesystem from a
:class:`~pipeline.fs.location.Location`, so no live filesystem crosses a process boundary and
image bytes never travel through the scheduler.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

from ..config import ScanOptions
from ..core.files import FileEntry, FileSet, Shard
from ..core.keys import Layout, ResultKey
from ..core.moments import AnyMoments, Moments, from_pixels, merge
from ..core.result import ScanResult, Skip
from ..decode import decode
from ..errors import DecodeError
from ..fs.location import Location
from ..fs.reading import OnRead, read_files
from ..fs.retries import retry_count
from ..store.record import FileRecord, FileRow

__all__ = ["scan_shard"]

#: The group of every file (groups come with ``--group-by``).
NO_GROUP = ""


def scan_shard(
    location: Location,
    shard: Shard,
    options: ScanOptions,
    on_decode: Callable[[int], None] | None = None,
    on_read: OnRead | None = None,
) -> ScanResult:
    """Decode every file of ``shard`` and return its merged moments, skip list and per-file
    record block.

    ``on_decode``, if given, is called with a file's index in ``shard.files`` just before
    its decode starts and with -1 once its moments are summed; ``on_read`` with its index
    just before a (local) read (the sandbox watches these).
    """
    started = time.perf_counter()
    fs = location.filesystem()
    retries = retry_count(fs)
    retried_before = retries.value
    totals: dict[ResultKey, AnyMoments] = {}
    images: Counter[ResultKey] = Counter()
    skipped: list[Skip] = []
    counted = FileSet()
    rows: list[FileRow] = []
    high = 0
    nbytes = 0
    reads = read_files(fs, location, shard.files, options.max_file_bytes, on_read)
    for index, (entry, data) in enumerate(reads):
        if isinstance(data, Skip):
            skipped.append(data)
            continue
        nbytes += len(data)
        if len(data) != entry.size:  # rewritten since it was listed: counted as it is now
            entry = FileEntry(entry.path, len(data), "")  # no token: the next run reads it
        if on_decode is not None:
            on_decode(index)
        try:
            counted_file = _count(data, options)
        finally:
            if on_decode is not None:
                on_decode(-1)
        if isinstance(counted_file, str):
            skipped.append(Skip(entry.path, counted_file))
            continue
        layout, value, high_bit_depth = counted_file
        key = ResultKey(NO_GROUP, layout)
        totals[key] = merge(totals[key], value) if key in totals else value
        images[key] += 1
        high += high_bit_depth
        counted = counted.add(entry)
        if isinstance(value, Moments):  # float samples keep no record
            rows.append(FileRow(entry, layout, value, high_bit_depth))
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


def _count(data: bytes, options: ScanOptions) -> tuple[Layout, AnyMoments, bool] | str:
    """One file's (layout, moments, high bit depth), or why it cannot be counted."""
    try:
        decoded = decode(data, options.mode, options.max_image_pixels)
    except DecodeError as exc:
        return _one_line(str(exc))
    except MemoryError:
        return "out of memory while decoding"
    except Exception as exc:  # a decoder bug on a hostile file must not fail the run
        return _one_line(f"cannot decode: {type(exc).__name__}: {exc}")
    return decoded.layout, from_pixels(decoded.pixels), decoded.high_bit_depth


def _one_line(text: str) -> str:
    """A decoder's message on one line (it ends up in one-line warnings)."""
    return " ".join(text.split())
