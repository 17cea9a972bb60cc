"""A version's per-file record as immutable segments, referenced by a manifest.

A segment, ``segments/<run>/<32 hex digits>.arrow`` (a folder per run; ``.parquet`` when
written before records were Arrow files), is a :class:`~pipeline.store.record.FileRecord`
table of at most a few dozen files whose paths form a contiguous range of the sorted listing.
It is written once, never rewritten, and shared by reference by every later version whose
files in that range did not change; an incremental run reads only the segments whose range
changed and writes only new ones. A manifest,
``manifests/<32 hex>.parquet``, lists a version's segments in path order, each with its first
and last path and the count, bytes and fingerprint of its files: enough to tell an unchanged
range from the listing alone, without reading the segment. Ranges never overlap.

Nothing is ever deleted: a segment is referenced by any number of versions (each kept
forever), and a run that was killed leaves at most files that no manifest references, which
no later run reads.
"""

from __future__ import annotations

import io
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..core.files import FileSet, path_bytes, path_text
from ..errors import StatsFileError
from .base import StatsStore
from .names import is_segment_name
from .record import MAX_RECORD_BYTES, FileRecord

__all__ = ["ManifestWriter", "Segment", "read_manifest", "read_record"]

_FIELDS: list[pa.Field[Any]] = [
    pa.field("name", pa.string()),
    pa.field("first", pa.binary()),  # paths as bytes, as in the record (path_bytes)
    pa.field("last", pa.binary()),
    pa.field("count", pa.int64()),
    pa.field("bytes", pa.int64()),
    pa.field("fingerprint", pa.string()),
    pa.field("size", pa.int64()),
]
SCHEMA = pa.schema(_FIELDS)
#: Rows of a manifest kept in memory before they go to its temporary file.
_BATCH = 4096


@dataclass(frozen=True)
class Segment:
    """One segment as a manifest lists it."""

    name: str
    first: str
    last: str
    files: FileSet
    size: int  # bytes of the segment file


class ManifestWriter:
    """Builds a manifest from segments given in path order, spilling to a temporary file so
    that a manifest of millions of segments never sits in memory as objects."""

    def __init__(self) -> None:
        self._file = tempfile.SpooledTemporaryFile(max_size=64 * 2**20)  # noqa: SIM115
        self._writer = pq.ParquetWriter(self._file, SCHEMA, compression="zstd")
        self._batch: list[Segment] = []
        self._last: str | None = None
        self.segments = 0
        self.files = FileSet()
        self.size = 0

    def add(self, segment: Segment) -> None:
        if self._last is not None and segment.first <= self._last:
            raise ValueError(f"segment {segment.first!r} does not follow {self._last!r}")
        self._last = segment.last
        self._batch.append(segment)
        self.segments += 1
        self.files = self.files.merge(segment.files)
        self.size += segment.size
        if len(self._batch) >= _BATCH:
            self._flush()

    def _flush(self) -> None:
        if not self._batch:
            return
        batch = self._batch
        columns = {
            "name": [s.name for s in batch],
            "first": [path_bytes(s.first) for s in batch],
            "last": [path_bytes(s.last) for s in batch],
            "count": [s.files.count for s in batch],
            "bytes": [s.files.nbytes for s in batch],
            "fingerprint": [s.files.fingerprint for s in batch],
            "size": [s.size for s in batch],
        }
        self._writer.write_table(pa.table(columns, schema=SCHEMA))
        self._batch = []

    def finish(self) -> bytes:
        """The manifest file's bytes."""
        self._flush()
        self._writer.close()
        self._file.seek(0)
        data = self._file.read()
        self._file.close()
        return bytes(data)


def read_manifest(data: bytes, name: str = "manifest") -> Iterator[Segment]:
    """The segments of a manifest, in path order, batch by batch; checked (names the store
    makes, ranges in order) so that a damaged file is a :class:`StatsFileError`."""
    try:
        parquet = pq.ParquetFile(io.BytesIO(data))
    except (pa.ArrowException, OSError) as exc:
        raise StatsFileError(f"{name} is not a readable Parquet file: {exc}") from exc
    if not parquet.schema_arrow.equals(SCHEMA):
        raise StatsFileError(f"{name} does not have the manifest schema")
    last: str | None = None
    # One row group (a writer's batch) at a time, read on this thread: iter_batches read
    # ahead, holding much of a large manifest decoded at once (reading a 10^7-file manifest,
    # 13.7 MB, raised the peak by 55 MB; this way by 20 MB, the same after 4,096 rows).
    for group in range(parquet.num_row_groups):
        batch = parquet.read_row_group(group, use_threads=False)
        columns = batch.to_pydict()
        for i in range(batch.num_rows):
            segment_file = columns["name"][i]
            first, end = path_text(columns["first"][i]), path_text(columns["last"][i])
            if not is_segment_name(segment_file) or first > end or (
                last is not None and first <= last
            ):
                raise StatsFileError(f"{name} lists a segment out of order or misnamed")
            try:
                digest = int(columns["fingerprint"][i], 16)
            except ValueError:
                raise StatsFileError(f"{name} holds a fingerprint that is not hex") from None
            last = end
            yield Segment(
                segment_file,
                first,
                end,
                FileSet(columns["count"][i], columns["bytes"][i], digest),
                columns["size"][i],
            )


def read_record(store: StatsStore, manifest: str) -> Iterator[FileRecord]:
    """A version's whole per-file record, segment by segment, in path order."""
    data = store.read_bytes(manifest, MAX_RECORD_BYTES)
    for segment in read_manifest(data, store.url_of(manifest)):
        yield FileRecord.from_bytes(store.read_bytes(segment.name, segment.size),
                                    store.url_of(segment.name))
