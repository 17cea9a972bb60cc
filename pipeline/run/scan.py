"""One shard's work: read its files, decode them, count their histograms, per group.

Runs inside a Dask task, a decode sandbox or anywhere: it opens its own filesystem from a
:class:`~pipeline.fs.location.Location`, so no live filesystem crosses a process boundary and
image bytes never travel through the scheduler. One read and one decode per file, however
many groups: each file counts in its group, and the totals are the sum of the groups. Each
file's content digest goes into its record row; a file the shard expects a digest of
(``--verify``) and whose bytes still have it is only read and hashed, not decoded.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from ..config import ScanOptions
from ..core.digest import content_digest
from ..core.files import FileEntry, FileSet, Shard
from ..core.groups import NO_GROUP
from ..core.histogram import AnySummary, Histogram, summarize
from ..core.keys import Layout, ResultKey
from ..core.result import RecordPart, ScanResult, Skip, merge_summaries
from ..decode import apply_transform, decode
from ..errors import DecodeError
from ..fs.location import Location
from ..fs.reading import OnRead, read_files
from ..fs.retries import retry_count
from ..store.record import FileRecord, sparse

__all__ = ["scan_shard"]


def scan_shard(
    location: Location,
    shard: Shard,
    options: ScanOptions,
    on_decode: Callable[[int], None] | None = None,
    on_read: OnRead | None = None,
) -> ScanResult:
    """Decode every file of ``shard`` and return its merged summaries per group and layout,
    its skip list and its per-file record block.

    ``on_decode``, if given, is called with a file's index in ``shard.files`` just before
    its decode starts and with -1 once its histogram is counted; ``on_read`` with its
    index just before a (local) read (the sandbox watches these).
    """
    started = time.perf_counter()
    fs = location.filesystem()
    retries = retry_count(fs)
    retried_before = retries.value
    group_of = options.group_by or (lambda path: NO_GROUP)
    summaries: dict[ResultKey, AnySummary] = {}
    sums: dict[ResultKey, np.ndarray] = {}  # histogram totals, added in place
    images: Counter[ResultKey] = Counter()
    files: dict[str, FileSet] = {}
    skipped: list[Skip] = []
    record = _Rows(options.segment_files)
    verified: list[str] = []
    decoded = 0
    high = 0
    nbytes = 0
    reads = read_files(fs, location, shard.files, options.max_file_bytes, on_read)
    for index, (entry, data) in enumerate(reads):
        if isinstance(data, Skip):
            skipped.append(data)
            continue
        nbytes += len(data)
        digest = content_digest(data)
        if digest == shard.expected_digest(index):  # --verify: the bytes it was counted from
            verified.append(entry.path)
            continue
        if len(data) != entry.size:  # rewritten since it was listed: counted as it is now
            entry = FileEntry(entry.path, len(data), "")  # no token: the next run reads it
        decoded += 1
        if on_decode is not None:
            on_decode(index)
        try:
            counted = _count(data, options)
        finally:
            if on_decode is not None:
                on_decode(-1)
        if isinstance(counted, str):
            skipped.append(Skip(entry.path, counted))
            continue
        layout, summary, high_bit_depth = counted
        group = group_of(entry.path)
        key = ResultKey(group, layout)
        if isinstance(summary, Histogram):
            if key in sums:
                sums[key] += summary.counts
            else:
                sums[key] = summary.counts.copy()
            record.add(entry, layout, high_bit_depth, summary.counts, digest)
        else:  # float samples: moments only, no record
            known = summaries.get(key)
            summaries[key] = merge_summaries(known, summary) if known is not None else summary
        images[key] += 1
        high += high_bit_depth
        files[group] = files.get(group, FileSet()).add(entry)
    summaries.update({key: Histogram(counts) for key, counts in sums.items()})
    return ScanResult(
        summaries,
        images,
        high,
        tuple(skipped),
        files,
        record.blocks(),
        nbytes,
        time.perf_counter() - started,
        retries.value - retried_before,
        verified=tuple(verified),
        decoded=decoded,
    )


class _Rows:
    """The shard's per-file record, gathered as columns (histograms sparse at once: a 16-bit
    RGB one is 1.5 MB dense)."""

    def __init__(self, segment_files: int) -> None:
        self.segment_files = segment_files
        self.entries: list[FileEntry] = []
        self.layouts: list[Layout] = []
        self.high: list[bool] = []
        self.bins: list[np.ndarray] = []
        self.counts: list[np.ndarray] = []
        self.digests: list[bytes] = []

    def add(
        self, entry: FileEntry, layout: Layout, high: bool, counts: np.ndarray, digest: bytes
    ) -> None:
        bins, nonzero = sparse(counts)
        self.digests.append(digest)
        self.entries.append(entry)
        self.layouts.append(layout)
        self.high.append(high)
        self.bins.append(bins)
        self.counts.append(nonzero)

    def blocks(self) -> tuple[RecordPart, ...]:
        if not self.entries:
            return ()
        record = FileRecord.from_columns(
            self.entries, self.layouts, self.high, self.bins, self.counts, self.digests
        )
        return record.parts(self.segment_files)


def _count(data: bytes, options: ScanOptions) -> tuple[Layout, AnySummary, bool] | str:
    """One file's (layout, summary, high bit depth), or why it cannot be counted."""
    try:
        decoded = decode(data, options.mode, options.max_image_pixels)
        if options.transform is not None:
            decoded = apply_transform(decoded, options.transform)
    except DecodeError as exc:
        return _one_line(str(exc))
    except MemoryError:
        return "out of memory while decoding"
    except Exception as exc:  # a decoder bug on a hostile file must not fail the run
        return _one_line(f"cannot decode: {type(exc).__name__}: {exc}")
    return decoded.layout, summarize(decoded.pixels), decoded.high_bit_depth


def _one_line(text: str) -> str:
    """A decoder's message on one line (it ends up in one-line warnings)."""
    return " ".join(text.split())
