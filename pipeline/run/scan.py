"""One shard's work: read its files, decode them, count their histograms, per group.

Runs inside a Dask task, a decode sandbox or anywhere: it opens its own filesystem from a
:class:`~pipeline.fs.location.Location`, so no live filesystem crosses a process boundary and
image bytes never travel through the scheduler. One read and one decode per file, however
many groups: each file counts in its group, and the totals are the sum of the groups. Each
file's content digest goes into its record row; a file the shard expects a digest of
(``--verify``) and whose bytes still have it is only read and hashed, not decoded.
"""

from __future__ import annotations

import itertools
import time
from collections import Counter
from collections.abc import Callable

import numpy as np

from ..config import ScanOptions
from ..core.digest import content_digest
from ..core.files import FileEntry, FileSet, Shard, entry_digest
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
    group_of = options.group_by
    summaries: dict[ResultKey, AnySummary] = {}
    keys: dict[tuple[str, Layout], ResultKey] = {}
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
        group = NO_GROUP if group_of is None else group_of(entry.path)
        key = keys.get((group, layout))
        if key is None:
            key = keys[group, layout] = ResultKey(group, layout)
        if isinstance(summary, Histogram):
            record.add(entry, key, high_bit_depth, summary.counts, digest)
        else:  # float samples: moments only, no record
            known = summaries.get(key)
            summaries[key] = merge_summaries(known, summary) if known is not None else summary
            record.add_unrecorded(entry, key)
        high += high_bit_depth
    summaries.update(record.histograms())
    return ScanResult(
        summaries,
        record.images(),
        high,
        tuple(skipped),
        record.file_sets(),
        record.blocks(),
        nbytes,
        time.perf_counter() - started,
        retries.value - retried_before,
        verified=tuple(verified),
        decoded=decoded,
    )


class _Rows:
    """The shard's counted files as columns: entries, keys, fingerprint digests and
    histograms, turned into sparse record segments a segment at a time and into summaries
    and file sets at the end (no per-file merge, sparse conversion or file set object).
    8-bit histograms (at most 6 KB) stay dense until their segment is encoded; larger ones
    (a 16-bit RGB one is 1.5 MB) are made sparse and added to their key's total at once, so
    memory stays bounded by a segment's histograms and the encoded segments."""

    def __init__(self, segment_files: int) -> None:
        self.segment_files = segment_files
        self.entries: list[FileEntry] = []
        self.keys: list[ResultKey] = []
        self.high: list[bool] = []
        self.dense: dict[int, np.ndarray] = {}  # row -> small dense histogram
        self.sparse: dict[int, tuple[np.ndarray, np.ndarray]] = {}  # row -> (bins, counts)
        self.totals: dict[ResultKey, np.ndarray] = {}  # per key, added in place
        self.parts: list[RecordPart] = []  # the encoded segments
        self._start = 0  # the first row not yet in a segment
        self.terms: list[int] = []  # each file's fingerprint term
        self.contents: list[bytes] = []  # each file's content digest
        self.unrecorded: list[tuple[FileEntry, ResultKey, int]] = []  # float samples

    def add(
        self, entry: FileEntry, key: ResultKey, high: bool, counts: np.ndarray, digest: bytes
    ) -> None:
        row = len(self.entries)
        self.contents.append(digest)
        self.entries.append(entry)
        self.keys.append(key)
        self.high.append(high)
        self.terms.append(entry_digest(entry))
        if counts.size <= _DENSE_BINS:
            self.dense[row] = counts
        else:
            self.sparse[row] = sparse(counts)
            self._add_total(key, counts)
        if len(self.entries) - self._start >= self.segment_files:
            self._encode()

    def add_unrecorded(self, entry: FileEntry, key: ResultKey) -> None:
        self.unrecorded.append((entry, key, entry_digest(entry)))

    def histograms(self) -> dict[ResultKey, Histogram]:
        """Each key's summed histogram (exact int64 additions)."""
        self._encode()
        return {key: Histogram(total) for key, total in self.totals.items()}

    def images(self) -> Counter[ResultKey]:
        images = Counter(self.keys)
        images.update(key for _, key, _ in self.unrecorded)
        return images

    def file_sets(self) -> dict[str, FileSet]:
        """The counted files per group, from the digests taken once per file."""
        totals: dict[str, list[int]] = {}
        recorded = zip(self.entries, self.keys, self.terms, strict=True)
        for entry, key, digest in itertools.chain(recorded, self.unrecorded):
            total = totals.setdefault(key.group, [0, 0, 0])
            total[0] += 1
            total[1] += entry.size
            total[2] += digest
        return {group: FileSet(count, size, digest % 2**128)
                for group, (count, size, digest) in totals.items()}

    def blocks(self) -> tuple[RecordPart, ...]:
        """The record, in segments of ``segment_files`` rows, each encoded."""
        self._encode()
        return tuple(self.parts)

    def _encode(self) -> None:
        """Encode the rows not yet in a segment as one, and fold their dense histograms
        into the totals: a shard holds at most one segment's dense histograms at a time."""
        start, stop = self._start, len(self.entries)
        if start == stop:
            return
        record = FileRecord.from_flat(
            self.entries[start:stop], [key.layout for key in self.keys[start:stop]],
            self.high[start:stop], *self._sparse(start, stop), self.contents[start:stop],
        )
        mine = self.entries[start:stop]
        files = FileSet(len(mine), sum(e.size for e in mine),
                        sum(self.terms[start:stop]) % 2**128)
        self.parts.append(RecordPart(mine[0].path, mine[-1].path, files, record.to_bytes()))
        for row in range(start, stop):
            counts = self.dense.pop(row, None)
            self.sparse.pop(row, None)
            if counts is not None:
                self._add_total(self.keys[row], counts)
        self._start = stop

    def _add_total(self, key: ResultKey, counts: np.ndarray) -> None:
        if key in self.totals:
            self.totals[key] += counts
        else:
            self.totals[key] = counts.astype(np.int64, copy=True)

    def _sparse(self, start: int, stop: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The nonzero flat bins and their counts of rows ``start`` to ``stop``, end to end
        (as :func:`~pipeline.store.record.sparse` gives them, row after row), and the
        offsets: one ``flatnonzero`` over the dense rows when they share one shape."""
        rows = stop - start
        dense = [self.dense[row] for row in range(start, stop) if row in self.dense]
        if len(dense) == rows and len({counts.shape for counts in dense}) == 1:
            block = np.stack(dense).reshape(rows, -1)
            flat = np.flatnonzero(block)
            offsets = np.zeros(rows + 1, np.int32)
            np.cumsum(np.count_nonzero(block, axis=1), out=offsets[1:])
            bins = (flat % block.shape[1]).astype(np.int32)
            return offsets, bins, block.reshape(-1)[flat]
        pairs = [self.sparse[row] if row in self.sparse else sparse(self.dense[row])
                 for row in range(start, stop)]
        offsets = np.zeros(rows + 1, np.int32)
        np.cumsum([len(bins) for bins, _ in pairs], out=offsets[1:])
        return (offsets, np.concatenate([b for b, _ in pairs]).astype(np.int32),
                np.concatenate([c for _, c in pairs]).astype(np.int64))


#: Histograms of at most this many bins (8-bit, up to 4 channels) stay dense until their
#: segment is encoded.
_DENSE_BINS = 4 * 256


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
